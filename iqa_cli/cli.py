"""The `iqa` command line: parses options, wires discover/engine/writers together, renders the result."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from iqa_cli import __version__
from iqa_cli.audit import AuditSettings, default_workers, run_audit
from iqa_cli.cli_errors import stderr_console, user_errors
from iqa_cli.cli_model import model_app
from iqa_cli.engines.base import EngineOptions
from iqa_cli.engines.choose import AUTO, create_engine
from iqa_cli.errors import EXIT_FLAGGED, EXIT_INTERRUPTED, UsageError
from iqa_cli.flag import DEFAULT_MIN_CONFIDENCE
from iqa_cli.load import DEFAULT_MAX_PIXELS
from iqa_cli.plugins import engines, writers
from iqa_cli.summary import Summary, render

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
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Audit the quality of photo collections and say, in words, what is wrong with each image."""


AUDIT_EPILOG = """Examples:

  iqa audit ./photos --detail

  iqa audit a.jpg ./scans --format csv --out reports/ --fail-on bad

Exit codes: 0 done, 1 runtime failure, 2 usage error, 3 an image met --fail-on, 130 interrupted."""


@app.command(epilog=AUDIT_EPILOG)
def audit(
    paths: Annotated[list[str], typer.Argument(help="Image files and folders, mixed.", show_default=False)],
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
    engine: Annotated[
        str,
        typer.Option("--engine", "-e", help="Engine: signal, depictqa, or auto (the model when installed)."),
    ] = AUTO,
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
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-j", min=0, help="Decoding processes (0: decode in-process). [default: cores]"),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per engine batch.")] = 16,
    limit: Annotated[int | None, typer.Option("--limit", min=0, help="Stop after this many images.")] = None,
    max_pixels: Annotated[
        int, typer.Option("--max-pixels", min=1, help="Refuse images larger than this (decompression bombs).")
    ] = DEFAULT_MAX_PIXELS,
    fail_on: Annotated[
        FailOn | None,
        typer.Option("--fail-on", help="Exit 3 when any image is bad, degraded (or bad), or needs review."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing unless something fails.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
    model: Annotated[str | None, typer.Option("--model", help="Models folder for the depictqa engine.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="Model device, e.g. cuda, cuda:1, cpu.")] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help="Model dtype: float16, bfloat16, float32.")] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option("--max-new-tokens", min=1, help="Longest model answer, in tokens.")
    ] = None,
) -> None:
    """Assess every image, flag the bad and the doubtful, write reports and print a summary."""
    with user_errors():
        chosen_writers = _writer_classes(formats)
        options = EngineOptions(model_dir=model, device=device, dtype=dtype, max_new_tokens=max_new_tokens)
        settings = AuditSettings(
            paths=paths,
            detail=detail,
            min_confidence=min_confidence,
            recursive=recursive,
            include=include or (),
            exclude=exclude or (),
            include_hidden=hidden,
            workers=default_workers() if workers is None else workers,
            batch_size=batch_size,
            limit=limit,
            max_pixels=max_pixels,
        )
        chosen, note = create_engine(engine, options)
        try:
            out.mkdir(parents=True, exist_ok=True)
            report_writers = [cls(out) for cls in chosen_writers]
            summary = _run_with_progress(settings, chosen, report_writers, note, quiet or json_out)
        finally:
            chosen.close()
    if json_out:
        typer.echo(summary.to_json())
    elif not quiet:
        render(summary, Console())
    if summary.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if fail_on is not None and _failed(summary, fail_on):
        raise typer.Exit(EXIT_FLAGGED)


def _writer_classes(formats: str) -> list[type]:
    available = writers()
    names = [name.strip().lower() for name in formats.split(",") if name.strip()]
    unknown = [name for name in names if name not in available]
    if unknown or not names:
        raise UsageError(f"unknown report format {', '.join(unknown) or '(none)'}; choose from {', '.join(available)}")
    return [available[name] for name in dict.fromkeys(names)]


def _run_with_progress(settings: AuditSettings, engine: Any, report_writers: list, note: str, silent: bool) -> Summary:
    err = stderr_console()
    show_bar = not silent and err.is_terminal

    def log_problem(row: dict[str, Any]) -> None:
        if row["status"] != "ok" and not silent:
            err.print(
                f"[yellow]skipped[/yellow] {escape(row['path'])}: {row['error_code']}: {escape(row['error'] or '')}",
                highlight=False,
            )

    if not show_bar:
        return run_audit(settings, engine, report_writers, engine_note=note, on_row=log_problem)
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

        def advance(row: dict[str, Any]) -> None:
            log_problem(row)
            progress.advance(task)
            elapsed = progress.tasks[0].elapsed or 0.0
            done = progress.tasks[0].completed
            progress.update(task, rate=f"{done / elapsed:.1f} img/s" if elapsed > 0 else "")

        return run_audit(settings, engine, report_writers, engine_note=note, on_row=advance)


def _failed(summary: Summary, fail_on: FailOn) -> bool:
    if fail_on is FailOn.review:
        return summary.needs_review > 0
    if fail_on is FailOn.degraded:
        return summary.verdicts.get("degraded", 0) + summary.verdicts.get("bad", 0) > 0
    return summary.verdicts.get("bad", 0) > 0


app.add_typer(model_app, name="model")


@app.command("plugins")
def list_plugins() -> None:
    """List the installed engines and report formats, and where each comes from."""
    with user_errors():
        console = Console()
        for kind, found in (("engine", engines()), ("format", writers())):
            for name, cls in sorted(found.items()):
                console.print(f"{kind:7} {name:10} {cls.__module__}.{cls.__qualname__}", highlight=False)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    sys.exit(main())
