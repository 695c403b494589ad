"""The signal engine's percentiles and medians return exactly NumPy's values (so the trained model's features
do not move), on the array types and sizes the measurements use."""

from __future__ import annotations

import math

import numpy as np
import pytest

from iqa_cli.engines.signal.order_stats import level_percentiles, median, percentile, percentiles

SIZES = (1, 2, 3, 4, 7, 10, 64, 65, 255, 256, 257, 1000, 17_000)
QS = (0, 1, 5, 10, 50, 90, 95, 99, 99.9, 100)


def _arrays():
    rng = np.random.default_rng(7)
    for n in SIZES:
        yield rng.random(n, dtype=np.float32) * 3
        yield rng.normal(size=n)  # float64, negative values too
        yield rng.integers(0, 256, n).astype(np.uint8)
        yield rng.integers(-50, 50, n)
        yield np.round(rng.random(n, dtype=np.float32) * 4) / 4  # many ties


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize("q", QS)
def test_percentile_is_numpys_with_a_scalar_q(q: float) -> None:
    for values in _arrays():
        assert _same(percentile(values, q), float(np.percentile(values, q))), (values.dtype, values.size, q)


def test_percentiles_are_numpys_with_a_tuple() -> None:
    for values in _arrays():
        for qs in ((10, 50, 90), (1, 99), (95,)):
            expected = tuple(float(v) for v in np.percentile(values, qs))
            assert all(map(_same, percentiles(values, qs), expected)), (values.dtype, values.size, qs)


def test_a_scalar_q_interpolates_in_the_values_type_and_a_tuple_in_float64() -> None:
    # The two differ in the last bits on float32 values: the reason percentile and percentiles both exist.
    values = np.array([0.1, 0.7, 0.3], np.float32)
    assert percentile(values, 10) == float(np.float32(np.percentile(values, 10)))
    assert percentiles(values, (10,))[0] == float(np.percentile(values, (10,))[0])


def test_median_is_numpys() -> None:
    for values in _arrays():
        assert _same(median(values), float(np.median(values))), (values.dtype, values.size)
    listed = [0.25, 0.5, 0.125, 1.0]
    assert median(listed) == float(np.median(listed))
    assert math.isnan(median([]))


def test_nan_anywhere_gives_nan() -> None:
    for n in (5, 300):
        values = np.arange(n, dtype=np.float32)
        values[n // 3] = np.nan
        assert math.isnan(percentile(values, 10))
        assert all(math.isnan(v) for v in percentiles(values, (10, 90)))
        assert math.isnan(median(values))


def test_level_percentiles_from_counts_are_numpys() -> None:
    rng = np.random.default_rng(3)
    for n in SIZES:
        for values in (rng.integers(0, 256, n).astype(np.uint8), np.full(n, 7, np.uint8), rng.integers(250, 256, n)):
            counts = np.bincount(values, minlength=256)
            expected = tuple(float(np.percentile(values, q)) for q in QS)
            assert level_percentiles(counts, QS) == expected, (values.dtype, n)
            assert level_percentiles(counts, QS) == percentiles(values, QS)
