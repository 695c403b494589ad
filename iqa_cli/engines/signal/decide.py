"""The signal engine's judgement: thresholds on the measurements -> distortions, severities, rating, confidence."""

from __future__ import annotations

import math
from dataclasses import dataclass

from iqa_cli.distortions import CATEGORIES
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
class Rule:
    """A category is present when every test passes; its severity comes from the first test's feature.

    `steps` are the values of that feature where severities 1-5 begin (steps[0] is its threshold), read
    from the calibration medians of the synthetic distortions (benchmarks/calibrate_signal.py).
    """

    category: str
    tests: tuple[Test, ...]
    steps: tuple[float, float, float, float, float]

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


def _t(feature: str, op: str, threshold: float, unit: float) -> Test:
    return Test(feature, op, threshold, unit)


# All thresholds live here. Values: calibration of 10 photos x 35 functions x 5 severities plus 14 clean
# photos (docs/signal-engine.md has the table). Units are about one severity step, so margins read as
# "how many severity steps from the boundary".
RULES: tuple[Rule, ...] = (
    Rule(
        "pixelate",
        (_t("flat_pairs", ">", 0.25, 0.1), _t("levels", "<", 0.7, 0.1)),
        (0.25, 0.63, 0.66, 0.67, 0.68),
    ),
    Rule(
        "quantization",
        (_t("levels", ">", 0.6, 0.1), _t("noise", "<", 5.0, 1.0)),
        (0.6, 0.95, 0.99, 1.0, 1.01),
    ),
    Rule(
        "noise",
        # 3.6 grey levels: the grain of a scanned film photo (grace_hopper, 3.4) is not called noise.
        (_t("noise_coarse", ">", 3.6, 2.0), _t("noise_ratio", ">", 0.45, 0.1)),
        (3.6, 8.0, 11.0, 14.0, 17.0),
    ),
    Rule(
        "compression",
        (_t("blockiness", ">", 1.3, 0.2), _t("flat_pairs", "<", 0.25, 0.1)),
        (1.3, 1.75, 2.0, 2.35, 2.9),
    ),
    Rule(
        "oversharpen",
        (_t("overshoot", ">", 1.12, 0.1), _t("noise_ratio", "<", 0.45, 0.1), _t("levels", "<", 0.6, 0.1)),
        (1.12, 1.24, 1.35, 1.48, 1.56),
    ),
    Rule("blur", (_t("blur", ">", 0.33, 0.07), _t("noise_coarse", "<", 3.6, 1.0)), (0.33, 0.42, 0.5, 0.6, 0.7)),
    Rule(
        "contrast_strengthen",
        (_t("both_clipped", ">", 0.04, 0.04), _t("levels", "<", 0.6, 0.1), _t("overshoot", "<", 1.12, 0.1)),
        (0.04, 0.1, 0.14, 0.18, 0.22),
    ),
    Rule(
        "contrast_weaken",
        (_t("range", "<", 130.0, 20.0), _t("levels", "<", 0.6, 0.1)),
        (130.0, 110.0, 90.0, 70.0, 50.0),
    ),
    Rule("brighten", (_t("mean", ">", 150.0, 10.0),), (150.0, 160.0, 170.0, 180.0, 190.0)),
    Rule("darken", (_t("mean", "<", 55.0, 8.0),), (55.0, 48.0, 40.0, 32.0, 24.0)),
    Rule(
        "saturate_strengthen",
        (_t("chroma_p95", ">", 88.0, 8.0), _t("vivid", ">", 0.15, 0.1), _t("noise_ratio", "<", 0.45, 0.1)),
        (88.0, 100.0, 105.0, 112.0, 120.0),
    ),
    Rule(
        "saturate_weaken",
        # A monochrome image (no chroma at all) is taken as an intended black-and-white photo, not flagged.
        (_t("chroma_ratio", "<", 0.045, 0.01), _t("chroma_p95", ">", 1.5, 1.0)),
        (0.045, 0.035, 0.025, 0.015, 0.008),
    ),
)

# Scores of the worst distortion by severity 1-5 (fifths of [0, 1], so the rating word follows).
SEVERITY_SCORE = (0.7, 0.5, 0.42, 0.3, 0.1)
CONFIDENCE_SLOPE = math.log(19.0)  # a margin of one unit (about a severity step) gives confidence 0.95


def derived(m: Measurements) -> dict[str, float]:
    """The measurements plus the combinations the rules test."""
    values = m.as_dict()
    values["noise_ratio"] = m.noise / max(m.noise_median, 1e-6)
    values["both_clipped"] = min(m.clip_low, m.clip_high)
    values["range"] = m.p99 - m.p01
    values["chroma_ratio"] = m.chroma / max(m.spread, 1.0)
    return values


@dataclass
class Verdict:
    """The decision for one image."""

    categories: list[str]  # distortions.CATEGORIES keys, most severe first
    severities: list[int]
    score: float
    rating: str
    confidence: float
    margins: dict[str, float]  # per category: the weakest test's margin (positive = present)
    values: dict[str, float]


def decide(m: Measurements) -> Verdict:
    """Apply RULES to one image's measurements."""
    values = derived(m)
    found: list[tuple[float, str]] = []
    margins: dict[str, float] = {}
    for rule in RULES:
        margin = min(test.margin(values[test.feature]) for test in rule.tests)
        margins[rule.category] = margin
        if margin > 0:
            found.append((max(1.0, rule.severity(values[rule.tests[0].feature])), rule.category))
    found.sort(key=lambda item: -item[0])
    # Confidence: the logistic of the weakest decisive margin, 0.5 on a boundary and near 1 far from all.
    finite = [abs(x) for x in margins.values() if math.isfinite(x)]
    weakest = min(finite) if finite else 5.0
    confidence = 1.0 / (1.0 + math.exp(-CONFIDENCE_SLOPE * weakest))
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
    )


def brief_answer(categories: list[str]) -> str:
    """DepictQA's brief form: "None", "Blur", "Blur and noise" (at most two, most severe first)."""
    if not categories:
        return "None"
    names = [CATEGORIES[c] for c in categories[:2]]
    text = " and ".join(names)
    return text[0].upper() + text[1:]
