"""The built-in `signal` engine: DepictQA's distortion and rating answers from measurements and learned trees."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from iqa_cli.categories import CATEGORIES
from iqa_cli.engines.base import (
    Assessment,
    AssessRequest,
    Comparison,
    Engine,
    EngineOptions,
    Prepared,
    Preparer,
)
from iqa_cli.engines.signal.decide import Verdict, brief_answer, decide_many
from iqa_cli.engines.signal.features import ANALYSIS_SIDE, DECODE_PLAN, NATIVE_CROP, extract
from iqa_cli.engines.signal.measure import MAX_TILES, TILE
from iqa_cli.engines.signal.model import ModelFileError, SignalModel, read_model, shipped_model
from iqa_cli.errors import ModelFilesError
from iqa_cli.images import DecodePlan

# DepictQA-style questions for the two tasks this engine answers.
BRIEF_TASK = "distortion_identification"
BRIEF_QUESTION = "What distortions are present in the image? Answer the question using a single word or phrase."
DETAIL_QUESTION = "Evaluate the quality of the image and provide a comprehensive explanation."

# The measured number an explanation quotes for each category: the measurement that shows it most directly.
_EVIDENCE: dict[str, tuple[str, str]] = {
    "blur": ("blur", "the sharpest parts keep only {keep:.0%} of their detail after re-blurring (blur {v:.2f})"),
    "noise": ("native_noise", "noise of about {v:.1f} grey levels even in the flattest areas"),
    "compression": ("native_blockiness", "8x8 block edges {v:.2f} times stronger than other pixel steps"),
    "brighten": ("mean", "a mean brightness of {v:.0f}/255"),
    "darken": ("mean", "a mean brightness of {v:.0f}/255"),
    "contrast_strengthen": ("clipped", "{v:.0%} of the pixels clipped to black or white"),
    "contrast_weaken": ("range", "tones spanning only {v:.0f} of 255 levels"),
    "saturate_strengthen": ("vivid", "{v:.0%} of the lit pixels fully saturated"),
    "saturate_weaken": ("chroma_p95", "little colour (95th-percentile chroma {v:.0f})"),
    "oversharpen": ("native_halo", "bright and dark halos beside edges ({v:.2f} of the edge step)"),
    "pixelate": ("native_flat_pairs", "{v:.0%} of neighbours on strong detail identical (blocky pixels)"),
    "quantization": ("native_gaps", "{v:.0%} of each colour channel's levels left empty (few distinct colours)"),
}
_MONOCHROME = "no colour at all: a black-and-white photo, or one whose colour was removed (marked for review)"
_SEVERITY_WORDS = ("", "slight", "noticeable", "moderate", "strong", "severe")


def _evidence(category: str, verdict: Verdict) -> str:
    if category == "saturate_weaken" and verdict.monochrome:
        return _MONOCHROME
    values = verdict.values
    if category == "compression" and math.isfinite(values.get("jpeg_quality", math.nan)):
        text = f"the file was saved at JPEG quality {values['jpeg_quality']:.0f}"
    else:
        feature, template = _EVIDENCE[category]
        value = values.get(feature, math.nan)
        text = template.format(v=value, keep=1.0 - value) if math.isfinite(value) else "see the probabilities"
    return (
        f"{text}; model probability {verdict.probabilities[category]:.2f}, "
        f"expected severity {verdict.expected[category]:.1f}"
    )


def _number(value: float, spec: str) -> str:
    # Measures that do not apply (a flat or tiny image) are NaN: say so rather than print "nan".
    return format(value, spec) if math.isfinite(value) else "unmeasurable"


def explain(verdict: Verdict) -> str:
    """The detail paragraph: the verdict, the measured numbers behind it and the model's probabilities."""
    values = verdict.values
    names = CATEGORIES
    if verdict.categories:
        parts = [
            f"{_SEVERITY_WORDS[s]} {names[c]} ({_evidence(c, verdict)})"
            for c, s in zip(verdict.categories, verdict.severities, strict=True)
        ]
        opening = "The image shows " + "; ".join(parts) + "."
    else:
        opening = (
            f"No distortion stands out: the sharpest areas keep {_number(1.0 - values['blur'], '.0%')} of their "
            f"detail, noise is about {_number(values['native_noise'], '.1f')} grey levels, mean brightness "
            f"{values['mean']:.0f}/255 with tones spanning {values['range']:.0f} levels, and chroma "
            f"{values['chroma']:.0f}."
        )
    runner_up = max(
        (c for c in verdict.probabilities if c not in verdict.categories),
        key=lambda c: verdict.probabilities[c],
        default=None,
    )
    closing = f" Overall quality is {verdict.rating} (score {verdict.score:.2f})"
    if runner_up is not None:
        # Its expected severity says why it was not named: a clean vivid photo is "probably" a slight saturation.
        closing += (
            f"; the most likely other distortion is {names[runner_up]} (probability "
            f"{verdict.probabilities[runner_up]:.2f}, expected severity {verdict.expected[runner_up]:.1f})"
        )
    return opening + closing + f"; confidence {verdict.confidence:.2f}."


class SignalEngine(Engine):
    """Answers DepictQA's distortion and rating questions from pixel measurements (no model to install)."""

    name = "signal"
    version = "1.0.0"
    description = "Built-in pixel measurements and learned trees answering DepictQA's distortion and rating questions."

    def __init__(self, clean_share: float | None = None, model: SignalModel | None = None) -> None:
        self.clean_share = clean_share
        self._model = model

    @property
    def model(self) -> SignalModel:
        """The model given, else the shipped one (read when first needed, once per process)."""
        return self._model or shipped_model()

    @classmethod
    def create(cls, options: EngineOptions) -> SignalEngine:
        """The expected clean share, and `--model` as a model file written by training/train_signal.py (the
        shipped one by default); the device and dtype options do not apply."""
        if not options.model_dir:
            return cls(clean_share=options.clean_share)
        try:
            model = read_model(Path(options.model_dir).expanduser())
        except ModelFileError as exc:
            raise ModelFilesError(
                f"{exc} (--model for the signal engine is a file from training/train_signal.py)"
            ) from None
        return cls(clean_share=options.clean_share, model=model)

    @property
    def decode_plan(self) -> DecodePlan:
        """The analysis size plus a native-resolution crop (features.py)."""
        return DECODE_PLAN

    def settings(self) -> dict[str, Any]:
        """The version, analysis sizes and the model's identity: what changes answers."""
        model = self.model
        return {
            "engine": self.name,
            "version": self.version,
            "long_side": ANALYSIS_SIDE,
            "native_crop": NATIVE_CROP,
            "tile": TILE,
            "max_tiles": MAX_TILES,
            "model": model.info.get("id", "unknown"),
            "thresholds": {c: round(float(t), 4) for c, t in zip(model.categories, model.thresholds, strict=True)},
            # Only when given: stores made with the training mix's confidences stay valid.
            **({"clean_share": self.clean_share} if self.clean_share is not None else {}),
        }

    @property
    def preferred_batch_size(self) -> int:
        """Assessing is a few comparisons per image: large batches only cut per-call overhead."""
        return 64

    def preparer(self) -> Preparer:
        """The module-level `extract` function: runs in the decode workers."""
        return extract

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
            compare_signal(a.payload, b.payload, r.payload if r else None, detail=request.detail, model=self.model)
            for a, b, r in pairs
        ]

    def assess(self, batch: Sequence[Prepared], request: AssessRequest) -> list[Assessment]:
        """Decide the batch's feature rows with the model in one pass."""
        verdicts = decide_many([item.payload for item in batch], self.model, clean_share=self.clean_share)
        return [self._assessment(verdict, request) for verdict in verdicts]

    def _assessment(self, verdict: Verdict, request: AssessRequest) -> Assessment:
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
