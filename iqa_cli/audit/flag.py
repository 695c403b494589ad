"""Flagging: a verdict from the rating and distortions, and a review flag from the confidence."""

from __future__ import annotations

from iqa_cli.defaults import DEFAULT_MIN_CONFIDENCE as DEFAULT_MIN_CONFIDENCE  # the --min-confidence default
from iqa_cli.engines.base import Assessment


def verdict_for(result: Assessment) -> str:
    """`bad` when rated poor or bad; `degraded` when rated fair or any distortion is named; else `ok`.

    Engines that give no rating (the model's brief answer alone) are judged on distortions only.
    """
    if result.rating in ("poor", "bad"):
        return "bad"
    if result.rating == "fair" or result.distortions:
        return "degraded"
    return "ok"


def needs_review(confidence: float | None, detail_confidence: float | None, min_confidence: float) -> bool:
    """True when the engine is less sure of its answer (or of its detail paragraph) than the user asked for.

    Takes the two numbers, not an assessment, so that rows replayed from the store are flagged by the same rule
    (--min-confidence is not part of what the store remembers)."""
    return any(c is not None and c < min_confidence for c in (confidence, detail_confidence))
