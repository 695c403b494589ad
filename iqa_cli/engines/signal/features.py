"""The signal engine's features: measurements at two scales, computed in the decode workers.

Each distortion is measured at the scale it lives at:
- the whole image at a viewing size (`ANALYSIS_SIDE` on the long side) for tone, colour, sharpness and
  direction: what a person sees of the photo;
- a central `NATIVE_CROP` square at the file's own resolution for pixel-level evidence (repeated pixels,
  empty levels, the 8x8 JPEG grid, fine grain and halos), which downscaling erases. That is what makes the
  answer for pixelation or quantization the same for a 512 px and a 1600 px copy of a photo.

The model (model.py) reads `FEATURES` in this order; nothing here depends on the image's size, so that no
decision can learn one.
"""

from __future__ import annotations

import math

import numpy as np

from iqa_cli.engines.signal.measure import Measurements, level_counts, measure_pixels
from iqa_cli.engines.signal.order_stats import level_percentiles, median, percentile
from iqa_cli.images import DecodePlan, LoadedImage

# 512 px: as accurate as 640 in cross-validation, and cheaper to measure (docs/signal-engine.md, Speed).
# Below about 504 px a 12 MP JPEG would draft-decode at 1/8 instead of 1/4, and its native crop with it.
ANALYSIS_SIDE = 512
NATIVE_CROP = 384
DECODE_PLAN = DecodePlan(long_side=ANALYSIS_SIDE, draft=True, native_crop=NATIVE_CROP)

# Whole-image measurements used as features (width and height are left out: size is not evidence).
_WHOLE = tuple(name for name in Measurements.__dataclass_fields__ if name not in ("width", "height"))
# Native-crop measurements: the pixel-level ones.
_NATIVE = (
    "blur",
    "blur_median",
    "blur_p90",
    "blur_dir",
    "blur_pooled",
    "blur_spread",
    "lag",
    "noise",
    "noise_median",
    "noise_coarse",
    "halo",
    "blockiness",
    "flat_pairs",
    "levels",
    "gaps",
    "active_share",
)
_DERIVED = (
    "noise_ratio",
    "both_clipped",
    "clipped",
    "range",
    "shadows",
    "chroma_ratio",
    "bokeh",
    "native_noise_ratio",
    "native_vs_whole_noise",
    "native_vs_whole_blur",
    "sat_mean",
    "sat_p95",
    "sat_top",
    "value_p01",
    "value_p99",
    "low_p01",
    "dark_gaps",
    "bright_gaps",
    "dark_comb",
    "bright_comb",
    "comb_balance",
    "value_dark_gaps",
    "value_bright_gaps",
    "value_dark_comb",
    "value_bright_comb",
)
FEATURES: tuple[str, ...] = _WHOLE + tuple(f"native_{name}" for name in _NATIVE) + _DERIVED


# Pixels at least this bright (highest channel) count for the saturation ceiling: darker ones get their
# saturation from noise and JPEG chroma error, whatever was done to the colours.
TOP_SATURATION_LEVEL = 24


def _colour_extremes(pixels: np.ndarray) -> dict[str, float]:
    """HSV saturation (mean, 95th percentile), which the HSV distortions scale, and the 1st/99th percentile of
    the highest channel (HSV's V) and the 1st of the lowest: a shift of V leaves a floor or a ceiling on V that
    luma does not show (a brightened pure blue keeps a dark luma). Every 4th pixel each way.

    `sat_top`, the 99.9th percentile of saturation over lit pixels, is the ceiling desaturation leaves: scaling
    every pixel's saturation by 0.2 caps all of them at 0.2, while even a muted or foggy photo keeps a few
    strongly coloured pixels (a sign, a flower, a coloured edge); the 95th percentile cannot see a ceiling."""
    sub = pixels[::4, ::4].reshape(-1, 3)
    # Pairwise maxima of the channel columns: the same values as max(axis=1), a twentieth of the time.
    high = np.maximum(np.maximum(sub[:, 0], sub[:, 1]), sub[:, 2])
    low = np.minimum(np.minimum(sub[:, 0], sub[:, 1]), sub[:, 2])
    high_f = high.astype(np.float32)
    s = np.where(high > 8, (high_f - low) / np.maximum(high_f, 1.0), 0.0)
    value_p01, value_p99 = level_percentiles(np.bincount(high, minlength=256), (1, 99))
    lit = s[high > TOP_SATURATION_LEVEL]
    return {
        "sat_mean": float(s.mean()),
        "sat_p95": percentile(s, 95),
        "sat_top": percentile(lit, 99.9) if lit.size else math.nan,
        "value_p01": value_p01,
        "value_p99": value_p99,
        "low_p01": level_percentiles(np.bincount(low, minlength=256), (1,))[0],
    }


def _curve_traces(counts: np.ndarray) -> tuple[float, float, float, float] | None:
    """(dark gaps, bright gaps, dark comb, bright comb) of one 256-level histogram; None when its 1-99
    percentile span is too narrow to read."""
    cum = np.cumsum(counts)
    lo, hi = int(np.searchsorted(cum, 0.01 * cum[-1])), int(np.searchsorted(cum, 0.99 * cum[-1]))
    third = (hi - lo) // 3
    if third < 4:
        return None
    traces = []
    for start in (lo, hi - third):
        part = counts[start : start + third + 1]
        # Each level against the mean of its neighbours, in units of the counting noise (Poisson: the
        # difference has variance 1.5 x the count), so that a small crop is not rougher than a big one.
        middle = part[1:-1]
        around = (part[:-2] + part[2:]) / 2
        comb = math.log10(1.0 + float(np.mean((middle - around) ** 2 / (1.5 * around + 1.0))))
        traces.append((float(np.mean(part == 0)), comb))
    (dark_gaps, dark_comb), (bright_gaps, bright_comb) = traces
    return dark_gaps, bright_gaps, dark_comb, bright_comb


def _tone_curve_traces(pixels: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Traces a tone curve leaves in 8-bit histograms, in the darkest and brightest third of the 1-99
    percentile span: empty levels where the curve is steeper than 1 (a gamma under 1 spreads the shadows),
    and a comb (levels alternately hit by one and two inputs) where it is flatter. A camera applies its curve
    before rounding to 8 bits and leaves neither; an 8-bit edit may.

    Two readings: the median over the R, G and B histograms (an RGB curve), and the histogram of the highest
    channel (HSV's V: DQ-495K's HSV gamma bends V alone, so only V keeps the curve's levels whole)."""
    histogram = level_counts(pixels).astype(np.float64)
    per_channel = [t for t in (_curve_traces(counts) for counts in histogram) if t is not None]
    rgb = tuple(median([t[i] for t in per_channel]) for i in range(4)) if per_channel else (math.nan,) * 4
    value = np.maximum(np.maximum(pixels[..., 0], pixels[..., 1]), pixels[..., 2])
    value_traces = _curve_traces(level_counts(value).astype(np.float64))
    return rgb, value_traces if value_traces is not None else (math.nan,) * 4


def features_of(
    whole: Measurements, native: Measurements, pixels: np.ndarray, native_pixels: np.ndarray, native_exact: bool
) -> dict[str, float]:
    """The named feature values from the two measurements and their pixels (`native_exact`: the crop is at
    full resolution)."""
    values = {name: float(getattr(whole, name)) for name in _WHOLE}
    for name in _NATIVE:
        values[f"native_{name}"] = float(getattr(native, name))
    if not native_exact:  # a draft-decoded crop has no 8x8 grid left to see
        values["native_blockiness"] = math.nan
    values["noise_ratio"] = whole.noise / max(whole.noise_median, 1e-6)
    values["both_clipped"] = min(whole.clip_low, whole.clip_high)
    values["clipped"] = whole.clip_low + whole.clip_high
    values["range"] = whole.p99 - whole.p01
    values["shadows"] = (whole.p01 + whole.p05) / 2
    values["chroma_ratio"] = whole.chroma / max(whole.p95 - whole.p05, 1.0)
    # A sharp few tiles before a soft rest (shallow depth of field) vs soft everywhere (blur).
    values["bokeh"] = whole.blur_median - whole.blur
    values["native_noise_ratio"] = native.noise / max(native.noise_median, 1e-6)
    values["native_vs_whole_noise"] = native.noise_coarse / max(whole.noise_coarse, 0.05)
    values["native_vs_whole_blur"] = native.blur - whole.blur
    values.update(_colour_extremes(pixels))
    traces, value_traces = _tone_curve_traces(native_pixels)
    values["dark_gaps"], values["bright_gaps"], values["dark_comb"], values["bright_comb"] = traces
    # Which end of the range the curve bent: a brightening gamma combs the shadows, a darkening one the lights.
    values["comb_balance"] = traces[2] - traces[3]
    for name, value in zip(
        ("value_dark_gaps", "value_bright_gaps", "value_dark_comb", "value_bright_comb"), value_traces, strict=True
    ):
        values[name] = value
    return values


def extract(image: LoadedImage) -> dict[str, float]:
    """The preparer: every feature of a decoded image (module-level, so it pickles into the workers)."""
    facts = image.facts
    whole = measure_pixels(image.pixels, facts.width, facts.jpeg_quality)
    crop = image.native if image.native is not None else image.pixels
    native = measure_pixels(crop, crop.shape[1], facts.jpeg_quality, tone=False)
    return features_of(whole, native, image.pixels, crop, native_exact=image.native_scale == 1.0)
