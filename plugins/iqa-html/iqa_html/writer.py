"""The `html` report writer: counts rows as they stream in and keeps only what the page shows, bounded."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from iqa_cli.report.summary import TopK, badness
from iqa_cli.report.writers import ReportWriter, create_temporary

from iqa_html.data import ERRORS_LISTED, GALLERY_SIZE, TABLE_LIMIT, TABLE_THUMBS, Entry, ReportData
from iqa_html.links import relative_href
from iqa_html.page import render
from iqa_html.thumbs import TABLE_THUMB_SIZE, THUMB_SIZE, make_thumbnails


class HtmlWriter(ReportWriter):
    """One self-contained HTML page: inline thumbnails, CSS and script, no network access.

    Memory does not grow with the collection: totals are counters, the galleries and the table are
    bounded heaps of compact entries, the duplicate groups are the first few of each kind, and
    thumbnails are made in `close()` for the at most 2 x gallery_size images that made a gallery and
    the table_thumbs worst rows of the table (decoding at arrival would redo the work for every image
    that is later pushed out, which in a collection that gets worse as it goes is every image). Links
    to the originals are made in `close()` too, for the files the page names.
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
        table_thumbs: int = TABLE_THUMBS,
        table_thumb_size: int = TABLE_THUMB_SIZE,
    ) -> None:
        super().__init__(out_dir, stem)
        self._out_dir = out_dir
        self._data = ReportData(gallery_size=gallery_size, table_limit=table_limit, errors_listed=errors_listed)
        self._thumb_size = thumb_size
        self._table_thumbs = table_thumbs
        self._table_thumb_size = table_thumb_size
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
            content_hash=row.get("content_hash"),
        )
        exact = row.get("path_bytes")  # the schema's exact bytes of a name that is not UTF-8 (path is its text)
        if exact is not None:
            entry.file_name = os.fsdecode(exact)
        engine = " ".join(str(part) for part in (row.get("engine"), row.get("engine_version")) if part)
        if engine and engine not in data.engines and len(data.engines) < 5:
            data.engines.append(engine)
        duplicate_of = row.get("duplicate_of")
        findings = [str(finding) for finding in row.get("findings") or ()]
        data.duplicates.add(entry.path, entry.file_name, str(duplicate_of) if duplicate_of else None, findings)
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
        self._thumbnails()
        self._links()
        data.generated_at = datetime.now().astimezone().isoformat(timespec="seconds")
        # Created afresh, never through a link planted at the temporary name (as iqa's own writers do).
        with open(create_temporary(self._tmp), "w", encoding="utf-8") as file:
            file.writelines(render(data))
            file.flush()
            os.fsync(file.fileno())

    def _thumbnails(self) -> None:
        """Gallery thumbnails, and small ones for the worst table rows: one decode per image for both."""
        data = self._data
        in_gallery = {id(entry): entry for entry in (*data.worst, *data.review)}
        ranked = [entry for entry in self._table.ranked() if entry.status == "ok"]  # worst first
        in_table = {id(entry): entry for entry in ranked[: self._table_thumbs]}
        for key, entry in {**in_gallery, **in_table}.items():  # an image in both galleries is decoded once
            sizes = [self._thumb_size] * (key in in_gallery) + [self._table_thumb_size] * (key in in_table)
            made = make_thumbnails(entry.file_name or entry.path, sizes, content_hash=entry.content_hash)
            if key in in_gallery:
                entry.thumbnail = made.pop(0)
            if key in in_table:
                entry.table_thumbnail = made.pop(0)

    def _links(self) -> None:
        """The originals' URLs relative to the report's folder, for each file the page names that is a
        regular file now: at most the table, the galleries, the listed errors and duplicate groups."""
        data = self._data
        for entry in {id(entry): entry for entry in (*data.table, *data.worst, *data.review, *data.failed)}.values():
            entry.href = relative_href(entry.file_name or entry.path, self._out_dir)
        for member in data.duplicates.members():
            member.href = relative_href(member.file_name or member.path, self._out_dir)
