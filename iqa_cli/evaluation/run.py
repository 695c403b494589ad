"""Running an engine over a labelled set through the audit pipeline, and writing the evaluation's tables and plot."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from iqa_cli.audit.load import DEFAULT_MAX_PIXELS
from iqa_cli.audit.queue import default_workers
from iqa_cli.audit.run import AuditSettings, run_audit
from iqa_cli.engines.base import Engine
from iqa_cli.errors import UsageError
from iqa_cli.evaluation.metrics import Answer, EvalReport, Label, answer_from_row, group_labels
from iqa_cli.install import install_hint
from iqa_cli.report.summary import Summary
from iqa_cli.report.writers import ReportWriter

WRITTEN_TABLES = ("identification", "confidence", "rows")  # each as eval-NAME.FORMAT; the rest are in the summary


def assess_labels(
    labels: Sequence[Label],
    engine: Engine,
    *,
    workers: int | None = None,
    batch_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    engine_note: str = "",
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[list[Answer], Summary]:
    """The engine's answer for every labelled file, assessed exactly as `iqa audit` would assess the files.

    The files go through `run_audit` itself (same discovery, decode plan, preparer in the workers,
    batching, engine retries, error rows), with no writers, store or checks: a file that fails to load
    comes back as an Answer with its error.
    """
    settings = AuditSettings(
        paths=list(group_labels(labels)),
        recursive=False,
        workers=default_workers() if workers is None else workers,
        batch_size=batch_size,
        max_pixels=max_pixels,
        rerun=True,
    )
    answers: list[Answer] = []

    def collect(row: dict[str, Any]) -> None:
        answers.append(answer_from_row(row))
        if on_row is not None:
            on_row(row)

    summary = run_audit(settings, engine, [], engine_note=engine_note, on_row=collect)
    return answers, summary


def write_report(
    report: EvalReport, out: Path, writer_classes: Sequence[type[ReportWriter]], extra: dict[str, Any]
) -> list[Path]:
    """eval-identification, eval-confidence and eval-rows through each writer (the audit's writer family), and
    eval-summary.json (with `extra`)."""
    out.mkdir(parents=True, exist_ok=True)
    tables = report.to_rows()
    written: list[Path] = []
    for name in WRITTEN_TABLES:
        rows = tables[name]
        schema = pa.Table.from_pylist(rows).schema if rows else pa.schema([])
        for cls in writer_classes:
            writer = cls(out, f"eval-{name.replace('_', '-')}", schema=schema)
            writer.write(rows)
            written.append(writer.close())
    summary = out / "eval-summary.json"
    data = {**extra, **report.to_dict(), "files_written": [str(p) for p in [*written, summary]]}
    temporary = summary.with_name(summary.name + ".partial")
    temporary.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(temporary, summary)
    written.append(summary)
    return written


def plot_report(report: EvalReport, path: Path) -> Path:
    """A PNG: the reliability diagram (accuracy by confidence bucket, the diagonal, counts) and the
    per-category identification rates at severities 2 and 4. Needs matplotlib (the `plot` extra)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError(f"--plot needs matplotlib: {install_hint('plot')}") from None
    figure = Figure(figsize=(13, 5), layout="constrained")
    FigureCanvasAgg(figure)  # the Agg backend, without touching pyplot's global state
    reliability, bars = figure.subplots(1, 2, width_ratios=(1, 1.6))

    buckets = report.confidence
    for bucket in buckets:
        width = bucket["high"] - bucket["low"]
        if bucket["count"]:
            reliability.bar(bucket["low"], bucket["accuracy"], width=width, align="edge", color="#4c72b0", alpha=0.8)
            reliability.text(
                bucket["low"] + width / 2, bucket["accuracy"] + 0.02, f"n={bucket['count']}", ha="center", fontsize=8
            )
    reliability.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ece = "n/a" if math.isnan(report.ece) else f"{report.ece:.3f}"
    reliability.set(xlim=(0, 1), ylim=(0, 1.08), xlabel="confidence", ylabel="accuracy (primary answer right)")
    reliability.set_title(f"Reliability (ECE {ece})")
    reliability.legend(loc="upper left", fontsize=8)

    rates = {(c["row"], c["severity"]): c["rate"] for c in report.identification}
    categories = [c["row"] for c in report.identification if c["severity"] == 1 and c["row"] != "mean"]
    categories = [c for c in categories if not c.startswith("pairs")]
    for offset, severity, colour in ((-0.2, 2, "#55a868"), (0.2, 4, "#c44e52")):
        values = [rates.get((c, severity)) for c in categories]
        positions = [i + offset for i, v in enumerate(values) if v is not None]
        bars.bar(positions, [v for v in values if v is not None], width=0.4, color=colour, label=f"severity {severity}")
    bars.set_xticks(range(len(categories)), categories, rotation=40, ha="right", fontsize=8)
    bars.set(ylim=(0, 1.05), ylabel="identification rate")
    bars.set_title("Identified, single-distortion images")
    bars.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path
