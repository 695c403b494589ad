"""How well the signal model can rank severity within each distortion function, and what limits it.

    python training/severity_ceiling.py [--development] [--seed 0]

Issue 10 asks the score to fall with severity, Spearman >= 0.8 per function. On out-of-fold predictions of the
cached training features (every photo, the shipped model's folds; `--development`: the development photos'),
this prints per function the Spearman correlation of severity with:
- `score`: the engine's falling score (the figure the validation tables report);
- `worst`: the worst-severity regressor alone, before the score is held on the answer's side;
- `named severity`: another formula the engine could use, the highest severity regressor among the categories
  it named (the worst-severity regressor where it named none), not held;
- `own severity`: the severity regressor of the category the image was really distorted in, as if the engine
  always knew which category to read: a ceiling for any rule that turns the model's outputs into a score;
- `own expected`: that category's presence x severity, the evidence the thresholds are on.
A function whose `own severity` stays under 0.8 cannot reach the target by a change of the score's formula:
its severity regressor, that is, the features, ranks its images no better.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # training/ is not an installed package

from iqa_cli.evaluation.metrics import spearman
from training import train_signal as T

COLUMNS = ("score", "worst", "named severity", "own severity", "own expected")


def ceiling_rows(
    data: T.Data,
    presence: np.ndarray,
    severity: np.ndarray,
    worst: np.ndarray,
    scores: np.ndarray,
    named: list[list[str]],
) -> list[dict[str, Any]]:
    """Per function of the single-distortion images: its image count and the Spearman correlation of severity
    with each of COLUMNS (falling score, so its sign is turned); `named`: the engine's answers."""
    expected = T.decide_module.expected_severity(presence, severity)
    named_severity = np.array(
        [
            max(severity[i, T.CATEGORY_KEYS.index(c)] for c in names) if names else worst[i]
            for i, names in enumerate(named)
        ]
    )
    rows = []
    for function, mask in T.single_function_masks(data):
        truth = data.worst[mask].astype(float)
        own = data.present[mask].argmax(axis=1)  # the one category present
        index = np.arange(int(mask.sum()))
        rows.append(
            {
                "function": function,
                "images": int(mask.sum()),
                "score": spearman(truth, -scores[mask]),
                "worst": spearman(truth, worst[mask]),
                "named severity": spearman(truth, named_severity[mask]),
                "own severity": spearman(truth, severity[mask][index, own]),
                "own expected": spearman(truth, expected[mask][index, own]),
            }
        )
    return rows


def summary(rows: list[dict[str, Any]], column: str, target: float = 0.8) -> str:
    """The lowest and median of one column over the functions, and how many are under `target`."""
    values = np.array([row[column] for row in rows])
    under = int((values < target).sum())
    return f"lowest {values.min():.2f}, median {np.median(values):.2f}, {under} of {len(values)} under {target}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=None, help="the photo cache train_signal.py used")
    parser.add_argument("--development", action="store_true", help="the development photos only")
    parser.add_argument("--seed", type=int, default=0, help="the trees' seed (photos and folds stay seed 0's)")
    args = parser.parse_args(argv)

    cache = T.existing_feature_cache(parser, args.cache)
    data, fold = T.development_set(cache) if args.development else T.every_photo_set(cache)
    presence, severity, worst, _ = T.out_of_fold(data, fold, len(np.unique(fold)), quick=False, seed=args.seed)
    named, _ = T.cross_fitted(presence, severity, data, fold, T.CLEAN_TARGET)
    rows = ceiling_rows(data, presence, severity, worst, T._scores(named, severity, worst), named)
    print(f"{len(set(data.photo))} photos, {len(data.x)} images; Spearman(severity, ...) per function")
    print(f"{'function':30s} {'images':>6s} " + " ".join(f"{c:>14s}" for c in COLUMNS))
    for row in rows:
        print(f"{row['function']:30s} {row['images']:6d} " + " ".join(f"{row[c]:14.2f}" for c in COLUMNS))
    for column in COLUMNS:
        print(f"{column:>14s}: {summary(rows, column)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
