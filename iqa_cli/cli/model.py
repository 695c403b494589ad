"""`iqa model ...`: fetch, verify and list the DepictQA model files (thin commands over engines/depictqa/files.py)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from iqa_cli.cli.errors import user_errors
from iqa_cli.cli.terminal import stderr_console, stdout_console
from iqa_cli.engines.depictqa import files, verify
from iqa_cli.errors import ModelFilesError
from iqa_cli.text import shown

model_app = typer.Typer(
    name="model",
    help="Download, check and list the DepictQA-Wild model files (Vicuna-7B, CLIP, checkpoint, MiniLM).",
    no_args_is_help=True,
)


class Variant(str, Enum):
    """The released DepictQA2 checkpoints (keys of files.VARIANTS)."""

    dq495k = "dq495k"
    abstractor = "abstractor"
    qpath = "qpath"
    qinst = "qinst"


_MARKS = {"ok": "[green]ok[/green]     ", "warning": "[yellow]warning[/yellow]", "error": "[red]error[/red]  "}

DIR_HELP = f"Models folder (default: ${files.MODELS_DIR_ENV}, else the platform's data folder for iqa)."


@model_app.command(
    epilog="Needs about 16 GB. Honours HF_HOME, HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE. "
    "Re-running resumes and skips finished files."
)
def download(
    variant: Annotated[
        Variant,
        typer.Option(
            "--variant",
            help="Checkpoint: dq495k (the paper's model), abstractor (large images, 64 image tokens), "
            "qpath (real photos), qinst (open questions).",
        ),
    ] = Variant.dq495k,
    directory: Annotated[Path | None, typer.Option("--dir", help=DIR_HELP, show_default=False)] = None,
    minilm: Annotated[
        bool, typer.Option("--minilm/--no-minilm", help="Also fetch all-MiniLM-L6-v2 (confidence of --detail).")
    ] = True,
) -> None:
    """Fetch Vicuna-7B v1.5, CLIP ViT-L/14, a DepictQA2 checkpoint and all-MiniLM-L6-v2, then check them."""
    with user_errors():
        root = directory or files.default_models_dir()
        err = stderr_console()

        def announce(item: files.DownloadItem) -> None:
            err.print(f"fetching {item.repo_id} -> {shown(str(root / item.folder))}", highlight=False)

        files.download(root, variant.value, minilm=minilm, on_item=announce)
        _show_report(verify.check(root))


@model_app.command("check")
def check_command(
    directory: Annotated[Path | None, typer.Argument(help=DIR_HELP, show_default=False)] = None,
) -> None:
    """Verify a models folder offline: files, shapes and key names, which variant; say what is wrong."""
    with user_errors():
        _show_report(verify.check(directory or files.default_models_dir()))


@model_app.command("info")
def info_command(
    directory: Annotated[Path | None, typer.Argument(help=DIR_HELP, show_default=False)] = None,
) -> None:
    """List what is installed in the models folder, with sizes (`iqa model check` verifies it)."""
    with user_errors():
        root = directory or files.default_models_dir()
        console = stdout_console()
        console.print(f"models folder: {shown(str(root))}", highlight=False, soft_wrap=True)
        for part in files.info(root):
            state = f"{_size(part.size_bytes):>9}" if part.present else "[dim]  missing[/dim]"
            console.print(
                f"  {part.name:<11}{state}  {part.repo_id:<40} {shown(str(part.path))}",
                highlight=False,
                soft_wrap=True,
            )
        installed = files.installed_variants(root)
        default = installed[0] if installed else None
        console.print(
            f"default variant: {default}" if default else "no DepictQA checkpoint: run `iqa model download`",
            highlight=False,
            soft_wrap=True,
        )


def _show_report(report: verify.CheckReport) -> None:
    """Print every finding; raise ModelFilesError (exit 1) when the folder cannot run DepictQA."""
    console = stdout_console()
    console.print(f"models folder: {shown(str(report.root))}", highlight=False, soft_wrap=True)
    for finding in report.findings:
        console.print(
            f"{_MARKS[finding.level]} {finding.part}: {shown(finding.message)}", highlight=False, soft_wrap=True
        )
    if not report.ok:
        count = len(report.errors) or 1
        raise ModelFilesError(
            f"{count} problem{'s' if count > 1 else ''} in {report.root} (listed above); "
            f"fix them or re-run `iqa model download --dir {report.root}`."
        )
    console.print(f"ready: {shown(', '.join(report.variants))}", highlight=False, soft_wrap=True)


def _size(size: int) -> str:
    """A byte count for people."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
