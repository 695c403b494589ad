"""Settings from `iqa.toml` files and `IQA_*` variables, merged into the command line's defaults with provenance."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import platformdirs

from iqa_cli.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

CONFIG_NAME = "iqa.toml"
ENV_PREFIX = "IQA_"
# IQA_* variables read elsewhere, which are not command-line options (config show lists the others as unused).
WRITTEN_PATHS = frozenset({"out", "log_file", "export", "plot"})
"""Options naming a file or folder iqa writes: a project file may set them only inside its own folder."""
OTHER_VARIABLES = {"IQA_MODELS_DIR": "models folder of the depictqa engine (see `iqa model --help`)"}
# Commands whose options are not settings: configuring how `iqa config show` prints would only confuse.
UNCONFIGURED_COMMANDS = frozenset({"config"})


class Source(str, Enum):
    """Where a setting's value came from, weakest first (the command line beats them all)."""

    DEFAULT = "default"
    USER_FILE = "user file"
    PROJECT_FILE = "project file"
    ENV = "env"


@dataclass(frozen=True)
class Option:
    """A configurable option of one command: its setting key, Click parameter and environment variable."""

    command: tuple[str, ...]  # ("audit",), ("model", "download")
    key: str  # the long option name with underscores: min_confidence, format, json
    param: Any  # the Click/Typer parameter; its `name` is the default_map key (formats for --format)

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.key.upper()

    @property
    def flag(self) -> str:
        return next(opt for opt in self.param.opts if opt.startswith("--"))


@dataclass(frozen=True)
class Setting:
    """One option's effective default and where it came from (`origin`: the file and table, or the variable)."""

    option: Option
    value: Any  # as written in the file or variable: what goes into the default_map
    source: Source
    origin: str = ""
    typed: Any = None  # after the option's own conversion, for display (enums by value, paths as text)
    refused: str | None = None  # why the value may not be used (an output path outside a project file's folder)


@dataclass
class Resolved:
    """The merged configuration: Click's `default_map`, every option's provenance, the files looked at."""

    default_map: dict[str, Any]
    settings: list[Setting]
    files: list[tuple[Source, Path, bool]]  # (which, path, exists), weakest first
    unused_env: list[str] = field(default_factory=list)


def user_config_file() -> Path:
    """The per-user file: `iqa.toml` in the platform's config folder (~/.config/iqa on Linux, honours XDG)."""
    return Path(platformdirs.user_config_dir("iqa")) / CONFIG_NAME


def project_config_file(cwd: Path | None = None) -> Path:
    """The project file: `iqa.toml` in the current folder (not searched upwards, so a run's inputs are visible)."""
    return (cwd or Path.cwd()) / CONFIG_NAME


def configurable_options(root_ctx: Any) -> list[Option]:
    """Every command's settable options, in command-tree order, from the root command's context.

    Eager options (--help, --version) and the completion installers are actions, not settings, and are left out;
    so are the root's own options and the `config` commands.
    """
    found: list[Option] = []
    for path, _ctx, command in _walk(root_ctx):
        if not path:
            continue
        for param in command.params:
            if getattr(param, "param_type_name", "") != "option" or param.is_eager or not param.expose_value:
                continue
            if getattr(param, "hidden", False) or not any(opt.startswith("--") for opt in param.opts):
                continue
            flag = next(opt for opt in param.opts if opt.startswith("--"))
            found.append(Option(path, flag[2:].replace("-", "_"), param))
    return found


def resolve(
    root_ctx: Any,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user_file: Path | None = None,
) -> Resolved:
    """Merge default < user file < project file < environment into a default_map, checking every key and value.

    Within one file a command's own table (`[audit]`, `[model.download]`) beats the tables above it and the
    top-level keys, which apply to every command that has the option. Raises UsageError naming the file (or
    variable), the key and what to do, for an unknown key or table and for a value the option refuses.
    """
    environ = os.environ if environ is None else environ
    options = configurable_options(root_ctx)
    contexts = {path: ctx for path, ctx, _ in _walk(root_ctx)}
    chosen: dict[tuple[tuple[str, ...], str], Setting] = {
        (opt.command, opt.key): Setting(opt, None, Source.DEFAULT, typed=_plain(opt.param.default)) for opt in options
    }
    files = [
        (Source.USER_FILE, user_file or user_config_file()),
        (Source.PROJECT_FILE, project_config_file(cwd)),
    ]
    looked_at: list[tuple[Source, Path, bool]] = []
    for source, path in files:
        looked_at.append((source, path, path.is_file()))
        if path.is_file():
            for setting in _file_settings(path, source, options, contexts):
                chosen[setting.option.command, setting.option.key] = setting
    by_env_var: dict[str, list[Option]] = {}
    for opt in options:
        by_env_var.setdefault(opt.env_var, []).append(opt)
    unused: list[str] = []
    for name in sorted(environ):
        raw = environ[name]
        if not name.startswith(ENV_PREFIX) or not raw:  # an empty variable counts as unset, as in Click
            continue
        if name not in by_env_var:
            if name not in OTHER_VARIABLES:
                unused.append(name)
            continue
        for opt in by_env_var[name]:
            # Multiple-value options (--include) take a whitespace-separated list, as Click's own envvar does.
            value: Any = raw.split() if opt.param.multiple else raw
            typed = _check(
                opt, value, contexts[opt.command], f"environment variable {name}={raw!r}", "change or unset it"
            )
            chosen[opt.command, opt.key] = Setting(opt, value, Source.ENV, name, typed)
    default_map: dict[str, Any] = {}
    for setting in chosen.values():
        if setting.source is Source.DEFAULT:
            continue
        table = default_map
        for part in setting.option.command:
            table = table.setdefault(part, {})
        # A refused value fails only if it would be used: the option given on the command line overrides it.
        table[setting.option.param.name] = _refusal(setting.refused) if setting.refused else setting.value
    return Resolved(default_map, list(chosen.values()), looked_at, unused)


def merge_default_maps(weaker: Mapping[str, Any] | None, stronger: Mapping[str, Any] | None) -> dict[str, Any]:
    """Deep-merge two default_maps; `stronger` wins key by key."""
    merged = dict(weaker or {})
    for key, value in (stronger or {}).items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_default_maps(merged[key], value)
        else:
            merged[key] = value
    return merged


def _walk(root_ctx: Any) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    """(command path, context, command) for the root and every visible sub-command, depth first, in order."""

    def visit(path: tuple[str, ...], ctx: Any) -> Iterator[tuple[tuple[str, ...], Any, Any]]:
        command = ctx.command
        yield path, ctx, command
        if not hasattr(command, "list_commands"):
            return
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or getattr(sub, "hidden", False) or (not path and name in UNCONFIGURED_COMMANDS):
                continue
            yield from visit(
                (*path, name), type(ctx)(sub, parent=ctx, info_name=name, **getattr(sub, "context_settings", {}))
            )

    yield from visit((), root_ctx)


def _file_settings(path: Path, source: Source, options: list[Option], contexts: dict) -> list[Setting]:
    """The settings one TOML file makes, least specific table first so that deeper tables override."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML ({exc}); fix the file or move it aside.") from None
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path} is not UTF-8 text (byte {exc.start}); TOML files are UTF-8: fix the file or move it aside."
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot read {path} ({exc.strerror}); fix its permissions or move it aside.") from None
    commands = {path for path in contexts if path}
    settings: list[Setting] = []

    def visit(table: Mapping[str, Any], at: tuple[str, ...]) -> None:
        where = f"{path} [{'.'.join(at)}]" if at else str(path)
        below = [opt for opt in options if opt.command[: len(at)] == at]
        valid = sorted({opt.key for opt in below})
        deeper: list[tuple[dict, tuple[str, ...]]] = []
        for raw_key, value in table.items():
            key = raw_key.replace("-", "_")
            # `model` is both audit's --model and the `iqa model` group: a table means the command.
            if isinstance(value, dict):
                if (*at, raw_key) not in commands:
                    tables = sorted(".".join(c) for c in commands if len(c) == len(at) + 1 and c[: len(at)] == at)
                    raise UsageError(
                        f"unknown table [{'.'.join((*at, raw_key))}] in {path}; "
                        f"tables name commands: {', '.join(f'[{t}]' for t in tables) or '(none here)'}."
                    )
                deeper.append((value, (*at, raw_key)))
                continue
            targets = [opt for opt in below if opt.key == key]
            if not targets:
                raise UsageError(
                    f"unknown setting {raw_key!r} in {where}; valid keys here: {', '.join(valid)} "
                    "(the long option names, without the dashes)."
                )
            for opt in targets:
                checked = _file_value(opt, value, where)
                typed = _check(opt, checked, contexts[opt.command], f"{raw_key} = {value!r} in {where}", "fix the file")
                refused = None
                if source is Source.PROJECT_FILE and opt.key in WRITTEN_PATHS:
                    refused = _outside(path.parent, opt, checked, f"{raw_key} = {value!r} in {where}")
                settings.append(Setting(opt, checked, source, where, typed, refused))
        for sub_table, sub_at in deeper:
            visit(sub_table, sub_at)

    visit(data, ())
    return settings


def _outside(folder: Path, opt: Option, value: Any, what: str) -> str | None:
    """Why a project file's output path may not be used, or None: a project file is found in the current folder,
    so it may be someone else's, and it may only write inside that folder (its links resolved)."""
    if value in (None, "-"):  # stdout
        return None
    real_folder = os.path.realpath(folder)
    target = os.path.realpath(folder / str(value))
    if target == real_folder or target.startswith(real_folder.rstrip(os.sep) + os.sep):
        return None
    return (
        f"{what} writes outside {real_folder} ({target}); a project iqa.toml may only write inside its own folder."
        f" Give {opt.flag} on the command line if you mean it, or fix the file."
    )


def _refusal(message: str) -> Callable[[], Any]:
    def refuse() -> Any:
        raise UsageError(message)

    return refuse


def _file_value(opt: Option, value: Any, where: str) -> Any:
    """TOML's own types must fit the option's shape (Click would happily turn `detail = 1` into a flag)."""
    is_flag = bool(getattr(opt.param, "is_flag", False))
    if opt.param.multiple:
        # A single string is a list of one, so `include = "*.jpg"` reads as it would on the command line.
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or any(isinstance(item, (dict, list, bool)) for item in value):
            raise UsageError(f'{opt.key} in {where} takes a list of strings, e.g. {opt.key} = ["*.jpg"].')
        return value
    if isinstance(value, list):
        raise UsageError(f"{opt.key} in {where} takes a single value, not a list; keep one.")
    if is_flag and not isinstance(value, bool):
        raise UsageError(f"{opt.key} in {where} is a switch: write {opt.key} = true or {opt.key} = false.")
    if not is_flag and isinstance(value, bool):
        raise UsageError(f"{opt.key} in {where} takes a value, not true/false (see `{opt.flag}` in the help).")
    return value


def _check(opt: Option, value: Any, ctx: Any, what: str, todo: str) -> Any:
    """Run the value through the option's own conversion (type, range, choices) so that errors name the source."""
    try:
        return _plain(opt.param.process_value(ctx, value))
    except Exception as exc:  # the parameter's BadParameter, whichever Click the installed Typer uses
        reason = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        command = " ".join(("iqa", *opt.command))
        raise UsageError(f"{what} is not valid for `{command}`: {reason.rstrip('.')}; {todo}.") from None


def _plain(value: Any) -> Any:
    """A default as the user would write it (enum members by value, paths as text)."""
    if callable(value):
        return None  # computed at run time; `iqa config show` says so as "(none)"
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
