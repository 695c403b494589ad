"""The run summary: accumulated row by row in bounded memory, rendered with Rich or as JSON."""

from __future__ import annotations

import heapq
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, TypeVar

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from iqa_cli.report.schema import VERDICTS, ReportRow
from iqa_cli.text import printable, shown

LISTED = 10  # images named in each list of the summary


@dataclass
class ImageLine:
    """An image as the summary lists it."""

    path: str
    verdict: str | None = None
    answer: str | None = None
    rating: str | None = None
    score: float | None = None
    confidence: float | None = None
    error_code: str | None = None
    error: str | None = None


@dataclass
class Summary:
    """What a run found; `to_json()` is what `--json` prints."""

    engine: str
    engine_version: str
    engine_note: str = ""
    files: int = 0
    assessed: int = 0
    errors: int = 0
    verdicts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VERDICTS, 0))
    needs_review: int = 0
    distortions: dict[str, int] = field(default_factory=dict)
    error_codes: dict[str, int] = field(default_factory=dict)
    findings: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0  # files whose bytes an earlier file of the run already had
    duplicate_groups: list[list[str]] = field(default_factory=list)  # the first few groups, all their paths
    worst: list[ImageLine] = field(default_factory=list)
    review: list[ImageLine] = field(default_factory=list)
    failed: list[ImageLine] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)  # things that went wrong beside the images (a plugin dropped)
    carried_over: int = 0  # of `files`: rows an interrupted run took from the results store for files it did not reach
    reports: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds spent in each stage of the run

    @property
    def images_per_second(self) -> float:
        return (self.files - self.carried_over) / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> str:
        data = asdict(self)
        data["images_per_second"] = round(self.images_per_second, 3)
        return json.dumps(data, indent=2, default=str)


_VERDICT_RANK = {"bad": 0, "degraded": 1, "ok": 2}
T = TypeVar("T")


def badness(verdict: str | None, score: float | None, distortions: Sequence[str] | None) -> tuple[int, float, int]:
    """How bad an assessed image is, larger is worse: its verdict, then its score (a missing score counts as
    middling), then the number of distortions named. The summary and report plugins rank images by it."""
    return (-_VERDICT_RANK.get(verdict or "ok", 2), -(score if score is not None else 0.5), len(distortions or ()))


class TopK(Generic[T]):
    """The `limit` items with the largest keys seen so far, in bounded memory; among equal keys the
    earliest added is kept and ranked first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._heap: list[tuple[Any, int, T]] = []
        self._added = 0

    def add(self, key: Any, item: T) -> None:
        self._added += 1
        entry = (key, -self._added, item)  # the count is unique, so items themselves are never compared
        if len(self._heap) < self.limit:
            heapq.heappush(self._heap, entry)
        elif self.limit > 0 and entry[:2] > self._heap[0][:2]:
            heapq.heapreplace(self._heap, entry)

    def ranked(self) -> list[T]:
        """The kept items, largest key (and earliest among equals) first."""
        return [item for _, _, item in sorted(self._heap, key=lambda e: e[:2], reverse=True)]

    def __iter__(self) -> Iterator[T]:
        return (item for _, _, item in self._heap)

    def __len__(self) -> int:
        return len(self._heap)


class SummaryBuilder:
    """Counts rows and keeps the few worst / least confident / failed ones."""

    def __init__(self, engine: str, engine_version: str, engine_note: str = "") -> None:
        self.summary = Summary(engine, engine_version, engine_note)
        self._distortions: Counter[str] = Counter()
        self._codes: Counter[str] = Counter()
        self._findings: Counter[str] = Counter()
        self._worst: TopK[ImageLine] = TopK(LISTED)
        self._review: TopK[ImageLine] = TopK(LISTED)
        self._groups: dict[str, list[str]] = {}

    def add(self, row: ReportRow) -> None:
        s = self.summary
        s.files += 1
        if row.get("duplicate_of"):
            s.duplicates += 1
            group = self._groups.get(row["duplicate_of"])
            if group is None and len(self._groups) < LISTED:
                group = self._groups[row["duplicate_of"]] = [row["duplicate_of"]]
            if group is not None:
                group.append(row["path"])
        line = ImageLine(
            path=row["path"],
            verdict=row.get("verdict"),
            answer=row.get("answer"),
            rating=row.get("rating"),
            score=row.get("score"),
            confidence=row.get("confidence"),
            error_code=row.get("error_code"),
            error=row.get("error"),
        )
        if row["status"] != "ok":
            s.errors += 1
            self._codes[row["error_code"] or "error"] += 1
            if len(s.failed) < LISTED:
                s.failed.append(line)
            return
        s.assessed += 1
        s.verdicts[row["verdict"]] = s.verdicts.get(row["verdict"], 0) + 1
        self._distortions.update(row["distortions"] or [])
        # "check/code: message" -> count per check/code
        self._findings.update(finding.split(":", 1)[0] for finding in row.get("findings") or [])
        self._worst.add(badness(row["verdict"], row["score"], row["distortions"]), line)
        if row["needs_review"]:
            s.needs_review += 1
            self._review.add(-(row["confidence"] or 0.0), line)

    def finish(self, seconds: float, *, interrupted: bool = False, reports: list[str] | None = None) -> Summary:
        s = self.summary
        s.seconds = seconds
        s.interrupted = interrupted
        s.reports = reports or []
        s.distortions = dict(self._distortions.most_common())
        s.error_codes = dict(self._codes.most_common())
        s.findings = dict(self._findings.most_common())
        s.duplicate_groups = list(self._groups.values())
        s.worst = [line for line in self._worst.ranked() if line.verdict != "ok"]
        s.review = self._review.ranked()
        return s


def _render_run_heading(s: Summary, console: Console) -> None:
    head = f"[bold]iqa audit[/bold]: {s.files} files, {s.assessed} assessed, {s.errors} errors"
    if s.interrupted:
        head += " [yellow](interrupted: partial results"
        if s.carried_over:
            head += f"; {s.carried_over} rows carried over unchanged from earlier runs"
        head += ")[/yellow]"
    console.print(head)
    engine = f"engine {s.engine} {s.engine_version}"
    console.print(shown(engine + (f" ({s.engine_note})" if s.engine_note else "")), highlight=False)
    console.print(f"{s.seconds:.1f} s, {s.images_per_second:.1f} images/s")


def render(summary: Summary, console: Console, *, run_heading: bool = True) -> None:
    """Print the summary as Rich tables (plain text when the console has no colour); `run_heading=False` leaves
    out the run's lines (files, engine, time) for a caller that heads it itself (`iqa report`)."""
    s = summary
    if run_heading:
        _render_run_heading(s, console)

    verdicts = Table(title="Verdicts", show_header=True)
    verdicts.add_column("verdict")
    verdicts.add_column("images", justify="right")
    for name in VERDICTS:
        verdicts.add_row(name, str(s.verdicts.get(name, 0)))
    verdicts.add_row("needs review", str(s.needs_review))
    verdicts.add_row("errors", str(s.errors))
    console.print(verdicts)

    for title, counts in (("Distortions", s.distortions), ("Check findings", s.findings)):
        if counts:
            table = Table(title=title)
            table.add_column(title.lower().rstrip("s").split()[-1])
            table.add_column("images", justify="right")
            for name, count in counts.items():
                table.add_row(shown(name), str(count))
            console.print(table)
    for title, lines in (("Worst images", s.worst), ("Needs review (lowest confidence)", s.review)):
        if lines:
            table = Table(title=title)
            # The path gets the room: the other columns are short words and numbers.
            table.add_column("image", ratio=3)
            table.add_column("answer", ratio=2)
            for column in ("verdict", "rating", "score", "confidence"):
                table.add_column(column, no_wrap=True)
            for line in lines:
                table.add_row(
                    PathCell(line.path),
                    shown(line.answer or ""),
                    line.verdict or "",
                    line.rating or "",
                    _num(line.score),
                    _num(line.confidence),
                )
            console.print(table)
    if s.failed:
        table = Table(title=f"Errors ({', '.join(f'{k}: {v}' for k, v in s.error_codes.items())})")
        table.add_column("file")
        table.add_column("code")
        table.add_column("message")
        for line in s.failed:
            table.add_row(PathCell(line.path), line.error_code or "", shown(line.error or ""))
        console.print(table)
    if s.duplicates:
        console.print(f"{s.duplicates} files repeat the bytes of an earlier one; same content:")
        for group in s.duplicate_groups:
            console.print("  " + "  =  ".join(shown(p) for p in group), highlight=False)
    for path in s.reports:
        console.print(f"report: {shown(path)}")


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


class PathCell:
    """A path as a table cell: on one line, shortened in the middle when the column is too narrow for it
    (`middle_truncated`), never folded onto several lines."""

    def __init__(self, path: str) -> None:
        self.text = printable(path)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        whole = cell_len(self.text)
        return Measurement(min(whole, 8), whole)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Text(middle_truncated(self.text, options.max_width), no_wrap=True, overflow="crop")


def middle_truncated(path: str, width: int) -> str:
    """`path` in at most `width` terminal cells: whole when it fits; else the start of its folder, "…" and its
    file name (which says which image it is); when even the name does not fit, "…" and the name's end."""
    if cell_len(path) <= width:
        return path
    if width < 2:
        return "…"[:width]
    head, sep, name = path.rpartition("/")
    tail = sep + name
    room = width - 1 - cell_len(tail)
    if head and room >= 1:
        return _first_cells(head, room) + "…" + tail
    return "…" + _last_cells(name, width - 1)


def _first_cells(text: str, cells: int) -> str:
    used = 0
    for index, char in enumerate(text):
        used += cell_len(char)
        if used > cells:
            return text[:index]
    return text


def _last_cells(text: str, cells: int) -> str:
    return _first_cells(text[::-1], cells)[::-1]
