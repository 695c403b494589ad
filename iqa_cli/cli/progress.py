"""What a running command shows on stderr: the live progress display (found so far or the total, done, rate, ETA),
the per-file problem lines printed above it (and to --log-file), and with --verbose the run's decisions and the
time each stage took."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from iqa_cli.cli.terminal import live_display, stderr_console
from iqa_cli.text import printable, shown

if TYPE_CHECKING:  # the report's schema imports PyArrow
    from iqa_cli.report.schema import ReportRow
    from iqa_cli.report.summary import Summary

STAGES = {
    "ray_start": "Ray start",
    "engine_plan": "engine plan on the cluster",
    "first_block": "first block (actors started, engine loaded)",
    "pipeline": "pipeline",
    "discovery": "discovery",
    "decode_prepare": "decode and prepare (summed over the workers)",
    "engine": "engine",
    "writing": "writing",
    "ray_stop": "Ray stop",
}
"""The stages of `Summary.timings` (seconds), in order, as --verbose names them (the option: cli/options.py); a
run on one machine has discovery to writing, a Ray run (`iqa audit --ray`) the Ray stages and writing."""


class ProblemLog:
    """What went wrong in a run, one line each: on stderr (with --quiet and --json too: stderr is for problems), and
    appended to --log-file (for cron).

    `row` takes every finished row and reports the skipped ones; `note` reports something about the run
    itself (a damaged results store set aside), which is not a file that was skipped. While a progress display
    runs, `console` is its console, so the lines appear above the bar instead of overwriting it."""

    def __init__(self, log_file: Path | None, console: Console | None = None) -> None:
        self.console = console if console is not None else stderr_console()
        self._log = open(log_file, "a", encoding="utf-8", errors="backslashreplace") if log_file else None  # noqa: SIM115

    def row(self, row: ReportRow) -> None:
        if row["status"] == "ok":
            return
        error = row["error"] or ""
        self._emit(
            f"[yellow]skipped[/yellow] {shown(row['path'])}: {row['error_code']}: {shown(error)}",
            f"{row['path']}: {row['error_code']}: {error}",
        )

    def note(self, text: str) -> None:
        self._emit(f"[yellow]note[/yellow] {shown(text)}", f"note: {text}")

    def _emit(self, marked: str, line: str) -> None:
        # soft_wrap: never broken into lines by Rich; a terminal folds a long one on screen, a pipe keeps it whole.
        self.console.print(marked, highlight=False, soft_wrap=True)
        if self._log is not None:
            when = datetime.now().isoformat(timespec="seconds")
            # One line per problem: newlines and terminal escapes in names or messages are shown escaped.
            self._log.write(f"{when} {printable(line)}\n")
            self._log.flush()

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


class _Count(ProgressColumn):
    """12/40 once the total is known; "12 done, 300 found so far" while discovery goes on."""

    def render(self, task: Task) -> Text:
        done = int(task.completed)
        if task.total is None:
            return Text(f"{done:,} done, {task.fields.get('found', 0):,} found so far", style="progress.download")
        return Text(f"{done:,}/{int(task.total):,}", style="progress.download")


class _Rate(ProgressColumn):
    """Images per second over the last half minute (Rich's estimate), and the time left once the total is known."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        if not speed:
            return Text("")
        text = f"{speed:.1f} img/s"
        if task.total is not None:
            left = max(0, int((task.total - task.completed) / speed))
            text += f", {left // 3600}:{left // 60 % 60:02d}:{left % 60:02d} left"
        return Text(text, style="progress.data.speed")


class RunDisplay:
    """A transient progress bar on `console` (a terminal's stderr), told what discovery found (`found`) and each
    item done (`advance`). Lines printed through `console` while it runs appear above it."""

    def __init__(
        self,
        console: Console,
        label: str = "assessing",
        *,
        total: int | None = None,
        auto_refresh: bool = True,
        get_time: Callable[[], float] | None = None,
    ) -> None:
        columns = (SpinnerColumn(), TextColumn(label), BarColumn(), _Count(), TimeElapsedColumn(), _Rate())
        self._progress = Progress(
            *columns, console=console, transient=True, auto_refresh=auto_refresh, get_time=get_time
        )
        self._task = self._progress.add_task(label, total=total, found=total or 0)
        self._total_known = total is not None

    @property
    def console(self) -> Console:
        return self._progress.console

    def __enter__(self) -> RunDisplay:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def found(self, count: int, finished: bool) -> None:
        """Discovery has found `count` items so far; `finished`: that is all of them. Safe from another thread."""
        if self._total_known:
            return  # the total is known: a late count from the other walk changes nothing
        self._total_known = finished
        self._progress.update(self._task, found=count, total=count if finished else None)

    def advance(self, *_: object) -> None:
        """One more item done (any arguments, such as a row, are ignored)."""
        self._progress.advance(self._task)

    def refresh(self) -> None:
        self._progress.refresh()


class RunHooks(TypedDict, total=False):
    """The callbacks `run_audit` (and `audit_folder`) take, as keywords."""

    on_row: Callable[[ReportRow], None]
    on_note: Callable[[str], None]
    on_found: Callable[[int, bool], None]
    on_ready: Callable[[], None]
    on_decision: Callable[[str], None]


def run_with_progress(
    run: Callable[[RunHooks], Summary],
    problems: ProblemLog,
    *,
    silent: bool,
    verbose: bool = False,
    console: Console | None = None,
) -> Summary:
    """Call `run(hooks)` with a progress display on stderr when it is a terminal and not `silent` (--quiet,
    --json); problem lines go above the display, and with `verbose` the decisions too, then the timings."""
    err = console if console is not None else problems.console
    hooks = RunHooks(on_row=problems.row, on_note=problems.note)
    if not silent and live_display(err):
        display = RunDisplay(err)
        problems.console, previous = display.console, problems.console
        hooks.update(on_found=display.found, on_ready=display.advance)
        if verbose:
            hooks["on_decision"] = _decision_printer(display.console)
        try:
            with display:
                summary = run(hooks)
        finally:
            problems.console = previous
    else:
        if verbose:
            hooks["on_decision"] = _decision_printer(err)
        summary = run(hooks)
    if verbose:
        print_timings(summary.timings, err)
    return summary


def _decision_printer(console: Console) -> Callable[[str], None]:
    return lambda text: console.print(f"[cyan]verbose[/cyan] {shown(text)}", highlight=False, soft_wrap=True)


def print_timings(timings: dict[str, float], console: Console) -> None:
    """The seconds per stage of a run, one line (--verbose)."""
    if not timings:
        return
    parts = [f"{name} {timings[key]:.2f} s" for key, name in STAGES.items() if key in timings]
    total = f"; total {timings['total']:.2f} s" if "total" in timings else ""
    console.print(f"[cyan]verbose[/cyan] timings: {', '.join(parts)}{total}", highlight=False, soft_wrap=True)


@contextmanager
def progress_rows(total: int, label: str, *, silent: bool) -> Iterator[Callable[[Any], None] | None]:
    """A progress bar of `total` items on stderr while it is a terminal, advanced by the callback yielded (it
    takes a row and ignores it); no callback when there is no display."""
    err = stderr_console()
    if silent or not live_display(err):
        yield None
        return
    with RunDisplay(err, label, total=total) as display:
        yield display.advance
