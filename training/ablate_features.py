"""Paired comparison of the signal model with and without some features, on the cached training features.

    python training/ablate_features.py dark_comb,bright_comb,comb_balance

Both variants are cross-validated on the same development photos, folds and seed as train_signal.py (which
must have run once, to fill the feature cache), so a difference comes from the features alone. Prints the
cross-fitted figures and, per category, the AUROC clean vs severity 4 of the expected severity the engine
thresholds (decide.evidence) and the severity-4 share found when 1% of clean images may be flagged.

    python training/ablate_features.py blur_pooled,native_blur_pooled --seeds 0,1,2

`--seeds` repeats both cross-validations with other seeds for the trees' bagging (photos and folds stay those of
seed 0) and prints each figure's median with min-max, as sweep_settings.py does; the per-category lines are
the first seed's.

    python training/ablate_features.py noise_ratio,native_noise_ratio --read-only-by noise,compression --seeds 0,1,2

`--read-only-by` gives the features, in the run with them, to those categories' boosters alone
(train_signal.READ_ONLY_BY; `all`: to every booster), instead of the shipped choice.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # training/ is not an installed package

from iqa_cli.evaluation.metrics import auroc
from training import train_signal as T
from training.sweep_settings import figures, spread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("features", help="comma-separated feature names to leave out")
    parser.add_argument("--cache", type=Path, default=None, help="the photo cache train_signal.py used")
    parser.add_argument("--clean-target", type=float, default=T.CLEAN_TARGET)
    parser.add_argument("--seeds", default="0", help="the trees' seeds, comma-separated (median and range)")
    parser.add_argument("--read-only-by", help="comma-separated categories whose boosters alone read the features")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    left_out = set(args.features.split(","))
    unknown = left_out - set(T.FEATURES)
    if unknown:
        parser.error(f"unknown features: {', '.join(sorted(unknown))}")
    if args.read_only_by is not None:
        readers = () if args.read_only_by == "all" else tuple(args.read_only_by.split(","))
        strangers = set(readers) - set(T.CATEGORY_KEYS)
        if strangers:
            parser.error(f"unknown categories: {', '.join(sorted(strangers))}")
        for name in left_out:
            T.READ_ONLY_BY.pop(name, None)
            if readers:
                T.READ_ONLY_BY[name] = readers

    cache = T.existing_feature_cache(parser, args.cache)
    dev, fold = T.development_set(cache)
    keep = [i for i, name in enumerate(T.FEATURES) if name not in left_out]
    clean = dev.worst == 0
    single = dev.distortions == 1
    for label, d in (
        ("without", dataclasses.replace(dev, x=dev.x[:, keep], features=tuple(T.FEATURES[i] for i in keep))),
        ("with", dev),
    ):
        runs = [T.cross_validate(d, fold, args.clean_target, seed=seed) for seed in seeds]
        report, presence, severity, _, _ = runs[0]
        evident = T.decide_module.evidence(presence, severity)
        print(f"{label}: {spread(np.array([figures(run[0]) for run in runs]))}  AUROC {report['auroc']:.3f}")
        for j, category in enumerate(T.CATEGORY_KEYS):
            s4 = single & (d.present[:, j] == 4)
            scores = np.r_[evident[clean, j], evident[s4, j]].tolist()
            truth = [False] * int(clean.sum()) + [True] * int(s4.sum())
            found = (evident[s4, j] > np.quantile(evident[clean, j], 0.99)).mean()
            print(f"  {category:22s} AUROC {auroc(scores, truth):.3f}  s4 found at 1% clean flagged {found:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
