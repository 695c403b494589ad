"""Report rows for tests, built by the schema's own row builders (so they are exactly what an audit writes)."""

from __future__ import annotations

from collections.abc import Sequence

from iqa_cli.audit.exif import ExifInfo
from iqa_cli.engines.base import Assessment
from iqa_cli.images import FileFacts
from iqa_cli.report.schema import EngineStamp, ReportRow, assessed_row

STAMP = EngineStamp("test-engine", "1.0", {"size": 64})


def ok_row(
    path: str,
    *,
    verdict: str = "ok",
    score: float | None = 0.9,
    confidence: float = 0.9,
    needs_review: bool = False,
    answer: str = "None",
    distortions: Sequence[str] = (),
    rating: str | None = "good",
    stamp: EngineStamp = STAMP,
    file_size: int = 1000,
    content_hash: str | None = None,
    image_format: str = "PNG",
    exif: ExifInfo | None = None,
    notes: Sequence[str] = (),
    question: str = "What distortions?",
    elapsed_ms: float = 5.0,
) -> ReportRow:
    """A complete assessed row of a 64 x 48 image; each distortion at severity 3."""
    result = Assessment(
        task="distortion_identification",
        question=question,
        answer=answer,
        distortions=list(distortions),
        severities=[3] * len(distortions),
        rating=rating,
        score=score,
        confidence=confidence,
    )
    facts = FileFacts(
        path=path,
        file_size=file_size,
        content_hash=content_hash,
        width=64,
        height=48,
        format=image_format,
        exif=exif or ExifInfo(),
        notes=list(notes),
    )
    return assessed_row(facts, stamp, result, verdict=verdict, needs_review=needs_review, elapsed_ms=elapsed_ms)
