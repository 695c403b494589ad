"""`iqa model ...`: fetch, verify and list the DepictQA model files (thin commands over engines/depictqa/files.py)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

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

# Each paragraph is one line, which --help wraps to the terminal (a newline inside one would stay a break
# there); the man page splits the epilog at blank lines into examples, notes and exit codes.
DOWNLOAD_EPILOG = "\n\n".join(
    [
        "Needs about 16 GB. Honours HF_HOME, HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE. "
        "Re-running resumes and skips finished files.",
        "The hub is asked once first, within HF_HUB_ETAG_TIMEOUT seconds (default 10): when it does not answer, "
        "the command stops at once with one line (exit 1) saying what to check, instead of retrying. Without "
        "network, copy the files in by hand (`iqa model info` lists the folders) and run `iqa model check`. "
        "HF_HUB_VERBOSITY=info shows huggingface_hub's own log lines, silenced otherwise.",
    ]
)

CHECK_EPILOG = "\n\n".join(
    [
        "Examples:",
        "  iqa model check",
        "  iqa model check /data/models --json",
        "--json prints one object: models_folder (path), ok (true when DepictQA can run), variants (the "
        "checkpoints that verified) and findings, a list of objects with part (the folder or file), level (ok, "
        "warning or error) and message. The exit code is the same with or without --json.",
        "Exit codes: 0 ready, 1 something is missing or wrong (each finding says what), 2 usage error, "
        "130 interrupted.",
    ]
)

INFO_EPILOG = "\n\n".join(
    [
        "Examples:",
        "  iqa model info",
        "  iqa model info /data/models --json",
        "Each ckpt.pt is looked at from its tensor names (quick, no torch): one that is not a DepictQA2 "
        "checkpoint is listed with the reason, never as a variant; `iqa model check` verifies every file.",
        "--json prints one object: models_folder (path), parts (a list of objects with name, repo_id, path, "
        "present, size_bytes and problem, null unless a checkpoint is not what its folder is for), variants "
        "(the checkpoints present that look right) and default_variant (the one the depictqa engine loads; null "
        "when none is installed or its checkpoint is unusable).",
        "Exit codes: 0 listed (even when parts are missing or unusable), 2 usage error, 130 interrupted.",
    ]
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout (keys below).")]


@model_app.command(epilog=DOWNLOAD_EPILOG)
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


@model_app.command("check", epilog=CHECK_EPILOG)
def check_command(
    directory: Annotated[Path | None, typer.Argument(help=DIR_HELP, show_default=False)] = None,
    json_out: JsonOpt = False,
) -> None:
    """Verify a models folder offline: files, shapes and key names, which variant; say what is wrong."""
    with user_errors():
        _show_report(verify.check(directory or files.default_models_dir()), json_out=json_out)


@model_app.command("info", epilog=INFO_EPILOG)
def info_command(
    directory: Annotated[Path | None, typer.Argument(help=DIR_HELP, show_default=False)] = None,
    json_out: JsonOpt = False,
) -> None:
    """List what is installed in the models folder, with sizes (`iqa model check` verifies it)."""
    with user_errors():
        root = Path(directory or files.default_models_dir()).expanduser()
        parts = files.info(root)
        installed = files.installed_variants(root)
        # The engine loads the first installed variant (files.locate); one whose ckpt.pt is not a DepictQA2
        # checkpoint is no default, whatever its folder's name.
        default = next((p for p in parts if p.name == installed[0]), None) if installed else None
        looks_right = [p.name for p in parts if p.name in files.VARIANTS and p.present and not p.problem]
        if json_out:
            typer.echo(json.dumps(_info_json(root, parts, looks_right, default), indent=2))
            return
        console = stdout_console()
        console.print(f"models folder: {shown(str(root))}", highlight=False, soft_wrap=True)
        for part in parts:
            if part.problem:
                state = "[red]unusable[/red] "
            elif part.present:
                state = f"{_size(part.size_bytes):>9}"
            else:
                state = "[dim]  missing[/dim]"
            console.print(
                f"  {part.name:<11}{state}  {part.repo_id:<40} {shown(str(part.path))}",
                highlight=False,
                soft_wrap=True,
            )
            if part.problem:
                problem = f"{part.problem.rstrip('.')}; `iqa model check {root}` verifies every file"
                console.print(f"{'':<15}{shown(problem)}", highlight=False, soft_wrap=True)
        if default is None:
            footer = "no DepictQA checkpoint: run `iqa model download`"
        elif default.problem:
            footer = (
                f"no usable default variant: {files.variant_dir_name(default.name)}/{files.CHECKPOINT} is not the "
                f"{default.name} checkpoint (see above); replace it with "
                f"`iqa model download --variant {default.name} --dir {root}`"
            )
        else:
            footer = f"default variant: {default.name}"
        console.print(shown(footer), highlight=False, soft_wrap=True)


def _info_json(
    root: Path, parts: list[files.InstalledPart], looks_right: list[str], default: files.InstalledPart | None
) -> dict[str, Any]:
    """`iqa model info --json`: the keys INFO_EPILOG documents."""
    return {
        "models_folder": str(root),
        "parts": [
            {
                "name": p.name,
                "repo_id": p.repo_id,
                "path": str(p.path),
                "present": p.present,
                "size_bytes": p.size_bytes,
                "problem": p.problem,
            }
            for p in parts
        ],
        "variants": looks_right,
        "default_variant": default.name if default is not None and not default.problem else None,
    }


def _show_report(report: verify.CheckReport, *, json_out: bool = False) -> None:
    """Print every finding (or the JSON of CHECK_EPILOG); raise ModelFilesError (exit 1) when the folder
    cannot run DepictQA."""
    if json_out:
        typer.echo(json.dumps(_report_json(report), indent=2))
    else:
        console = stdout_console()
        console.print(f"models folder: {shown(str(report.root))}", highlight=False, soft_wrap=True)
        for finding in report.findings:
            console.print(
                f"{_MARKS[finding.level]} {finding.part}: {shown(finding.message)}", highlight=False, soft_wrap=True
            )
    if not report.ok:
        count = len(report.errors) or 1
        where = "in the JSON on stdout" if json_out else "listed above"
        raise ModelFilesError(
            f"{count} problem{'s' if count > 1 else ''} in {report.root} ({where}); "
            f"fix them or re-run `iqa model download --dir {report.root}`."
        )
    if not json_out:
        stdout_console().print(f"ready: {shown(', '.join(report.variants))}", highlight=False, soft_wrap=True)


def _report_json(report: verify.CheckReport) -> dict[str, Any]:
    """`iqa model check --json`: the keys CHECK_EPILOG documents."""
    return {
        "models_folder": str(report.root),
        "ok": report.ok,
        "variants": list(report.variants),
        "findings": [{"part": f.part, "level": f.level, "message": f.message} for f in report.findings],
    }


def _size(size: int) -> str:
    """A byte count for people."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
