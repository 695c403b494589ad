"""The `html` report writer: counts rows as they stream in and keeps only what the page shows, bounded."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from iqa_cli.report.schema import VERDICTS
from iqa_cli.report.summary import TopK, badness
from iqa_cli.report.writers import ReportWriter

from iqa_html.page import render
from iqa_html.thumbs import THUMB_SIZE, Thumbnail, make_thumbnail

GALLERY_SIZE = 12  # images in each gallery (worst, needs review)
# The table holds at most this many rows, the worst ones, so a 100k-image audit still gives a page a
# browser opens in a second or two (~2 MB); every row is in the Parquet/CSV/JSONL reports.
TABLE_LIMIT = 5000
ERRORS_LISTED = 200  # error rows listed by name; the counts by code always cover all of them


@dataclass(slots=True)
class Entry:
    """One image as the page shows it; slotted because up to TABLE_LIMIT of them are held at once."""

    order: int  # position in the run, 1-based: the table's default order
    path: str
    status: str
    verdict: str | None = None
    answer: str | None = None
    distortions: tuple[str, ...] = ()
    rating: str | None = None
    score: float | None = None
    confidence: float | None = None
    needs_review: bool = False
    error_code: str | None = None
    error: str | None = None
    thumbnail: Thumbnail | None = None  # made in close(), for gallery images only


@dataclass
class ReportData:
    """Everything the page renders: totals over all rows, and the bounded selections of images."""

    files: int = 0
    assessed: int = 0
    errors: int = 0
    verdicts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))
    needs_review: int = 0
    no_distortion: int = 0  # assessed images whose engine named no distortion
    distortions: Counter[str] = field(default_factory=Counter)
    error_codes: Counter[str] = field(default_factory=Counter)
    engines: list[str] = field(default_factory=list)
    worst: list[Entry] = field(default_factory=list)  # worst first
    review: list[Entry] = field(default_factory=list)  # least confident first
    failed: list[Entry] = field(default_factory=list)  # the first ERRORS_LISTED error rows
    table: list[Entry] = field(default_factory=list)  # in run order
    generated_at: str = ""
    gallery_size: int = GALLERY_SIZE
    table_limit: int = TABLE_LIMIT
    errors_listed: int = ERRORS_LISTED


class HtmlWriter(ReportWriter):
    """One self-contained HTML page: inline thumbnails, CSS and script, no network access.

    Memory does not grow with the collection: totals are counters, the galleries and the table are
    bounded heaps of compact entries, and thumbnails are made in `close()` for the at most
    2 x gallery_size images that made a gallery (decoding at arrival would redo the work for every
    image that is later pushed out, which in a collection that gets worse as it goes is every image).
    """

    format = "html"
    suffix = ".html"

    def __init__(
        self,
        out_dir: Path,
        stem: str = "report",
        *,
        gallery_size: int = GALLERY_SIZE,
        table_limit: int = TABLE_LIMIT,
        errors_listed: int = ERRORS_LISTED,
        thumb_size: int = THUMB_SIZE,
    ) -> None:
        super().__init__(out_dir, stem)
        self._data = ReportData(gallery_size=gallery_size, table_limit=table_limit, errors_listed=errors_listed)
        self._thumb_size = thumb_size
        self._worst: TopK[Entry] = TopK(gallery_size)
        self._review: TopK[Entry] = TopK(gallery_size)
        self._table: TopK[Entry] = TopK(table_limit)

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            self._add(row)
        self.rows_written += len(rows)

    def _add(self, row: dict[str, Any]) -> None:
        data = self._data
        data.files += 1
        entry = Entry(
            order=data.files,
            path=str(row.get("path") or ""),
            status=str(row.get("status") or "error"),
            verdict=row.get("verdict"),
            answer=row.get("answer"),
            distortions=tuple(row.get("distortions") or ()),
            rating=row.get("rating"),
            score=row.get("score"),
            confidence=row.get("confidence"),
            needs_review=bool(row.get("needs_review")),
            error_code=row.get("error_code"),
            error=row.get("error"),
        )
        engine = " ".join(str(part) for part in (row.get("engine"), row.get("engine_version")) if part)
        if engine and engine not in data.engines and len(data.engines) < 5:
            data.engines.append(engine)
        if entry.status != "ok":
            data.errors += 1
            data.error_codes[entry.error_code or "error"] += 1
            if len(data.failed) < data.errors_listed:
                data.failed.append(entry)
            self._table.add((1,), entry)  # errors rank above any verdict
            return
        data.assessed += 1
        data.verdicts[entry.verdict or "ok"] = data.verdicts.get(entry.verdict or "ok", 0) + 1
        data.distortions.update(entry.distortions)
        data.no_distortion += not entry.distortions
        worse = badness(entry.verdict, entry.score, entry.distortions)  # worst first, as iqa's summary ranks
        self._table.add((0, *worse), entry)
        if entry.verdict != "ok":
            self._worst.add(worse, entry)
        if entry.needs_review:
            data.needs_review += 1
            self._review.add(-(entry.confidence or 0.0), entry)

    def _finish(self) -> None:
        data = self._data
        data.worst = self._worst.ranked()
        data.review = self._review.ranked()
        data.table = sorted(self._table, key=lambda entry: entry.order)
        for entry in (*data.worst, *data.review):
            if entry.thumbnail is None:  # an image in both galleries is decoded once
                entry.thumbnail = make_thumbnail(entry.path, self._thumb_size)
        data.generated_at = datetime.now().astimezone().isoformat(timespec="seconds")
        with open(self._tmp, "w", encoding="utf-8") as file:
            file.writelines(render(data))
            file.flush()
            os.fsync(file.fileno())
