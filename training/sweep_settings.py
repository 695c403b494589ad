"""Cross-validated figures of the signal model under other training settings, on the cached features.

    python training/sweep_settings.py s1_weight=0,0.1,0.5 min_data_in_leaf=40 learning_rate=0.05

Each NAME=V1,V2 runs the development photos' cross-validation (train_signal.cross_validate: the same folds,
seed, decision rule and clean budget as train_signal.py) once per value, with that one setting changed
from the shipped ones, after a run with the shipped settings, so the lines compare like with like. NAME is
`s1_weight` (train_signal.S1_WEIGHT), `clean_weight` (train_signal.CLEAN_WEIGHT), `hull_min_severity`
(train_signal.HULL_MIN_SEVERITY: the severities the thresholds are chosen to find), `photo_cap`
(train_signal.PHOTO_CAP), `clean_target` (the clean budget) or a key of train_signal.TREE_SETTINGS
(`num_leaves`, `max_depth`, `learning_rate`, `min_data_in_leaf`, `feature_fraction`). train_signal.py must have
run once to fill the feature cache.

    python training/sweep_settings.py clean_target=0.04,0.06 --seeds 0,1,2

`--seeds` repeats each cross-validation with other seeds for the trees' bagging (the photos, folds and split stay
those of seed 0) and prints the median with min-max: a difference smaller than that spread is the seed's, not
the setting's.

    python training/sweep_settings.py clean_weight=2 --seeds 0,1,2 --every-photo

`--every-photo` cross-validates on every photo, the test photos too, in the folds of the shipped model's own
cross-validation: more photos, so a setting that helps only the development photos shows it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # training/ is not an installed package

from training import train_signal as T

# Settings that are train_signal module constants: NAME -> the constant.
_MODULE_SETTINGS = {
    "s1_weight": "S1_WEIGHT",
    "clean_weight": "CLEAN_WEIGHT",
    "hull_min_severity": "HULL_MIN_SEVERITY",
    "photo_cap": "PHOTO_CAP",
}


def _variants(specs: list[str]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for spec in specs:
        name, _, values = spec.partition("=")
        if name in ("clean_target", "photo_cap"):  # photo_cap's shipped value is None, not a float
            kind: type = float
        elif name in _MODULE_SETTINGS:
            kind = type(getattr(T, _MODULE_SETTINGS[name]))
        elif name in T.TREE_SETTINGS:
            kind = type(T.TREE_SETTINGS[name])
        else:
            known = ", ".join((*_MODULE_SETTINGS, "clean_target", *T.TREE_SETTINGS))
            raise SystemExit(f"unknown setting {name!r}: one of {known}")
        out.extend((name, kind(v)) for v in values.split(","))
    return out


FIGURES = ("clean ok", "s4", "s2", "primary s4", "ECE")  # what figures() returns, in order


def figures(report: dict[str, Any]) -> list[float]:
    ident = report["identification_mean"]
    return [report["clean_ok"], ident[3], ident[1], report["primary_s4"], report["ece"]]


def spread(runs: np.ndarray) -> str:
    """Each of FIGURES's median over the runs (rows), with min-max when there are several."""
    parts = []
    for name, column in zip(FIGURES, runs.T, strict=True):
        text = f"{name} {np.median(column):.3f}"
        if len(column) > 1:
            text += f" ({column.min():.3f}-{column.max():.3f})"
        parts.append(text)
    return "  ".join(parts)


def _run(label: str, dev: T.Data, fold, clean_target: float, seeds: list[int]) -> None:
    started = time.time()
    runs = np.array([figures(T.cross_validate(dev, fold, clean_target, seed=seed)[0]) for seed in seeds])
    print(f"{label:26s} {spread(runs)}  ({time.time() - started:.0f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="*", help="NAME=V1,V2,...")
    parser.add_argument("--cache", type=Path, default=None, help="the photo cache train_signal.py used")
    parser.add_argument("--clean-target", type=float, default=T.CLEAN_TARGET)
    parser.add_argument("--seeds", default="0", help="the trees' seeds, comma-separated (median and range)")
    parser.add_argument(
        "--every-photo",
        action="store_true",
        help="cross-validate on every photo, the test photos too (the shipped model's folds), not the development ones",
    )
    args = parser.parse_args(argv)
    variants = _variants(args.settings)
    seeds = [int(s) for s in args.seeds.split(",")]

    cache = T.existing_feature_cache(parser, args.cache)
    dev, fold = (T.every_photo_set if args.every_photo else T.development_set)(cache)
    constants = {constant: getattr(T, constant) for constant in _MODULE_SETTINGS.values()}
    trees = dict(T.TREE_SETTINGS)

    def reset() -> None:
        for constant, value in constants.items():
            setattr(T, constant, value)
        T.TREE_SETTINGS = dict(trees)

    _run("shipped settings", dev, fold, args.clean_target, seeds)
    for name, value in variants:
        reset()
        clean_target = args.clean_target
        if name in _MODULE_SETTINGS:
            setattr(T, _MODULE_SETTINGS[name], value)
        elif name == "clean_target":
            clean_target = value
        else:
            T.TREE_SETTINGS[name] = value
        _run(f"{name}={value}", dev, fold, clean_target, seeds)
    reset()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
