"""Synthetic distortions modelled on DQ-495K: 12 categories, 35 functions, severities 1-5."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageEnhance
from scipy import ndimage, signal

from iqa_cli.categories import CATEGORIES  # noqa: F401  (re-exported; the one copy lives in a light module)

Distortion = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

# Severity parameters follow the DQ-495K generator (XPixelGroup/DepictQA, build_datasets/x_distortion).


def _unit(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / 255.0


def _to_u8(x: np.ndarray) -> np.ndarray:
    # Truncation, not rounding, as the DQ-495K generator does (np.uint8 of a clipped float).
    return (np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0), mode="nearest")


def _shuffle(x: np.ndarray, shift: int, rng: np.random.Generator) -> np.ndarray:
    # Vectorised stand-in for DQ-495K's sequential local pixel swaps: each pixel takes the value at a
    # random offset in [-shift, shift).
    h, w = x.shape[:2]
    dy = rng.integers(-shift, shift, size=(h, w))
    dx = rng.integers(-shift, shift, size=(h, w))
    rows = np.clip(np.arange(h)[:, None] + dy, 0, h - 1)
    cols = np.clip(np.arange(w)[None, :] + dx, 0, w - 1)
    return x[rows, cols]


def _shifted(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    h, w = x.shape[:2]
    pad = max(abs(dy), abs(dx))
    padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    return padded[pad - dy : pad - dy + h, pad - dx : pad - dx + w]


def _rgb_to_ycc(x: np.ndarray) -> np.ndarray:
    # Full-range BT.601 YCrCb on [0, 1] data, the conversion OpenCV uses.
    y = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.stack([y, (x[..., 0] - y) * 0.713 + 0.5, (x[..., 2] - y) * 0.564 + 0.5], axis=-1)


def _ycc_to_rgb(ycc: np.ndarray) -> np.ndarray:
    y, cr, cb = ycc[..., 0], ycc[..., 1] - 0.5, ycc[..., 2] - 0.5
    r = y + 1.403 * cr
    b = y + 1.773 * cb
    g = y - 0.714 * cr - 0.344 * cb
    return np.stack([r, g, b], axis=-1)


def _rgb_to_hsv(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Hue is kept implicitly: scaling S or changing V keeps each pixel's (rgb - min) / (max - min).
    v = x.max(axis=-1)
    low = x.min(axis=-1)
    s = np.where(v > 0, (v - low) / np.maximum(v, 1e-12), 0.0)
    rel = np.where((v - low)[..., None] > 0, (x - low[..., None]) / np.maximum(v - low, 1e-12)[..., None], 0)
    return rel, s, v


def _hsv_to_rgb(rel: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    # S saturates at 1 as in an 8-bit HSV image; V is left unclipped so that out-of-range values clip per
    # channel at the end, as an RGB round trip does.
    s = np.clip(s, 0.0, 1.0)
    low = v * (1.0 - s)
    return low[..., None] + rel * (v - low)[..., None]


# --- blur ---------------------------------------------------------------------------------------------


def blur_gaussian(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _to_u8(_gauss(_unit(img), [1, 2, 3, 4, 5][severity - 1]))


def blur_motion(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius, sigma = [(5, 3), (10, 5), (15, 7), (15, 9), (20, 12)][severity - 1]
    angle = np.deg2rad(rng.uniform(-90, 90))
    width = 2 * radius + 1
    weights = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    weights /= weights.sum()
    x = _unit(img)
    out = np.zeros_like(x)
    # One-sided smear along the motion direction, as in DQ-495K.
    for i, weight in enumerate(weights):
        out += weight * _shifted(x, round(i * np.sin(angle)), round(i * np.cos(angle)))
    return _to_u8(out)


def blur_glass(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma, shift, iterations = [(0.7, 1, 1), (0.9, 2, 1), (1.2, 2, 2), (1.4, 3, 2), (1.6, 4, 2)][severity - 1]
    x = _gauss(_unit(img), sigma)
    for _ in range(iterations):
        x = _shuffle(x, shift, rng)
    return _to_u8(_gauss(x, sigma))


def blur_lens(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius = [2, 3, 4, 6, 8][severity - 1]
    grid = np.arange(-radius, radius + 1)
    disk = (grid[:, None] ** 2 + grid[None, :] ** 2 <= radius**2).astype(np.float32)
    disk /= disk.sum()
    x = np.pad(_unit(img), ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    out = signal.fftconvolve(x, disk[..., None], mode="valid", axes=(0, 1))
    return _to_u8(out)


def blur_zoom(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    top = [1.03, 1.06, 1.10, 1.15, 1.21][severity - 1]
    h, w = img.shape[:2]
    pil = Image.fromarray(img)
    total = _unit(img)
    factors = np.arange(1.0, top, 0.02)
    for factor in factors:
        ch, cw = h / factor, w / factor
        box = ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)
        total += _unit(np.asarray(pil.resize((w, h), Image.Resampling.BILINEAR, box=box)))
    return _to_u8(total / (len(factors) + 1))


def blur_jitter(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _shuffle(img, [1, 2, 3, 4, 5][severity - 1], rng)


# --- noise --------------------------------------------------------------------------------------------


def noise_gaussian_rgb(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = [0.05, 0.1, 0.15, 0.2, 0.25][severity - 1]
    return _to_u8(_unit(img) + rng.normal(0, sigma, img.shape))


def noise_gaussian_ycrcb(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma_y = [0.05, 0.06, 0.07, 0.08, 0.09][severity - 1]
    sigma_c = sigma_y * [1, 1.45, 1.9, 2.35, 2.8][severity - 1]
    ycc = _rgb_to_ycc(_unit(img))
    ycc += rng.normal(0, 1, img.shape) * np.array([sigma_y, sigma_c, sigma_c])
    return _to_u8(_ycc_to_rgb(ycc))


def noise_speckle(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    scale = [0.14, 0.21, 0.28, 0.35, 0.42][severity - 1]
    x = _unit(img)
    return _to_u8(x + x * rng.normal(0, scale, img.shape))


def noise_spatially_correlated(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = [0.08, 0.11, 0.14, 0.18, 0.22][severity - 1]
    noisy = _unit(img) + rng.normal(0, sigma, img.shape)
    return _to_u8(ndimage.uniform_filter(noisy, size=(3, 3, 1), mode="reflect"))


def noise_poisson(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    factor = [80, 60, 40, 25, 15][severity - 1]
    return _to_u8(rng.poisson(_unit(img) * factor) / factor)


def noise_impulse(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    amount = [0.01, 0.03, 0.05, 0.07, 0.10][severity - 1]
    out = img.copy()
    hit = rng.random(img.shape) < amount
    out[hit] = np.where(rng.random(int(hit.sum())) < 0.5, 0, 255)
    return out


# --- compression --------------------------------------------------------------------------------------


def _roundtrip(img: np.ndarray, **save: object) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, **save)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def compression_jpeg(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _roundtrip(img, format="JPEG", quality=[25, 18, 12, 8, 5][severity - 1])


def compression_jpeg2000(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    psnr = [29, 27.5, 26, 24.5, 23][severity - 1]
    return _roundtrip(img, format="JPEG2000", quality_mode="dB", quality_layers=[psnr])


# --- brightness ---------------------------------------------------------------------------------------


def _shift_hsv(img: np.ndarray, shift: float) -> np.ndarray:
    rel, s, v = _rgb_to_hsv(_unit(img))
    return _to_u8(_hsv_to_rgb(rel, s, v + shift))


def _gamma_hsv(img: np.ndarray, gamma: float) -> np.ndarray:
    rel, s, v = _rgb_to_hsv(_unit(img))
    return _to_u8(_hsv_to_rgb(rel, s, v**gamma))


def brighten_shift_hsv(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _shift_hsv(img, [0.1, 0.2, 0.3, 0.4, 0.5][severity - 1])


def brighten_shift_rgb(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _to_u8(_unit(img) + [0.1, 0.15, 0.2, 0.27, 0.35][severity - 1])


def brighten_gamma_hsv(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _gamma_hsv(img, [0.7, 0.58, 0.47, 0.36, 0.25][severity - 1])


def brighten_gamma_rgb(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _to_u8(_unit(img) ** [0.8, 0.7, 0.6, 0.45, 0.3][severity - 1])


def darken_shift_hsv(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _shift_hsv(img, -[0.1, 0.2, 0.3, 0.4, 0.5][severity - 1])


def darken_shift_rgb(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _to_u8(_unit(img) - [0.1, 0.15, 0.2, 0.27, 0.35][severity - 1])


def darken_gamma_hsv(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _gamma_hsv(img, [1.5, 1.8, 2.2, 2.7, 3.5][severity - 1])


def darken_gamma_rgb(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _to_u8(_unit(img) ** [1.4, 1.7, 2.1, 2.6, 3.2][severity - 1])


# --- contrast -----------------------------------------------------------------------------------------


def _enhance_contrast(img: np.ndarray, factor: float) -> np.ndarray:
    return np.asarray(ImageEnhance.Contrast(Image.fromarray(img)).enhance(factor))


def _stretch(img: np.ndarray, factor: float) -> np.ndarray:
    # A sigmoid around each channel's mean: factor > 1 steepens it, < 1 flattens it.
    x = _unit(img).astype(np.float64)
    mean = x.mean(axis=(0, 1), keepdims=True)
    return _to_u8(1.0 / (1.0 + (mean / (x + 1e-12)) ** factor))


def contrast_strengthen_scale(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _enhance_contrast(img, [1.4, 1.7, 2.1, 2.6, 4.0][severity - 1])


def contrast_strengthen_stretch(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _stretch(img, [2.0, 4.0, 6.0, 8.0, 10.0][severity - 1])


def contrast_weaken_scale(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _enhance_contrast(img, [0.75, 0.6, 0.45, 0.3, 0.2][severity - 1])


def contrast_weaken_stretch(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _stretch(img, [1.0, 0.9, 0.8, 0.6, 0.4][severity - 1])


# --- saturation ---------------------------------------------------------------------------------------


def _scale_s(img: np.ndarray, scale: float) -> np.ndarray:
    rel, s, v = _rgb_to_hsv(_unit(img))
    return _to_u8(_hsv_to_rgb(rel, s * scale, v))


def _scale_chroma(img: np.ndarray, scale: float) -> np.ndarray:
    ycc = _rgb_to_ycc(_unit(img))
    ycc[..., 1:] = 0.5 + (ycc[..., 1:] - 0.5) * scale
    # DQ-495K stores the scaled YCrCb as uint8 before converting back: clip there too.
    return _to_u8(_ycc_to_rgb(np.clip(ycc, 0.0, 1.0)))


def saturate_strengthen_hsv(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _scale_s(img, [3.0, 6.0, 12.0, 20.0, 64.0][severity - 1])


def saturate_strengthen_ycrcb(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _scale_chroma(img, [2.0, 3.0, 5.0, 8.0, 16.0][severity - 1])


def saturate_weaken_hsv(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _scale_s(img, [0.7, 0.55, 0.4, 0.2, 0.0][severity - 1])


def saturate_weaken_ycrcb(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _scale_chroma(img, [0.6, 0.4, 0.2, 0.1, 0.0][severity - 1])


# --- oversharpening, pixelation, quantization ---------------------------------------------------------


def oversharpen(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    amount = [2, 2.8, 4, 6, 8][severity - 1]
    x = img.astype(np.float32)
    # A 5x5 Gaussian with OpenCV's default sigma for that size (1.1), truncated at 2 pixels.
    blurred = ndimage.gaussian_filter(x, sigma=(1.1, 1.1, 0), truncate=2.0 / 1.1, mode="reflect")
    return np.clip(np.round((1 + amount) * x - amount * blurred), 0, 255).astype(np.uint8)


def pixelate(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    scale = [0.5, 0.4, 0.3, 0.25, 0.2][severity - 1]
    h, w = img.shape[:2]
    small = Image.fromarray(img).resize((int(w * scale), int(h * scale)), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.NEAREST))


def _multiotsu(channel: np.ndarray, classes: int, nbins: int = 30) -> np.ndarray:
    # Multi-level Otsu by dynamic programming over a 30-bin histogram. scikit-image's threshold_multiotsu
    # (what DQ-495K calls) searches every combination, minutes at 15 classes; its thresholds agree with
    # these to within one bin.
    hist, edges = np.histogram(channel, bins=nbins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.concatenate([[0.0], np.cumsum(hist)])
    moment = np.concatenate([[0.0], np.cumsum(hist * centres)])
    # score[i, j]: between-class term of one class made of bins i..j-1.
    w = weight[None, :] - weight[:, None]
    m = moment[None, :] - moment[:, None]
    score = np.where(w > 0, m**2 / np.where(w > 0, w, 1), 0.0)
    best = score[0].copy()  # best[j]: bins 0..j-1 split into k classes
    cut = np.zeros((classes, nbins + 1), dtype=np.intp)
    for k in range(1, classes):
        total = best[:, None] + score  # [i, j]: first k classes end at i, then one class i..j-1
        total[np.tril_indices(nbins + 1)] = -np.inf
        cut[k] = total.argmax(axis=0)
        best = total.max(axis=0)
    ends, j = [], nbins
    for k in range(classes - 1, 0, -1):
        j = cut[k, j]
        ends.append(j)
    return centres[np.array(sorted(ends))]


def quantization_otsu(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    classes = [15, 11, 8, 5, 3][severity - 1]
    out = img.astype(np.float32)
    for c in range(3):
        channel = out[..., c]
        thresholds = _multiotsu(channel, classes)
        low, high = channel.min(), channel.max()
        out[..., c] = np.digitize(channel, bins=thresholds) * (high - low) / classes + low
    return np.clip(out, 0, 255).astype(np.uint8)


def quantization_median(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    colors = [20, 15, 10, 6, 3][severity - 1]
    channels = [
        np.asarray(Image.fromarray(img[..., c]).quantize(colors, Image.Quantize.MEDIANCUT).convert("L"))
        for c in range(3)
    ]
    return np.stack(channels, axis=-1)


def quantization_hist(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    bins = [24, 16, 8, 6, 4][severity - 1]
    hist, _ = np.histogram(img, bins=bins, range=(0, 255))
    cdf = hist.cumsum().astype(np.float64)
    used = cdf[cdf > 0]
    # Equalise the levels in use onto [0, 255], as DQ-495K's masked-cdf recipe does.
    table = np.where(cdf > 0, (cdf - used.min()) * 255 / max(used.max() - used.min(), 1), 0).astype(np.uint8)
    return table[np.round(img / 255 * (bins - 1)).astype(np.intp)]


FUNCTIONS: dict[str, dict[str, Distortion]] = {
    "blur": {f.__name__: f for f in (blur_gaussian, blur_motion, blur_glass, blur_lens, blur_zoom, blur_jitter)},
    "noise": {
        f.__name__: f
        for f in (
            noise_gaussian_rgb,
            noise_gaussian_ycrcb,
            noise_speckle,
            noise_spatially_correlated,
            noise_poisson,
            noise_impulse,
        )
    },
    "compression": {f.__name__: f for f in (compression_jpeg, compression_jpeg2000)},
    "brighten": {
        f.__name__: f for f in (brighten_shift_hsv, brighten_shift_rgb, brighten_gamma_hsv, brighten_gamma_rgb)
    },
    "darken": {f.__name__: f for f in (darken_shift_hsv, darken_shift_rgb, darken_gamma_hsv, darken_gamma_rgb)},
    "contrast_strengthen": {f.__name__: f for f in (contrast_strengthen_scale, contrast_strengthen_stretch)},
    "contrast_weaken": {f.__name__: f for f in (contrast_weaken_scale, contrast_weaken_stretch)},
    "saturate_strengthen": {f.__name__: f for f in (saturate_strengthen_hsv, saturate_strengthen_ycrcb)},
    "saturate_weaken": {f.__name__: f for f in (saturate_weaken_hsv, saturate_weaken_ycrcb)},
    "oversharpen": {"oversharpen": oversharpen},
    "pixelate": {"pixelate": pixelate},
    "quantization": {f.__name__: f for f in (quantization_otsu, quantization_median, quantization_hist)},
}


def distort(
    pixels: np.ndarray,
    category: str,
    severity: int,
    *,
    rng: np.random.Generator | int = 0,
    function: str | None = None,
) -> np.ndarray:
    """Apply one DQ-495K distortion to uint8 RGB `pixels` (H x W x 3); uint8 RGB of the same shape back.

    `function` picks one of the category's functions (see FUNCTIONS); None draws one with `rng`.
    The result depends only on the inputs and the seed.
    """
    if category not in FUNCTIONS:
        raise ValueError(f"unknown distortion category {category!r}; choose one of {', '.join(FUNCTIONS)}")
    if severity not in (1, 2, 3, 4, 5):
        raise ValueError(f"severity must be 1-5, not {severity!r}")
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected uint8 RGB pixels (H x W x 3), got {pixels.dtype} {pixels.shape}")
    generator = np.random.default_rng(rng) if isinstance(rng, int) else rng
    functions = FUNCTIONS[category]
    if function is None:
        function = list(functions)[int(generator.integers(len(functions)))]
    elif function not in functions:
        raise ValueError(f"{function!r} is not a {category} function; choose one of {', '.join(functions)}")
    out = functions[function](np.ascontiguousarray(pixels), severity, generator)
    return np.ascontiguousarray(out, dtype=np.uint8)
