"""The signal engine's features: measurements at two scales, computed in the decode workers.

Each distortion is measured at the scale it lives at:
- the whole image at a viewing size (`ANALYSIS_SIDE` on the long side) for tone, colour, sharpness and
  direction: what a person sees of the photo;
- a central `NATIVE_CROP` square at the file's own resolution for pixel-level evidence (repeated pixels,
  empty levels, the 8x8 JPEG grid, fine grain and halos), which downscaling erases. That is what makes the
  answer for pixelation or quantization the same for a 640 px and a 1600 px copy of a photo.

The model (model.py) reads `FEATURES` in this order; nothing here depends on the image's size, so that no
decision can learn one.
"""

from __future__ import annotations

import math

import numpy as np

from iqa_cli.engines.signal.measure import Measurements, measure_pixels
from iqa_cli.images import DecodePlan, LoadedImage

ANALYSIS_SIDE = 640
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
)
FEATURES: tuple[str, ...] = _WHOLE + tuple(f"native_{name}" for name in _NATIVE) + _DERIVED


def _saturation(pixels: np.ndarray) -> tuple[float, float]:
    # HSV saturation on every 4th pixel each way: the HSV distortions scale exactly this.
    sub = pixels[::4, ::4].reshape(-1, 3).astype(np.float32)
    high = sub.max(axis=1)
    low = sub.min(axis=1)
    s = np.where(high > 8, (high - low) / np.maximum(high, 1.0), 0.0)
    return float(s.mean()), float(np.percentile(s, 95))


def features_of(whole: Measurements, native: Measurements, pixels: np.ndarray, native_exact: bool) -> dict[str, float]:
    """The named feature values from the two measurements (`native_exact`: the crop is at full resolution)."""
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
    values["sat_mean"], values["sat_p95"] = _saturation(pixels)
    return values


def extract(image: LoadedImage) -> dict[str, float]:
    """The preparer: every feature of a decoded image (module-level, so it pickles into the workers)."""
    facts = image.facts
    whole = measure_pixels(image.pixels, facts.width, facts.jpeg_quality)
    crop = image.native if image.native is not None else image.pixels
    native = measure_pixels(crop, crop.shape[1], facts.jpeg_quality)
    return features_of(whole, native, image.pixels, native_exact=image.native_scale == 1.0)
