"""Measuring an engine on labelled images: the labels file, the metrics, the report, and building a labelled set.

Definitions (docs/eval.md repeats them; the training scripts import these functions, so names and
signatures are part of the contract):

- An image's *true set* is the set of its labelled category keys (empty for a clean image); its
  *severity* is the highest severity among its labels (0 for a clean image). *Named* is the engine's
  list of category keys, most severe first.
- `identified(true_set, named)`: a distorted image is identified when ANY of its true categories is named.
- `primary_right(true_set, named)`: a clean image is right iff nothing is named; a distorted image is
  right iff the FIRST named category is in its true set.
- Identification rate per category x severity: over single-distortion images, identified / images,
  rows the categories, columns severities 1-5, plus a `mean` row (the unweighted mean of the category
  rates present at that severity). Two-distortion images form two separate rows, `pairs_both` (both
  named) and `pairs_either` (either named), in the column of the pair's higher severity.
- Clean photos flagged: the share of clean images with anything named or a verdict other than `ok`
  (flag.py's rule: rated fair/poor/bad, or any distortion named).
- Primary-answer accuracy: the share of images whose answer is `primary_right`, overall (clean and
  distorted), at severity 4, and per severity (0 = clean).
- Distortion names per image: the mean length of `named`, for clean images and for single-distortion
  images at each severity.
- `confidence_buckets(conf, right, edges)`: per bucket [lo, hi) (the last [lo, hi], so 1.0 counts),
  the count, the accuracy (share right) and the mean confidence; values outside the edges are put in
  the first or last bucket.
- `expected_calibration_error(conf, right, bins=10)`: equal-width bins on [0, 1] (bin i holds
  i/bins <= c < (i+1)/bins, the last also c = 1), the mean over bins of |accuracy - mean confidence|
  weighted by each bin's share of the images.
- `auroc(conf, right)`: the probability that a right answer has a higher confidence than a wrong one,
  ties counting one half (Mann-Whitney U from average ranks); NaN when all answers are right or all wrong.
- Severity-score correlation: Spearman's rho (Pearson correlation of average ranks) between severity
  and score over the single-distortion images of each (category, function); NaN when either is constant.
  A good score falls with severity, so rho should be near -1.

The confidence metrics use every assessed labelled image, with `right` = `primary_right`.
"""

from __future__ import annotations

import csv
import math
import os
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from iqa_cli.categories import CATEGORIES, KEYS_BY_NAME
from iqa_cli.errors import UsageError

CLEAN = "none"
SEVERITIES = (1, 2, 3, 4, 5)
CONFIDENCE_EDGES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
LABEL_COLUMNS = ("file", "category", "severity")


class LabelError(UsageError, ValueError):
    """The labels file cannot be used; the message names the line and what to change (exit 2)."""


@dataclass(frozen=True)
class Label:
    """One row of a labels file: `file` resolved against the CSV's folder, a category key or `none`."""

    file: str
    category: str
    severity: int  # 1-5; 0 for `none`
    function: str | None = None


@dataclass(frozen=True)
class Answer:
    """What an engine said about one file: category keys most severe first, or the error that stopped it.

    `verdict` is the audit's (flag.py); None lets `score` derive it from `named` and `score` the same way.
    """

    file: str
    named: list[str] = field(default_factory=list)
    severities: list[int] = field(default_factory=list)
    confidence: float | None = None
    score: float | None = None
    verdict: str | None = None
    error: str | None = None


def category_key(name: str) -> str:
    """The category key for an engine's DQ-495K name ("overly high brightness" -> "brighten"), or a key itself.

    A name outside the vocabulary is kept as it is: it counts as named but never matches a label.
    """
    text = name.strip().lower()
    return KEYS_BY_NAME.get(text, text)


def answer_from_row(row: Mapping[str, Any]) -> Answer:
    """An Answer from one audit report row (schema.py's columns)."""
    if row.get("status") != "ok":
        return Answer(file=row["path"], error=f"{row.get('error_code') or 'error'}: {row.get('error') or ''}")
    return Answer(
        file=row["path"],
        named=[category_key(n) for n in row.get("distortions") or []],
        severities=[int(s) for s in row.get("severities") or []],
        confidence=row.get("confidence"),
        score=row.get("score"),
        verdict=row.get("verdict"),
    )


# ---------------------------------------------------------------------------------------------- labels


def read_labels(path: str | os.PathLike[str]) -> list[Label]:
    """Read a labels CSV (`file,category,severity[,function]`); LabelError on the first problem."""
    path = Path(path)
    folder = path.parent
    try:
        handle = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise LabelError(f"cannot read the labels file {path}: {exc.strerror or exc}") from None
    with handle:
        reader = csv.DictReader(handle)
        header = [(h or "").strip().lower() for h in reader.fieldnames or []]
        missing = [c for c in LABEL_COLUMNS if c not in header]
        if missing:
            raise LabelError(
                f"{path}: missing column {', '.join(missing)}; the first line must be file,category,severity[,function]"
            )
        reader.fieldnames = header
        labels = [_label(raw, folder, f"{path} line {reader.line_num}") for raw in reader]
    if not labels:
        raise LabelError(f"{path} has no labels: add one line per image (and per distortion) under the header")
    _check_files(labels, path)
    return labels


def _label(raw: dict[str, str | None], folder: Path, where: str) -> Label:
    file = (raw.get("file") or "").strip()
    if not file:
        raise LabelError(f"{where}: the file is empty")
    category = (raw.get("category") or "").strip().lower()
    if category != CLEAN and category not in CATEGORIES:
        raise LabelError(f"{where}: unknown category {category!r}; use none or one of {', '.join(CATEGORIES)}")
    text = (raw.get("severity") or "").strip()
    try:
        severity = int(text) if text else 0
    except ValueError:
        raise LabelError(f"{where}: severity {text!r} is not a whole number 1-5") from None
    if category == CLEAN and severity != 0:
        raise LabelError(f"{where}: a clean (none) image has severity empty or 0, not {text}")
    if category != CLEAN and severity not in SEVERITIES:
        raise LabelError(f"{where}: severity {text or '(empty)'} of {category} must be 1-5")
    function = (raw.get("function") or "").strip() or None
    # Absolute, as the audit's rows name their files: a labels file given by a relative path must still match.
    resolved = os.path.abspath(os.path.join(folder, file))
    return Label(resolved, category, severity, function)


def _check_files(labels: Sequence[Label], path: Path) -> None:
    for file, rows in group_labels(labels).items():
        categories = [label.category for label in rows]
        if CLEAN in categories and len(rows) > 1:
            raise LabelError(f"{path}: {file} is labelled none and also distorted; keep the none row or the others")
        repeated = sorted({c for c in categories if categories.count(c) > 1})
        if repeated:
            raise LabelError(f"{path}: {file} has {repeated[0]} twice; give each distortion of a file one row")


def group_labels(labels: Iterable[Label]) -> dict[str, list[Label]]:
    """Labels by file, files in first-seen order; a clean file has one `none` label."""
    grouped: dict[str, list[Label]] = {}
    for label in labels:
        grouped.setdefault(label.file, []).append(label)
    return grouped


def _truth(rows: Sequence[Label]) -> set[str]:
    return {label.category for label in rows if label.category != CLEAN}


# --------------------------------------------------------------------------------------------- metrics


def identified(true_set: set[str] | frozenset[str], named: Sequence[str]) -> bool:
    """True when ANY of a distorted image's true categories is named."""
    return any(category in true_set for category in named)


def primary_right(true_set: set[str] | frozenset[str], named: Sequence[str]) -> bool:
    """Clean (empty true set): right iff nothing is named. Distorted: right iff the FIRST named is true."""
    if not true_set:
        return not named
    return bool(named) and named[0] in true_set


def confidence_buckets(
    conf: Sequence[float], right: Sequence[bool], edges: Sequence[float] = CONFIDENCE_EDGES
) -> list[dict[str, Any]]:
    """Per bucket [lo, hi) (the last closed): `low`, `high`, `count`, `accuracy`, `mean_confidence` (None if empty)."""
    if len(conf) != len(right):
        raise ValueError(f"{len(conf)} confidences but {len(right)} right/wrong values")
    buckets = len(edges) - 1
    sums = [[0, 0, 0.0] for _ in range(buckets)]  # count, right, confidence sum
    for c, r in zip(conf, right, strict=True):
        index = min(buckets - 1, max(0, bisect_right(edges, c) - 1))
        sums[index][0] += 1
        sums[index][1] += bool(r)
        sums[index][2] += c
    return [
        {
            "low": edges[i],
            "high": edges[i + 1],
            "count": n,
            "accuracy": hits / n if n else None,
            "mean_confidence": total / n if n else None,
        }
        for i, (n, hits, total) in enumerate(sums)
    ]


def expected_calibration_error(conf: Sequence[float], right: Sequence[bool], bins: int = 10) -> float:
    """Weighted mean over equal-width bins on [0, 1] of |accuracy - mean confidence|; NaN with no answers."""
    if len(conf) != len(right):
        raise ValueError(f"{len(conf)} confidences but {len(right)} right/wrong values")
    if not len(conf):
        return math.nan
    c = np.clip(np.asarray(conf, dtype=np.float64), 0.0, 1.0)
    r = np.asarray(right, dtype=np.float64)
    index = np.minimum((c * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in np.unique(index):
        members = index == b
        total += members.sum() / len(c) * abs(r[members].mean() - c[members].mean())
    return float(total)


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    start = 0
    while start < len(x):
        end = start
        while end + 1 < len(x) and sorted_x[end + 1] == sorted_x[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def auroc(conf: Sequence[float], right: Sequence[bool]) -> float:
    """Area under the ROC curve of confidence for telling right answers from wrong; NaN with one class."""
    r = np.asarray(right, dtype=bool)
    positives, negatives = int(r.sum()), int((~r).sum())
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = average_ranks(conf)
    return float((ranks[r].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho with tied ranks averaged; NaN for fewer than two points or a constant side."""
    if len(x) != len(y):
        raise ValueError(f"{len(x)} x values but {len(y)} y values")
    if len(x) < 2:
        return math.nan
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / denominator) if denominator > 0 else math.nan


# ------------------------------------------------------------------------------------------- make a set


def make_set(
    clean_folder: str | os.PathLike[str],
    out_folder: str | os.PathLike[str],
    severities: Sequence[int] = SEVERITIES,
    functions: str = "all",
    seed: int = 0,
    pairs: int = 0,
    max_side: int | None = None,
    workers: int = 1,
) -> Path:
    """Build a labelled set from a folder of clean photos; returns the `labels.csv` written in `out_folder`.

    Each photo (shrunk to `max_side` first when larger, never enlarged) is saved as `clean/STEM.png`
    labelled none, and distorted with `distortions.distort` into `CATEGORY/STEM-FUNCTION-SEVERITY.png`
    for every category, every severity in `severities`, and every function of the category
    (`functions='all'`) or one drawn per photo and category (`'one-per-category'`). `pairs` adds that
    many two-distortion images per photo (`pairs/...`, two categories that do not contradict each other,
    each with a drawn function and severity). The labels carry the `function` column. The output
    depends only on the photos and `seed`, not on `workers` (processes that build photos side by side).
    """
    from iqa_cli.evaluation.make_set import build_set

    return build_set(
        clean_folder,
        out_folder,
        severities=severities,
        functions=functions,
        seed=seed,
        pairs=pairs,
        max_side=max_side,
        workers=workers,
    )


# ---------------------------------------------------------------------------------------------- report


@dataclass
class EvalReport:
    """The metrics as tidy tables (lists of dicts); `to_rows()` gives each table for writing."""

    images: int  # labelled files
    assessed: int
    failed: list[dict[str, str]]  # file, error
    identification: list[dict[str, Any]]  # row (category | mean | pairs_both | pairs_either), severity, images, ...
    clean_flagged: dict[str, Any]  # images, flagged, share
    primary_accuracy: list[dict[str, Any]]  # severity (None: overall), images, right, accuracy
    names_per_image: list[dict[str, Any]]  # kind (clean | single), severity, images, mean_named
    confidence: list[dict[str, Any]]  # confidence_buckets
    ece: float
    auroc: float
    severity_score: list[dict[str, Any]]  # category, function, images, spearman
    rows: list[dict[str, Any]]  # per file: labels, named, confidence, right, ...

    def accuracy_at(self, severity: int | None) -> float | None:
        """Primary-answer accuracy at one severity (0 clean), or overall for None."""
        for row in self.primary_accuracy:
            if row["severity"] == severity:
                return row["accuracy"]
        return None

    def to_rows(self) -> dict[str, list[dict[str, Any]]]:
        """Every table by name (identification, confidence, rows, primary_accuracy, ...), ready to write."""
        return {
            "identification": self.identification,
            "confidence": self.confidence,
            "rows": self.rows,
            "primary_accuracy": self.primary_accuracy,
            "names_per_image": self.names_per_image,
            "severity_score": self.severity_score,
            "failed": self.failed,
        }

    def to_dict(self) -> dict[str, Any]:
        """The summary (every table but the per-file rows), JSON-ready: NaN becomes None."""
        data = asdict(self)
        data.pop("rows")
        data["primary_accuracy_overall"] = self.accuracy_at(None)
        data["primary_accuracy_severity_4"] = self.accuracy_at(4)
        return _no_nan(data)


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def _verdict(answer: Answer) -> str:
    if answer.verdict is not None:
        return answer.verdict
    from iqa_cli.audit.flag import verdict_for
    from iqa_cli.engines.base import Assessment, rating_for_score

    rating = rating_for_score(answer.score) if answer.score is not None else None
    return verdict_for(Assessment(task="", question="", answer="", distortions=list(answer.named), rating=rating))


def _rate(hits: int, n: int) -> float | None:
    return hits / n if n else None


def score(labels: Sequence[Label], results: Iterable[Answer]) -> EvalReport:
    """Measure `results` (one Answer per file; extra files ignored, missing ones count as failed) against `labels`."""
    by_file = {answer.file: answer for answer in results}
    tally = _Tally()
    for file, file_labels in group_labels(labels).items():
        answer = by_file.get(file) or Answer(file=file, error="not assessed: the audit returned no row for it")
        tally.count(file_labels, answer)
    return tally.report([c for c in CATEGORIES if any(label.category == c for label in labels)])


def _file_row(file_labels: Sequence[Label], answer: Answer) -> dict[str, Any]:
    """The eval-rows entry of one file before it is judged (verdict, identified and right still empty)."""
    distorted = [label for label in file_labels if label.category != CLEAN]
    return {
        "file": answer.file,
        "categories": [label.category for label in distorted],
        "label_severities": [label.severity for label in distorted],
        "functions": [label.function or "" for label in distorted],
        "severity": max(label.severity for label in file_labels),
        "status": "error" if answer.error is not None else "ok",
        "error": answer.error,
        "named": list(answer.named),
        "named_severities": list(answer.severities),
        "confidence": answer.confidence,
        "score": answer.score,
        "verdict": None,
        "identified": None,
        "right": None,
    }


@dataclass
class _Tally:
    """Running counts over the files of a labelled set, turned into an EvalReport at the end."""

    identification: dict[tuple[str, int], list[int]] = field(default_factory=dict)  # (row, severity) -> [n, hits]
    accuracy: dict[int | None, list[int]] = field(default_factory=dict)  # severity (None: all) -> [n, right]
    names: dict[tuple[str, int], list[int]] = field(default_factory=dict)  # (kind, severity) -> [n, names]
    clean: list[int] = field(default_factory=lambda: [0, 0])  # [clean images, flagged]
    severity_scores: dict[tuple[str, str | None], tuple[list[int], list[float]]] = field(default_factory=dict)
    confidences: list[float] = field(default_factory=list)
    right: list[bool] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def count(self, file_labels: Sequence[Label], answer: Answer) -> None:
        """Add one file: its row, and, when it was assessed, every table it belongs to."""
        row = _file_row(file_labels, answer)
        self.rows.append(row)
        if answer.error is not None:
            self.failed.append({"file": answer.file, "error": answer.error})
            return
        truth, severity = _truth(file_labels), row["severity"]
        is_right = primary_right(truth, answer.named)
        row.update(verdict=_verdict(answer), right=is_right)
        for key in (None, severity):
            _add(self.accuracy, key, is_right)
        if answer.confidence is not None:
            self.confidences.append(float(answer.confidence))
            self.right.append(is_right)
        if not truth:
            self.clean[0] += 1
            self.clean[1] += bool(answer.named) or row["verdict"] != "ok"
            _add(self.names, ("clean", 0), len(answer.named))
            return
        row["identified"] = identified(truth, answer.named)
        if len(truth) == 1:
            (only,) = file_labels
            _add(self.identification, (only.category, severity), row["identified"])
            _add(self.names, ("single", severity), len(answer.named))
            if answer.score is not None:
                xs, ys = self.severity_scores.setdefault((only.category, only.function), ([], []))
                xs.append(severity)
                ys.append(float(answer.score))
        elif len(truth) == 2:
            _add(self.identification, ("pairs_both", severity), truth.issubset(answer.named))
            _add(self.identification, ("pairs_either", severity), row["identified"])

    def report(self, categories: Sequence[str]) -> EvalReport:
        """The tables, with identification rows for `categories` (those the labels hold)."""
        n_clean, flagged = self.clean
        return EvalReport(
            images=len(self.rows),
            assessed=len(self.rows) - len(self.failed),
            failed=self.failed,
            identification=_identification_table(self.identification, categories),
            clean_flagged={"images": n_clean, "flagged": flagged, "share": _rate(flagged, n_clean)},
            primary_accuracy=[
                {"severity": key, "images": n, "right": hits, "accuracy": _rate(hits, n)}
                for key, (n, hits) in sorted(self.accuracy.items(), key=lambda item: -1 if item[0] is None else item[0])
            ],
            names_per_image=[
                {"kind": kind, "severity": s, "images": n, "mean_named": total / n}
                for (kind, s), (n, total) in sorted(self.names.items(), key=lambda i: (i[0][0] != "clean", i[0][1]))
            ],
            confidence=confidence_buckets(self.confidences, self.right),
            ece=expected_calibration_error(self.confidences, self.right),
            auroc=auroc(self.confidences, self.right),
            severity_score=[
                {"category": c, "function": f, "images": len(xs), "spearman": spearman(xs, ys)}
                for (c, f), (xs, ys) in sorted(self.severity_scores.items(), key=lambda i: (i[0][0], i[0][1] or ""))
            ],
            rows=self.rows,
        )


def _add(table: dict[Any, list[int]], key: Any, value: int | bool) -> None:
    cell = table.setdefault(key, [0, 0])
    cell[0] += 1
    cell[1] += int(value)


def _identification_table(ident: dict[tuple[str, int], list[int]], categories: list[str]) -> list[dict[str, Any]]:
    table: list[dict[str, Any]] = []
    for category in categories:
        for s in SEVERITIES:
            n, hits = ident.get((category, s), [0, 0])
            table.append({"row": category, "severity": s, "images": n, "identified": hits, "rate": _rate(hits, n)})
    for s in SEVERITIES:
        cells = [c for c in table if c["severity"] == s and c["rate"] is not None]
        mean = sum(c["rate"] for c in cells) / len(cells) if cells else None
        n, hits = sum(c["images"] for c in cells), sum(c["identified"] for c in cells)
        table.append({"row": "mean", "severity": s, "images": n, "identified": hits, "rate": mean})
    for name in ("pairs_both", "pairs_either"):
        if any(key[0] == name for key in ident):
            for s in SEVERITIES:
                n, hits = ident.get((name, s), [0, 0])
                table.append({"row": name, "severity": s, "images": n, "identified": hits, "rate": _rate(hits, n)})
    return table
