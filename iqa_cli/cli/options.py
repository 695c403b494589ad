"""Options that several commands share, declared once, and the two things they turn into: writers, an engine."""

from __future__ import annotations

from typing import Annotated

import typer

from iqa_cli.audit.queue import default_workers
from iqa_cli.cli.terminal import stderr_console
from iqa_cli.engines.base import Engine, EngineOptions
from iqa_cli.errors import UsageError
from iqa_cli.plugins import create_engine, writers
from iqa_cli.report.writers import ReportWriter

EngineOpt = Annotated[
    str, typer.Option("--engine", "-e", help="Engine: signal, depictqa, or auto (the model when installed).")
]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Models folder for the depictqa engine.")]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="Model device, e.g. cuda, cuda:1, cpu.")]
DtypeOpt = Annotated[str | None, typer.Option("--dtype", help="Model dtype: float16, bfloat16, float32.")]
TokensOpt = Annotated[int | None, typer.Option("--max-new-tokens", min=1, help="Longest model answer, in tokens.")]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", "-j", min=0, help="Decoding processes (0: decode in-process). [default: cores]"),
]
EngineBatchOpt = Annotated[
    int | None, typer.Option("--batch-size", min=1, help="Images per engine batch. [default: the engine's]")
]
MaxPixelsOpt = Annotated[
    int, typer.Option("--max-pixels", min=1, help="Refuse images larger than this (decompression bombs).")
]

TableFormatsOpt = Annotated[
    str,
    typer.Option(
        "--format",
        "-f",
        help="Table formats, comma-separated: parquet, csv, jsonl, or a plugin's that writes any table.",
    ),
]


def writer_classes(formats: str, *, any_schema: bool = False) -> list[type[ReportWriter]]:
    """The writer classes for a comma-separated list of format names, each once, in the order given.

    `any_schema`: the command writes tables other than the audit report (`iqa rank`, `iqa eval`), which only writers
    declaring `writes_any_schema` can hold."""
    available = {
        name: cls for name, cls in writers().items() if not any_schema or getattr(cls, "writes_any_schema", False)
    }
    names = [name.strip().lower() for name in formats.split(",") if name.strip()]
    unknown = [name for name in names if name not in available]
    if unknown or not names:
        raise UsageError(f"unknown report format {', '.join(unknown) or '(none)'}; choose from {', '.join(available)}")
    return [available[name] for name in dict.fromkeys(names)]


def engine_from(
    name: str,
    model: str | None,
    device: str | None,
    dtype: str | None,
    max_new_tokens: int | None,
    draft_decode: bool = False,
) -> tuple[Engine, str]:
    """The engine the options ask for, and a note saying how it was chosen."""
    options = EngineOptions(
        model_dir=model, device=device, dtype=dtype, max_new_tokens=max_new_tokens, draft_decode=draft_decode
    )
    return create_engine(name, options)


def decode_workers(requested: int | None) -> int:
    """The decode processes to start: one per usable core by default, and never more than the cores (more
    only compete for them, each with its own memory); a larger request is capped, and stderr says so."""
    cores = default_workers()
    if requested is None:
        return cores
    if requested > cores:
        stderr_console().print(
            f"[yellow]note[/yellow] --workers {requested} capped at {cores}, the cores this process may use",
            highlight=False,
        )
        return cores
    return requested
