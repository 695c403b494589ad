"""Percentiles and medians for the signal measurements: NumPy's values, without NumPy's per-call cost.

`np.percentile` and `np.median` spend most of a call on argument handling, far more than sorting the few dozen
tile values most measurements ask about, and the features ask dozens of times per image. These return exactly
what `float(np.percentile(values, q))` (linear method) and `float(np.median(values))` return, including NumPy's
arithmetic types (a scalar `q` interpolates in the values' own float type, a tuple in float64), so the trained
model sees the same features. tests/test_order_stats.py holds them to that.
"""

from __future__ import annotations

import math

import numpy as np

# Above this many values a partial sort (partition at the needed ranks) beats a full sort.
_PARTITION_ABOVE = 256


def _ranked(values: np.ndarray, ranks: list[int]) -> np.ndarray:
    # The values at these ranks (and the largest, where NaN would sort, for floats), the rest unordered.
    floating = values.dtype.kind == "f"
    if values.size <= _PARTITION_ABOVE:
        return np.sort(values)
    return np.partition(values, sorted({*ranks, values.size - 1}) if floating else sorted(set(ranks)))


def _interpolated(ordered: np.ndarray, q: float, weak: bool) -> float:
    # NumPy's "linear" method: virtual index (n - 1) q, the fraction between its neighbours as the weight.
    n = ordered.size
    virtual = (n - 1) * (q / 100)
    if virtual >= n - 1:
        return float(ordered[-1])
    below = math.floor(virtual)
    weight = float(virtual - below) if weak else np.float64(virtual - below)
    return _lerp(ordered[below], ordered[below + 1], weight)


def _lerp(lower, upper, weight) -> float:
    # NumPy's two-sided lerp, in the arithmetic of the neighbours given (NumPy scalars of the values' type, or
    # ints): from the upper neighbour when the weight is at least a half.
    step = upper - lower
    return float(upper - step * (1 - weight)) if weight >= 0.5 else float(lower + step * weight)


def _ranks(n: int, q: float) -> list[int]:
    virtual = (n - 1) * (q / 100)
    below = min(math.floor(virtual), n - 1)
    return [below, min(below + 1, n - 1)]


def percentile(values: np.ndarray, q: float) -> float:
    """`float(np.percentile(values, q))` for a 1-D array and a scalar `q` in [0, 100]; NaN if any value is."""
    ordered = _ranked(values, _ranks(values.size, q))
    if ordered.dtype.kind == "f" and math.isnan(ordered[-1]):
        return math.nan
    return _interpolated(ordered, q, weak=True)


def percentiles(values: np.ndarray, qs: tuple[float, ...]) -> tuple[float, ...]:
    """`np.percentile(values, qs)` for a 1-D array and a tuple of percentiles, as floats."""
    ordered = _ranked(values, [rank for q in qs for rank in _ranks(values.size, q)])
    if ordered.dtype.kind == "f" and math.isnan(ordered[-1]):
        return (math.nan,) * len(qs)
    return tuple(_interpolated(ordered, q, weak=False) for q in qs)


def level_percentiles(counts: np.ndarray, qs: tuple[float, ...]) -> tuple[float, ...]:
    """`percentiles(values, qs)` (and `percentile(values, q)` for each q) of integer values given by their counts
    per level (`counts[v]`: how many values equal v), without sorting them: the value at a rank is the first
    level whose running count exceeds it. Integer neighbours interpolate in float64 either way."""
    running = np.cumsum(counts)
    n = int(running[-1])
    out = []
    for q in qs:
        virtual = (n - 1) * (q / 100)
        if virtual >= n - 1:
            out.append(float(np.flatnonzero(counts)[-1]))
            continue
        below = math.floor(virtual)
        lower, upper = (int(v) for v in np.searchsorted(running, (below, below + 1), side="right"))
        out.append(_lerp(lower, upper, virtual - below))
    return tuple(out)


def median(values: np.ndarray | list[float]) -> float:
    """`float(np.median(values))` for a 1-D array or a list of floats; NaN if any value is, or none is given."""
    array = np.asarray(values)
    n = array.size
    if n == 0:
        return math.nan
    middle = [(n - 1) // 2] if n % 2 else [n // 2 - 1, n // 2]
    ordered = _ranked(array, middle)
    if ordered.dtype.kind == "f" and math.isnan(ordered[-1]):
        return math.nan
    if n % 2:
        return float(ordered[middle[0]])
    pair = ordered[middle[0] : middle[1] + 1]
    # np.mean's types: integers averaged in float64, floats in their own type.
    if pair.dtype.kind != "f":
        pair = pair.astype(np.float64)
    return float((pair[0] + pair[1]) / 2)
