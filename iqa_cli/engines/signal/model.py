"""The signal engine's learned model: gradient-boosted trees read from a JSON file, evaluated with numpy.

The shipped file (`signal_model.json.gz`, written by training/train_signal.py) holds, for each DQ-495K
category, a presence classifier and a severity regressor, one regressor of the image's worst severity (for
the quality score), the per-category decision thresholds (on expected severity, decide.py) and the
confidence calibration, all chosen on
photos the trees were not trained on. It is plain JSON: loading it runs no code (no pickle), and the trees
are evaluated here, so LightGBM is needed only to train.

Tree layout (one booster = many trees, flattened): for node i, `feature[i]` (-1 for a leaf), `threshold[i]`,
`left[i]` / `right[i]` (node indices), `value[i]` (the leaf's output); `roots` lists each tree's root. A row
goes left when its feature value is <= the threshold, as LightGBM decides. Missing values (NaN) are
replaced by `missing` before training and here alike, so no tree ever sees a NaN.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

# /2: thresholds are on expected severity (decide.evidence), not on the presence probability.
FORMAT = "iqa-signal-trees/2"
MODEL_FILE = Path(__file__).with_name("signal_model.json.gz")


class ModelFileError(ValueError):
    """The model file is missing, damaged or of another format."""


@dataclass(frozen=True)
class Booster:
    """One boosted ensemble, flattened (see the module docstring); `sigmoid` for a classifier's probability."""

    base: float
    sigmoid: bool
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    depth: int

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Booster:
        """Build from the file's arrays, checking that every index stays inside the node table."""
        feature = np.asarray(data["feature"], dtype=np.intp)
        left = np.asarray(data["left"], dtype=np.intp)
        right = np.asarray(data["right"], dtype=np.intp)
        roots = np.asarray(data["roots"], dtype=np.intp)
        n = feature.size
        for name, arr in (("left", left), ("right", right), ("roots", roots)):
            if arr.size and (arr.min() < 0 or arr.max() >= n):
                raise ModelFileError(f"tree index out of range in {name!r}")
        return cls(
            base=float(data.get("base", 0.0)),
            sigmoid=bool(data["sigmoid"]),
            feature=feature,
            threshold=np.asarray(data["threshold"], dtype=np.float64),
            left=left,
            right=right,
            value=np.asarray(data["value"], dtype=np.float64),
            roots=roots,
            depth=int(data["depth"]),
        )

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The summed tree outputs for each row of `x` (n x features): all trees walked at once."""
        if self.roots.size == 0:
            return np.full(x.shape[0], self.base)
        node = np.broadcast_to(self.roots, (x.shape[0], self.roots.size)).copy()
        rows = np.arange(x.shape[0])[:, None]
        for _ in range(self.depth):
            feature = self.feature[node]
            inner = feature >= 0
            if not inner.any():
                break
            goes_left = x[rows, np.where(inner, feature, 0)] <= self.threshold[node]
            node = np.where(inner, np.where(goes_left, self.left[node], self.right[node]), node)
        return self.base + self.value[node].sum(axis=1)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for a classifier, values for a regressor."""
        raw = self.raw(x)
        return 1.0 / (1.0 + np.exp(-raw)) if self.sigmoid else raw


@dataclass(frozen=True)
class Calibration:
    """A monotone map from a raw answer probability to how often such answers were right (isotonic)."""

    x: np.ndarray
    y: np.ndarray

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """Interpolate between the fitted steps; constant beyond the ends."""
        return np.interp(raw, self.x, self.y)


@dataclass(frozen=True)
class Prediction:
    """Model outputs for n rows: presence probability and severity per category, worst severity."""

    presence: np.ndarray  # n x categories
    severity: np.ndarray  # n x categories (continuous, 1-5 scale)
    worst: np.ndarray  # n (0 clean - 5)


@dataclass(frozen=True)
class SignalModel:
    """The learned decision: feature order, trees, thresholds and calibration (see the module docstring)."""

    features: tuple[str, ...]
    categories: tuple[str, ...]
    missing: float
    presence: tuple[Booster, ...]
    severity: tuple[Booster, ...]
    worst: Booster
    thresholds: np.ndarray
    calibration: dict[str, Calibration]
    max_named: int
    info: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SignalModel:
        """Build from the parsed file; a wrong format or a missing part is a ModelFileError."""
        if data.get("format") != FORMAT:
            raise ModelFileError(f"not an {FORMAT} model (format {data.get('format')!r})")
        try:
            categories = tuple(data["categories"])
            return cls(
                features=tuple(data["features"]),
                categories=categories,
                missing=float(data["missing"]),
                presence=tuple(Booster.from_json(data["presence"][c]) for c in categories),
                severity=tuple(Booster.from_json(data["severity"][c]) for c in categories),
                worst=Booster.from_json(data["worst"]),
                thresholds=np.asarray([data["thresholds"][c] for c in categories], dtype=np.float64),
                calibration={
                    kind: Calibration(np.asarray(table["x"], np.float64), np.asarray(table["y"], np.float64))
                    for kind, table in data["calibration"].items()
                },
                max_named=int(data.get("max_named", 2)),
                info=dict(data.get("info", {})),
            )
        except (KeyError, TypeError) as exc:
            raise ModelFileError(f"the model file lacks {exc}") from None

    def matrix(self, rows: list[dict[str, float]]) -> np.ndarray:
        """Feature rows (name -> value) as the n x features float64 matrix the trees read."""
        x = np.array([[row[name] for name in self.features] for row in rows], dtype=np.float64)
        x[~np.isfinite(x)] = self.missing
        return x

    def predict(self, x: np.ndarray) -> Prediction:
        """All outputs for the rows of a `matrix`."""
        presence = np.stack([b.predict(x) for b in self.presence], axis=1)
        severity = np.clip(np.stack([b.predict(x) for b in self.severity], axis=1), 1.0, 5.0)
        return Prediction(presence=presence, severity=severity, worst=np.clip(self.worst.predict(x), 0.0, 5.0))


def read_model(path: Path) -> SignalModel:
    """Parse a model file (gzip-compressed JSON when it ends in .gz)."""
    try:
        raw = path.read_bytes()
        text = gzip.decompress(raw) if path.suffix == ".gz" else raw
        data = json.loads(text)
    except (OSError, EOFError, gzip.BadGzipFile, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"cannot read the signal model {path}: {exc}") from None
    return SignalModel.from_json(data)


@lru_cache(maxsize=1)
def shipped_model() -> SignalModel:
    """The model bundled with the package, read once per process."""
    return read_model(MODEL_FILE)
