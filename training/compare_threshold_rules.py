"""Ways of choosing the signal engine's thresholds, cross-fitted on the same out-of-fold predictions.

    python training/compare_threshold_rules.py [--targets 0.02,0.04,0.07,0.1]

What is thresholded, per category:
- `expected severity` (the shipped statistic, decide.evidence): presence probability x predicted severity;
- `probability`: the presence probability alone (the statistic before format /2), i.e. the same rule with
  every predicted severity set to 1.
How the thresholds are chosen:
- `equal share` (train_signal.equal_share_thresholds, the rule before): every category may flag the same
  share of the clean images;
- `hull` (train_signal.hull_thresholds, the shipped rule): the budget goes where it buys the most, walking
  each category's curve of clean images flagged against its distorted images found (severity 2 and over)
  and taking, at each step, the jump with the best gain per clean image flagged over all categories, so a
  plateau (one odd clean photo) does not hide the cliff behind it as it does for a greedy rule with small
  steps.

- `hull, photo cap C` (train_signal.PHOTO_CAP): the hull, with each photo's flagged clean copies counting
  against the budget up to C, so that a few odd photos cannot set a category's threshold.

Each rule's in-sample budget is swept; what counts is the cross-fitted pair (clean images called ok,
severity 4 identified) on photos the thresholds were not fitted on. Reads the feature cache and the
out-of-fold predictions (`signal-oof.npz`) that train_signal.py writes beside the photo cache: run it once first.

    python training/compare_threshold_rules.py --photo-caps none,2 --targets 0.016,0.05 --seeds 0,1,2

`--seeds` other than 0 trains the out-of-fold trees again with those bagging seeds (the folds stay seed 0's)
and prints each figure's median with min-max over the seeds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # training/ is not an installed package

from training import train_signal as T

# (presence, severity, development data, clean budget) -> one threshold per category
ThresholdRule = Callable[[np.ndarray, np.ndarray, T.Data, float], np.ndarray]


def cross_fitted_names(
    rule: ThresholdRule, presence: np.ndarray, severity: np.ndarray, dev: T.Data, fold, target: float
) -> list[list[str]]:
    """Each fold named with thresholds the rule fitted on the other folds."""
    named: list[list[str]] = [[] for _ in range(len(dev.photo))]
    for k in np.unique(fold):
        fit = fold != k
        thresholds = rule(presence[fit], severity[fit], dev.subset(fit), target)
        names, _, _ = T.answers(presence[~fit], severity[~fit], thresholds)
        for i, n in zip(np.nonzero(~fit)[0], names, strict=True):
            named[i] = n
    return named


def _spread(values: list[float]) -> str:
    text = f"{np.median(values):.3f}"
    return text + (f" ({min(values):.3f}-{max(values):.3f})" if len(values) > 1 else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=None, help="the photo cache train_signal.py used")
    parser.add_argument("--targets", default="0.015,0.025,0.04,0.07,0.1", help="in-sample clean budgets")
    parser.add_argument("--photo-caps", default="none", help="the hull's photo caps to try (none: every copy counts)")
    parser.add_argument("--seeds", default="0", help="the trees' bagging seeds (0: signal-oof.npz as it is)")
    args = parser.parse_args(argv)
    from training import photos as photo_source

    folder = (args.cache or photo_source.default_cache()).parent
    if not (folder / "signal-oof.npz").exists():
        parser.error(f"{folder / 'signal-oof.npz'} does not exist: run training/train_signal.py first")
    dev, fold = T.development_set(folder / "signal-features.parquet")
    oof = np.load(folder / "signal-oof.npz")
    if not np.array_equal(oof["fold"], fold):
        parser.error("signal-oof.npz is from another corpus: rerun training/train_signal.py")
    predictions = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        if seed == 0:
            predictions[seed] = (oof["presence"], oof["severity"])
        else:
            predictions[seed] = T.out_of_fold(dev, fold, len(np.unique(fold)), quick=False, seed=seed)[:2]
    caps = [None if c == "none" else float(c) for c in args.photo_caps.split(",")]
    rules: list[tuple[str, ThresholdRule, float | None]] = [("equal share", T.equal_share_thresholds, None)]
    rules += [("hull" if cap is None else f"hull, cap {cap:g}", T.hull_thresholds, cap) for cap in caps]
    shipped_cap = T.PHOTO_CAP
    print("statistic          rule          budget  clean ok  s4 mean  s2 mean  primary s4")
    try:
        for statistic in ("probability", "expected severity"):
            for label, rule, cap in rules:
                T.PHOTO_CAP = cap
                for target in (float(t) for t in args.targets.split(",")):
                    figures: list[list[float]] = [[], [], [], []]
                    for seed_presence, seed_severity in predictions.values():
                        if statistic == "probability":
                            seed_severity = np.ones_like(seed_severity)
                        named = cross_fitted_names(rule, seed_presence, seed_severity, dev, fold, target)
                        report = T.tables(dev, named, np.zeros(len(named)), np.zeros(len(named)))
                        ident = report["identification_mean"]
                        values = (report["clean_ok"], ident[3], ident[1], report["primary_s4"])
                        for column, value in zip(figures, values, strict=True):
                            column.append(value)
                    spreads = "  ".join(_spread(column) for column in figures)
                    print(f"{statistic:18s} {label:13s} {target:6.3f}  {spreads}", flush=True)
    finally:
        T.PHOTO_CAP = shipped_cap
    presence = oof["presence"]
    clean = dev.worst == 0
    evident = T.decide_module.evidence(presence, oof["severity"])
    print("per category: the 99th and 99.5th percentile of its expected severity on clean images, the median on")
    print("its severity-4 images, and the photos behind the top 1% of clean images (clean copies among them)")
    for j, category in enumerate(T.CATEGORY_KEYS):
        on_clean = evident[clean, j]
        s4 = evident[(dev.present[:, j] == 4) & (dev.distortions == 1), j]
        top = np.argsort(-on_clean)[: max(1, int(0.01 * on_clean.size))]
        photos = dev.photo[clean][top]
        counts = {p.rsplit("/", 1)[-1][-32:]: int((photos == p).sum()) for p in dict.fromkeys(photos)}
        q99, q995 = np.quantile(on_clean, (0.99, 0.995))
        print(f"  {category:20s} {q99:.2f} {q995:.2f} s4 {np.median(s4):.2f}  {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
