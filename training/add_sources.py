"""Do a few sources' photos help the signal model on photos like them that it never saw?

    python training/add_sources.py lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 plasma-workspace-wallpapers

The named sources' photos (source packages of training/photos.py, in train_signal.py's feature cache: the same
recipes as every other photo) are the ones measured, in two ways on the same images:
- `without`: the shipped recipe (cross-validated thresholds and calibration, then the trees), fitted on every
  other photo, answers every image of the named sources;
- `with`: the named sources' photos are dealt into `--groups` groups by photo; for each group, the same recipe
  is fitted on every other photo plus the other groups' photos, and answers that group's images.
Both lines are the engine's own decision, pooled over the named sources' images. Then what the named sources
do to the other photos: their cross-validation (train_signal.py's folds, cross-fitted thresholds and
calibration) without the named sources' photos, and with them in the corpus, measured on the other photos'
images alone. train_signal.py must have run once to fill the feature cache.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # training/ is not an installed package

from iqa_cli.engines.signal.model import SignalModel
from training import train_signal as T


def joined(a: T.Data, b: T.Data) -> T.Data:
    """The rows of two sets of the same features, `a`'s first."""
    return T.Data(
        np.vstack([a.x, b.x]),
        np.vstack([a.present, b.present]),
        np.concatenate([a.photo, b.photo]),
        [*a.functions, *b.functions],
        [*a.rows, *b.rows],
        a.features,
    )


def line(label: str, report: dict) -> str:
    ident = report["identification_mean"]
    s4 = "  ".join(f"{c} {row[3]:.2f}" for c, row in report["identification"].items() if row[3] is not None)
    return (
        f"{label}: clean ok {report['clean_ok']:.3f}  s4 {ident[3]:.3f}  s2 {ident[1]:.3f}  primary s4 "
        f"{report['primary_s4']:.3f}  ECE {report['ece']:.3f}  Spearman min {report['spearman_min']:.2f}\n"
        f"  severity 4: {s4}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=None, help="the photo cache train_signal.py used")
    parser.add_argument("sources", nargs="+", help="source packages whose photos are measured")
    parser.add_argument("--groups", type=int, default=4, help="groups their photos are dealt into")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    features = T.existing_feature_cache(parser, args.cache)
    data = T.cached_data(features)
    named_source = np.array([photo.split("/")[0] in args.sources for photo in data.photo])
    missing = sorted(set(args.sources) - {photo.split("/")[0] for photo in data.photo})
    if missing:
        parser.error(f"no photo of {', '.join(missing)} in the feature cache")
    training, measured = data.subset(~named_source), data.subset(named_source)
    print(
        f"{len(set(training.photo))} other photos, {len(set(measured.photo))} photos of the named sources "
        f"({len(measured.photo)} images)",
        flush=True,
    )
    settings = argparse.Namespace(clean_target=T.CLEAN_TARGET, quick=False, seed=args.seed)
    probe = measured.subset(np.arange(len(measured.photo)) < 8)
    alone = T.fit_model(training, T.FOLDS, settings, probe)
    print(
        line(
            "without (every other photo)",
            T.tables(measured, *T.engine_answers(measured, SignalModel.from_json(alone.json))),
        ),
        flush=True,
    )
    group_of = T.assign_folds(measured.photo, args.groups, args.seed)
    group = np.array([group_of[p] for p in measured.photo])
    named: list[list[str]] = [[] for _ in measured.photo]
    confidence, score = np.zeros(len(measured.photo)), np.zeros(len(measured.photo))
    for g in range(args.groups):
        held = group == g
        fitted = T.fit_model(joined(training, measured.subset(~held)), T.FOLDS, settings, probe)
        names, conf, scores = T.engine_answers(measured.subset(held), SignalModel.from_json(fitted.json))
        for i, n, c, s in zip(np.nonzero(held)[0], names, conf, scores, strict=True):
            named[i], confidence[i], score[i] = n, c, s
        print(f"  group {g + 1}/{args.groups}: {len(set(measured.photo[held]))} photos answered", flush=True)
    print(line("with (and the other groups' photos)", T.tables(measured, named, confidence, score)), flush=True)
    for label, corpus in (("without them", training), ("with them", joined(training, measured))):
        _, fold = T.with_folds(corpus, args.seed)
        first = np.arange(len(corpus.photo)) < len(training.photo)
        report = T.cross_validate(corpus, fold, T.CLEAN_TARGET, seed=args.seed, measured=first)[0]
        print(line(f"the other photos, cross-validated {label}", report), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
