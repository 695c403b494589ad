"""The `iqa` app: root options, the `audit`, `report` and `plugins` commands, and the other commands registered."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from iqa_cli import __version__
from iqa_cli.audit.flag import DEFAULT_MIN_CONFIDENCE
from iqa_cli.audit.load import DEFAULT_MAX_PIXELS
from iqa_cli.audit.queue import DEFAULT_FILE_TIMEOUT
from iqa_cli.audit.run import AuditSettings, RowCallback, audit_folder
from iqa_cli.checks import Check
from iqa_cli.cli.config import apply_config, config_app
from iqa_cli.cli.errors import user_errors
from iqa_cli.cli.eval import EVAL_EPILOG, eval_command
from iqa_cli.cli.model import model_app
from iqa_cli.cli.options import (
    DeviceOpt,
    DtypeOpt,
    EngineBatchOpt,
    EngineOpt,
    MaxPixelsOpt,
    ModelOpt,
    TokensOpt,
    WorkersOpt,
    decode_workers,
    engine_from,
    writer_classes,
)
from iqa_cli.cli.rank import COMPARE_EPILOG, RANK_EPILOG, compare, rank
from iqa_cli.cli.terminal import live_display, stderr_console, stdout_console
from iqa_cli.errors import EXIT_FLAGGED, EXIT_INTERRUPTED, EXIT_NOTHING_FOUND, UsageError
from iqa_cli.plugins import AUTO, engines, origin, writers
from iqa_cli.plugins import checks as plugin_checks
from iqa_cli.report.reread import RowFilter, read_rows, summarise
from iqa_cli.report.schema import ReportRow
from iqa_cli.report.summary import Summary, render
from iqa_cli.text import printable, shown

app = typer.Typer(
    name="iqa",
    help="Audit the quality of photo collections and say, in words, what is wrong with each image.",
    no_args_is_help=True,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class FailOn(str, Enum):
    bad = "bad"
    degraded = "degraded"
    review = "review"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"iqa {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Audit the quality of photo collections and say, in words, what is wrong with each image."""
    apply_config(ctx)  # iqa.toml files and IQA_* variables become the commands' defaults


AUDIT_EPILOG = """Examples:

  iqa audit ./photos --detail

  iqa audit a.jpg ./scans --format csv --out reports/ --fail-on bad

  find /data/scrape -newer stamp -name '*.jpg' | iqa audit --from-file - --quiet --log-file audit.log

Re-running over the same --out folder reuses the answers for files that have not changed (--rerun to
redo them); a killed run resumes where it stopped.

Exit codes: 0 done, 1 runtime failure, 2 usage error (also: no path given exists), 3 an image met --fail-on,
4 no image found under the paths (the earlier reports are kept), 130 interrupted (Ctrl-C or SIGTERM)."""


@app.command(epilog=AUDIT_EPILOG)
def audit(
    paths: Annotated[
        list[str] | None, typer.Argument(help="Image files and folders, mixed.", show_default=False)
    ] = None,
    from_file: Annotated[
        str | None,
        typer.Option("--from-file", help="Also read paths from this file, one per line ('-': standard input)."),
    ] = None,
    detail: Annotated[bool, typer.Option("--detail", help="Add a paragraph explaining each verdict.")] = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the reports.")] = Path("iqa-report"),
    formats: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="Report formats, comma-separated: parquet, csv, jsonl, or a plugin's (see iqa plugins).",
        ),
    ] = "parquet,csv",
    engine: EngineOpt = AUTO,
    min_confidence: Annotated[
        float,
        typer.Option("--min-confidence", min=0.0, max=1.0, help="Flag answers less confident than this for review."),
    ] = DEFAULT_MIN_CONFIDENCE,
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive", help="Descend into sub-folders.")] = True,
    include: Annotated[
        list[str] | None, typer.Option("--include", help="Only files matching this glob (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Skip files matching this glob (repeatable).")
    ] = None,
    hidden: Annotated[bool, typer.Option("--hidden", help="Also walk hidden files and folders.")] = False,
    follow_outside: Annotated[
        bool | None,
        typer.Option(
            "--follow-outside/--no-follow-outside",
            help="Follow links that lead out of the folder they are in (default: yes, but no with --from-file).",
            show_default=False,
        ),
    ] = None,
    workers: WorkersOpt = None,
    batch_size: EngineBatchOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", min=0, help="Stop after this many images.")] = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    file_timeout: Annotated[
        float,
        typer.Option(
            "--file-timeout",
            min=0.0,
            metavar="SECONDS",
            help="Skip a file that takes longer than this to read, decode and prepare (error_code timeout); "
            "0: no limit. Not applied with --workers 0.",
        ),
    ] = DEFAULT_FILE_TIMEOUT,
    rerun: Annotated[
        bool, typer.Option("--rerun", help="Assess every file again instead of reusing unchanged files' answers.")
    ] = False,
    checks: Annotated[
        str, typer.Option("--checks", help="Plugin checks to run, comma-separated: all, none, or names.")
    ] = "all",
    log_file: Annotated[
        Path | None, typer.Option("--log-file", help="Append one plain line per problem to this file (for cron).")
    ] = None,
    fail_on: Annotated[
        FailOn | None,
        typer.Option("--fail-on", help="Exit 3 when any image is bad, degraded (or bad), or needs review."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing unless something fails.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    max_new_tokens: TokensOpt = None,
    draft_decode: Annotated[
        bool,
        typer.Option(
            "--draft-decode",
            help="Model engine: decode large JPEGs at reduced scale first (several times faster; pixels differ "
            "slightly from the exact path, so answers may too). The signal engine always does.",
        ),
    ] = False,
) -> None:
    """Assess every image, flag the bad and the doubtful, write reports and print a summary."""
    with user_errors():
        if not paths and from_file is None:
            raise UsageError("give image files or folders, or --from-file LIST ('-' for standard input)")
        if from_file not in (None, "-") and not os.access(from_file, os.R_OK):
            raise UsageError(f"cannot read the list {from_file}: check the path, or use '-' for standard input")
        missing = [p for p in paths or [] if not os.path.lexists(p)]
        if paths and from_file is None and len(missing) == len(paths):
            # Before the store or any report is touched: a typo must not replace last night's report.
            raise UsageError(f"no such file or folder: {', '.join(missing)}; nothing was audited, {out} is unchanged")
        chosen_writers = writer_classes(formats)
        chosen_checks = _checks(checks)
        settings = AuditSettings(
            paths=_all_paths(paths or [], from_file),
            detail=detail,
            min_confidence=min_confidence,
            recursive=recursive,
            include=include or (),
            exclude=exclude or (),
            include_hidden=hidden,
            # A list usually comes from a scraper: a link in it must not pull in a file from elsewhere.
            follow_outside=from_file is None if follow_outside is None else follow_outside,
            workers=decode_workers(workers),
            batch_size=batch_size,
            limit=limit,
            max_pixels=max_pixels,
            file_timeout=file_timeout,
            rerun=rerun,
        )
        with closing(_ProblemLog(log_file, quiet or json_out)) as problems:
            summary = _run_with_progress(
                lambda on_row: audit_folder(
                    settings,
                    lambda: engine_from(engine, model, device, dtype, max_new_tokens, draft_decode),
                    out,
                    chosen_writers,
                    checks=chosen_checks,
                    on_note=problems.note,
                    on_row=on_row,
                ),
                problems.row,
                silent=quiet or json_out,
            )
    if json_out:
        typer.echo(summary.to_json())
    elif not quiet:
        render(summary, stdout_console())
    if summary.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if summary.files == 0:
        given = ", ".join(paths or []) or f"the list {from_file}"
        stderr_console().print(
            f"[yellow]no image found[/yellow] under {shown(given)}; nothing was assessed and the reports in "
            f"{shown(str(out))} were left as they were",
            highlight=False,
        )
        raise typer.Exit(EXIT_NOTHING_FOUND)
    if fail_on is not None and _failed(summary, fail_on):
        raise typer.Exit(EXIT_FLAGGED)


def _all_paths(paths: list[str], from_file: str | None) -> Iterator[str]:
    """The command line's paths, then the list file's lines (read lazily: a scraper may still be writing)."""
    yield from paths
    if from_file is None:
        return
    stream = sys.stdin if from_file == "-" else open(from_file, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115
    try:
        for line in stream:
            line = line.rstrip("\r\n")
            if line.strip():
                yield line
    finally:
        if stream is not sys.stdin:
            stream.close()


def _checks(names: str) -> list[Check]:
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    if wanted in ([], ["none"]):
        return []  # before asking the plugins: a check's module may be costly to import
    available = plugin_checks()
    if wanted == ["all"]:
        return [cls() for _, cls in sorted(available.items())]
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise UsageError(f"unknown check {', '.join(unknown)}; installed: {', '.join(sorted(available)) or 'none'}")
    return [available[n]() for n in dict.fromkeys(wanted)]


class _ProblemLog:
    """What went wrong in a run, one line each: on stderr unless silent, and appended to --log-file (for cron).

    `row` takes every finished row and reports the skipped ones; `note` reports something about the run
    itself (a damaged results store set aside), which is not a file that was skipped."""

    def __init__(self, log_file: Path | None, silent: bool) -> None:
        self._err = stderr_console()
        self._silent = silent
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
        if not self._silent:
            self._err.print(marked, highlight=False)
        if self._log is not None:
            when = datetime.now().isoformat(timespec="seconds")
            # One line per problem: newlines and terminal escapes in names or messages are shown escaped.
            self._log.write(f"{when} {printable(line)}\n")
            self._log.flush()

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


def _run_with_progress(
    run: Callable[[RowCallback], Summary],
    log_problem: RowCallback,
    *,
    silent: bool,
) -> Summary:
    """Call `run(on_row)` with a progress bar on stderr when it is a terminal."""
    err = stderr_console()
    if silent or not live_display(err):
        return run(log_problem)
    columns = (
        SpinnerColumn(),
        TextColumn("assessing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("audit", total=None, rate="")

        def advance(row: ReportRow) -> None:
            log_problem(row)
            progress.advance(task)
            elapsed = progress.tasks[0].elapsed or 0.0
            done = progress.tasks[0].completed
            progress.update(task, rate=f"{done / elapsed:.1f} img/s" if elapsed > 0 else "")

        return run(advance)


def _failed(summary: Summary, fail_on: FailOn) -> bool:
    if fail_on is FailOn.review:
        return summary.needs_review > 0
    if fail_on is FailOn.degraded:
        return summary.verdicts.get("degraded", 0) + summary.verdicts.get("bad", 0) > 0
    return summary.verdicts.get("bad", 0) > 0


app.add_typer(model_app, name="model")
app.add_typer(config_app, name="config")
app.command("compare", epilog=COMPARE_EPILOG)(compare)
app.command("rank", epilog=RANK_EPILOG)(rank)
app.command("eval", epilog=EVAL_EPILOG)(eval_command)


REPORT_EPILOG = """Examples:

  iqa report iqa-report/ --verdict bad

  iqa report iqa-report/ --needs-review --export review.txt

  iqa report iqa-report/ --distortion blur --export - | xargs -d '\\n' rm --"""


@app.command("report", epilog=REPORT_EPILOG)
def report(
    out_dir: Annotated[Path, typer.Argument(help="A report folder written by iqa audit.", show_default=False)],
    verdict: Annotated[
        list[str] | None,
        typer.Option("--verdict", help="Keep images with this verdict (ok, degraded, bad; repeatable)."),
    ] = None,
    review: Annotated[bool, typer.Option("--needs-review", help="Keep images whose answer needs review.")] = False,
    distortion: Annotated[
        list[str] | None, typer.Option("--distortion", help="Keep images with this distortion (repeatable).")
    ] = None,
    errors: Annotated[bool, typer.Option("--errors", help="Keep files that could not be assessed.")] = False,
    export: Annotated[
        str | None, typer.Option("--export", help="Write the kept paths to this file, one per line ('-': stdout).")
    ] = None,
    null: Annotated[
        bool,
        typer.Option("--export0", "-0", help="With --export: end each path with a NUL byte, not a newline (xargs -0)."),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Re-print the summary of a finished audit, filtered, and export the matching paths; runs nothing.

    In the one-per-line list, a path holding a newline or carriage return would read as two paths, so such
    paths are left out (and counted on stderr); --export0 lists every path."""
    with user_errors():
        if null and export is None:
            raise UsageError("--export0 goes with --export FILE (or --export - for stdout)")
        keep = RowFilter(verdicts=verdict or (), needs_review=review, distortions=distortion or (), errors=errors)
        summary, paths = summarise(read_rows(out_dir), keep)
        if export is not None:
            _export(paths, export, null)
            if export == "-":
                return
    if json_out:
        typer.echo(summary.to_json())
    else:
        render(summary, stdout_console())


def _export(paths: list[str], export: str, null: bool) -> None:
    """The kept paths as the exact bytes of each name (os.fsencode: a name that is not UTF-8 too), NUL-terminated
    or one per line (leaving out, and counting, those a newline would split)."""
    if null:
        data = b"".join(os.fsencode(p) + b"\0" for p in paths)
    else:
        split = [p for p in paths if "\n" in p or "\r" in p]
        if split:
            stderr_console().print(
                f"[yellow]left out[/yellow] {len(split)} path(s) holding a newline, which a line list cannot "
                "hold; use --export0 to list them too",
                highlight=False,
            )
        data = b"".join(os.fsencode(p) + b"\n" for p in paths if "\n" not in p and "\r" not in p)
    if export == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        Path(export).write_bytes(data)


@app.command("plugins")
def list_plugins() -> None:
    """List the installed engines, report formats and checks, and which package each comes from."""
    with user_errors():
        table = Table(box=None, show_header=True, pad_edge=False)
        for column in ("kind", "name", "class", "from"):
            table.add_column(column, overflow="fold")
        for kind, found in (("engine", engines()), ("format", writers()), ("check", plugin_checks())):
            for name, cls in sorted(found.items()):
                table.add_row(kind, name, f"{cls.__module__}.{cls.__qualname__}", origin(cls))
        stdout_console().print(table)
