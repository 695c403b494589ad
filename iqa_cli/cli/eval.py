"""`iqa eval`: a thin command over evaluation/metrics.py (metrics, labelled sets) and evaluation/run.py (the run)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from iqa_cli.cli.errors import user_errors
from iqa_cli.cli.options import (
    MODEL,
    OUTPUT,
    CleanShareOpt,
    DeviceOpt,
    DtypeOpt,
    EngineBatchOpt,
    EngineOpt,
    MaxPixelsOpt,
    ModelOpt,
    TableFormatsOpt,
    TokensOpt,
    WorkersOpt,
    decode_workers,
    engine_from,
    writer_classes,
)
from iqa_cli.cli.terminal import stdout_console
from iqa_cli.defaults import AUTO, DEFAULT_MAX_PIXELS
from iqa_cli.errors import EXIT_INTERRUPTED, UsageError
from iqa_cli.text import shown

if TYPE_CHECKING:  # the evaluation (numpy, the audit) and the progress display load when the command runs
    from rich.console import Console

    from iqa_cli.evaluation.metrics import EvalReport

MAKE_SET = "Building a set (--make-set)"

# Each paragraph is one line, which --help wraps to the terminal; the man page splits the epilog at blank lines.
EVAL_EPILOG = "\n\n".join(
    [
        "Examples:",
        "  iqa eval --make-set clean-photos/ --set-out evalset/ --pairs 2 --max-side 1024",
        "  iqa eval evalset/labels.csv --engine signal --out eval-signal/ --plot eval-signal/reliability.png",
        "  iqa eval evalset/labels.csv --engine depictqa --device cuda --json",
        "The labels file has the header file,category,severity[,function]: one row per distortion of a file "
        "(category a DQ-495K key such as blur or brighten), or one row `none` with an empty severity for a clean "
        "photo; paths are relative to the file's folder. Images are assessed exactly as iqa audit assesses them. "
        "The metrics are defined in docs/eval.md.",
        "Exit codes: 0 done, 1 runtime failure, 2 usage error (a bad labels file), 130 interrupted.",
    ]
)


def eval_command(
    labels: Annotated[
        Path | None,
        typer.Argument(
            metavar="LABELS", help="The labels CSV (file,category,severity[,function]).", show_default=False
        ),
    ] = None,
    max_pixels: MaxPixelsOpt = DEFAULT_MAX_PIXELS,
    engine: EngineOpt = AUTO,
    batch_size: EngineBatchOpt = None,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    max_new_tokens: TokensOpt = None,
    draft_decode: Annotated[
        bool,
        typer.Option(
            "--draft-decode",
            help="Decode large JPEGs at reduced scale first, as in audit.",
            rich_help_panel=MODEL,
        ),
    ] = False,
    clean_share: CleanShareOpt = None,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", metavar="DIR", help="Folder for the evaluation tables.", rich_help_panel=OUTPUT),
    ] = Path("iqa-eval"),
    formats: TableFormatsOpt = "parquet,csv",
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            metavar="PNG",
            help="Also draw a reliability diagram and identification bars into this PNG.",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="Print the summary as JSON on stdout.", rich_help_panel=OUTPUT),
    ] = False,
    workers: WorkersOpt = None,
    make_set_from: Annotated[
        Path | None,
        typer.Option(
            "--make-set",
            metavar="DIR",
            help="Build a labelled set from this folder of clean photos instead of evaluating (photos side by side in"
            " --workers processes; the same set whatever their number).",
            rich_help_panel=MAKE_SET,
        ),
    ] = None,
    set_out: Annotated[
        Path | None,
        typer.Option(
            "--set-out", metavar="DIR", help="The folder for the images and labels.csv.", rich_help_panel=MAKE_SET
        ),
    ] = None,
    severities: Annotated[
        str,
        typer.Option(
            "--severities", metavar="LIST", help="Severities to generate, comma-separated.", rich_help_panel=MAKE_SET
        ),
    ] = "1,2,3,4,5",
    functions: Annotated[
        str,
        typer.Option(
            "--functions",
            metavar="all|one-per-category",
            help="Every distortion function, or one per category.",
            rich_help_panel=MAKE_SET,
        ),
    ] = "all",
    pairs: Annotated[
        int,
        typer.Option(
            "--pairs", min=0, metavar="N", help="Two-distortion images per clean photo.", rich_help_panel=MAKE_SET
        ),
    ] = 0,
    seed: Annotated[
        int,
        typer.Option("--seed", metavar="N", help="The random seed (same seed, same set).", rich_help_panel=MAKE_SET),
    ] = 0,
    max_side: Annotated[
        int | None,
        typer.Option(
            "--max-side",
            min=1,
            metavar="N",
            help="Shrink photos to this longest side first.",
            show_default="no shrinking",
            rich_help_panel=MAKE_SET,
        ),
    ] = None,
) -> None:
    """Measure an engine on images with known distortions, or build such a set with --make-set."""
    from iqa_cli.evaluation.metrics import group_labels, make_set, read_labels, score

    with user_errors():
        if make_set_from is not None:
            if labels is not None:
                raise UsageError("give either a labels file to evaluate or --make-set CLEAN_DIR, not both")
            if set_out is None:
                raise UsageError("--make-set needs --set-out DIR: the folder for the images and labels.csv")
            written = make_set(
                make_set_from,
                set_out,
                severities=_severities(severities),
                functions=functions,
                seed=seed,
                pairs=pairs,
                max_side=max_side,
                workers=decode_workers(workers),
            )
            _set_made(written, json_out)
            return
        if labels is None:
            raise UsageError("give a labels CSV to evaluate, or --make-set CLEAN_DIR --set-out DIR to build one")
        from iqa_cli.cli.progress import progress_rows
        from iqa_cli.evaluation.run import assess_labels, plot_report, write_report

        chosen_writers = writer_classes(formats, any_schema=True)
        label_rows = read_labels(labels)
        chosen, engine_note = engine_from(
            engine, model, device, dtype, max_new_tokens, draft_decode, clean_share=clean_share
        )
        try:
            with progress_rows(len(group_labels(label_rows)), "evaluating", silent=json_out) as on_row:
                answers, run = assess_labels(
                    label_rows,
                    chosen,
                    workers=decode_workers(workers),
                    batch_size=batch_size,
                    max_pixels=max_pixels,
                    engine_note=engine_note,
                    on_row=on_row,
                )
        finally:
            chosen.close()
        if run.interrupted:
            raise typer.Exit(EXIT_INTERRUPTED)
        report = score(label_rows, answers)
        extra = {"labels": str(labels), "engine": run.engine, "engine_version": run.engine_version}
        extra["engine_note"] = engine_note
        written = write_report(report, out, chosen_writers, extra)
        if plot is not None:
            written.append(plot_report(report, plot))
    if json_out:
        typer.echo(json.dumps({**extra, **report.to_dict(), "files_written": [str(p) for p in written]}, indent=2))
    else:
        render_report(report, stdout_console(), f"{run.engine} {run.engine_version}", written)


def _severities(text: str) -> list[int]:
    from iqa_cli.evaluation.metrics import SEVERITIES

    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--severities takes whole numbers 1-5 separated by commas, not {text!r}") from None
    if not values or any(v not in SEVERITIES for v in values):
        raise UsageError(f"--severities takes numbers among 1-5, not {text!r}")
    return values


def _set_made(labels: Path, json_out: bool) -> None:
    from iqa_cli.evaluation.metrics import group_labels, read_labels

    rows = read_labels(labels)
    files = group_labels(rows)
    clean = sum(1 for file_rows in files.values() if file_rows[0].category == "none")
    if json_out:
        typer.echo(json.dumps({"labels": str(labels), "images": len(files), "clean": clean, "label_rows": len(rows)}))
    else:
        stdout_console().print(
            f"wrote {len(files)} images ({clean} clean) and {shown(str(labels))}; "
            f"evaluate with: iqa eval {shown(str(labels))}",
            highlight=False,
        )


def _pct(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.0f}%"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def render_report(report: EvalReport, console: Console, engine: str, written: list[Path]) -> None:
    """The evaluation as Rich tables: identification, clean flagged, accuracy, names, calibration."""
    from rich.table import Table

    from iqa_cli.evaluation.metrics import SEVERITIES

    console.print(
        f"[bold]{shown(engine)}[/bold]: {report.assessed} of {report.images} labelled images assessed", highlight=False
    )
    ident = Table(title="Identified (single distortions; pairs: both / either named)", title_justify="left")
    ident.add_column("category")
    for s in SEVERITIES:
        ident.add_column(f"sev {s}", justify="right")
    by_row: dict[str, dict[int, dict[str, Any]]] = {}
    for cell in report.identification:
        by_row.setdefault(cell["row"], {})[cell["severity"]] = cell
    for row, cells in by_row.items():
        rates = [f"{_pct(cells[s]['rate'])} ({cells[s]['images']})" if cells[s]["images"] else "-" for s in SEVERITIES]
        ident.add_row(f"[bold]{row}[/bold]" if row == "mean" else shown(row), *rates)
    console.print(ident)

    clean = report.clean_flagged
    console.print(
        f"Clean photos flagged: {_pct(clean['share'])} ({clean['flagged']} of {clean['images']})", highlight=False
    )
    accuracy = Table(title="Primary answer right", title_justify="left")
    for column in ("images", "severity", "right", "accuracy"):
        accuracy.add_column(column, justify="right")
    for row in report.primary_accuracy:
        severity = "all" if row["severity"] is None else ("clean" if row["severity"] == 0 else str(row["severity"]))
        accuracy.add_row(str(row["images"]), severity, str(row["right"]), _pct(row["accuracy"]))
    names = Table(title="Distortions named per image", title_justify="left")
    for column in ("images", "kind", "severity", "mean named"):
        names.add_column(column, justify="right")
    for row in report.names_per_image:
        names.add_row(str(row["images"]), row["kind"], str(row["severity"] or "-"), _num(row["mean_named"], 2))
    buckets = Table(title="Confidence buckets", title_justify="left")
    for column in ("confidence", "answers", "accuracy", "mean confidence"):
        buckets.add_column(column, justify="right")
    for b in report.confidence:
        bucket = f"{b['low']:.1f}-{b['high']:.1f}"
        buckets.add_row(bucket, str(b["count"]), _pct(b["accuracy"]), _num(b["mean_confidence"]))
    console.print(accuracy, names, buckets)
    calibration = f"ECE {_num(report.ece)}   AUROC of confidence (right vs wrong) {_num(report.auroc)}"
    console.print(calibration, highlight=False)
    if report.severity_score:
        rho = Table(title="Spearman(severity, score) - should be negative", title_justify="left")
        for column in ("category", "function", "images", "rho"):
            rho.add_column(column, justify="right" if column in ("images", "rho") else "left")
        for row in report.severity_score:
            rho.add_row(row["category"], shown(row["function"] or "-"), str(row["images"]), _num(row["spearman"], 2))
        console.print(rho)
    if report.failed:
        console.print(f"[yellow]{len(report.failed)} files could not be assessed:[/yellow]")
        for failure in report.failed[:10]:
            console.print(f"  {shown(failure['file'])}: {shown(failure['error'])}", highlight=False)
        if len(report.failed) > 10:
            console.print(f"  ... and {len(report.failed) - 10} more (eval-rows lists them all)")
    console.print("wrote " + ", ".join(shown(str(p)) for p in written), highlight=False)
