"""How the signal model's cross-validated figures grow with the number of training photos (a learning curve).

    python training/learning_curve.py --shares 0.6,0.8,1.0 --seeds 0,1,2

The development photos' cross-validation of train_signal.py (the same folds, decision rule and clean budget),
with each fold's trees fitted on only a share of the photos they may see, drawn at random per fold and seed;
the photos predicted, the early-stopping fold and the thresholds' out-of-fold predictions stay the same, so the
lines differ only in how many photos the trees learned from. Prints each figure's median with min-max over the
seeds. train_signal.py must have run once to fill the feature cache. It is why the shipped model is refitted on
every photo, the test photos included: a model that has seen more photos answers better on photos it has not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # training/ is not an installed package

from training import train_signal as T
from training.sweep_settings import figures, spread


def thinned_training(share: float, seed: int):
    """train_trees with each call's training photos cut to `share` of them (at least one), drawn per call."""
    fit = T.train_trees

    def train_trees(train: T.Data, stop: T.Data | None, **settings):
        photos = sorted(set(train.photo))
        rng = np.random.default_rng(T._seed(seed, "learning-curve", ",".join(photos)))
        kept = set(rng.choice(photos, size=max(1, round(share * len(photos))), replace=False))
        return fit(train.subset(np.array([p in kept for p in train.photo])), stop, **settings)

    return train_trees


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shares", default="0.6,0.8,1.0", help="shares of the photos, comma-separated")
    parser.add_argument("--seeds", default="0,1,2", help="the trees' and the draws' seeds, comma-separated")
    parser.add_argument("--cache", type=Path, default=None, help="the photo cache train_signal.py used")
    args = parser.parse_args(argv)
    shares = [float(s) for s in args.shares.split(",")]
    if not all(0.0 < s <= 1.0 for s in shares):
        parser.error("each share must be in (0, 1]")
    seeds = [int(s) for s in args.seeds.split(",")]

    cache = T.existing_feature_cache(parser, args.cache)
    dev, fold = T.development_set(cache)
    full = T.train_trees
    print(f"{len(set(dev.photo))} development photos, {len(dev.photo)} images", flush=True)
    for share in shares:
        runs = []
        for seed in seeds:
            T.train_trees = thinned_training(share, seed) if share < 1.0 else full
            try:
                runs.append(figures(T.cross_validate(dev, fold, T.CLEAN_TARGET, seed=seed)[0]))
            finally:
                T.train_trees = full
        print(f"share {share:.2f}: {spread(np.array(runs))}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
