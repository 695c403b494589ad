"""Per-image pixel measurements of the signal engine: a few floats, computed in the decode workers."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from iqa_cli.engines.signal.order_stats import median, percentile, percentiles
from iqa_cli.images import LoadedImage

TILE = 32  # tile side for local sharpness and noise, in analysis pixels
BLUR_FILTER = 9  # re-blur length of the Crete-Roffet measure (scikit-image's blur_effect uses 11)
PAD = 5  # context around each tile for the filters
MAX_TILES = 64  # most active tiles examined for sharpness and edge halos
EDGE_STEP = 24  # a luma step (grey levels per pixel) that counts as a strong edge for the halo measure
HALO_TILES = 32  # the most active of those tiles read by the halo measure
MAX_EDGES = 600  # edge points per direction read by the halo measure


@dataclass(frozen=True)
class Measurements:
    """What the decision needs to know about one image (all floats; NaN where a measure does not apply)."""

    width: int
    height: int
    mean: float  # mean luma, 0-255
    p01: float  # luma percentiles, 0-255
    p05: float
    p50: float
    p95: float
    p99: float
    std: float  # luma standard deviation
    clip_low: float  # fraction of pixels with every channel <= 2
    clip_high: float  # fraction of pixels with any channel >= 253
    chroma: float  # mean chroma (YCbCr distance from grey), 0-~180
    chroma_p95: float
    vivid: float  # fraction of lit pixels whose lowest channel is < 4% of the highest (fully saturated)
    blur: float  # Crete-Roffet blur (0 sharp - 1 flat) of the sharpest tiles
    blur_median: float  # the same in the median examined tile (bokeh: a sharp few, a soft rest)
    blur_p90: float  # the same in the softest tenth of the examined tiles
    active_share: float  # share of all tiles with detail worth examining (a blurred background has little)
    blur_dir: float  # per direction the sharpest tiles' blur; the most blurred direction (motion blur)
    blur_pooled: float  # per direction the blur of all examined tiles pooled; the most blurred direction
    blur_spread: float  # that pooled blur's most blurred direction minus its least blurred one
    lag: float  # steps over 3 px / steps over 1 px on the active tiles: ~1 when neighbours are unrelated
    coherence: float  # orientation coherence of the half-resolution gradients (one dominant direction: motion)
    radial: float  # share of gradient energy along the radius, outer tiles (zoom blur smears along it)
    noise: float  # noise sigma (0-255 levels) in the flattest tenth of the tiles; NaN when unreadable
    noise_median: float  # the same estimate in the median tile (noise is everywhere, texture is not)
    noise_coarse: float  # the flat-tile estimate on every other pixel (sees spatially correlated noise)
    halo: float  # overshoot beside strong edges relative to the step: unsharp-mask halos > 0.55, blurred < 0
    blockiness: float  # JPEG 8x8 grid strength (1 = none); NaN when the grid cannot be seen
    jpeg_quality: float  # the file's JPEG quality setting (from its quantization tables); NaN if not a JPEG
    flat_pairs: float  # share of equal neighbours among pixels on strong local variation (pixelation)
    levels: float  # share of pixels on each channel's 16 most used levels, median over channels
    gaps: float  # share of unused levels within each channel's 1-99 percentile span, median over channels

    def as_dict(self) -> dict[str, float]:
        """The measurements as a plain dict."""
        return asdict(self)


def _tile_sums(a: np.ndarray, rows: int, cols: int, tile: int = TILE) -> np.ndarray:
    # Sum over each tile x tile square of the top-left rows x cols tiles: one value per tile.
    # Down each tile's rows first (whole contiguous rows at a time), then across: much faster than summing
    # along the rows first. Every caller sums integer values whose tile sums stay below 2^24, so the
    # float32 sums are exact and their order cannot change a value. One cast before summing costs less than
    # a sum that casts as it goes.
    square = a[: rows * tile, : cols * tile].astype(np.float32, copy=False)
    strips = square.reshape(rows, tile, cols * tile).sum(axis=1)
    return strips.reshape(rows, cols, tile).sum(axis=2).ravel()


def level_counts(pixels: np.ndarray) -> np.ndarray:
    """How many uint8 pixels sit on each of the 256 levels: 3 x 256 for RGB (H x W x 3), 256 for one channel
    (H x W). Pillow counts every channel in one C pass, the same counts as a bincount per channel."""
    counts = np.asarray(Image.fromarray(pixels).histogram(), dtype=np.int64)
    return counts.reshape(3, 256) if pixels.ndim == 3 else counts


def _blockiness(luma: np.ndarray, period: int) -> float:
    # Mean absolute step across each column/row phase of the grid; JPEG makes one phase stand out.
    # The strongest phase over the median phase, so a crop with a shifted grid still counts.
    if min(luma.shape) < 4 * period:
        return math.nan
    ratios = []
    for axis in (0, 1):
        # The mean step per row or column: integer sums (exact, and cheaper than a float32 mean, which
        # casts as it goes), divided as np.mean divides its float32 sum (in float64, rounded back).
        sums = np.abs(np.diff(luma, axis=axis)).sum(axis=1 - axis, dtype=np.int32)
        steps = (sums / np.intp(luma.shape[1 - axis])).astype(np.float32)
        n = (steps.size // period) * period
        phases = steps[:n].reshape(-1, period).mean(axis=0)
        ratios.append(phases.max() / max(median(phases), 0.25))
    return float(np.mean(ratios))


# Directions of the sharpness measure, as (row, column) steps: along rows, along columns, both diagonals.
DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))


def _directional_blur(stack: np.ndarray, pad: int, tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crete-Roffet blur per tile and direction, K x 4 (NaN where the tile hardly varies along a direction),
    the lag ratio per tile, and per direction the blur of all tiles pooled (4).

    Crete-Roffet (the measure behind scikit-image's blur_effect): the share of a tile's variation along a
    direction that survives re-blurring along it with a 9-tap line, sum min(D, D_blurred) / sum D; 0 sharp,
    1 flat. The re-blurred step is (I(p + 5u) - I(p - 4u)) / 9: a moving sum's difference, no filtering.
    """

    def shifted(k: int, dy: int, dx: int) -> np.ndarray:
        return stack[:, pad + k * dy : pad + k * dy + tile, pad + k * dx : pad + k * dx + tile]

    ratios = np.empty((stack.shape[0], len(DIRECTIONS)), np.float32)
    totals = np.empty_like(ratios)
    lags = np.empty_like(ratios)
    # Scratch arrays reused for every direction: a fresh K x 32 x 32 array per operation costs more in
    # allocation and page faults than the arithmetic. The steps are exact in int16 and their sums in int32
    # (then float32, still exact); only the re-blurred steps and their minimum are float32.
    d, b, far = (np.empty((stack.shape[0], tile, tile), np.int16) for _ in range(3))
    blurred = np.empty((stack.shape[0], tile, tile), np.float32)
    ninth = np.float32(1 / BLUR_FILTER)
    for j, (dy, dx) in enumerate(DIRECTIONS):
        np.abs(np.subtract(shifted(1, dy, dx), shifted(0, dy, dx), out=d), out=d)
        np.subtract(shifted(BLUR_FILTER // 2 + 1, dy, dx), shifted(-(BLUR_FILTER // 2), dy, dx), out=b)
        np.multiply(np.abs(b, out=b), ninth, out=blurred)
        totals[:, j] = d.sum(axis=(1, 2), dtype=np.int32)
        ratios[:, j] = np.minimum(d, blurred, out=blurred).sum(axis=(1, 2))
        np.abs(np.subtract(shifted(2, dy, dx), shifted(-1, dy, dx), out=far), out=far)
        lags[:, j] = far.sum(axis=(1, 2), dtype=np.int32) / np.maximum(totals[:, j], 1e-6)
    # Pooled over tiles, a ratio of sums: motion blur along an axis or diagonal leaves the tiles little
    # variation along it, so per tile that direction is dropped below, while the pooled ratio keeps it.
    pooled = ratios.sum(axis=0) / np.maximum(totals.sum(axis=0), 1e-6)
    ratios /= np.maximum(totals, 1e-6)
    # A direction the tile hardly varies along (an edge parallel to it) says nothing about blur there.
    ratios[totals < 0.5 * totals.mean(axis=1, keepdims=True)] = np.nan
    return ratios, lags.min(axis=1), pooled


def _stack(luma: np.ndarray, chosen: np.ndarray, cols: int, tile: int, pad: int) -> np.ndarray:
    # The chosen tiles of the int16 luma with `pad` pixels of context, as one K x (tile + 2 pad) x
    # (tile + 2 pad) array.
    windows = np.lib.stride_tricks.sliding_window_view(luma, (tile + 2 * pad, tile + 2 * pad))
    return windows[::tile, ::tile][chosen // cols, chosen % cols]


_HALO_OFFSETS = np.array([-4, -3, -1, 0, 1, 2, 4, 5])  # the columns the halo measure reads, from the edge


def _halo(stack: np.ndarray) -> float:
    # Unsharp masking overshoots on both sides of an edge: a bright band along the bright side, a dark one
    # along the dark side, 1-2 px wide. At each strong edge (a local maximum of the luma step along a row
    # or column), the profile is read on the two neighbouring rows (columns): an edge continues there,
    # while the noise that made a spurious maximum does not, so noise neither selects nor biases it.
    # Overshoot: bright band over the plateau 4-5 px out, plus plateau over dark band, relative to the
    # step, summed over edges. Sharpened edges give a clear positive value, natural ones ~0, blurred < 0.
    values = []
    # The column direction on a transposed copy: every read below is then a gather from one flat array.
    for a in (stack, np.ascontiguousarray(np.swapaxes(stack, 1, 2))):
        d = np.diff(a, axis=2)
        mag = np.abs(d[:, 1:-1, 5:-5])
        peak = (mag >= EDGE_STEP) & (mag >= np.abs(d[:, 1:-1, 4:-6])) & (mag >= np.abs(d[:, 1:-1, 6:-4]))
        found = np.flatnonzero(peak)
        if found.size == 0:
            continue
        if found.size > MAX_EDGES:  # an even subsample: the sums need no more, and gathers cost
            found = found[np.linspace(0, found.size - 1, MAX_EDGES).astype(np.intp)]
        k, r, c = np.unravel_index(found, peak.shape)
        r, c = r + 1, c + 5  # c: the edge lies between columns c and c + 1
        edge = d[k, r, c].astype(np.float32)
        sign = np.sign(edge)
        # The profile across each edge at these offsets from column c, averaged over the rows above and below.
        width = a.shape[2]
        at = ((k * a.shape[1] + r) * width + c)[:, None] + _HALO_OFFSETS
        flat = a.ravel()
        # Two int16 rows sum exactly; their mean and everything after it in float32.
        rows = (flat[at - width] + flat[at + width]).astype(np.float32) * 0.5
        profile = dict(zip(_HALO_OFFSETS.tolist(), rows.T, strict=True))
        step = sign * (profile[1] - profile[0])
        bright = sign * ((profile[1] + profile[2]) - (profile[4] + profile[5])) * 0.5
        dark = sign * ((profile[-4] + profile[-3]) - (profile[-1] + profile[0])) * 0.5
        real = step >= 0.5 * np.abs(edge)
        values.append(np.stack([np.clip((bright + dark)[real], -2 * step[real], 2 * step[real]), step[real]]))
    pooled = np.concatenate(values, axis=1) if values else np.zeros((2, 0))
    # A ratio of sums: noise adds as much below as above and cancels; one-sided overshoot adds up.
    return float(pooled[0].sum() / pooled[1].sum()) if pooled.shape[1] >= 20 else 0.0


@dataclass(frozen=True)
class _Sharpness:
    blur: float
    blur_median: float
    blur_p90: float
    blur_dir: float
    blur_pooled: float
    blur_spread: float
    lag: float
    stack: np.ndarray


def _sharpness(luma: np.ndarray, activity: np.ndarray, rows: int, cols: int, tile: int) -> _Sharpness:
    # Only the most active tiles (at most MAX_TILES) are filtered: that bounds the cost whatever the size,
    # and the sharpest parts of a photo are among its most active ones.
    empty = np.zeros((0, tile + 2 * PAD, tile + 2 * PAD), np.int16)
    if rows * cols < 4:  # too small to judge: no verdict on sharpness
        return _Sharpness(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, empty)
    order = np.argsort(activity)[::-1]
    chosen = order[: max(4, min(MAX_TILES, int(np.sum(activity > 2.0))))]
    chosen = chosen[activity[chosen] > 2.0]
    if chosen.size < 4:
        return _Sharpness(1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 3.0, empty)
    stack = _stack(luma, chosen, cols, tile, PAD)
    ratios, lags, pooled = _directional_blur(stack, PAD, tile)
    per_tile = np.nanmax(ratios, axis=1)
    # The sharpest tenth of those tiles: a sharp subject before a blurred background is sharp.
    p10, p50, p90 = percentiles(per_tile[~np.isnan(per_tile)], (10, 50, 90))
    # Per direction, the sharpest tenth of the tiles that vary along it; the most blurred direction.
    # Motion blur leaves edges parallel to it sharp, but nothing that varies along it.
    per_direction = [percentile(r[~np.isnan(r)], 10) for r in ratios.T if np.sum(~np.isnan(r)) >= 4]
    top, bottom = float(pooled.max()), float(pooled.min())
    return _Sharpness(p10, p50, p90, max(per_direction, default=p10), top, top - bottom, median(lags), stack)


def _orientation(half: np.ndarray) -> tuple[float, float]:
    # Structure tensor of the half-resolution gradients, summed per 16 px tile (32 analysis pixels).
    # Coherence: how much one direction dominates the gradients of the most textured half of the tiles;
    # motion blur removes the gradients along its direction. Radial: the share of gradient energy along
    # the line to the centre in the outer tiles; zoom blur smears along that line and removes it.
    # Central differences: forward ones share a pixel and make white noise look oriented.
    gx = half[1:-1, 2:] - half[1:-1, :-2]
    gy = half[2:, 1:-1] - half[:-2, 1:-1]
    t = 16
    rows, cols = gx.shape[0] // t, gx.shape[1] // t
    if rows * cols < 4:
        return 0.0, 0.5
    sxx = _tile_sums(gx * gx, rows, cols, t)
    syy = _tile_sums(gy * gy, rows, cols, t)
    sxy = _tile_sums(gx * gy, rows, cols, t)
    energy = sxx + syy
    busy = energy >= median(energy)
    a, b, c = sxx[busy].sum(), syy[busy].sum(), sxy[busy].sum()
    coherence = float(math.sqrt((a - b) ** 2 + 4 * c * c) / max(a + b, 1e-6))
    yy, xx = np.mgrid[0:rows, 0:cols]
    dy = ((yy + 0.5) * t - gx.shape[0] / 2).ravel()
    dx = ((xx + 0.5) * t - gx.shape[1] / 2).ravel()
    r2 = dx * dx + dy * dy
    outer = (r2 > (0.25 * min(gx.shape)) ** 2) & (energy > 0)
    if outer.sum() < 4:
        return coherence, 0.5
    ux, uy = dx[outer], dy[outer]
    radial = (ux * ux * sxx[outer] + 2 * ux * uy * sxy[outer] + uy * uy * syy[outer]) / r2[outer]
    return coherence, float(radial.sum() / energy[outer].sum())


def _noise(luma: np.ndarray, half: np.ndarray, tile: int, scale: int) -> tuple[float, float]:
    # Immerkaer's estimator: the separable [1 -2 1] x [1 -2 1] mask cancels planes and ramps, so what it
    # sees in flat tiles is noise. Tiles near black or white are skipped: clipping hides noise there (the
    # tile's level is read from `half`, the half-resolution luma, `scale` luma pixels to one of its).
    # In place: this filter is the largest array work of the measurement.
    v = luma[:-2] + luma[2:]
    v -= luma[1:-1]
    v -= luma[1:-1]
    lap = v[:, :-2] + v[:, 2:]
    lap -= v[:, 1:-1]
    lap -= v[:, 1:-1]
    np.abs(lap, out=lap)
    level_tile = tile // scale
    rows = min(lap.shape[0] // tile, half.shape[0] // level_tile)
    cols = min(lap.shape[1] // tile, half.shape[1] // level_tile)
    if rows * cols < 4:
        return math.nan, math.nan
    sigma = _tile_sums(lap, rows, cols, tile) * (math.sqrt(math.pi / 2) / 6 / tile**2)
    level = _tile_sums(half, rows, cols, level_tile) / level_tile**2
    sigma = sigma[(level > 16) & (level < 240)]
    if sigma.size < 4:  # too small, or nearly all black or white: noise cannot be read
        return math.nan, math.nan
    return percentile(sigma, 10), median(sigma)


_TONE_FIELDS = (
    "mean",
    "p01",
    "p05",
    "p50",
    "p95",
    "p99",
    "std",
    "clip_low",
    "clip_high",
    "chroma",
    "chroma_p95",
    "vivid",
)
_NO_TONE = dict.fromkeys(_TONE_FIELDS, math.nan)


def _tone_and_colour(red: np.ndarray, green: np.ndarray, blue: np.ndarray, luma: np.ndarray) -> dict[str, float]:
    # Luma percentiles, mean and spread from its histogram; clipping, chroma and the vivid share per pixel.
    n = luma.size
    hist = np.bincount(luma, minlength=256)
    cdf = hist.cumsum() / n
    p01, p05, p50, p95, p99 = (float(np.searchsorted(cdf, q)) for q in (0.01, 0.05, 0.5, 0.95, 0.99))
    grey = np.arange(256, dtype=np.float64)
    mean = float((hist * grey).sum() / n)
    std = float(math.sqrt(max(0.0, (hist * (grey - mean) ** 2).sum() / n)))
    high = np.maximum(np.maximum(red, green), blue)
    low = np.minimum(np.minimum(red, green), blue)
    cb = (blue - luma).astype(np.float32)
    cr = (red - luma).astype(np.float32)
    chroma = np.sqrt((0.564 * cb) ** 2 + (0.713 * cr) ** 2)
    lit = high > 50
    return {
        "mean": mean,
        "p01": p01,
        "p05": p05,
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "std": std,
        "clip_low": float(np.mean(high <= 2)),
        "clip_high": float(np.mean(high >= 253)),
        "chroma": float(chroma.mean()),
        "chroma_p95": percentile(chroma, 95),
        "vivid": float(np.mean(low[lit] * 25 < high[lit])) if lit.any() else 0.0,
    }


def measure_pixels(
    pixels: np.ndarray, source_width: int | None = None, jpeg_quality: int | None = None, *, tone: bool = True
) -> Measurements:
    """Measure uint8 RGB pixels (H x W x 3).

    `source_width` is the file's own width (the JPEG grid is only visible at that size); `jpeg_quality`
    the file's JPEG quality setting, when it is a JPEG. `tone=False` leaves out what only the whole image
    is read for (luma percentiles, mean and spread, clipping, chroma, vivid share, orientation): NaN there.
    """
    h, w = pixels.shape[:2]
    # BT.601 luma by PIL, in C; int16 for the differences.
    luma8 = np.asarray(Image.fromarray(pixels).convert("L"))
    luma_i = luma8.astype(np.int16)
    half8 = np.asarray(Image.fromarray(luma8).reduce(2))
    half = half8.astype(np.float32)

    # Tone and colour on every third pixel each way: global statistics do not need them all.
    sub = np.ascontiguousarray(pixels[::3, ::3])
    n = sub.shape[0] * sub.shape[1]
    toned = _NO_TONE
    if tone:
        red, green, blue = (sub[..., c].astype(np.int16).ravel() for c in range(3))
        toned = _tone_and_colour(red, green, blue, luma_i[::3, ::3].ravel())
    levels, gaps = [], []
    for counts in level_counts(sub):
        ranked = np.sort(counts[1:255])
        levels.append(ranked[-16:].sum() / max(ranked.sum(), 1))
        # Empty levels inside the channel's 1st-99th percentile span: quantization leaves gaps, a narrow
        # (low-contrast) histogram does not.
        cum = np.cumsum(counts)
        lo, hi = np.searchsorted(cum, 0.01 * n), np.searchsorted(cum, 0.99 * n)
        gaps.append(float(np.mean(counts[lo : hi + 1] == 0)) if hi > lo else 0.0)

    # Tile activity (mean absolute step) at half resolution: cheap, and it picks the tiles worth a look.
    half_i = half8.astype(np.int16)
    act = np.abs(np.diff(half_i, axis=0))[:, :-1] + np.abs(np.diff(half_i, axis=1))[:-1, :]
    rows, cols = max(0, (h - 2 * PAD) // TILE), max(0, (w - 2 * PAD) // TILE)
    activity = _tile_sums(act[PAD // 2 :, PAD // 2 :], rows, cols, TILE // 2) / (TILE * TILE / 4)
    sharp = _sharpness(luma_i, activity, rows, cols, TILE)
    halo = _halo(sharp.stack[:HALO_TILES]) if sharp.stack.size else 0.0
    coherence, radial = _orientation(half) if tone else (math.nan, math.nan)

    noise, noise_median = _noise(luma_i, half, TILE, scale=2)
    noise_coarse, _ = _noise(np.ascontiguousarray(luma_i[::2, ::2]), half, TILE // 2, scale=1)

    # Pixelation: where luma changes a lot over three pixels, natural images rarely repeat a value.
    # Every fourth row is plenty for a share.
    rows_i = luma_i[::4]
    span = np.abs(rows_i[:, 3:] - rows_i[:, :-3])
    same = rows_i[:, 2:-1] == rows_i[:, 1:-2]
    strong = span > 24
    flat_pairs = float(same[strong].mean()) if strong.any() else 0.0

    blockiness = math.nan
    if source_width is None or source_width == w:
        blockiness = _blockiness(luma_i, 8)

    return Measurements(
        width=w,
        height=h,
        **toned,
        blur=sharp.blur,
        blur_median=sharp.blur_median,
        blur_p90=sharp.blur_p90,
        active_share=float(np.mean(activity > 2.0)) if activity.size else math.nan,
        blur_dir=sharp.blur_dir,
        blur_pooled=sharp.blur_pooled,
        blur_spread=sharp.blur_spread,
        lag=sharp.lag,
        coherence=coherence,
        radial=radial,
        noise=noise,
        noise_median=noise_median,
        noise_coarse=noise_coarse,
        halo=halo,
        blockiness=blockiness,
        jpeg_quality=math.nan if jpeg_quality is None else float(jpeg_quality),
        flat_pairs=flat_pairs,
        levels=median(levels),
        gaps=median(gaps),
    )


def measure(image: LoadedImage) -> Measurements:
    """The preparer: measure a decoded image (module-level, so it pickles into the decode workers)."""
    return measure_pixels(image.pixels, image.facts.width, image.facts.jpeg_quality)
