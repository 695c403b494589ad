"""`iqa config show/path` and `apply_config`, the root callback's hook that loads iqa.toml and IQA_* variables."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from iqa_cli import config
from iqa_cli.cli.errors import user_errors
from iqa_cli.cli.terminal import stdout_console
from iqa_cli.errors import UsageError
from iqa_cli.text import shown

config_app = typer.Typer(
    name="config",
    help="Show the effective settings (iqa.toml files, IQA_* variables, defaults) and where each came from.",
    no_args_is_help=True,
)

PRECEDENCE = "command line > env (IQA_*) > project file (./iqa.toml) > user file > default"


def apply_config(ctx: typer.Context) -> None:
    """Load the configuration into `ctx.default_map` so that every sub-command starts from it.

    Call it from the root callback: Click gives the command line precedence over the default_map, and the
    default_map already has the environment over the files. `iqa config ...` is left alone so that it can still
    show and locate a broken file, and shell completion (resilient parsing) never fails on one.
    """
    if ctx.resilient_parsing or ctx.invoked_subcommand in config.UNCONFIGURED_COMMANDS:
        return
    with user_errors():
        resolved = config.resolve(ctx.find_root())
    # A default_map given by the caller (tests, embedding programs) beats the files and the environment.
    ctx.default_map = _reporting(config.merge_default_maps(resolved.default_map, ctx.default_map))


def _reporting(table: dict[str, Any]) -> dict[str, Any]:
    """The default_map with its refused values (called by Click only when the option is not given) raising
    their UsageError as every other project error is shown: one line and exit code 2."""

    def reported(default: Callable[[], Any]) -> Callable[[], Any]:
        def call() -> Any:
            with user_errors():
                return default()

        return call

    return {
        key: _reporting(value) if isinstance(value, dict) else reported(value) if callable(value) else value
        for key, value in table.items()
    }


SHOW_EPILOG = """Examples:

  iqa config show

  iqa config show audit --json

Values from the command line beat all of these; they apply to one run and are not shown."""


@config_app.command("show", epilog=SHOW_EPILOG)
def show(
    ctx: typer.Context,
    command: Annotated[
        list[str] | None,
        typer.Argument(help="Only this command's settings, e.g. audit or model download.", show_default=False),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the settings as JSON on stdout.")] = False,
) -> None:
    """Print every option's effective default, and its source: default, user file, project file or env."""
    with user_errors():
        resolved = config.resolve(ctx.find_root())
        settings = _only(resolved.settings, tuple(command or ()))
        if json_out:
            typer.echo(json.dumps(_as_json(resolved, settings), indent=2))
            return
        console = stdout_console()
        for source, path, exists in resolved.files:
            state = "found" if exists else "[dim]not found[/dim]"
            console.print(f"{source.value:<13} {shown(str(path))}  {state}", highlight=False, soft_wrap=True)
        console.print(f"precedence: {PRECEDENCE}", highlight=False, soft_wrap=True)
        for name in resolved.unused_env:
            console.print(f"[yellow]unused[/yellow] {shown(name)}: no option has this name", highlight=False)
        current: tuple[str, ...] | None = None
        table = Table()
        for setting in settings:
            if setting.option.command != current:
                if current is not None:
                    console.print(table)
                current = setting.option.command
                table = Table("key", "value", "source", "from", title=" ".join(("iqa", *current)), title_justify="left")
            refused = " [red](refused: outside the project folder)[/red]" if setting.refused else ""
            table.add_row(
                setting.option.key,
                shown(_shown(setting.typed)) + refused,
                setting.source.value,
                shown(setting.origin or "-"),
            )
        if current is not None:
            console.print(table)


@config_app.command("path")
def path(
    user: Annotated[bool, typer.Option("--user", help="Print only the user file's path.")] = False,
    project: Annotated[bool, typer.Option("--project", help="Print only the project file's path.")] = False,
) -> None:
    """Print where iqa looks for iqa.toml: the project file (current folder), then the user file."""
    paths: list[tuple[str, Path]] = []
    if project or not user:
        paths.append(("project", config.project_config_file()))
    if user or not project:
        paths.append(("user", config.user_config_file()))
    if len(paths) == 1:
        typer.echo(str(paths[0][1]))  # bare, for $EDITOR "$(iqa config path --user)"
        return
    for label, file in paths:
        typer.echo(f"{label:<8} {file}{'' if file.is_file() else '  (not found)'}")


def _only(settings: list[config.Setting], command: tuple[str, ...]) -> list[config.Setting]:
    """The settings of `command` and the commands below it; an unknown command is a usage error."""
    if not command:
        return settings
    chosen = [s for s in settings if s.option.command[: len(command)] == command]
    if not chosen:
        known = sorted({" ".join(s.option.command) for s in settings})
        raise UsageError(f"no settings for {' '.join(command)!r}; commands with settings: {', '.join(known)}.")
    return chosen


def _shown(value: Any) -> str:
    """A value as TOML would spell it (true, [\"a\"]), "(none)" when unset."""
    if value is None:
        return "(none)"
    if isinstance(value, (bool, list)):
        return json.dumps(value)
    return str(value)


def _as_json(resolved: config.Resolved, settings: list[config.Setting]) -> dict[str, Any]:
    commands: dict[str, dict[str, Any]] = {}
    for setting in settings:
        commands.setdefault(" ".join(setting.option.command), {})[setting.option.key] = {
            "value": setting.typed,
            "source": setting.source.value,
            "from": setting.origin or None,
            "option": setting.option.flag,
            "env": setting.option.env_var,
            "refused": setting.refused,
        }
    return {
        "files": [{"source": s.value, "path": str(p), "exists": e} for s, p, e in resolved.files],
        "precedence": PRECEDENCE,
        "unused_env": resolved.unused_env,
        "settings": commands,
    }
