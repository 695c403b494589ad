"""The built-in `signal` engine: DepictQA's distortion and rating answers from pixel measurements, no model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from iqa_cli.distortions import CATEGORIES
from iqa_cli.engines.base import (
    Assessment,
    AssessRequest,
    Engine,
    EngineOptions,
    Prepared,
    Preparer,
)
from iqa_cli.engines.signal.decide import RULES, Verdict, brief_answer, decide
from iqa_cli.engines.signal.measure import MAX_TILES, TILE, Measurements, measure
from iqa_cli.images import DecodePlan

# DepictQA-style questions for the two tasks this engine answers.
BRIEF_TASK = "distortion_identification"
BRIEF_QUESTION = "What distortions are present in the image? Answer the question using a single word or phrase."
DETAIL_QUESTION = "Evaluate the quality of the image and provide a comprehensive explanation."

# Judged at a viewing scale: 768 px on the long side (512 px short side for 3:2), about twice what
# DepictQA-Wild sees (224 px short side), and small enough to measure in ~12 ms on one core.
DECODE_PLAN = DecodePlan(long_side=768, draft=True)

# What each category's explanation quotes: (measurement, how to say it).
_EVIDENCE: dict[str, tuple[str, str]] = {
    "blur": ("blur", "the sharpest parts keep only {:.0%} of their detail after re-blurring (blur {:.2f})"),
    "noise": ("noise_coarse", "noise of about {:.1f} grey levels even in the flattest areas"),
    "compression": ("blockiness", "8x8 block edges {:.2f} times stronger than other pixel steps"),
    "brighten": ("mean", "a mean brightness of {:.0f}/255"),
    "darken": ("mean", "a mean brightness of {:.0f}/255"),
    "contrast_strengthen": ("both_clipped", "{:.0%} of the pixels clipped to black and as many to white"),
    "contrast_weaken": ("range", "tones spanning only {:.0f} of 255 levels"),
    "saturate_strengthen": ("chroma_p95", "colours at {:.0f} chroma, many fully saturated"),
    "saturate_weaken": ("chroma_ratio", "colour only {:.3f} of the tonal range (chroma/contrast)"),
    "oversharpen": ("overshoot", "edge halos {:.2f} times the edge gradient"),
    "pixelate": ("flat_pairs", "{:.0%} of neighbours on strong detail being identical (blocky pixels)"),
    "quantization": ("levels", "{:.0%} of each colour channel on just 16 levels"),
}
_SEVERITY_WORDS = ("", "slight", "noticeable", "moderate", "strong", "severe")


def _evidence(category: str, values: dict[str, float]) -> str:
    feature, text = _EVIDENCE[category]
    value = values[feature]
    if category == "blur":
        return text.format(1.0 - value, value)
    return text.format(value)


def explain(verdict: Verdict) -> str:
    """The detail paragraph: the verdict and the measured numbers behind it."""
    values = verdict.values
    if verdict.categories:
        parts = [
            f"{_SEVERITY_WORDS[s]} {CATEGORIES[c]} ({_evidence(c, values)})"
            for c, s in zip(verdict.categories, verdict.severities, strict=True)
        ]
        opening = "The image shows " + "; ".join(parts) + "."
    else:
        opening = (
            f"No distortion stands out: the sharpest areas keep {1.0 - values['blur']:.0%} of their detail, "
            f"noise is about {values['noise_coarse']:.1f} grey levels, mean brightness {values['mean']:.0f}/255 "
            f"with tones spanning {values['range']:.0f} levels, and chroma {values['chroma']:.0f}."
        )
    closest = min(verdict.margins, key=lambda c: abs(verdict.margins[c]))
    closing = (
        f" Overall quality is {verdict.rating} (score {verdict.score:.2f}); the closest call is "
        f"{CATEGORIES[closest]}, {abs(verdict.margins[closest]):.1f} severity steps from its threshold "
        f"(confidence {verdict.confidence:.2f})."
    )
    return opening + closing


class SignalEngine(Engine):
    """Answers DepictQA's distortion and rating questions from pixel measurements (no model to install)."""

    name = "signal"
    version = "0.1.0"
    description = "Built-in pixel measurements answering DepictQA's distortion and rating questions."

    @classmethod
    def create(cls, options: EngineOptions) -> SignalEngine:
        """The signal engine has no options: the model, device and dtype options do not apply."""
        return cls()

    @property
    def decode_plan(self) -> DecodePlan:
        """768 px on the long side, JPEG draft decoding allowed."""
        return DECODE_PLAN

    def settings(self) -> dict[str, Any]:
        """The version, analysis size and thresholds: what changes answers."""
        return {
            "engine": self.name,
            "version": self.version,
            "long_side": DECODE_PLAN.long_side,
            "tile": TILE,
            "max_tiles": MAX_TILES,
            "thresholds": {
                rule.category: {test.feature: f"{test.op}{test.threshold:g}" for test in rule.tests} for rule in RULES
            },
        }

    def preparer(self) -> Preparer:
        """The module-level `measure` function: runs in the decode workers."""
        return measure

    def assess(self, batch: Sequence[Prepared], request: AssessRequest) -> list[Assessment]:
        """Decide each prepared image from its measurements."""
        return [self._assess_one(item.payload, request) for item in batch]

    def _assess_one(self, measurements: Measurements, request: AssessRequest) -> Assessment:
        verdict = decide(measurements)
        confidence = verdict.confidence if math.isfinite(verdict.confidence) else 0.5
        return Assessment(
            task=BRIEF_TASK,
            question=BRIEF_QUESTION,
            answer=brief_answer(verdict.categories),
            distortions=[CATEGORIES[c] for c in verdict.categories],
            severities=verdict.severities,
            rating=verdict.rating,
            score=verdict.score,
            confidence=confidence,
            detail=explain(verdict) if request.detail else None,
            detail_question=DETAIL_QUESTION if request.detail else None,
        )
