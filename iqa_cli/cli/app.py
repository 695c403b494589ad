"""The `iqa` app: root options, the `audit`, `report` and `plugins` commands, and the other commands registered."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import closing
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from iqa_cli import __version__
from iqa_cli.cli.config import apply_config, config_app
from iqa_cli.cli.errors import user_errors
from iqa_cli.cli.eval import EVAL_EPILOG, eval_command
from iqa_cli.cli.model import model_app
from iqa_cli.cli.options import (
    BEHAVIOUR,
    ENGINE,
    INPUT,
    MODEL,
    OUTPUT,
    SCALE_OUT,
    CleanShareOpt,
    DeviceOpt,
    DtypeOpt,
    EngineBatchOpt,
    EngineOpt,
    HelpGroup,
    MaxPixelsOpt,
    ModelOpt,
    Pixels,
    PixelsOpt,
    TokensOpt,
    VerboseOpt,
    WorkersOpt,
    complete_checks,
    complete_formats,
    decode_workers,
    engine_from,
    engine_options,
    ray_address,
    writer_classes,
)
from iqa_cli.cli.rank import COMPARE_EPILOG, RANK_EPILOG, compare, rank
from iqa_cli.cli.terminal import stderr_console, stdout_console
from iqa_cli.defaults import AUTO, DEFAULT_FILE_TIMEOUT, DEFAULT_MAX_PIXELS, DEFAULT_MIN_CONFIDENCE
from iqa_cli.errors import EXIT_FLAGGED, EXIT_INTERRUPTED, EXIT_NOTHING_FOUND, UsageError
from iqa_cli.text import shown

if TYPE_CHECKING:
    # What the commands run is imported when they run: `iqa --help`, `--version` and shell completion must not
    # load numpy, Pillow and PyArrow (the audit, the reports, the plugins), nor the progress display.
    from iqa_cli.checks import Check
    from iqa_cli.report.summary import Summary

app = typer.Typer(
    name="iqa",
    cls=HelpGroup,
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


# Each paragraph is one line, which --help wraps to the terminal; the man page splits the epilog at blank lines.
AUDIT_EPILOG = "\n\n".join(
    [
        "Examples:",
        "  iqa audit ./photos --detail",
        "  iqa audit a.jpg ./scans --format csv --out reports/ --fail-on bad",
        "  find scrape/ -newer stamp -name '*.jpg' | iqa audit --from-file -",
        "  iqa audit --from-file new.txt --quiet --log-file audit.log",
        "Re-running over the same --out folder reuses the answers for files that have not changed (--rerun to "
        "redo them); a killed run resumes where it stopped.",
        "Exit codes: 0 done, 1 runtime failure, 2 usage error (also: no path given exists), 3 an image met "
        "--fail-on, 4 no image found under the paths (the earlier reports are kept), 130 interrupted (Ctrl-C or "
        "SIGTERM).",
    ]
)


@app.command(epilog=AUDIT_EPILOG)
def audit(
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="PATH",
            help="Image files, folders, WebDataset .tar shards and Parquet files, mixed; local, or URLs (s3://, "
            "https://, ...); brace patterns such as shards/{00000..00099}.tar are expanded (docs/inputs.md).",
            show_default=False,
        ),
    ] = None,
    from_file: Annotated[
        str | None,
        typer.Option(
            "--from-file",
            metavar="LIST",
            help="Also read paths from this file, one per line ('-': standard input).",
            rich_help_panel=INPUT,
        ),
    ] = None,
    recursive: Annotated[
        bool, typer.Option("--recursive/--no-recursive", help="Descend into sub-folders.", rich_help_panel=INPUT)
    ] = True,
    include: Annotated[
        list[str] | None,
        typer.Option(
            "--include", metavar="GLOB", help="Only files matching this glob (repeatable).", rich_help_panel=INPUT
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude", metavar="GLOB", help="Skip files matching this glob (repeatable).", rich_help_panel=INPUT
        ),
    ] = None,
    hidden: Annotated[
        bool, typer.Option("--hidden", help="Also walk hidden files and folders.", rich_help_panel=INPUT)
    ] = False,
    follow_outside: Annotated[
        bool | None,
        typer.Option(
            "--follow-outside/--no-follow-outside",
            help="Follow links that lead out of the folder they are in.",
            show_default="follow, but not with --from-file",
            rich_help_panel=INPUT,
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=0,
            metavar="N",
            help="Stop after this many images.",
            show_default="all",
            rich_help_panel=INPUT,
        ),
    ] = None,
    image_column: Annotated[
        str | None,
        typer.Option(
            "--image-column",
            metavar="NAME",
            help="Parquet inputs: the column of image bytes (binary, or a struct with a 'bytes' field).",
            show_default="jpg, image, png, webp, bytes, ... by name",
            rich_help_panel=INPUT,
        ),
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option(
            "--id-column",
            metavar="NAME",
            help="Parquet inputs: a column whose value becomes each row's sample_key.",
            rich_help_panel=INPUT,
        ),
    ] = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    engine: EngineOpt = AUTO,
    detail: Annotated[
        bool, typer.Option("--detail", help="Add a paragraph explaining each verdict.", rich_help_panel=ENGINE)
    ] = False,
    min_confidence: Annotated[
        float,
        typer.Option(
            "--min-confidence",
            min=0.0,
            max=1.0,
            metavar="X",
            help="Flag answers less confident than this for review.",
            rich_help_panel=ENGINE,
        ),
    ] = DEFAULT_MIN_CONFIDENCE,
    clean_share: CleanShareOpt = None,
    checks: Annotated[
        str,
        typer.Option(
            "--checks",
            metavar="NAMES",
            help="Plugin checks to run, comma-separated: all, none, or names.",
            autocompletion=complete_checks,
            rich_help_panel=ENGINE,
        ),
    ] = "all",
    batch_size: EngineBatchOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    max_new_tokens: TokensOpt = None,
    draft_decode: Annotated[
        bool,
        typer.Option(
            "--draft-decode",
            help="Decode large JPEGs at reduced scale first (several times faster; pixels differ slightly from the "
            "exact path, so answers may too). The signal engine always does.",
            rich_help_panel=MODEL,
        ),
    ] = False,
    pixels: PixelsOpt = Pixels.iqa,
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="DIR", help="Folder for the reports.", rich_help_panel=OUTPUT)
    ] = Path("iqa-report"),
    formats: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            metavar="FORMATS",
            help="Report formats, comma-separated: parquet, csv, jsonl, or a plugin's (see iqa plugins).",
            autocompletion=complete_formats,
            rich_help_panel=OUTPUT,
        ),
    ] = "parquet,csv",
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON on stdout.", rich_help_panel=OUTPUT)
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet",
            "-q",
            help="No summary and no progress; problems (files skipped) still go to stderr.",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    verbose: VerboseOpt = False,
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file",
            metavar="FILE",
            help="Append one plain line per problem to this file (for cron).",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    fail_on: Annotated[
        FailOn | None,
        typer.Option(
            "--fail-on",
            metavar="bad|degraded|review",
            help="Exit 3 when any image is bad, degraded (or bad), or needs review.",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    rerun: Annotated[
        bool,
        typer.Option(
            "--rerun",
            help="Assess every file again instead of reusing unchanged files' answers.",
            rich_help_panel=BEHAVIOUR,
        ),
    ] = False,
    workers: WorkersOpt = None,
    file_timeout: Annotated[
        float,
        typer.Option(
            "--file-timeout",
            min=0.0,
            metavar="SECONDS",
            help="Skip a file that takes longer than this to read, decode and prepare (error_code timeout); "
            "0: no limit. Not applied with --workers 0.",
            rich_help_panel=BEHAVIOUR,
        ),
    ] = DEFAULT_FILE_TIMEOUT,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="[ADDRESS]",
            help="Run as a Ray Data pipeline: on the cluster at ADDRESS (auto: the running one), or on a local Ray; "
            "the report is a Parquet dataset in OUT/report-dataset (docs/scale-out.md).",
            show_default=False,
            rich_help_panel=SCALE_OUT,
        ),
    ] = None,
    ray_actors: Annotated[
        int | None,
        typer.Option(
            "--ray-actors",
            min=1,
            metavar="N",
            help="With --ray: engine actors (one model each).",
            show_default="one per GPU; for a CPU engine one per CPU",
            rich_help_panel=SCALE_OUT,
        ),
    ] = None,
) -> None:
    """Assess every image, flag the bad and the doubtful, write reports and print a summary."""
    from iqa_cli.audit.discover import missing_given, require_backends
    from iqa_cli.audit.run import AuditSettings, audit_folder
    from iqa_cli.cli.progress import ProblemLog, RunHooks, run_with_progress
    from iqa_cli.report.summary import render

    with user_errors():
        address, paths = ray_address(ray, paths or []) if ray is not None else (None, paths)
        if not paths and from_file is None:
            raise UsageError("give image files or folders, or --from-file LIST ('-' for standard input)")
        if from_file not in (None, "-") and not os.access(from_file, os.R_OK):
            raise UsageError(f"cannot read the list {from_file}: check the path, or use '-' for standard input")
        require_backends(paths or [])  # a URL whose fsspec backend is missing: what to install, exit 2
        missing = missing_given(paths) if paths and from_file is None else None
        if missing is not None:
            # Before the store or any report is touched: a typo must not replace last night's report.
            raise UsageError(f"no such file or folder: {missing}; nothing was audited, {out} is unchanged")
        chosen_writers = writer_classes(formats)
        chosen_checks = _checks(checks)
        settings = AuditSettings(
            # A list of paths can be walked twice: the progress display counts the files ahead of the work.
            paths=list(paths or []) if from_file is None else _all_paths(paths or [], from_file),
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
            image_column=image_column,
            id_column=id_column,
        )
        if ray is not None:
            from iqa_cli.audit.ray_audit import RayOptions, audit_on_ray

            options = engine_options(
                model, device, dtype, max_new_tokens, draft_decode, pixels, clean_share=clean_share
            )

            def audit_run(hooks: RunHooks) -> Summary:
                return audit_on_ray(
                    settings, engine, options, out, RayOptions(address, ray_actors), checks=chosen_checks, **hooks
                )
        else:

            def audit_run(hooks: RunHooks) -> Summary:
                return audit_folder(
                    settings,
                    lambda: engine_from(
                        engine, model, device, dtype, max_new_tokens, draft_decode, pixels, clean_share=clean_share
                    ),
                    out,
                    chosen_writers,
                    checks=chosen_checks,
                    **hooks,
                )

        with closing(ProblemLog(log_file)) as problems:  # problems reach stderr even with --quiet or --json
            summary = run_with_progress(
                audit_run,
                problems,
                silent=quiet or json_out,
                verbose=verbose,
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
    from iqa_cli.plugins import chosen_checks

    return chosen_checks(names)


def _failed(summary: Summary, fail_on: FailOn) -> bool:
    if fail_on is FailOn.review:
        return summary.needs_review > 0
    if fail_on is FailOn.degraded:
        return summary.verdicts.get("degraded", 0) + summary.verdicts.get("bad", 0) > 0
    return summary.verdicts.get("bad", 0) > 0


app.add_typer(model_app, name="model", cls=HelpGroup)
app.add_typer(config_app, name="config", cls=HelpGroup)
app.command("compare", epilog=COMPARE_EPILOG)(compare)
app.command("rank", epilog=RANK_EPILOG)(rank)
app.command("eval", epilog=EVAL_EPILOG)(eval_command)


REPORT_EPILOG = "\n\n".join(
    [
        "Examples:",
        "  iqa report iqa-report/ --verdict bad",
        "  iqa report iqa-report/ --needs-review --export review.txt",
        "  mkdir -p review && iqa report iqa-report/ --verdict bad --export - -0 | xargs -0 mv -n -t review/ --",
        "Paths in reports are absolute, so an export names the same files from any folder; -0 (NUL-separated) "
        "keeps a name holding a newline whole. Move files to look at them before deleting anything.",
        "--verdict takes ok, degraded or bad; --distortion a DQ-495K name (blur, noise, compression, "
        "overly high brightness, ...) or its category key (brighten); an unknown value is a usage error (exit 2) "
        "that names the closest choice.",
    ]
)

FILTERS = "Filters (all must hold)"


def _complete_verdicts(incomplete: str) -> list[str]:
    from iqa_cli.report.schema import VERDICTS

    return [v for v in VERDICTS if v.startswith(incomplete)]


def _complete_distortions(incomplete: str) -> list[tuple[str, str]]:
    """The category keys (one word each, which a shell keeps whole), with the DQ-495K name each stands for."""
    from iqa_cli.categories import CATEGORIES

    return [(key, name) for key, name in CATEGORIES.items() if key.startswith(incomplete)]


@app.command("report", epilog=REPORT_EPILOG)
def report(
    out_dir: Annotated[
        Path, typer.Argument(metavar="OUT", help="A report folder written by iqa audit.", show_default=False)
    ],
    verdict: Annotated[
        list[str] | None,
        typer.Option(
            "--verdict",
            metavar="ok|degraded|bad",
            help="Keep images with this verdict (repeatable).",
            autocompletion=_complete_verdicts,
            rich_help_panel=FILTERS,
        ),
    ] = None,
    review: Annotated[
        bool, typer.Option("--needs-review", help="Keep images whose answer needs review.", rich_help_panel=FILTERS)
    ] = False,
    distortion: Annotated[
        list[str] | None,
        typer.Option(
            "--distortion",
            metavar="NAME",
            help="Keep images with this distortion (repeatable).",
            autocompletion=_complete_distortions,
            rich_help_panel=FILTERS,
        ),
    ] = None,
    errors: Annotated[
        bool, typer.Option("--errors", help="Keep files that could not be assessed.", rich_help_panel=FILTERS)
    ] = False,
    export: Annotated[
        str | None,
        typer.Option(
            "--export",
            metavar="FILE",
            help="Write the kept paths to this file, one per line ('-': stdout).",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    null: Annotated[
        bool,
        typer.Option(
            "--export0",
            "-0",
            help="With --export: end each path with a NUL byte, not a newline (xargs -0).",
            rich_help_panel=OUTPUT,
        ),
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON on stdout.", rich_help_panel=OUTPUT)
    ] = False,
) -> None:
    """Re-print the summary of a finished audit, filtered, and export the matching paths; runs nothing.

    A line list (--export) leaves out paths holding a newline (counting them on stderr); --export0 lists every path."""
    from iqa_cli.report.reread import RowFilter, checked_filter, read_rows, select, unmatched_distortions
    from iqa_cli.report.summary import render

    with user_errors():
        if null and export is None:
            raise UsageError("--export0 goes with --export FILE (or --export - for stdout)")
        keep = checked_filter(
            RowFilter(verdicts=verdict or (), needs_review=review, distortions=distortion or (), errors=errors)
        )
        chosen = select(read_rows(out_dir), keep)
        problem = unmatched_distortions(keep, chosen.distortions)
        if problem is not None:
            raise problem
        if export is not None:
            _export(chosen.paths, export, null)
            if export == "-":
                return
    if json_out:
        typer.echo(chosen.summary.to_json())
        return
    console = stdout_console()
    s = chosen.summary
    which = f" ({shown(keep.described())})" if keep.described() else ""
    console.print(
        f"[bold]iqa report[/bold] {shown(str(out_dir))}: {s.files} of {chosen.rows} files match{which}",
        highlight=False,
    )
    if s.engine:
        console.print(shown(f"engine {s.engine} {s.engine_version}"), highlight=False)
    render(s, console, run_heading=False)


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


PLUGINS_EPILOG = (
    "--json prints a list of objects with kind (engine, format or check), name (what --engine, --format or "
    "--checks takes), class (module.Class), distribution and version (the installed package that provides it: "
    "iqa-cli for the built-in ones; null when it came from no installed package) and built_in (true or false)."
)


@app.command("plugins", epilog=PLUGINS_EPILOG)
def list_plugins(
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the list as JSON on stdout (keys below).", rich_help_panel=OUTPUT)
    ] = False,
) -> None:
    """List the installed engines, report formats and checks, and which package each comes from."""
    from rich.table import Table

    from iqa_cli import plugins

    with user_errors():
        registries = (("engine", plugins.engines()), ("format", plugins.writers()), ("check", plugins.checks()))
        found = [(kind, name, cls) for kind, registry in registries for name, cls in sorted(registry.items())]
        if json_out:
            typer.echo(json.dumps([_plugin_json(kind, name, cls) for kind, name, cls in found], indent=2))
            return
        table = Table(box=None, show_header=True, pad_edge=False)
        for column in ("kind", "name", "class", "from"):
            table.add_column(column, overflow="fold")
        for kind, name, cls in found:
            table.add_row(kind, name, f"{cls.__module__}.{cls.__qualname__}", plugins.origin(cls))
        stdout_console().print(table)


def _plugin_json(kind: str, name: str, cls: type) -> dict[str, Any]:
    """One entry of `iqa plugins --json`: the keys PLUGINS_EPILOG documents."""
    from iqa_cli import plugins

    found = plugins.distribution(cls)
    built_in = found is None and cls.__module__.split(".")[0] == "iqa_cli"
    distribution, version = found or (("iqa-cli", __version__) if built_in else (None, None))
    return {
        "kind": kind,
        "name": name,
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "distribution": distribution,
        "version": version,
        "built_in": built_in,
    }
