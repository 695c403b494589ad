"""The signal engine's judgement: thresholds on the measurements -> distortions, severities, rating, confidence."""

from __future__ import annotations

import math
from dataclasses import dataclass

from iqa_cli.engines.base import rating_for_score
from iqa_cli.engines.signal.measure import Measurements


@dataclass(frozen=True)
class Test:
    """One threshold test: `feature` above (op ">") or below (op "<") `threshold`; `unit` scales margins."""

    feature: str
    op: str
    threshold: float
    unit: float

    def margin(self, value: float) -> float:
        """Signed distance from the threshold in units: positive when the test passes."""
        if math.isnan(value):
            return -math.inf
        distance = value - self.threshold if self.op == ">" else self.threshold - value
        return distance / self.unit


@dataclass(frozen=True)
class Clause:
    """One way a category shows: every test passes. Severity comes from the first test's feature.

    `steps` are the values of that feature where severities 1-5 begin (steps[0] is its threshold), read
    from the calibration medians of the synthetic distortions (benchmarks/calibrate_signal.py).
    """

    tests: tuple[Test, ...]
    steps: tuple[float, float, float, float, float]

    def margin(self, values: dict[str, float]) -> float:
        """The weakest test's margin: positive when the clause holds."""
        return min(test.margin(values[test.feature]) for test in self.tests)

    def severity(self, value: float) -> float:
        """Continuous severity: 1.0 at the threshold, 5.0 at the last step and beyond (0 below)."""
        rising = self.steps[-1] > self.steps[0]
        sign = 1.0 if rising else -1.0
        x = sign * value
        steps = [sign * s for s in self.steps]
        if x < steps[0]:
            return 0.0
        for i in range(4):
            if x < steps[i + 1]:
                return 1.0 + i + (x - steps[i]) / (steps[i + 1] - steps[i])
        return 5.0


@dataclass(frozen=True)
class Rule:
    """A category is present when any of its clauses holds (each a different way the distortion shows)."""

    category: str
    clauses: tuple[Clause, ...]

    def margin(self, values: dict[str, float]) -> float:
        """The best clause's margin: positive when the category is present."""
        return max(clause.margin(values) for clause in self.clauses)

    def strongest(self, values: dict[str, float]) -> Clause:
        """The clause with the largest margin: the evidence to quote."""
        return max(self.clauses, key=lambda clause: clause.margin(values))

    def severity(self, values: dict[str, float]) -> float:
        """The largest severity among the clauses that hold (at least 1)."""
        found = [c.severity(values[c.tests[0].feature]) for c in self.clauses if c.margin(values) > 0]
        return max([1.0, *found])


def _t(feature: str, op: str, threshold: float, unit: float) -> Test:
    return Test(feature, op, threshold, unit)


def _c(steps: tuple[float, float, float, float, float], *tests: Test) -> Clause:
    return Clause(tests, steps)


# All thresholds live here. Origin: benchmarks/calibrate_signal.py, 8 tuning photos (photo_set.TUNING_PHOTOS)
# x 35 DQ-495K functions x 5 severities plus the 15 clean images; docs/signal-engine.md has the tables and
# the held-out figures. Thresholds sit where the distorted values at severity 4 (3 where possible) clear
# the clean photos with room; units are about one severity step, so margins read as "how many severity
# steps from the boundary". Steps: the clause's feature where severity 1 begins (its threshold), then the
# calibration medians at severities 2-5 (`--steps`).
RULES: tuple[Rule, ...] = (
    Rule(
        "pixelate",
        (_c((0.25, 0.63, 0.65, 0.665, 0.67), _t("flat_pairs", ">", 0.25, 0.1), _t("gaps", "<", 0.85, 0.05)),),
    ),
    Rule(
        "quantization",
        # Few levels with empty ones between: a narrow (low-contrast) histogram has no gaps.
        (
            _c(
                (0.85, 0.94, 0.965, 0.975, 0.98),
                _t("gaps", ">", 0.85, 0.05),
                _t("levels", ">", 0.8, 0.1),
                _t("noise", "<", 5.0, 1.0),
            ),
        ),
    ),
    Rule(
        "noise",
        (
            # Noise is in the flat areas too (unlike texture, jitter and edge halos); the film grain of a
            # scanned photo (grace_hopper, 3.4 grey levels at half resolution) stays below 3.6.
            _c(
                (3.6, 11.5, 14.0, 17.5, 20.0),
                _t("noise_coarse", ">", 3.6, 2.0),
                _t("noise_ratio", ">", 0.45, 0.1),
                _t("halo", "<", 0.55, 0.1),
            ),
            # Nine grey levels in the flattest areas is noise whatever else is there (unsharp masking at
            # DQ-495K's strongest setting brings a grainy photo to about 8).
            _c((9.0, 13.0, 15.5, 19.0, 21.5), _t("noise", ">", 9.0, 2.0)),
        ),
    ),
    Rule(
        "compression",
        (
            # The 8x8 grid, visible only when the image is analysed at its own size.
            _c((1.3, 1.75, 1.95, 2.3, 3.0), _t("blockiness", ">", 1.3, 0.2), _t("flat_pairs", "<", 0.25, 0.1)),
            # The file's JPEG quality setting: at 30 or below a JPEG is compressed whatever its size, and this
            # survives the resize that hides the grid of a large file.
            _c((30.5, 18.0, 13.0, 10.0, 6.0), _t("jpeg_quality", "<", 30.5, 5.0)),
            # No grain at all in the flattest areas (clean photos: 0.17 and up): compression wiped it out,
            # as JPEG 2000 does on photos with large smooth areas. Blur only lowers it (0.06 and up).
            _c(
                (0.03, 0.02, 0.012, 0.008, 0.003),
                _t("noise", "<", 0.03, 0.02),
                _t("noise_median", ">", 0.15, 0.1),  # while other areas have some texture: not a flat graphic
                _t("gaps", "<", 0.85, 0.05),
                _t("flat_pairs", "<", 0.25, 0.1),
            ),
            # Soft, and flatter than a blur that soft leaves it: wavelet compression (JPEG 2000) keeps
            # edges and drops grain and texture. `denoised` = flat-area noise + 0.3 x blur beyond 0.3.
            _c(
                (0.15, 0.12, 0.09, 0.06, 0.03),
                _t("denoised", "<", 0.15, 0.03),
                _t("blur", ">", 0.3, 0.05),
                _t("noise_ratio", "<", 0.45, 0.1),
                _t("gaps", "<", 0.85, 0.05),
            ),
        ),
    ),
    Rule(
        "oversharpen",
        (
            # Overshoot beside edges, grain amplified into the flat areas, steps over 3 px hardly larger
            # than over 1 px; but not the flat-area noise of a noisy photo. The halo measure saturates, so
            # the severity steps only separate mild from strong.
            _c(
                (0.55, 0.62, 0.7, 0.76, 0.85),
                _t("halo", ">", 0.55, 0.1),
                _t("noise_coarse", ">", 1.8, 0.5),
                _t("lag", "<", 1.35, 0.1),
                _t("noise", "<", 10.0, 2.0),
                _t("gaps", "<", 0.85, 0.05),
            ),
        ),
    ),
    Rule(
        "blur",
        (
            # Isotropic: the sharpest tiles are soft (a sharp subject before a blurred background is sharp).
            _c((0.33, 0.45, 0.55, 0.63, 0.7), _t("blur", ">", 0.33, 0.07), _t("noise_coarse", "<", 3.6, 1.0)),
            # Motion: one direction soft everywhere, and the gradients line up across it.
            _c((0.24, 0.33, 0.44, 0.5, 0.55), _t("blur_dir", ">", 0.24, 0.07), _t("coherence", ">", 0.33, 0.05)),
            # Zoom: the outer tiles lose the gradients along the radius (clean photos: 0.45 and up; a soft,
            # upscaled photo can come down to 0.39: the thinnest margin of the engine).
            _c((0.38, 0.34, 0.31, 0.28, 0.25), _t("radial", "<", 0.38, 0.05)),
            # Jitter: neighbouring pixels unrelated over 3 px on the active tiles, yet the flat areas clean
            # (unlike noise) and no edge halos (unlike sharpening).
            _c(
                (1.07, 1.06, 1.045, 1.035, 1.02),
                _t("lag", "<", 1.07, 0.03),
                _t("halo", "<", 0.5, 0.1),
                _t("noise", "<", 6.0, 1.0),
                _t("noise_ratio", "<", 0.6, 0.1),
            ),
        ),
    ),
    Rule(
        "contrast_strengthen",
        (
            _c(
                (0.04, 0.12, 0.17, 0.21, 0.25),
                _t("both_clipped", ">", 0.04, 0.04),
                _t("gaps", "<", 0.85, 0.05),
            ),
            # A tonal spread no clean photo reaches (china, 83, is the widest).
            _c((88.0, 95.0, 100.0, 105.0, 110.0), _t("std", ">", 88.0, 8.0), _t("gaps", "<", 0.85, 0.05)),
            # Much of the image clipped at either end, on a wide spread, without noise doing it.
            _c(
                (0.2, 0.3, 0.4, 0.47, 0.6),
                _t("clipped", ">", 0.2, 0.1),
                _t("std", ">", 60.0, 8.0),
                _t("noise_coarse", "<", 5.0, 2.0),
            ),
        ),
    ),
    Rule(
        "contrast_weaken",
        (
            # Tones within 131 levels (1st-99th percentile); the softest clean photo spans 138.
            _c((131.0, 110.0, 95.0, 75.0, 50.0), _t("range", "<", 131.0, 20.0), _t("gaps", "<", 0.85, 0.05)),
            # The white point pulled down to 165 while the mean stays mid-grey (not a darkened photo).
            _c((165.0, 158.0, 155.0, 151.0, 143.0), _t("p99", "<", 165.0, 10.0), _t("mean", ">", 95.0, 10.0)),
        ),
    ),
    Rule(
        "brighten",
        (
            _c((150.0, 160.0, 169.0, 180.0, 190.0), _t("mean", ">", 150.0, 10.0)),
            # Lifted shadows (mean of the 1st and 5th luma percentiles) with the highlights still near white:
            # brightening; a low-contrast photo lifts its shadows but keeps its highlights down.
            _c(
                (40.0, 50.0, 60.0, 74.0, 92.0),
                _t("shadows", ">", 40.0, 10.0),
                _t("p99", ">", 200.0, 10.0),
                _t("mean", ">", 100.0, 10.0),
            ),
        ),
    ),
    Rule(
        "darken",
        (
            _c((55.0, 45.0, 38.0, 33.0, 28.0), _t("mean", "<", 55.0, 8.0)),
            # The white point pulled down with the shadows crushed to black: a shift down.
            _c((190.0, 172.0, 160.0, 148.0, 125.0), _t("p99", "<", 190.0, 10.0), _t("clip_low", ">", 0.05, 0.03)),
            # Shadows crushed to black on a darkish photo with no highlights clipped: a gamma darkening.
            _c(
                (100.0, 75.0, 60.0, 48.0, 36.0),
                _t("mean", "<", 100.0, 8.0),
                _t("clip_low", ">", 0.13, 0.03),
                _t("clip_high", "<", 0.02, 0.02),
            ),
        ),
    ),
    Rule(
        "saturate_strengthen",
        # Chroma large for the photo's own tonal spread, and many pixels at full saturation.
        (_c((0.25, 0.33, 0.39, 0.46, 0.59), _t("chroma_ratio", ">", 0.25, 0.05), _t("vivid", ">", 0.35, 0.1)),),
    ),
    Rule(
        "saturate_weaken",
        (
            # Clean photos have chroma_p95 of 28 and up. No colour at all (monochrome) counts too, as
            # DQ-495K's strongest desaturation makes exactly that; see MONOCHROME below.
            _c((20.0, 16.0, 12.0, 7.5, 2.0), _t("chroma_p95", "<", 20.0, 4.0)),
            _c((0.03, 0.025, 0.021, 0.018, 0.005), _t("chroma_ratio", "<", 0.03, 0.01)),
        ),
    ),
)

# A monochrome image (chroma_p95 at or below this) may be an intended black-and-white photo: it is still
# called "insufficient saturation" (what DepictQA answers for DQ-495K's grey images), but at most at this
# severity ("moderate": a fair rating, verdict degraded, not bad) and with at most this confidence, below
# flag.DEFAULT_MIN_CONFIDENCE, so that the row is marked for review.
MONOCHROME_CHROMA = 1.5
MONOCHROME_MAX_SEVERITY = 3.0
MONOCHROME_MAX_CONFIDENCE = 0.55

# Scores of the worst distortion by severity 1-5 (fifths of [0, 1], so the rating word follows).
SEVERITY_SCORE = (0.7, 0.5, 0.42, 0.3, 0.1)
CONFIDENCE_SLOPE = math.log(19.0)  # a margin of one unit (about a severity step) gives confidence 0.95


def derived(m: Measurements) -> dict[str, float]:
    """The measurements plus the combinations the rules test."""
    values = m.as_dict()
    values["noise_ratio"] = m.noise / max(m.noise_median, 1e-6)  # NaN (no test passes) when unreadable
    values["both_clipped"] = min(m.clip_low, m.clip_high)
    values["clipped"] = m.clip_low + m.clip_high
    values["range"] = m.p99 - m.p01
    values["shadows"] = (m.p01 + m.p05) / 2
    values["denoised"] = m.noise + 0.3 * max(m.blur - 0.3, 0.0)
    values["chroma_ratio"] = m.chroma / max(m.p95 - m.p05, 1.0)
    return values


@dataclass
class Verdict:
    """The decision for one image."""

    categories: list[str]  # distortions.CATEGORIES keys, most severe first
    severities: list[int]
    score: float
    rating: str
    confidence: float
    margins: dict[str, float]  # per category: its best clause's weakest margin (positive = present)
    values: dict[str, float]
    monochrome: bool = False  # no colour at all: an intended black-and-white photo or a fully desaturated one


def decide(m: Measurements) -> Verdict:
    """Apply RULES to one image's measurements."""
    values = derived(m)
    found: list[tuple[float, str]] = []
    margins: dict[str, float] = {}
    for rule in RULES:
        margin = rule.margin(values)
        margins[rule.category] = margin
        if margin > 0:
            found.append((rule.severity(values), rule.category))
    monochrome = values["chroma_p95"] <= MONOCHROME_CHROMA
    if monochrome:
        found = [(min(s, MONOCHROME_MAX_SEVERITY) if c == "saturate_weaken" else s, c) for s, c in found]
    found.sort(key=lambda item: -item[0])
    # Confidence: the logistic of the weakest decisive margin, 0.5 on a boundary and near 1 far from all.
    finite = [abs(x) for x in margins.values() if math.isfinite(x)]
    weakest = min(finite) if finite else 5.0
    confidence = 1.0 / (1.0 + math.exp(-CONFIDENCE_SLOPE * weakest))
    if monochrome:
        confidence = min(confidence, MONOCHROME_MAX_CONFIDENCE)
    if found:
        worst = found[0][0]
        low = SEVERITY_SCORE[min(4, int(worst))] if worst < 5 else SEVERITY_SCORE[4]
        high = SEVERITY_SCORE[int(worst) - 1]
        score = high + (low - high) * (worst - int(worst))
        score -= 0.05 * (len(found) - 1)  # each further distortion costs a little
    else:
        score = 0.6 + 0.35 * confidence  # 0.775 (good) on a boundary, excellent once clear of it
    score = min(1.0, max(0.0, score))
    return Verdict(
        categories=[category for _, category in found],
        severities=[min(5, int(severity)) for severity, _ in found],
        score=round(score, 3),
        rating=rating_for_score(score),
        confidence=round(confidence, 3),
        margins=margins,
        values=values,
        monochrome=monochrome,
    )


def category_names() -> dict[str, str]:
    """distortions.CATEGORIES (key -> DQ-495K name), imported on first use.

    The decode workers import this package to unpickle `measure`; distortions.py brings scipy.signal and
    scipy.ndimage, about 0.6 s of each worker's start-up that measuring never needs.
    """
    from iqa_cli.distortions import CATEGORIES

    return CATEGORIES


def brief_answer(categories: list[str]) -> str:
    """DepictQA's brief form: "None", "Blur", "Blur and noise" (at most two, most severe first)."""
    if not categories:
        return "None"
    names = [category_names()[c] for c in categories[:2]]
    text = " and ".join(names)
    return text[0].upper() + text[1:]
