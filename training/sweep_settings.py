"""Cross-validated figures of the signal model under other training settings, on the cached features.

    python training/sweep_settings.py s1_weight=0,0.1,0.5 min_data_in_leaf=40 learning_rate=0.05

Each NAME=V1,V2 runs the development photos' cross-validation (train_signal.cross_validate: the same folds,
seed, decision rule and clean budget as train_signal.py) once per value, with that one setting changed
from the shipped ones, after a run with the shipped settings, so the lines compare like with like. NAME is
`s1_weight` (train_signal.S1_WEIGHT) or a key of train_signal.TREE_SETTINGS (`num_leaves`, `max_depth`,
`learning_rate`, `min_data_in_leaf`, `feature_fraction`). train_signal.py must have run once to fill the feature cache.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # training/ is not an installed package

from training import train_signal as T


def _variants(specs: list[str]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for spec in specs:
        name, _, values = spec.partition("=")
        if name != "s1_weight" and name not in T.TREE_SETTINGS:
            raise SystemExit(f"unknown setting {name!r}: s1_weight or one of {', '.join(T.TREE_SETTINGS)}")
        kind = type(T.S1_WEIGHT if name == "s1_weight" else T.TREE_SETTINGS[name])
        out.extend((name, kind(v)) for v in values.split(","))
    return out


def _run(label: str, dev: T.Data, fold, clean_target: float) -> None:
    started = time.time()
    report, *_ = T.cross_validate(dev, fold, clean_target)
    ident = report["identification_mean"]
    print(
        f"{label:26s} clean ok {report['clean_ok']:.3f}  s4 {ident[3]:.3f}  s2 {ident[1]:.3f}  "
        f"primary s4 {report['primary_s4']:.3f}  ECE {report['ece']:.3f}  ({time.time() - started:.0f} s)",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", nargs="+", help="NAME=V1,V2,...")
    parser.add_argument("--cache", type=Path, default=None, help="the photo cache train_signal.py used")
    parser.add_argument("--clean-target", type=float, default=T.CLEAN_TARGET)
    args = parser.parse_args(argv)
    variants = _variants(args.settings)
    from training import photos as photo_source

    cache = (args.cache or photo_source.default_cache()).parent / "signal-features.parquet"
    if not cache.exists():
        parser.error(f"{cache} does not exist: run training/train_signal.py first")
    dev, fold = T.development_set(cache)
    shipped = (T.S1_WEIGHT, dict(T.TREE_SETTINGS))
    _run("shipped settings", dev, fold, args.clean_target)
    for name, value in variants:
        T.S1_WEIGHT, T.TREE_SETTINGS = shipped[0], dict(shipped[1])
        if name == "s1_weight":
            T.S1_WEIGHT = value
        else:
            T.TREE_SETTINGS[name] = value
        _run(f"{name}={value}", dev, fold, args.clean_target)
    T.S1_WEIGHT, T.TREE_SETTINGS = shipped
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
