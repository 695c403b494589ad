"""The report's one schema: every column, its Arrow type and meaning, and how a result becomes a row."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict, cast

import pyarrow as pa

from iqa_cli.engines.base import Assessment
from iqa_cli.images import FileFacts


def _list_of(item: pa.DataType) -> pa.DataType:
    # Parquet names list items "element"; naming them so here makes a written file's schema equal SCHEMA.
    return pa.list_(pa.field("element", item))


# (name, type, meaning). The README's schema table is generated from this list by tests/test_docs.py.
COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("path", pa.string(), "absolute file path (bytes that are not UTF-8 as `\\xNN`; JSONL keeps them exactly)"),
    ("path_bytes", pa.binary(), "the path's exact bytes when it is not valid UTF-8, else null (hex in CSV and JSONL)"),
    ("root", pa.string(), "the file, folder or list entry given, as typed, under which the file was found"),
    (
        "sample_key",
        pa.string(),
        "an image in a container: its WebDataset key (`00000/000000012`) or --id-column value",
    ),
    (
        "source_meta",
        pa.string(),
        "an image in a container: JSON of its side-car (`url`, `caption`, ...) or row's other columns",
    ),
    ("status", pa.string(), "`ok` when the image was assessed, `error` when it could not be"),
    ("error_code", pa.string(), "short stable code when status is error (e.g. `truncated`, `not_an_image`)"),
    ("error", pa.string(), "what went wrong, for people"),
    ("file_size", pa.int64(), "bytes"),
    ("content_hash", pa.string(), "BLAKE2b-128 of the file bytes, hex"),
    ("width", pa.int32(), "pixels, after EXIF orientation"),
    ("height", pa.int32(), "pixels, after EXIF orientation"),
    ("format", pa.string(), "Pillow's format name (JPEG, PNG, ...)"),
    ("jpeg_quality", pa.int32(), "JPEG files: the encoder's quality setting (1-100), from the quantization tables"),
    ("camera_make", pa.string(), "EXIF Make"),
    ("camera_model", pa.string(), "EXIF Model"),
    ("captured_at", pa.timestamp("ms"), "EXIF DateTimeOriginal (else DateTime), camera local time"),
    ("exposure_time", pa.float64(), "EXIF ExposureTime, seconds"),
    ("iso", pa.int32(), "EXIF ISOSpeedRatings"),
    ("f_number", pa.float64(), "EXIF FNumber"),
    ("focal_length", pa.float64(), "EXIF FocalLength, mm"),
    ("orientation", pa.int32(), "EXIF Orientation (1-8), already applied to the pixels"),
    ("notes", _list_of(pa.string()), "things worth knowing about the file (animated, CMYK, 16-bit, ...)"),
    ("engine", pa.string(), "engine name"),
    ("engine_version", pa.string(), "engine version"),
    ("engine_settings", pa.string(), "JSON of the settings that change answers"),
    ("task", pa.string(), "the task of `question` and `answer` (`distortion_identification`)"),
    ("question", pa.string(), "the question asked"),
    ("answer", pa.string(), "brief answer in DepictQA's form (`Blur`, `Blur and noise`, `None`)"),
    ("detail_question", pa.string(), "with --detail: the assessment-reasoning question asked"),
    ("detail", pa.string(), "with --detail: the explanatory paragraph answering it"),
    ("distortions", _list_of(pa.string()), "DQ-495K distortion names, most severe first"),
    (
        "severities",
        _list_of(pa.int8()),
        "severity 1-5 of each distortion (empty where the engine gives none)",
    ),
    ("rating", pa.string(), "instant rating: excellent, good, fair, poor or bad"),
    ("score", pa.float64(), "quality score in [0, 1], 1 best"),
    ("confidence", pa.float64(), "engine's confidence in its answer, [0, 1]"),
    ("detail_confidence", pa.float64(), "engine's confidence in the detail paragraph, where it has one"),
    ("duplicate_of", pa.string(), "the first file of this run with the same bytes, when this is a copy"),
    ("findings", _list_of(pa.string()), "what plugin checks noticed, as `check/code: message`"),
    ("verdict", pa.string(), "`ok`, `degraded` or `bad` (see Flagging)"),
    ("needs_review", pa.bool_(), "confidence under --min-confidence"),
    ("elapsed_ms", pa.float64(), "time spent on this image (decode + engine share), milliseconds"),
]

# The values of the `verdict` column, best first.
VERDICTS = ("ok", "degraded", "bad")

SCHEMA = pa.schema([pa.field(name, dtype) for name, dtype, _ in COLUMNS])
COLUMN_NAMES = [name for name, _, _ in COLUMNS]


class ReportRow(TypedDict):
    """One report row as the writers, the store, the summary and plugins receive it: the columns of COLUMNS,
    in order (tests/test_docs.py holds the two together). Absent values are None.

    The builders below keep its text valid UTF-8 (`safe_text` on the path, the error and the findings, which may
    quote a name that is not UTF-8), so any writer can write it; the exact bytes of such a name are `path_bytes`
    (`file_name` gives the name back as Python holds it)."""

    path: str
    path_bytes: bytes | None
    root: str | None
    sample_key: str | None
    source_meta: str | None
    status: str
    error_code: str | None
    error: str | None
    file_size: int | None
    content_hash: str | None
    width: int | None
    height: int | None
    format: str | None
    jpeg_quality: int | None
    camera_make: str | None
    camera_model: str | None
    captured_at: datetime | None
    exposure_time: float | None
    iso: int | None
    f_number: float | None
    focal_length: float | None
    orientation: int | None
    notes: list[str]
    engine: str | None
    engine_version: str | None
    engine_settings: str | None
    task: str | None
    question: str | None
    answer: str | None
    detail_question: str | None
    detail: str | None
    distortions: list[str]
    severities: list[int]
    rating: str | None
    score: float | None
    confidence: float | None
    detail_confidence: float | None
    duplicate_of: str | None
    findings: list[str]
    verdict: str | None
    needs_review: bool | None
    elapsed_ms: float | None


@dataclass(frozen=True)
class EngineStamp:
    """Which engine produced a row, and with what settings."""

    name: str
    version: str
    settings: dict[str, Any]

    def settings_json(self) -> str:
        return json.dumps(self.settings, sort_keys=True, default=str)


# Lone surrogates: what Python makes of the bytes of a name that is not UTF-8 (os.fsdecode's surrogateescape
# gives U+DC80-U+DCFF); UTF-8 cannot encode them, so no writer can write them as they are.
_SURROGATES = re.compile("[\ud800-\udfff]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def safe_text(text: str) -> str:
    """`text` writable as UTF-8: each byte of a non-UTF-8 file name (a lone surrogate U+DC80-U+DCFF) shown as
    \\xNN, any other lone surrogate as \\udXXX; text without them is returned as it is."""
    return _SURROGATES.sub(_escaped, text) if _SURROGATES.search(text) else text


def writable_cell(value: Any) -> Any:
    """A cell with its text (lists' items too) writable as UTF-8 (`safe_text`); other values as they are."""
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, list):
        return [writable_cell(item) for item in value]
    return value


def path_columns(path: str) -> dict[str, Any]:
    """The `path` and `path_bytes` columns of a file name as Python holds it (os.fsdecode's text, where the
    bytes of a name that is not UTF-8 are lone surrogates): readable text, and the exact bytes when needed."""
    if not _SURROGATES.search(path):
        return {"path": path, "path_bytes": None}
    try:
        exact = os.fsencode(path)
    except UnicodeEncodeError:  # a surrogate no file system decodes to (a row from elsewhere): kept as UTF-8 would
        exact = path.encode("utf-8", "surrogatepass")
    return {"path": safe_text(path), "path_bytes": exact}


def file_name(row: Mapping[str, Any]) -> str:
    """A row's file name as Python holds it (os.fsdecode's text), to open, export or compare: its exact bytes
    when the row has them (`path_bytes`), else its `path`."""
    exact = row.get("path_bytes")
    return os.fsdecode(exact) if exact is not None else row["path"]


def file_columns(facts: FileFacts) -> dict[str, Any]:
    """The columns that describe the file itself."""
    exif = facts.exif
    return {
        **path_columns(facts.path),
        "root": None,  # known to the run, which sets it
        "sample_key": None,  # these two as well, for an image inside a container
        "source_meta": None,
        "file_size": facts.file_size,
        "content_hash": facts.content_hash,
        "width": facts.width,
        "height": facts.height,
        "format": facts.format,
        "jpeg_quality": facts.jpeg_quality,
        "camera_make": exif.camera_make,
        "camera_model": exif.camera_model,
        "captured_at": exif.captured_at,
        "exposure_time": exif.exposure_time,
        "iso": exif.iso,
        "f_number": exif.f_number,
        "focal_length": exif.focal_length,
        "orientation": exif.orientation,
        "notes": list(facts.notes),
    }


def assessed_row(
    facts: FileFacts,
    stamp: EngineStamp,
    result: Assessment,
    *,
    verdict: str,
    needs_review: bool,
    elapsed_ms: float,
    findings: list[str] | None = None,
) -> ReportRow:
    """A complete row for an image the engine assessed."""
    row = dict.fromkeys(COLUMN_NAMES)
    row.update(file_columns(facts))
    row.update(
        status="ok",
        engine=stamp.name,
        engine_version=stamp.version,
        engine_settings=stamp.settings_json(),
        task=result.task,
        question=result.question,
        answer=result.answer,
        detail=result.detail,
        detail_question=result.detail_question,
        distortions=list(result.distortions),
        severities=list(result.severities),
        rating=result.rating,
        score=result.score,
        confidence=result.confidence,
        detail_confidence=result.detail_confidence,
        findings=[safe_text(finding) for finding in findings or ()],  # a check may quote a name that is not UTF-8
        verdict=verdict,
        needs_review=needs_review,
        elapsed_ms=elapsed_ms,
    )
    return cast(ReportRow, row)


def error_row(facts: FileFacts, code: str, message: str, *, stamp: EngineStamp | None = None) -> ReportRow:
    """A complete row for a file that could not be assessed."""
    row = dict.fromkeys(COLUMN_NAMES)
    row.update(file_columns(facts))
    row.update(status="error", error_code=code, error=safe_text(message), distortions=[], severities=[], findings=[])
    if stamp is not None:
        row.update(engine=stamp.name, engine_version=stamp.version, engine_settings=stamp.settings_json())
    return cast(ReportRow, row)
