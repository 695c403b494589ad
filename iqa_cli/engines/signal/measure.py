"""Per-image pixel measurements of the signal engine: a few floats, computed in the decode workers."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from iqa_cli.images import LoadedImage

TILE = 32  # tile side for local sharpness and noise, in analysis pixels
BLUR_FILTER = 9  # re-blur length of the Crete-Roffet measure (scikit-image's blur_effect uses 11)
PAD = 5  # context around each tile for the filters
MAX_TILES = 96  # most active tiles examined for sharpness and overshoot


@dataclass(frozen=True)
class Measurements:
    """What the decision needs to know about one image (all floats; NaN where a measure does not apply)."""

    width: int
    height: int
    mean: float  # mean luma, 0-255
    p01: float  # luma percentiles, 0-255
    p50: float
    p99: float
    spread: float  # luma p95 - p05
    clip_low: float  # fraction of pixels with every channel <= 2
    clip_high: float  # fraction of pixels with any channel >= 253
    chroma: float  # mean chroma (YCbCr distance from grey), 0-~180
    chroma_p95: float
    vivid: float  # fraction of lit pixels whose lowest channel is < 4% of the highest (fully saturated)
    blur: float  # Crete-Roffet blur (0 sharp - 1 flat) of the sharpest tiles
    noise: float  # noise sigma (0-255 levels) in the flattest tenth of the tiles
    noise_median: float  # the same estimate in the median tile (noise is everywhere, texture is not)
    noise_coarse: float  # the flat-tile estimate at half resolution (sees spatially correlated noise)
    blockiness: float  # JPEG 8x8 grid strength (1 = none); NaN when the grid cannot be seen
    flat_pairs: float  # share of equal neighbours among pixels on strong local variation (pixelation)
    levels: float  # share of pixels on each channel's 16 most used levels, median over channels
    overshoot: float  # fine-scale residual relative to coarse gradient on edges (oversharpening)

    def as_dict(self) -> dict[str, float]:
        """The measurements as a plain dict."""
        return asdict(self)


def _tile_sums(a: np.ndarray, rows: int, cols: int, tile: int = TILE) -> np.ndarray:
    # Sum over each tile x tile square of the top-left rows x cols tiles: one value per tile.
    # Two single-axis float32 sums: much faster than one int64 sum over two strided axes.
    blocks = a[: rows * tile, : cols * tile].reshape(rows, tile, cols, tile)
    return blocks.sum(axis=3, dtype=np.float32).sum(axis=1).ravel()


def _blockiness(dv: np.ndarray, dh: np.ndarray, period: int) -> float:
    # Mean absolute step across each column/row phase of the grid; JPEG makes one phase stand out.
    # The strongest phase over the median phase, so a crop with a shifted grid still counts.
    ratios = []
    for axis, d in ((0, dv), (1, dh)):
        steps = d.mean(axis=1 - axis, dtype=np.float32)
        n = (steps.size // period) * period
        phases = steps[:n].reshape(-1, period).mean(axis=0)
        ratios.append(phases.max() / max(float(np.median(phases)), 0.25))
    return float(np.mean(ratios))


def _sharpness(luma: np.ndarray, activity: np.ndarray, rows: int, cols: int) -> tuple[float, float]:
    # Only the most active tiles (at most MAX_TILES) are filtered: that bounds the cost whatever the size,
    # and the sharpest parts of a photo are among its most active ones.
    order = np.argsort(activity)[::-1]
    chosen = order[: max(4, min(MAX_TILES, int(np.sum(activity > 2.0))))]
    chosen = chosen[activity[chosen] > 2.0]
    if chosen.size < 4:
        return 1.0, 0.0
    windows = np.lib.stride_tricks.sliding_window_view(luma, (TILE + 2 * PAD, TILE + 2 * PAD))
    stack = windows[::TILE, ::TILE][chosen // cols, chosen % cols]  # K x (TILE + 2 PAD) x (TILE + 2 PAD)
    inner = np.s_[:, PAD : PAD + TILE, PAD : PAD + TILE]

    # Crete-Roffet (scikit-image's blur_effect) per tile: the share of each tile's variation that
    # survives re-blurring, min(D, D_blurred) / D; 0 sharp, 1 flat. The larger of the two directions.
    ratios = []
    for axis in (1, 2):
        d = np.abs(np.diff(stack, axis=axis))
        b = np.abs(np.diff(ndimage.uniform_filter1d(stack, BLUR_FILTER, axis=axis), axis=axis))
        total = d[inner].sum(axis=(1, 2))
        ratios.append(np.minimum(d, b)[inner].sum(axis=(1, 2)) / np.maximum(total, 1e-6))
    tile_blur = np.maximum(*ratios)
    # The sharpest tenth of those tiles: a sharp subject before a blurred background is sharp.
    blur = float(np.percentile(tile_blur, 10))

    # Oversharpening: on the strongest edges, the fine residual (image minus a 5 px box blur) against the
    # gradient of the blurred image. Unsharp masking multiplies the first and not the second.
    smooth = ndimage.uniform_filter(stack, size=(1, 5, 5))
    resid = np.abs(stack - smooth)[inner]
    grad = np.abs(smooth[:, PAD + 1 : PAD + TILE + 1, PAD : PAD + TILE] - smooth[inner]) + np.abs(
        smooth[:, PAD : PAD + TILE, PAD + 1 : PAD + TILE + 1] - smooth[inner]
    )
    edges = grad > np.percentile(grad, 90)
    overshoot = float(np.median(resid[edges] / (grad[edges] + 1.0)))
    return blur, overshoot


def _noise(luma: np.ndarray, tile: int) -> tuple[float, float]:
    # Immerkaer's estimator: the separable [1 -2 1] x [1 -2 1] mask cancels planes and ramps, so what it
    # sees in flat tiles is noise. Tiles near black or white are skipped: clipping hides noise there.
    lap = luma[:-2] - 2 * luma[1:-1] + luma[2:]
    lap = np.abs(lap[:, :-2] - 2 * lap[:, 1:-1] + lap[:, 2:])
    rows, cols = lap.shape[0] // tile, lap.shape[1] // tile
    if rows * cols < 4:
        return 0.0, 0.0
    sigma = _tile_sums(lap, rows, cols, tile) * (math.sqrt(math.pi / 2) / 6 / tile**2)
    level = _tile_sums(luma[1:-1, 1:-1], rows, cols, tile) / tile**2
    sigma = sigma[(level > 16) & (level < 240)]
    if sigma.size < 4:
        return 0.0, 0.0
    return float(np.percentile(sigma, 10)), float(np.median(sigma))


def measure_pixels(pixels: np.ndarray, source_width: int | None = None) -> Measurements:
    """Measure uint8 RGB pixels (H x W x 3); `source_width` is the file's own width (for the JPEG grid)."""
    h, w = pixels.shape[:2]
    # Integer BT.601 luma: uint16 holds 256 * 255 exactly, int16 is what the differences need.
    wide = pixels.astype(np.uint16)
    luma_i = ((77 * wide[..., 0] + 150 * wide[..., 1] + 29 * wide[..., 2]) >> 8).astype(np.int16)
    rgb = pixels[::3, ::3].astype(np.int16)
    luma = luma_i.astype(np.float32)

    # Tone and colour on every third pixel each way: global statistics do not need them all.
    sub = rgb.reshape(-1, 3)
    sub_luma = luma_i[::3, ::3].ravel()
    hist = np.bincount(sub_luma, minlength=256).cumsum() / sub_luma.size
    p01, p05, p50, p95, p99 = (float(np.searchsorted(hist, q)) for q in (0.01, 0.05, 0.5, 0.95, 0.99))
    high = sub.max(axis=1)
    low = sub.min(axis=1)
    cb = sub[:, 2] - sub_luma
    cr = sub[:, 0] - sub_luma
    chroma = np.sqrt((0.564 * cb) ** 2 + (0.713 * cr) ** 2)
    lit = high > 50
    vivid = float(np.mean(low[lit] < 0.04 * high[lit])) if lit.any() else 0.0
    levels = []
    for c in range(3):
        counts = np.sort(np.bincount(sub[:, c], minlength=256)[1:255])
        levels.append(counts[-16:].sum() / max(counts.sum(), 1))

    # Tile activity (mean absolute step) on the integer luma: cheap, and it picks the tiles worth a look.
    dv = np.abs(np.diff(luma_i, axis=0))
    dh = np.abs(np.diff(luma_i, axis=1))
    rows, cols = (h - 2 * PAD) // TILE, (w - 2 * PAD) // TILE
    activity = (_tile_sums(dv[PAD:, PAD:], rows, cols) + _tile_sums(dh[PAD:, PAD:], rows, cols)) / (2 * TILE * TILE)
    blur, overshoot = _sharpness(luma, activity, rows, cols)

    noise, noise_median = _noise(luma, TILE)
    noise_coarse, _ = _noise(luma[::2, ::2], TILE // 2)

    # Pixelation: where luma changes a lot over three pixels, natural images rarely repeat a value.
    # Every other row is plenty for a share.
    rows_i = luma_i[::2]
    span = np.abs(rows_i[:, 3:] - rows_i[:, :-3])
    same = rows_i[:, 2:-1] == rows_i[:, 1:-2]
    strong = span > 24
    flat_pairs = float(same[strong].mean()) if strong.any() else 0.0

    blockiness = math.nan
    if source_width is None or source_width == w:
        blockiness = _blockiness(dv, dh, 8)

    return Measurements(
        width=w,
        height=h,
        mean=float(sub_luma.mean()),
        p01=p01,
        p50=p50,
        p99=p99,
        spread=p95 - p05,
        clip_low=float(np.mean(high <= 2)),
        clip_high=float(np.mean(high >= 253)),
        chroma=float(chroma.mean()),
        chroma_p95=float(np.percentile(chroma, 95)),
        vivid=vivid,
        blur=blur,
        noise=noise,
        noise_median=noise_median,
        noise_coarse=noise_coarse,
        blockiness=blockiness,
        flat_pairs=flat_pairs,
        levels=float(np.median(levels)),
        overshoot=overshoot,
    )


def measure(image: LoadedImage) -> Measurements:
    """The preparer: measure a decoded image (module-level, so it pickles into the decode workers)."""
    return measure_pixels(image.pixels, image.facts.width)
