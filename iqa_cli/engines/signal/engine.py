"""The built-in `signal` engine: DepictQA's distortion and rating answers from pixel measurements, no model."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from iqa_cli.engines.base import (
    Assessment,
    AssessRequest,
    Comparison,
    Engine,
    EngineOptions,
    Prepared,
    Preparer,
)
from iqa_cli.engines.signal.decide import RULES, Verdict, brief_answer, category_names, decide
from iqa_cli.engines.signal.measure import MAX_TILES, TILE, Measurements, measure
from iqa_cli.images import DecodePlan

# DepictQA-style questions for the two tasks this engine answers.
BRIEF_TASK = "distortion_identification"
BRIEF_QUESTION = "What distortions are present in the image? Answer the question using a single word or phrase."
DETAIL_QUESTION = "Evaluate the quality of the image and provide a comprehensive explanation."

# Judged at a viewing scale: 768 px on the long side (512 px short side for 3:2), about twice what
# DepictQA-Wild sees (224 px short side), and small enough to measure in ~7 ms on one core.
DECODE_PLAN = DecodePlan(long_side=768, draft=True)

# What an explanation quotes for each (category, feature of the clause that fired).
_EVIDENCE: dict[tuple[str, str], str] = {
    ("blur", "blur"): "the sharpest parts keep only {keep:.0%} of their detail after re-blurring (blur {v:.2f})",
    ("blur", "blur_dir"): "detail lost along one direction everywhere (directional blur {v:.2f}), as in motion blur",
    ("blur", "radial"): "detail lost along the lines from the centre (radial share {v:.2f}), as in zoom blur",
    ("blur", "lag"): "neighbouring pixels scrambled (steps over 3 px only {v:.2f} times those over 1 px)",
    ("noise", "noise_coarse"): "noise of about {v:.1f} grey levels even in the flattest areas",
    ("noise", "noise"): "noise of about {v:.1f} grey levels even in the flattest areas",
    ("compression", "blockiness"): "8x8 block edges {v:.2f} times stronger than other pixel steps",
    ("compression", "jpeg_quality"): "the file was saved at JPEG quality {v:.0f}",
    ("compression", "noise"): "no grain left at all in the flat areas ({v:.2f} grey levels) while detail remains",
    ("compression", "denoised"): "soft, with flat areas smoother than blur alone leaves them ({v:.2f})",
    ("brighten", "mean"): "a mean brightness of {v:.0f}/255",
    ("brighten", "shadows"): "the darkest tones lifted to {v:.0f}/255",
    ("darken", "mean"): "a mean brightness of {v:.0f}/255",
    ("darken", "p99"): "the brightest tones only reach {v:.0f}/255, with shadows crushed to black",
    ("contrast_strengthen", "both_clipped"): "{v:.0%} of the pixels clipped to black and as many to white",
    ("contrast_strengthen", "std"): "a tonal spread of {v:.0f} grey levels (standard deviation)",
    ("contrast_strengthen", "clipped"): "{v:.0%} of the pixels clipped to black or white",
    ("contrast_weaken", "range"): "tones spanning only {v:.0f} of 255 levels",
    ("contrast_weaken", "p99"): "the brightest tones only reach {v:.0f}/255",
    ("saturate_strengthen", "chroma_ratio"): "colour {v:.2f} of the tonal spread, many pixels fully saturated",
    ("saturate_weaken", "chroma_p95"): "little colour (95th-percentile chroma {v:.0f})",
    ("saturate_weaken", "chroma_ratio"): "colour only {v:.3f} of the tonal spread",
    ("oversharpen", "halo"): "bright and dark halos beside edges ({v:.2f} of the edge step) and amplified grain",
    ("pixelate", "flat_pairs"): "{v:.0%} of neighbours on strong detail being identical (blocky pixels)",
    ("quantization", "gaps"): "{v:.0%} of each colour channel's levels left empty (few distinct colours)",
}
_MONOCHROME = "no colour at all: a black-and-white photo, or one whose colour was removed (marked for review)"
_SEVERITY_WORDS = ("", "slight", "noticeable", "moderate", "strong", "severe")
_RULES = {rule.category: rule for rule in RULES}


def _evidence(category: str, verdict: Verdict) -> str:
    if category == "saturate_weaken" and verdict.monochrome:
        return _MONOCHROME
    feature = _RULES[category].strongest(verdict.values).tests[0].feature
    value = verdict.values[feature]
    return _EVIDENCE[category, feature].format(v=value, keep=1.0 - value)


def explain(verdict: Verdict) -> str:
    """The detail paragraph: the verdict and the measured numbers behind it."""
    values = verdict.values
    names = category_names()
    if verdict.categories:
        parts = [
            f"{_SEVERITY_WORDS[s]} {names[c]} ({_evidence(c, verdict)})"
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
        f"{names[closest]}, {abs(verdict.margins[closest]):.1f} severity steps from its threshold "
        f"(confidence {verdict.confidence:.2f})."
    )
    return opening + closing


class SignalEngine(Engine):
    """Answers DepictQA's distortion and rating questions from pixel measurements (no model to install)."""

    name = "signal"
    version = "0.2.0"
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
                rule.category: [
                    {test.feature: f"{test.op}{test.threshold:g}" for test in clause.tests} for clause in rule.clauses
                ]
                for rule in RULES
            },
        }

    @property
    def preferred_batch_size(self) -> int:
        """Assessing is a few comparisons per image: large batches only cut per-call overhead."""
        return 64

    def preparer(self) -> Preparer:
        """The module-level `measure` function: runs in the decode workers."""
        return measure

    def compare_preparer(self) -> Preparer:
        """Measurements plus a small grey copy: full-reference comparisons need pixels."""
        # Imported when comparing: scikit-image's SSIM would add ~0.25 s to every audit worker's start-up.
        from iqa_cli.engines.signal.compare import prepare_compare

        return prepare_compare

    def compare(
        self, pairs: Sequence[tuple[Prepared, Prepared, Prepared | None]], request: AssessRequest
    ) -> list[Comparison]:
        """SSIM against the reference when there is one, else the quality score (see compare.py)."""
        from iqa_cli.engines.signal.compare import compare_signal

        return [
            compare_signal(a.payload, b.payload, r.payload if r else None, detail=request.detail) for a, b, r in pairs
        ]

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
            distortions=[category_names()[c] for c in verdict.categories],
            severities=verdict.severities,
            rating=verdict.rating,
            score=verdict.score,
            confidence=confidence,
            detail=explain(verdict) if request.detail else None,
            detail_question=DETAIL_QUESTION if request.detail else None,
        )
