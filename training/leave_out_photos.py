"""What a few photos do to the signal model: its cross-validated figures with and without them.

    python training/leave_out_photos.py meidumPyramid bentPyramid,redPyramid,gosling

Each argument is a comma-separated group of name fragments; every photo whose key holds one of them is left out
of the development photos' cross-validation (train_signal.py's folds, decision rule and clean budget; the
other photos keep their folds). Groups add up: the second line leaves out the first group and the second, and
so on, after a line with every photo. The per-category line is severity 4's identification. train_signal.py
must have run once to fill the feature cache.

The thresholds are fitted under one budget of clean images named, so a handful of clean photos that look
distorted (high-key scenes read as brightened) can set a whole category's threshold: this shows how much.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # training/ is not an installed package

from training import train_signal as T
from training.sweep_settings import figures, spread


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("groups", nargs="+", help="comma-separated fragments of photo keys, one group per argument")
    parser.add_argument("--cache", type=Path, default=None, help="the photo cache train_signal.py used")
    parser.add_argument("--seed", type=int, default=0, help="the trees' seed")
    args = parser.parse_args(argv)

    cache = T.existing_feature_cache(parser, args.cache)
    dev, fold = T.development_set(cache)
    fragments: list[str] = []
    steps: list[tuple[str, list[str]]] = [("every development photo", [])]
    photos = set(dev.photo)
    for group in args.groups:
        fragments += [f for f in group.split(",") if f]
        steps.append((f"without {', '.join(fragments)}", list(fragments)))
    unknown = [f for f in fragments if not any(f in photo for photo in photos)]
    if unknown:
        parser.error(f"no development photo's key holds {', '.join(unknown)}")
    for label, left_out in steps:
        keep = np.array([not any(f in photo for f in left_out) for photo in dev.photo])
        report = T.cross_validate(dev.subset(keep), fold[keep], T.CLEAN_TARGET, seed=args.seed)[0]
        print(f"{label} ({len(set(dev.photo[keep]))} photos): {spread(np.array([figures(report)]))}", flush=True)
        s4 = "  ".join(f"{c} {row[3]:.2f}" for c, row in report["identification"].items())
        print(f"  severity 4: {s4}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
