"""Options that several commands share, declared once (help panel, metavar, completion), and the two things they
turn into: writers, an engine.

Nothing heavy is imported here at start: `iqa --help`, `--version` and shell completion read this module, so the
plugin registry (which loads the engines, numpy and PyArrow) is imported only by the functions that need it.
"""

from __future__ import annotations

import os
import re
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from iqa_cli.defaults import AUTO, LOCAL_RAY

if TYPE_CHECKING:
    from iqa_cli.engines.base import Engine, EngineOptions
    from iqa_cli.report.writers import ReportWriter

# The help panels of --help, in the order a command declares its options.
INPUT = "Input"
ENGINE = "Engine"
MODEL = "Model (depictqa engine)"
OUTPUT = "Output"
BEHAVIOUR = "Behaviour"
SCALE_OUT = "Scale-out (Ray)"


class HelpGroup(TyperGroup):
    """A command group whose --help (and its commands') shows a value's metavar, never the Python type Typer
    derives from the annotation (<list[str]>, <path>, <bool>).

    An option declared with a metavar shows it; otherwise a flag shows nothing and an option its long name in
    capitals (--dir DIR). An argument shows no type column: its name, or metavar, is already in the first one."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain(super().get_params(ctx))

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _with_optional_values(args))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None and not isinstance(command, TyperGroup):
            _plain(command.get_params(ctx))  # the same parameter objects (--help too) its own --help lists
        return command


_TYPER_FLAGS = frozenset({"help", "install_completion", "show_completion"})
# Options whose value may be left out (`--ray`, `--ray auto`), and the value they then take when the command line
# ends there or another option follows. Typer's parser has no such options: HelpGroup.parse_args writes the value in.
_OPTIONAL_VALUES = {"--ray": LOCAL_RAY}


def ray_address(value: str, paths: list[str]) -> tuple[str | None, list[str]]:
    """`--ray`'s value as an address (None: a local Ray), and the paths. In `iqa audit --ray photos/` the option
    takes the folder's name: a value that is no address but an existing file or folder is the first path."""
    if value == LOCAL_RAY:
        return None, paths
    if value == "auto" or "://" in value or _HOST_PORT.fullmatch(value) or not os.path.lexists(value):
        return value, paths
    return None, [value, *paths]


_HOST_PORT = re.compile(r"[\w.-]+:\d+")


def _with_optional_values(args: list[str]) -> list[str]:
    """`args` with `--ray` written as `--ray=local` where no value follows it (up to a `--`)."""
    given = list(args)
    for index, arg in enumerate(given):
        if arg == "--":
            break
        if arg in _OPTIONAL_VALUES and (index + 1 == len(given) or given[index + 1].startswith("-")):
            given[index] = f"{arg}={_OPTIONAL_VALUES[arg]}"
    return given


def _plain(params: list[Any]) -> list[Any]:
    for param in params:
        if param.name in _TYPER_FLAGS and getattr(param, "is_flag", False) and param.default is None:
            # Typer's own flags default to None, which sends the value through its pydantic coercion on every
            # start (pydantic imported: about 50 ms of `iqa --help`); False is the same answer without it.
            param.default = False
        if getattr(param, "param_type_name", "") == "argument":
            param.display_type_rich = _no_type
        elif param.metavar is None:
            long = next((o for o in param.opts if o.startswith("--")), param.opts[0])
            param.metavar = "" if getattr(param, "is_flag", False) else long.lstrip("-").replace("-", "_").upper()
    return params


def _no_type(ctx: Any = None) -> None:
    return None


# ------------------------------------------------------------------------------------------- completion


def _summary(cls: type) -> str:
    """A plugin class's first line of description, for shells that show one next to each completion."""
    text = (getattr(cls, "description", "") or (cls.__doc__ or "")).strip().split("\n")[0]
    text = text.split(". ")[0].split(": ")[0].rstrip(".")
    return text if len(text) <= 60 else text[:60].rsplit(" ", 1)[0] + "..."


_KINDS = ("engines", "writers", "checks")


def _catalogue(kind: str) -> list[tuple[str, str, bool]]:
    """(name, description, writes any table) of the installed plugin classes of one kind; empty when a plugin is
    broken (completion must not print a traceback into the shell; the command itself says what is wrong).

    Loading the plugins imports what they are built on (numpy, Pillow, pyarrow: ~0.3 s), so the answer is kept
    in the user cache folder, keyed by the installed plugin distributions and iqa's version: a TAB after the
    first one reads a small JSON file."""
    import json

    key = _installed_key()
    cache = _cache_file()
    try:
        found = json.loads(cache.read_text(encoding="utf-8"))
        if found.get("key") == key:
            return [tuple(item) for item in found[kind]]  # type: ignore[misc]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        from iqa_cli import plugins

        listed = {
            name: [
                (n, _summary(cls), bool(getattr(cls, "writes_any_schema", False)))
                for n, cls in sorted(getattr(plugins, name)().items())
            ]
            for name in _KINDS
        }
    except Exception:
        return []
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"key": key, **listed}), encoding="utf-8")
    except OSError:
        pass  # a read-only home: completion still works, only slower
    return listed[kind]


def _installed_key() -> list[Any]:
    import importlib.metadata

    from iqa_cli import __version__

    dists = importlib.metadata.distributions()
    found = sorted(
        (d.metadata["name"] or "", d.version) for d in dists if any(e.group == "iqa" for e in d.entry_points)
    )
    return [__version__, *map(list, found)]


def _cache_file() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("iqa")) / "completion.json"


def _complete_list(incomplete: str, names: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Completions of the last item of a comma-separated list, leaving out the items already given."""
    done, comma, last = incomplete.rpartition(",")
    given = {n.strip().lower() for n in done.split(",")} if comma else set()
    return [(done + comma + n, why) for n, why in names if n.startswith(last.lower()) and n not in given]


def complete_engines(incomplete: str) -> list[tuple[str, str]]:
    """--engine: auto and every installed engine."""
    names = [(AUTO, "the model when installed, else signal")]
    names += [(name, why) for name, why, _ in _catalogue("engines")]
    return [(n, why) for n, why in names if n.startswith(incomplete)]


def complete_formats(incomplete: str) -> list[tuple[str, str]]:
    """--format of iqa audit: every installed report format."""
    return _complete_list(incomplete, [(n, why) for n, why, _ in _catalogue("writers")])


def complete_table_formats(incomplete: str) -> list[tuple[str, str]]:
    """--format of iqa rank and iqa eval: the formats that can hold any table."""
    return _complete_list(incomplete, [(n, why) for n, why, any_schema in _catalogue("writers") if any_schema])


def complete_checks(incomplete: str) -> list[tuple[str, str]]:
    """--checks: all, none, or installed check names."""
    names = [("all", "every installed check"), ("none", "no plugin checks")]
    names += [(n, why) for n, why, _ in _catalogue("checks")]
    return _complete_list(incomplete, names)


# ---------------------------------------------------------------------------------------------- options

EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        "-e",
        metavar="NAME",
        help="Engine: signal, depictqa, auto (the model when installed, else signal) or a plugin's (iqa plugins).",
        autocompletion=complete_engines,
        rich_help_panel=ENGINE,
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        metavar="PATH",
        help="Models folder for the depictqa engine; for the signal engine, a model file (training/train_signal.py).",
        show_default="$IQA_MODELS_DIR, else the user data folder",
        rich_help_panel=MODEL,
    ),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option(
        "--device",
        metavar="DEVICE",
        help="Model device, e.g. cuda, cuda:1, cpu.",
        show_default="cuda when available, else cpu",
        rich_help_panel=MODEL,
    ),
]
DtypeOpt = Annotated[
    str | None,
    typer.Option(
        "--dtype",
        metavar="DTYPE",
        help="Model dtype: float16, bfloat16, float32.",
        show_default="float16 on cuda, else float32",
        rich_help_panel=MODEL,
    ),
]
TokensOpt = Annotated[
    int | None,
    typer.Option(
        "--max-new-tokens",
        min=1,
        metavar="N",
        help="Longest model answer, in tokens.",
        show_default="400",
        rich_help_panel=MODEL,
    ),
]


class Pixels(str, Enum):
    """--pixels: whose conversion of a file to RGB the depictqa engine judges."""

    iqa = "iqa"
    authors = "authors"


PixelsOpt = Annotated[
    Pixels,
    typer.Option(
        "--pixels",
        metavar="MODE",
        help="Pixels the model sees: iqa (EXIF orientation applied, transparency over white, 16-bit scaled; a "
        "row whose pixels differ from the authors' loader says so in notes) or authors (their "
        "Image.open(path).convert('RGB') exactly, no draft decoding: to compare with published numbers).",
        rich_help_panel=MODEL,
    ),
]
CleanShareOpt = Annotated[
    float | None,
    typer.Option(
        "--clean-share",
        min=0.001,
        max=0.999,
        metavar="X",
        help="The share of photos you expect to be free of distortions (e.g. 0.9 for a photographer's picks, "
        "0.02 for a set of distorted test images). The signal engine's confidence is calibrated for its training "
        "mix (15% clean); this re-weights it by Bayes' rule for yours. Other engines ignore it.",
        show_default="the training mix",
        rich_help_panel=ENGINE,
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        "-j",
        min=0,
        metavar="N",
        help="Decoding processes (0: decode in-process; never more than the cores).",
        show_default="one per core",
        rich_help_panel=BEHAVIOUR,
    ),
]
EngineBatchOpt = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        min=1,
        metavar="N",
        help="Images per engine batch.",
        show_default="the engine's: signal 64, depictqa 256 on cuda, 8 on cpu",
        rich_help_panel=ENGINE,
    ),
]
MaxPixelsOpt = Annotated[
    int,
    typer.Option(
        "--max-pixels",
        min=1,
        metavar="N",
        help="Refuse images larger than this (decompression bombs).",
        rich_help_panel=INPUT,
    ),
]
TableFormatsOpt = Annotated[
    str,
    typer.Option(
        "--format",
        "-f",
        metavar="FORMATS",
        help="Table formats, comma-separated: parquet, csv, jsonl, or a plugin's that writes any table.",
        autocompletion=complete_table_formats,
        rich_help_panel=OUTPUT,
    ),
]
VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Also print, on stderr, the decisions taken (engine and why, batch size, workers, what the results "
        "store replayed) and the time each stage took.",
        rich_help_panel=OUTPUT,
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option("--json", help="Print the result as JSON on stdout.", rich_help_panel=OUTPUT),
]


# ------------------------------------------------------------------------------------------- turned into


def writer_classes(formats: str, *, any_schema: bool = False) -> list[type[ReportWriter]]:
    """The writer classes for a comma-separated list of format names (`plugins.chosen_writers`)."""
    from iqa_cli.plugins import chosen_writers

    return chosen_writers(formats, any_schema=any_schema)


def engine_from(
    name: str,
    model: str | None,
    device: str | None,
    dtype: str | None,
    max_new_tokens: int | None,
    draft_decode: bool = False,
    pixels: Pixels | str = Pixels.iqa,
    clean_share: float | None = None,
) -> tuple[Engine, str]:
    """The engine the options ask for, and a note saying how it was chosen."""
    options = engine_options(model, device, dtype, max_new_tokens, draft_decode, pixels, clean_share=clean_share)
    return create_engine(name, options)


def engine_options(
    model: str | None,
    device: str | None,
    dtype: str | None,
    max_new_tokens: int | None,
    draft_decode: bool = False,
    pixels: Pixels | str = Pixels.iqa,
    clean_share: float | None = None,
) -> EngineOptions:
    """The command line's engine options as the engines take them."""
    from iqa_cli.engines.base import EngineOptions

    return EngineOptions(
        model_dir=model,
        device=device,
        dtype=dtype,
        max_new_tokens=max_new_tokens,
        draft_decode=draft_decode,
        pixels=Pixels(pixels).value,
        clean_share=clean_share,
    )


def create_engine(name: str | None, options: EngineOptions) -> tuple[Engine, str]:
    """`plugins.create_engine`, imported only when an engine is wanted (the registry loads numpy and PyArrow)."""
    from iqa_cli import plugins

    return plugins.create_engine(name, options)


def decode_workers(requested: int | None) -> int:
    """The decode processes to start: one per usable core by default, and never more than the cores (more
    only compete for them, each with its own memory); a larger request is capped, and stderr says so."""
    from iqa_cli.audit.queue import default_workers
    from iqa_cli.cli.terminal import stderr_console

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
