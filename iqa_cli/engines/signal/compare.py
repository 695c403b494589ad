"""The signal engine's pairwise answer: SSIM against a reference when there is one, else the no-reference score."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from iqa_cli.engines.base import Comparison
from iqa_cli.engines.signal.decide import brief_answer, decide_many
from iqa_cli.engines.signal.features import extract
from iqa_cli.engines.signal.model import SignalModel
from iqa_cli.images import LoadedImage

QUESTION = "Which image do you believe has better overall quality: Image A or Image B?"
FR_QUESTION = QUESTION + " A high-quality Reference Image is provided."

# Wang et al.'s reference SSIM downsamples so the short side is about 256 px before measuring: the
# scale at which SSIM was validated against viewers, and fewer pixels than the engine's analysis size.
SSIM_SHORT_SIDE = 256
# SSIM at one scale depends on the viewing distance: near, it punishes fine noise far more than a blur
# that wipes out mid-scale detail. As in MS-SSIM, we average a near and a far view (the 256 px copy and
# its half), which ranks mild noise above heavy blur on every photo of the tests.
SSIM_SCALES = 2
# Wang et al.'s SSIM window: a Gaussian of sigma 1.5 over 11 x 11 pixels (radius 5), as skimage's
# structural_similarity(gaussian_weights=True) has it (truncated at 3.5 sigma).
SSIM_SIGMA = 1.5
SSIM_RADIUS = int(3.5 * SSIM_SIGMA + 0.5)
SSIM_WINDOW = 2 * SSIM_RADIUS + 1
# How far apart two measures must be for a clear answer: the difference that gives confidence 0.73
# (e^1 : 1 odds). An SSIM step of 0.01 is about the smallest a viewer notices on natural photos; the
# no-reference score moves 0.2 per rating word, so 0.05 is a quarter of a word.
SSIM_SCALE = 0.01
SCORE_SCALE = 0.05
# Relative aspect-ratio difference tolerated against the reference (rounding of resized sides).
ASPECT_TOLERANCE = 0.02


@dataclass(frozen=True)
class ComparePayload:
    """What compare needs of one image: the engine's features and a small luma copy for SSIM/PSNR.

    `width`/`height` are the image's own size (after EXIF orientation), used to check the framing
    against a reference; `luma` is uint8 [h, w] with the short side at most SSIM_SHORT_SIDE.
    """

    features: dict[str, float]
    luma: np.ndarray
    width: int
    height: int


def prepare_compare(image: LoadedImage) -> ComparePayload:
    """The compare preparer (runs in the decode workers): features plus the SSIM-scale luma."""
    pixels = image.pixels
    height, width = pixels.shape[:2]
    ratio = min(1.0, SSIM_SHORT_SIDE / min(height, width))
    small = Image.fromarray(pixels)
    if ratio < 1.0:
        small = small.resize((max(1, round(width * ratio)), max(1, round(height * ratio))), Image.Resampling.BICUBIC)
    luma = np.asarray(small.convert("L"), dtype=np.uint8).copy()
    return ComparePayload(
        features=extract(image),
        luma=luma,
        width=image.facts.width or width,
        height=image.facts.height or height,
    )


@dataclass(frozen=True)
class Fidelity:
    """One image measured against the reference."""

    ssim: float
    psnr: float


def fidelity(image: ComparePayload, reference: ComparePayload, name: str = "the image") -> Fidelity:
    """Two-scale SSIM and PSNR of `image`'s luma against the reference's, at the reference's SSIM size.

    Raises ValueError when the framing differs (another aspect ratio): pixels cannot be lined up, so a
    full-reference measure would only measure the misalignment.
    """
    aspect, ref_aspect = image.width / image.height, reference.width / reference.height
    if abs(aspect - ref_aspect) > ASPECT_TOLERANCE * ref_aspect:
        raise ValueError(
            f"{name} is {image.width}x{image.height} but the reference is {reference.width}x{reference.height}: "
            "a full-reference comparison needs the same framing (aspect ratio); crop it to match the reference "
            "or compare without one (--no-ref)"
        )
    luma = image.luma
    if luma.shape != reference.luma.shape:  # same framing, other size: compare at the reference's scale
        h, w = reference.luma.shape
        luma = np.asarray(Image.fromarray(luma).resize((w, h), Image.Resampling.BICUBIC))
    x, y = luma.astype(np.float64), reference.luma.astype(np.float64)
    if min(x.shape) < SSIM_WINDOW:
        raise ValueError(
            f"{name} is too small ({image.width}x{image.height}) for SSIM ({SSIM_WINDOW}x{SSIM_WINDOW} window)"
        )
    ssim = float(np.mean([_ssim(_half(x, k), _half(y, k)) for k in range(SSIM_SCALES)]))
    mse = float(np.mean((x - y) ** 2))
    psnr = 100.0 if mse == 0 else min(100.0, 10.0 * math.log10(255.0**2 / mse))
    return Fidelity(ssim, psnr)


def _half(x: np.ndarray, times: int) -> np.ndarray:
    """`x` downsampled 2x `times` times (2x2 means), while it stays large enough for the SSIM window."""
    for _ in range(times):
        h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
        if min(h, w) < 2 * SSIM_WINDOW:
            break
        x = x[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return x


def _gaussian_taps() -> np.ndarray:
    taps = np.exp(-0.5 * (np.arange(-SSIM_RADIUS, SSIM_RADIUS + 1) / SSIM_SIGMA) ** 2)
    return taps / taps.sum()


_TAPS = _gaussian_taps()


def _windowed(x: np.ndarray) -> np.ndarray:
    """Gaussian-weighted means of `x` at every position where the whole window lies inside it ([h-10, w-10])."""
    h, w = x.shape
    n = SSIM_WINDOW
    rows = sum(t * x[k : h - n + 1 + k] for k, t in enumerate(_TAPS))
    return sum(t * rows[:, k : w - n + 1 + k] for k, t in enumerate(_TAPS))


def _ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Mean SSIM of two float64 luma planes (0-255), both at least SSIM_WINDOW on each side.

    Wang et al.'s settings: the 11x11 Gaussian window (sigma 1.5), population covariances, K1 0.01, K2 0.03,
    averaged over the window positions inside the image: what skimage's structural_similarity(data_range=255,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False) gives, which crops the border it pads.
    """
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    ux, uy = _windowed(x), _windowed(y)
    vx = _windowed(x * x) - ux * ux
    vy = _windowed(y * y) - uy * uy
    vxy = _windowed(x * y) - ux * uy
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s.mean(dtype=np.float64))


def _confidence(margin: float, scale: float) -> float:
    """Certainty in the winner from the margin between the two measures: 0.5 at a tie, towards 1 when clear."""
    return 1.0 / (1.0 + math.exp(-abs(margin) / scale))


def compare_signal(
    a: ComparePayload,
    b: ComparePayload,
    reference: ComparePayload | None,
    *,
    detail: bool = False,
    model: SignalModel | None = None,
) -> Comparison:
    """Which of A and B is better: higher SSIM against `reference`, or without one the higher signal quality
    (`model`'s, the shipped one by default).

    An exact tie answers "Image A" with confidence 0.5, which the both-orders combination turns into 0.5.
    """
    if reference is not None:
        fa, fb = fidelity(a, reference, "image A"), fidelity(b, reference, "image B")
        margin = fa.ssim - fb.ssim
        winner = "A" if margin >= 0 else "B"
        reasoning = (
            f"Against the reference, image A keeps SSIM {fa.ssim:.3f} (PSNR {fa.psnr:.1f} dB) and image B "
            f"SSIM {fb.ssim:.3f} (PSNR {fb.psnr:.1f} dB): image {winner} keeps more of the reference's structure."
        )
        return Comparison(
            winner=winner,
            answer=f"Image {winner}",
            confidence=round(_confidence(margin, SSIM_SCALE), 4),
            question=FR_QUESTION,
            detail=reasoning if detail else None,
        )
    va, vb = decide_many([a.features, b.features], model)
    # The regressor's quality, not the displayed score: that one is held on its answer's side, so a missed
    # heavy blur (answer "None") would otherwise outrank a slight noise that was named.
    margin = va.quality - vb.quality
    winner = "A" if margin >= 0 else "B"
    reasoning = (
        f"Image A has quality {va.quality:.2f} ({va.rating}; distortions: {brief_answer(va.categories)}) and image B "
        f"{vb.quality:.2f} ({vb.rating}; distortions: {brief_answer(vb.categories)}), so image {winner} looks better."
    )
    return Comparison(
        winner=winner,
        answer=f"Image {winner}",
        confidence=round(_confidence(margin, SCORE_SCALE), 4),
        question=QUESTION,
        detail=reasoning if detail else None,
    )
