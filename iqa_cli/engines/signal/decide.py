"""The signal engine's judgement: the learned model's outputs -> distortions, severities, rating, confidence.

- A category is named when it is more likely present than not and its expected severity (presence
  probability x predicted severity) reaches its threshold (chosen on validation photos so that clean photos
  are rarely flagged); at most `max_named` (2, as DQ-495K's answers), the most evident first. Expected
  severity, not the probability alone, because a vivid or bright clean photo looks like DQ-495K's mildest
  setting: the trees give it as high a probability as a heavy distortion, but a low severity.
- Severity: the category's severity regressor, rounded to 1-5.
- Score: from the regressor of the image's worst severity (0 clean - 5), on the scale below, kept on the
  side of the verdict (>= good with nothing named, <= good otherwise), so the rating and the answer agree;
  squeezed there rather than clamped, so that it still ranks images by the regressor's severity.
- Confidence: the probability that the answer's first part is right, calibrated on validation photos
  (isotonic): for "None" from the chance that no category is present, otherwise from the first named
  category's probability. Answers given with confidence 0.9 were right about 90% of the time there.
  That holds for the training corpus's mix (`CALIBRATION_CLEAN_SHARE` of its images clean); given the share
  of clean photos expected in a collection (`clean_share`), Bayes' rule re-weights the chance that the image
  is clean by the ratio of the two priors' odds: the "None" confidence becomes that chance, and a named
  answer's scales with the chance that the image is distorted at all.
- Two guards for images outside anything the trees learned from, by rule:
  - monochrome images (no colour at all) are what DQ-495K's strongest desaturation makes, but also intended
    black-and-white photos: they are always "insufficient saturation", capped at severity 3 and confidence
    0.55 (under the review threshold), never bad;
  - a frame almost entirely black (mean luma under 20) or white (over 240) is "insufficient" or "overly high
    brightness" at severity 5, whatever the trees say: no photograph of the training corpus comes near.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from iqa_cli.categories import CATEGORIES
from iqa_cli.engines.base import rating_for_score
from iqa_cli.engines.signal.model import SignalModel, shipped_model

MONOCHROME_CHROMA = 1.5
MONOCHROME_MAX_SEVERITY = 3
MONOCHROME_MAX_CONFIDENCE = 0.55
BLACK_FRAME_MEAN = 20.0
WHITE_FRAME_MEAN = 240.0

# Quality score by worst severity 0 (clean) to 5: fifths of [0, 1], so the rating word follows.
SEVERITY_SCORE = (0.92, 0.7, 0.5, 0.42, 0.3, 0.1)
CLEAN_FLOOR = 0.61  # nothing named: at least "good"
NAMED_CEILING = 0.79  # something named: at most "good"

# The clean share of the images the confidence was calibrated on: training/train_signal.py's corpus, 12 clean
# copies of each photo among its 82 images (a test holds the two equal).
CALIBRATION_CLEAN_SHARE = 12 / 82


@dataclass
class Verdict:
    """The decision for one image."""

    categories: list[str]  # CATEGORIES keys, most evident (expected severity) first
    severities: list[int]
    score: float
    rating: str
    confidence: float
    probabilities: dict[str, float]  # every category's presence probability
    expected: dict[str, float]  # every category's expected severity (expected_severity)
    quality: float  # the worst-severity regressor's score before it is kept on the answer's side (comparisons)
    values: dict[str, float]  # the features the model read
    monochrome: bool = False


def score_for(worst: float) -> float:
    """The 0-1 quality score for a continuous worst severity (0 clean - 5)."""
    return float(np.interp(worst, np.arange(6), SEVERITY_SCORE))


PRESENCE_FLOOR = 0.5  # a category is never named while it is more likely absent than present


def expected_severity(presence: np.ndarray, severity: np.ndarray) -> np.ndarray:
    """Per category: presence probability x predicted severity (1-5)."""
    return presence * np.clip(severity, 1.0, 5.0)


def evidence(presence: np.ndarray, severity: np.ndarray) -> np.ndarray:
    """What the thresholds are on: the expected severity, 0 where the presence is under the floor."""
    return np.where(presence >= PRESENCE_FLOOR, expected_severity(presence, severity), 0.0)


def name_categories(evident: np.ndarray, thresholds: np.ndarray, max_named: int) -> list[int]:
    """Indices of the categories named: `evidence` at or over their threshold, most evident first, at most
    `max_named`."""
    return [i for i in np.argsort(-evident, kind="stable") if evident[i] > 0 and evident[i] >= thresholds[i]][
        :max_named
    ]


def answer_probability(presence: np.ndarray, named: list[int]) -> float:
    """The uncalibrated probability that the answer's first part is right: its first named category is
    present, or, for "None", that no category is."""
    return float(presence[named[0]]) if named else float(np.prod(1.0 - presence))


def shift_prior(probability: float, share: float, calibrated_share: float = CALIBRATION_CLEAN_SHARE) -> float:
    """A probability of "clean" calibrated where `calibrated_share` of the images were clean, where `share` are:
    its odds times the ratio of the two priors' odds (Bayes' rule; the evidence is the same)."""
    if probability <= 0.0 or probability >= 1.0:
        return probability
    odds = probability / (1.0 - probability) * (share / (1.0 - share)) / (calibrated_share / (1.0 - calibrated_share))
    return odds / (1.0 + odds)


def severity_step(severity: float) -> int:
    """A continuous severity as the 1-5 step reported."""
    return int(min(5, max(1, round(float(severity)))))


# Where `held_score` squeezes a quality from outside its band: this much inside each edge of the band.
HELD_MARGIN = 0.04


def _squeezed(quality: float, low: float, high: float) -> float:
    """`quality` inside [low, high], order kept: unchanged between low + m and high - m (m: HELD_MARGIN, or a
    quarter of a narrow band), and the qualities beyond, from the scale's ends (score_for(5), score_for(0)),
    mapped linearly into those margins. Clamping to the edges instead would give every image past an edge
    the same score, and a score that cannot rank them."""
    lowest, highest = SEVERITY_SCORE[-1], SEVERITY_SCORE[0]
    margin = min(HELD_MARGIN, (high - low) / 4)
    if quality < low + margin:
        return low + margin * max(0.0, quality - lowest) / (low + margin - lowest)
    if quality > high - margin and high < highest:
        return high - margin + margin * min(1.0, (quality - high + margin) / (highest - high + margin))
    return quality


def held_score(quality: float, severities: list[int]) -> float:
    """The score shown: `quality` kept on the answer's side, in order (>= good with nothing named; with
    distortions named, at most good and within half a step of the worst named severity)."""
    if not severities:
        return _squeezed(quality, CLEAN_FLOOR, 1.0)
    worst = max(severities)
    return _squeezed(quality, score_for(worst + 0.5), min(NAMED_CEILING, score_for(worst - 0.5)))


def _guarded(
    values: dict[str, float],
    categories: list[str],
    severities: list[int],
    confidence: float,
    probabilities: dict[str, float],
    limit: int,
) -> tuple[list[str], list[int], float, bool]:
    """The rules for what the trees never saw (module docstring): blank frames, then monochrome images."""
    mean = values.get("mean", 128.0)
    extreme = "darken" if mean < BLACK_FRAME_MEAN else "brighten" if mean > WHITE_FRAME_MEAN else None
    if extreme is not None:
        if extreme in categories:
            severities = [s for c, s in zip(categories, severities, strict=True) if c != extreme]
            categories = [c for c in categories if c != extreme]
        categories, severities = [extreme, *categories][:limit], [5, *severities][:limit]
        confidence = max(confidence, probabilities[extreme])
    monochrome = values.get("chroma_p95", math.inf) <= MONOCHROME_CHROMA
    if monochrome:
        if "saturate_weaken" not in categories:
            categories = [*categories[: limit - 1], "saturate_weaken"]
            severities = [*severities[: limit - 1], MONOCHROME_MAX_SEVERITY]
        at = categories.index("saturate_weaken")
        severities[at] = min(severities[at], MONOCHROME_MAX_SEVERITY)
        confidence = min(confidence, MONOCHROME_MAX_CONFIDENCE)
    return categories, severities, confidence, monochrome


def decide_many(
    rows: list[dict[str, float]], model: SignalModel | None = None, clean_share: float | None = None
) -> list[Verdict]:
    """Decide each feature row (features.extract) with the model (the shipped one by default); `clean_share`:
    the share of clean images expected among them, for the confidence (None: the training corpus's)."""
    if not rows:
        return []
    model = model or shipped_model()
    prediction = model.predict(model.matrix(rows))
    evident = evidence(prediction.presence, prediction.severity)
    expected = expected_severity(prediction.presence, prediction.severity)
    verdicts = []
    for n, values in enumerate(rows):
        p = prediction.presence[n]
        probabilities = {c: float(p[i]) for i, c in enumerate(model.categories)}
        named = name_categories(evident[n], model.thresholds, model.max_named)
        kind = "named" if named else "none"
        confidence = float(model.calibration[kind](np.array([answer_probability(p, named)]))[0])
        if clean_share is not None:
            # The calibrated chance that the image is clean: a "None" answer's own confidence.
            clean = float(model.calibration["none"](np.array([answer_probability(p, [])]))[0]) if named else confidence
            shifted = shift_prior(clean, clean_share)
            if not named:
                confidence = shifted
            elif clean < 1.0:
                # A named category can be present only in a distorted image: its chance scales with that one's.
                confidence = min(1.0, confidence * (1.0 - shifted) / (1.0 - clean))
        categories, severities, confidence, monochrome = _guarded(
            values,
            [model.categories[i] for i in named],
            [severity_step(prediction.severity[n, i]) for i in named],
            confidence,
            probabilities,
            model.max_named,
        )
        quality = score_for(float(prediction.worst[n]))
        score = held_score(quality, severities)
        verdicts.append(
            Verdict(
                categories=categories,
                severities=severities,
                score=round(score, 3),
                rating=rating_for_score(score),
                confidence=round(confidence, 3),
                probabilities={c: round(v, 4) for c, v in probabilities.items()},
                expected={c: round(float(expected[n, i]), 3) for i, c in enumerate(model.categories)},
                quality=round(quality, 3),
                values=values,
                monochrome=monochrome,
            )
        )
    return verdicts


def decide(values: dict[str, float], model: SignalModel | None = None, clean_share: float | None = None) -> Verdict:
    """Decide one feature row."""
    return decide_many([values], model, clean_share)[0]


def brief_answer(categories: list[str]) -> str:
    """DepictQA's brief form: "None", "Blur", "Blur and noise" (at most two, first named first)."""
    if not categories:
        return "None"
    text = " and ".join(CATEGORIES[c] for c in categories[:2])
    return text[0].upper() + text[1:]
