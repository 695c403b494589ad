"""What the page shows: the totals and the bounded selections of images the writer keeps for it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from iqa_cli.report.schema import VERDICTS

from iqa_html.dupes import Duplicates
from iqa_html.thumbs import Thumbnail

GALLERY_SIZE = 12  # images in each gallery (worst, needs review)
# The table holds at most this many rows, the worst ones, so a 100k-image audit still gives a page a
# browser opens in a second or two (~2 MB); every row is in the Parquet/CSV/JSONL reports.
TABLE_LIMIT = 5000
ERRORS_LISTED = 200  # error rows listed by name; the counts by code always cover all of them
# Table rows with a small thumbnail: the worst ones (the order the table keeps rows in). Each costs a
# decode when the report is written and ~2 KB of page, so the page stays small and quick to write
# whatever the collection's size; a gallery image's is made from the same decode as its gallery one.
TABLE_THUMBS = 100


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
    content_hash: str | None = None  # of the bytes assessed: a thumbnail is made of those bytes only
    file_name: str | None = None  # the name to open where `path` is not it (a non-UTF-8 name's exact bytes)
    thumbnail: Thumbnail | None = None  # made in close(), for gallery images only
    table_thumbnail: Thumbnail | None = None  # made in close(), for the TABLE_THUMBS worst table rows only
    href: str | None = None  # the original's URL relative to the report, set in close() for regular files


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
    duplicates: Duplicates = field(default_factory=Duplicates)
    generated_at: str = ""
    gallery_size: int = GALLERY_SIZE
    table_limit: int = TABLE_LIMIT
    errors_listed: int = ERRORS_LISTED
