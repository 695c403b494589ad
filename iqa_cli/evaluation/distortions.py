"""Synthetic distortions modelled on DQ-495K: 12 categories, 35 functions, severities 1-5."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageEnhance

from iqa_cli.categories import CATEGORIES  # noqa: F401  (re-exported; the one copy lives in a light module)

Distortion = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]

# Severity parameters, order of operations, value ranges and rounding follow the DQ-495K generator
# (XPixelGroup/DepictQA, build_datasets/x_distortion); docs/distortions.md lists every function.
# Where that generator calls OpenCV, the same integer/float arithmetic is done here with numpy.


def _unit(img: np.ndarray) -> np.ndarray:
    """uint8 -> float64 on [0, 1] (the generator's `np.array(img) / 255.0`)."""
    return img / 255.0


def _unit32(img: np.ndarray) -> np.ndarray:
    """uint8 -> float32 on [0, 1] (the generator's `np.float32(img / 255.0)`, for its OpenCV float paths)."""
    return (img / 255.0).astype(np.float32)


def _to_u8(x: np.ndarray) -> np.ndarray:
    # Truncation, not rounding, as the DQ-495K generator does (np.uint8 of a clipped float).
    return (np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _along(padded: np.ndarray, axis: int, start: int, length: int) -> np.ndarray:
    index = [slice(None)] * padded.ndim
    index[axis] = slice(start, start + length)
    return padded[tuple(index)]


def _gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    """skimage.filters.gaussian as DQ-495K calls it: scipy.ndimage's filter with 'nearest' edges, truncated at 4
    sigma, rows then columns, channels apart. The same sums in the same order as scipy's symmetric correlation
    (centre tap, then pairs from the outermost in), so the result is bit for bit scipy's, without scipy."""
    radius = int(4.0 * sigma + 0.5)
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    weights = np.exp(-0.5 / (sigma * sigma) * taps * taps)
    weights /= weights.sum()
    out = np.asarray(x, dtype=np.float64)
    for axis in (0, 1):
        n = out.shape[axis]
        widths = [(0, 0)] * out.ndim
        widths[axis] = (radius, radius)
        padded = np.pad(out, widths, mode="edge")
        acc = _along(padded, axis, radius, n) * weights[radius]
        for j in range(-radius, 0):
            pair = _along(padded, axis, radius + j, n) + _along(padded, axis, radius - j, n)
            acc = acc + pair * weights[radius + j]
        out = acc
    return out


def _box3(x: np.ndarray) -> np.ndarray:
    """A 3 x 3 box mean with reflect-101 edges, channels apart: scipy.ndimage.uniform_filter(size=(3, 3, 1),
    mode="mirror") computed as scipy 1.17 does: a running sum along rows, then columns, each output that sum / 3."""
    out = np.asarray(x, dtype=np.float64)
    for axis in (0, 1):
        n = out.shape[axis]
        widths = [(0, 0)] * out.ndim
        widths[axis] = (1, 1)
        padded = np.pad(out, widths, mode="reflect")
        first = _along(padded, axis, 0, 1) + _along(padded, axis, 1, 1) + _along(padded, axis, 2, 1)
        steps = _along(padded, axis, 3, n - 1) - _along(padded, axis, 0, n - 1)
        out = np.cumsum(np.concatenate([first, steps], axis=axis), axis=axis) / 3
    return out


def _shuffle(x: np.ndarray, shift: int, rng: np.random.Generator) -> np.ndarray:
    # DQ-495K swaps pixels one by one (numba loop, bottom-right to top-left) with a partner at an offset in
    # [-shift, shift) on both axes, visiting rows/columns shift+1 .. size-shift only. Vectorised stand-in:
    # each visited pixel takes the value at such an offset; the border band is left as it is.
    h, w = x.shape[:2]
    out = x.copy()
    rows = np.arange(shift + 1, h - shift + 1)
    cols = np.arange(shift + 1, w - shift + 1)
    if rows.size == 0 or cols.size == 0:
        return out
    dy = rng.integers(-shift, shift, size=(rows.size, cols.size))
    dx = rng.integers(-shift, shift, size=(rows.size, cols.size))
    src_r = np.minimum(rows[:, None] + dy, h - 1)
    src_c = np.minimum(cols[None, :] + dx, w - 1)
    out[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = x[src_r, src_c]
    return out


# --- OpenCV colour conversions, re-done in numpy ----------------------------------------------------------

_SECTORS = np.array([[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]])  # (b, g, r) per sector


def _hsv_to_rgb_f32(h: np.ndarray, s: np.ndarray, v: np.ndarray, hscale: float) -> np.ndarray:
    """OpenCV's float HSV->RGB (sector table), float32; V is not clipped, so values may leave [0, 1]."""
    h = (h * np.float32(hscale)).astype(np.float32)
    h = np.where(h < 0, h + 6, np.where(h >= 6, h - 6, h)).astype(np.float32)
    sector = np.floor(h).astype(np.intp)
    frac = (h - sector).astype(np.float32)
    bad = (sector < 0) | (sector >= 6)
    sector = np.where(bad, 0, sector)
    frac = np.where(bad, np.float32(0), frac)
    one = np.float32(1)
    tab = np.stack([v, v * (one - s), v * (one - s * frac), v * (one - s * (one - frac))], axis=-1).astype(np.float32)
    idx = _SECTORS[sector]  # H x W x 3, (b, g, r)
    bgr = np.take_along_axis(tab, idx, axis=-1)
    rgb = bgr[..., ::-1]
    grey = (s == 0)[..., None]
    return np.where(grey, v[..., None], rgb).astype(np.float32)


def _rgb_to_hsv_f32(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's float RGB->HSV on float32 [0, 1] RGB: H in degrees [0, 360), S and V in [0, 1]."""
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(axis=-1)
    diff = v - x.min(axis=-1)
    eps = np.float32(np.finfo(np.float32).eps)
    s = (diff / (np.abs(v) + eps)).astype(np.float32)
    k = (np.float32(60) / (diff + eps)).astype(np.float32)
    h = np.where(v == r, (g - b) * k, np.where(v == g, (b - r) * k + np.float32(120), (r - g) * k + np.float32(240)))
    h = np.where(h < 0, h + np.float32(360), h).astype(np.float32)
    return h, s, v


_HSV_SHIFT = 12
_SDIV = np.array([0] + [round((255 << _HSV_SHIFT) / i) for i in range(1, 256)], dtype=np.int64)
_HDIV = np.array([0] + [round((180 << _HSV_SHIFT) / (6 * i)) for i in range(1, 256)], dtype=np.int64)


def _rgb_to_hsv_u8(img: np.ndarray) -> np.ndarray:
    """OpenCV's 8-bit RGB->HSV (fixed point): H in [0, 180), S and V in [0, 255]; int64 H x W x 3."""
    x = img.astype(np.int64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    v = x.max(axis=-1)
    diff = v - x.min(axis=-1)
    half = 1 << (_HSV_SHIFT - 1)
    s = (diff * _SDIV[v] + half) >> _HSV_SHIFT
    h = np.where(v == r, g - b, np.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (h * _HDIV[diff] + half) >> _HSV_SHIFT
    h = np.where(h < 0, h + 180, h)
    return np.stack([h, s, v], axis=-1)


def _hsv_u8_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """OpenCV's 8-bit HSV->RGB: float math on (H, S/255, V/255), times 255, truncated (as OpenCV 4.9 does)."""
    h = hsv[..., 0].astype(np.float32)
    s = (hsv[..., 1].astype(np.float32) * np.float32(1 / 255)).astype(np.float32)
    v = (hsv[..., 2].astype(np.float32) * np.float32(1 / 255)).astype(np.float32)
    rgb = _hsv_to_rgb_f32(h, s, v, 6 / 180)
    # Matches cv2 on all but 0.005% of the 180 x 256 x 256 inputs (float noise at exact integers, off by 1).
    return np.clip(rgb * np.float32(255), 0, 255).astype(np.uint8)


_YUV_SHIFT = 14


def _descale(x: np.ndarray) -> np.ndarray:
    return (x + (1 << (_YUV_SHIFT - 1))) >> _YUV_SHIFT


def _rgb_to_ycc_u8(img: np.ndarray) -> np.ndarray:
    """OpenCV's 8-bit RGB->YCrCb (fixed point, BT.601 full range, offset 128); uint8 H x W x 3."""
    x = img.astype(np.int64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = _descale(r * 4899 + g * 9617 + b * 1868)
    cr = _descale((r - y) * 11682 + (128 << _YUV_SHIFT))
    cb = _descale((b - y) * 9241 + (128 << _YUV_SHIFT))
    return np.clip(np.stack([y, cr, cb], axis=-1), 0, 255).astype(np.uint8)


def _ycc_u8_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """OpenCV's 8-bit YCrCb->RGB (fixed point); uint8."""
    x = ycc.astype(np.int64)
    y, cr, cb = x[..., 0], x[..., 1] - 128, x[..., 2] - 128
    r = y + _descale(cr * 22987)
    g = y + _descale(cb * -5636 + cr * -11698)
    b = y + _descale(cb * 29049)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def _rgb_to_ycc_f32(x: np.ndarray) -> np.ndarray:
    # OpenCV's float RGB->YCrCb on [0, 1]: its rounded BT.601 coefficients, chroma offset 0.5.
    c = np.float32
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = r * c(0.299) + g * c(0.587) + b * c(0.114)
    return np.stack([y, (r - y) * c(0.713) + c(0.5), (b - y) * c(0.564) + c(0.5)], axis=-1).astype(np.float32)


def _ycc_to_rgb_f32(ycc: np.ndarray) -> np.ndarray:
    c = np.float32
    y, cr, cb = ycc[..., 0], ycc[..., 1] - c(0.5), ycc[..., 2] - c(0.5)
    r = y + c(1.403) * cr
    g = y + c(-0.714) * cr + c(-0.344) * cb
    b = y + c(1.773) * cb
    return np.stack([r, g, b], axis=-1).astype(np.float32)


# --- blur ---------------------------------------------------------------------------------------------


def blur_gaussian(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _to_u8(_gauss(_unit(img), [1, 2, 3, 4, 5][severity - 1]))


def blur_motion(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius, sigma = [(5, 3), (10, 5), (15, 7), (15, 9), (20, 12)][severity - 1]
    angle = np.deg2rad(rng.uniform(-90, 90))
    width = 2 * radius + 1
    weights = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2))
    weights /= weights.sum()
    h, w = img.shape[:2]
    # One-sided smear on 0-255 values: tap i reads the pixel i steps along the angle (edge pixels repeat).
    padded = np.pad(img, ((width, width), (width, width), (0, 0)), mode="edge")
    out = np.zeros(img.shape, dtype=np.float64)
    for i, weight in enumerate(weights):
        dy = -int(np.ceil(i * np.sin(angle) - 0.5))
        dx = -int(np.ceil(i * np.cos(angle) - 0.5))
        if abs(dy) >= h or abs(dx) >= w:
            break
        out += weight * padded[width - dy : width - dy + h, width - dx : width - dx + w]
    return np.clip(out, 0, 255).astype(np.uint8)


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
    disk = (disk / disk.sum()).astype(np.float64)
    h, w = img.shape[:2]
    # cv2.filter2D's default border is reflect-101 (numpy's "reflect"); the disk is symmetric, so
    # correlation and convolution agree. Convolution by FFT over the padded frame.
    x = np.pad(_unit(img), ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    shape = (x.shape[0] + 2 * radius, x.shape[1] + 2 * radius)
    spectrum = np.fft.rfft2(x, s=shape, axes=(0, 1)) * np.fft.rfft2(disk, s=shape)[..., None]
    full = np.fft.irfft2(spectrum, s=shape, axes=(0, 1))
    return _to_u8(full[2 * radius : 2 * radius + h, 2 * radius : 2 * radius + w])


def _linear_axis(n_in: int, n_out: int, keep: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # scipy.ndimage.zoom(order=1) geometry: output o samples input o * (n_in - 1) / (n_out - 1).
    pos = np.arange(keep) * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(keep)
    low = np.minimum(np.floor(pos).astype(np.intp), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    return low, high, (pos - low)


def _clipped_zoom(x: np.ndarray, factor: float) -> np.ndarray:
    """DQ-495K's centre crop of ceil(size / factor), zoomed back bilinearly (scipy's grid), top-left h x w."""
    h, w = x.shape[:2]
    ch, cw = int(np.ceil(h / factor)), int(np.ceil(w / factor))
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[top : top + ch, left : left + cw]
    lo, hi, f = _linear_axis(ch, round(ch * factor), h)
    f = f.astype(np.float32)[:, None, None]
    base = crop[lo]
    rows = crop[hi]
    rows -= base
    rows *= f
    rows += base
    lo, hi, f = _linear_axis(cw, round(cw * factor), w)
    f = f.astype(np.float32)[None, :, None]
    base = rows[:, lo]
    out = rows[:, hi]
    out -= base
    out *= f
    out += base
    return out


def blur_zoom(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    top = [1.03, 1.06, 1.10, 1.15, 1.21][severity - 1]
    x = _unit32(img)
    factors = np.arange(1, top, 0.02)  # starts at 1: the unzoomed image counts twice, as in DQ-495K
    total = np.zeros_like(x)
    for factor in factors:
        total += _clipped_zoom(x, factor)
    return _to_u8((x + total) / (len(factors) + 1))


def blur_jitter(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _shuffle(img, [1, 2, 3, 4, 5][severity - 1], rng)


# --- noise --------------------------------------------------------------------------------------------


def noise_gaussian_rgb(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = [0.05, 0.1, 0.15, 0.2, 0.25][severity - 1]
    return _to_u8(_unit(img) + rng.normal(0, sigma, img.shape))


def noise_gaussian_ycrcb(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma_y = [0.05, 0.06, 0.07, 0.08, 0.09][severity - 1]
    sigma_c = sigma_y * [1, 1.45, 1.9, 2.35, 2.8][severity - 1]
    h, w = img.shape[:2]
    ycc = _rgb_to_ycc_f32(_unit32(img))
    # Three planes drawn in turn (Y, Cr, Cb) as DQ-495K does; float32 after the addition.
    noise = np.stack([rng.normal(0, s, (h, w)) for s in (sigma_y, sigma_c, sigma_c)], axis=-1)
    return _to_u8(_ycc_to_rgb_f32((ycc + noise).astype(np.float32)))


def noise_speckle(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    scale = [0.14, 0.21, 0.28, 0.35, 0.42][severity - 1]
    x = _unit(img)
    return _to_u8(x + x * rng.normal(0, scale, img.shape))


def noise_spatially_correlated(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = [0.08, 0.11, 0.14, 0.18, 0.22][severity - 1]
    noisy = _unit(img) + rng.normal(0, sigma, img.shape)
    # cv2.blur(3x3): box mean, reflect-101 edges (scipy's "mirror").
    return _to_u8(_box3(noisy))


def noise_poisson(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    factor = [80, 60, 40, 25, 15][severity - 1]
    return _to_u8(rng.poisson(_unit(img) * factor) / float(factor))


def noise_impulse(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    # skimage random_noise(mode="s&p"): each channel value flips with probability `amount`, half to 0, half to 255.
    amount = [0.01, 0.03, 0.05, 0.07, 0.10][severity - 1]
    out = img.copy()
    hit = rng.random(img.shape) < amount
    salt = rng.random(img.shape) < 0.5
    out[hit & salt] = 255
    out[hit & ~salt] = 0
    return out


# --- compression --------------------------------------------------------------------------------------


def _roundtrip(img: np.ndarray, **save: object) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, **save)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


JPEG_QUALITY = (25, 18, 12, 8, 5)  # compression_jpeg's quality setting at severities 1-5


def compression_jpeg(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _roundtrip(img, format="JPEG", quality=JPEG_QUALITY[severity - 1])


def compression_jpeg2000(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    psnr = [29, 27.5, 26, 24.5, 23][severity - 1]
    return _roundtrip(img, format="JPEG2000", quality_mode="dB", quality_layers=[psnr])


# --- brightness ---------------------------------------------------------------------------------------


def _shift_hsv(img: np.ndarray, shift: float) -> np.ndarray:
    # Float32 HSV (OpenCV's float path): V moves unclipped, the way back is linear in V, then clip and truncate.
    h, s, v = _rgb_to_hsv_f32(_unit32(img))
    return _to_u8(_hsv_to_rgb_f32(h, s, (v + np.float32(shift)).astype(np.float32), 6 / 360))


def _gamma_hsv(img: np.ndarray, gamma: float) -> np.ndarray:
    # 8-bit HSV (OpenCV's uint8 path): all three planes go through /255, the gamma on V, clip, *255 and a
    # truncating uint8 cast (which can lower H or S by one level), then back through 8-bit HSV->RGB.
    hsv = _rgb_to_hsv_u8(img) / 255.0
    hsv[..., 2] = hsv[..., 2] ** gamma
    return _hsv_u8_to_rgb((np.clip(hsv, 0, 1) * 255.0).astype(np.uint8))


def brighten_shift_hsv(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _shift_hsv(img, [0.1, 0.2, 0.3, 0.4, 0.5][severity - 1])


def brighten_shift_rgb(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _to_u8(_unit32(img) + np.float32([0.1, 0.15, 0.2, 0.27, 0.35][severity - 1]))


def brighten_gamma_hsv(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _gamma_hsv(img, [0.7, 0.58, 0.47, 0.36, 0.25][severity - 1])


def brighten_gamma_rgb(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _to_u8(_unit(img) ** [0.8, 0.7, 0.6, 0.45, 0.3][severity - 1])


def darken_shift_hsv(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _shift_hsv(img, -[0.1, 0.2, 0.3, 0.4, 0.5][severity - 1])


def darken_shift_rgb(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _to_u8(_unit32(img) - np.float32([0.1, 0.15, 0.2, 0.27, 0.35][severity - 1]))


def darken_gamma_hsv(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _gamma_hsv(img, [1.5, 1.8, 2.2, 2.7, 3.5][severity - 1])


def darken_gamma_rgb(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _to_u8(_unit(img) ** [1.4, 1.7, 2.1, 2.6, 3.2][severity - 1])


# --- contrast -----------------------------------------------------------------------------------------


def _enhance_contrast(img: np.ndarray, factor: float) -> np.ndarray:
    return np.asarray(ImageEnhance.Contrast(Image.fromarray(img)).enhance(factor))


def _stretch(img: np.ndarray, factor: float) -> np.ndarray:
    # A sigmoid around each channel's mean: factor > 1 steepens it, < 1 flattens it.
    x = _unit(img)
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
    # 8-bit HSV: S (0-255) times the scale in float32, clipped and truncated to uint8, then back.
    hsv = _rgb_to_hsv_u8(img)
    s = np.float32(scale) * hsv[..., 1].astype(np.float32)
    hsv[..., 1] = np.clip(s, 0, 255).astype(np.uint8)
    return _hsv_u8_to_rgb(hsv)


def _scale_chroma(img: np.ndarray, scale: float) -> np.ndarray:
    # 8-bit YCrCb: Cr and Cb scaled about 128 in float32, clipped and truncated to uint8, then back.
    ycc = _rgb_to_ycc_u8(img).astype(np.float32)
    ycc[..., 1:] = np.float32(128) + (ycc[..., 1:] - np.float32(128)) * np.float32(scale)
    return _ycc_u8_to_rgb(np.clip(ycc, 0, 255).astype(np.uint8))


def saturate_strengthen_hsv(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _scale_s(img, [3.0, 6.0, 12.0, 20.0, 64.0][severity - 1])


def saturate_strengthen_ycrcb(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _scale_chroma(img, [2.0, 3.0, 5.0, 8.0, 16.0][severity - 1])


def saturate_weaken_hsv(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _scale_s(img, [0.7, 0.55, 0.4, 0.2, 0.0][severity - 1])


def saturate_weaken_ycrcb(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    return _scale_chroma(img, [0.6, 0.4, 0.2, 0.1, 0.0][severity - 1])


# --- oversharpening, pixelation, quantization ---------------------------------------------------------


def _binomial5(img: np.ndarray) -> np.ndarray:
    """cv2.GaussianBlur(img, (5, 5), 0) on uint8: OpenCV's fixed 5-tap kernel [1 4 6 4 1] / 16 per axis
    (its table for ksize 5 when sigma is 0), reflect-101 edges, exact integer sum rounded half up."""
    x = np.pad(img.astype(np.int64), ((2, 2), (2, 2), (0, 0)), mode="reflect")
    taps = (1, 4, 6, 4, 1)
    h, w = img.shape[:2]
    rows = sum(t * x[i : i + h] for i, t in enumerate(taps))
    total = sum(t * rows[:, i : i + w] for i, t in enumerate(taps))
    return ((total + 128) >> 8).astype(np.uint8)


def oversharpen(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    amount = [2, 2.8, 4, 6, 8][severity - 1]
    blurred = _binomial5(img)
    # cv2.addWeighted on uint8: float32 weights, result rounded to nearest (ties to even) and saturated.
    out = img.astype(np.float32) * np.float32(1 + amount) + blurred.astype(np.float32) * np.float32(-amount)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def pixelate(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    scale = [0.5, 0.4, 0.3, 0.25, 0.2][severity - 1]
    h, w = img.shape[:2]
    small = Image.fromarray(img).resize((int(w * scale), int(h * scale)), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.NEAREST))


def _multiotsu(channel: np.ndarray, classes: int, nbins: int = 30) -> np.ndarray:
    """skimage.filters.threshold_multiotsu(channel, classes, nbins=30), found by dynamic programming.

    skimage searches every combination of thresholds (minutes at 15 classes); the optimum is the same.
    Its conventions are kept: a threshold is the centre of the last bin of the lower class; the class
    score is S^2 / P over float32 bin probabilities with S summed over bin indices, where skimage's
    running first moment starts at prob[0] (not 0) and a class made of bin 0 alone scores 0.
    """
    hist, edges = np.histogram(channel, bins=nbins, range=(channel.min(), channel.max()))
    centres = (edges[:-1] + edges[1:]) / 2
    prob = (hist / hist.sum()).astype(np.float32)
    nonzero = np.flatnonzero(prob)
    if nonzero.size <= classes:
        # skimage returns these when there are exactly `classes` values (and raises below that).
        return centres[nonzero[:-1]]
    p = np.cumsum(prob, dtype=np.float32).astype(np.float64)
    first = prob * np.arange(nbins, dtype=np.float32)
    first[0] = prob[0]
    s = np.cumsum(first, dtype=np.float32).astype(np.float64)
    # score[i, j]: one class made of bins i..j (inclusive).
    p_ij = p[None, :] - np.concatenate([[0.0], p[:-1]])[:, None]
    s_ij = s[None, :] - np.concatenate([[0.0], s[:-1]])[:, None]
    score = np.where(p_ij > 0, s_ij**2 / np.where(p_ij > 0, p_ij, 1), 0.0)
    score[0, 0] = 0.0
    upper = np.triu(np.ones((nbins, nbins), dtype=bool))
    score = np.where(upper, score, -np.inf)
    best = score[0].copy()  # best[j]: bins 0..j split into k classes
    back = np.zeros((classes, nbins), dtype=np.intp)
    for k in range(1, classes):
        # previous k classes end at bin t, then one class t+1..j
        total = best[:-1, None] + score[1:, :]
        back[k] = total.argmax(axis=0)
        best = total.max(axis=0)
    ends, j = [], nbins - 1
    for k in range(classes - 1, 0, -1):
        j = int(back[k, j])
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


# DQ-495K's multi-distortion table (build_datasets/scripts/constants_md.py): first category -> the categories
# that may be applied after it. It is not symmetric: ("oversharpen", "brighten") is allowed, the reverse is not.
PAIRABLE: dict[str, tuple[str, ...]] = {
    "blur": (
        "brighten",
        "compression",
        "contrast_strengthen",
        "contrast_weaken",
        "darken",
        "noise",
        "quantization",
        "saturate_strengthen",
        "saturate_weaken",
    ),
    "brighten": ("blur", "compression", "noise", "pixelate", "quantization"),
    "compression": (
        "blur",
        "brighten",
        "contrast_strengthen",
        "contrast_weaken",
        "darken",
        "noise",
        "saturate_strengthen",
        "saturate_weaken",
    ),
    "contrast_strengthen": ("blur", "compression", "noise", "pixelate", "quantization"),
    "contrast_weaken": ("blur", "compression", "noise", "pixelate", "quantization"),
    "darken": ("blur", "compression", "noise", "pixelate", "quantization"),
    "noise": (
        "blur",
        "brighten",
        "compression",
        "contrast_strengthen",
        "contrast_weaken",
        "darken",
        "oversharpen",
        "pixelate",
        "saturate_strengthen",
        "saturate_weaken",
    ),
    "oversharpen": ("brighten",),
    "pixelate": (
        "brighten",
        "contrast_strengthen",
        "contrast_weaken",
        "darken",
        "noise",
        "oversharpen",
        "quantization",
        "saturate_strengthen",
        "saturate_weaken",
    ),
    "quantization": (
        "brighten",
        "contrast_strengthen",
        "contrast_weaken",
        "darken",
        "noise",
        "oversharpen",
        "pixelate",
        "saturate_strengthen",
        "saturate_weaken",
    ),
    "saturate_strengthen": ("blur", "compression", "noise", "oversharpen", "pixelate", "quantization"),
    "saturate_weaken": ("blur", "compression", "noise", "oversharpen", "pixelate", "quantization"),
}

# The 78 ordered (first, second) category pairs that DQ-495K may combine.
PAIRS: tuple[tuple[str, str], ...] = tuple((a, b) for a in FUNCTIONS for b in PAIRABLE[a])

PAIR_MAX_SEVERITY = 3  # DQ-495K draws each of the two severities from 1-3, not 1-5


def pick_pair(rng: np.random.Generator | int = 0) -> tuple[tuple[str, str, int], tuple[str, str, int]]:
    """Draw one DQ-495K multi-distortion: ((category, function, severity), (category, function, severity)).

    Apply the first, then the second to its output (distort(distort(x, *first), *second)). DQ-495K draws two
    different categories as an ordered sample (random.sample) and redraws until the second is in
    PAIRABLE[first]; that is a uniform draw over PAIRS, which is what is done here. Then, for the first and
    then the second: a function uniformly from the category's list, and a severity uniformly from 1-3.
    (Their generator first resizes the reference to a short side of 224 px, bicubic, when it is larger, and
    in the paired-image set makes each image a single distortion, severity 1-5, or such a pair, with equal odds.)
    """
    generator = np.random.default_rng(rng) if isinstance(rng, int) else rng
    first, second = PAIRS[int(generator.integers(len(PAIRS)))]
    picked = []
    for category in (first, second):
        functions = list(FUNCTIONS[category])
        function = functions[int(generator.integers(len(functions)))]
        picked.append((category, function, int(generator.integers(1, PAIR_MAX_SEVERITY + 1))))
    return picked[0], picked[1]


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
