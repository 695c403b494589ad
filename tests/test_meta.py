"""The test suite keeps up with the contract: every plugin hook and every command has a test of its own."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from iqa_cli import hookspecs
from iqa_cli.cli.app import app

TESTS = Path(__file__).resolve().parent
SOURCES = {path.name: path.read_text(encoding="utf-8") for path in TESTS.glob("test_*.py")}


def _commands(group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in sorted(getattr(group, "commands", {}).items()):
        path = (*prefix, name)
        found.append(path)
        found.extend(_commands(command, path))
    return found


def test_every_hook_has_a_test() -> None:
    hooks = [name for name in dir(hookspecs) if name.startswith("iqa_")]
    assert hooks
    for hook in hooks:
        assert any(f"def test_hook_{hook}(" in text for text in SOURCES.values()), f"no test_hook_{hook}"


def test_every_command_is_invoked_by_a_test() -> None:
    commands = _commands(typer.main.get_command(app))
    assert ("audit",) in commands and ("model", "check") in commands
    for path in commands:
        # Invoked with the command's words in order (["model", "check" or invoke("rank", ...)), or a
        # sub-command's own word on its group's app (runner.invoke(model_app, ["check"])).
        words = [re.escape(f'"{word}"') for word in path]
        full = r"\[\s*" + r",\s*".join(words)
        leaf = r"invoke\([^)]*\[\s*" + words[-1]
        called = r"invoke\(\s*" + r",\s*".join(words)  # invoke("rank", ...)
        assert any(re.search(p, text) for p in (full, leaf, called) for text in SOURCES.values()), " ".join(path)


def test_every_parameter_names_its_value_in_words() -> None:
    """The meta-test of --help: an option shows a metavar (PATH, N, GLOB) or, a flag, nothing; an argument its name;
    never the Python type Typer derives from the annotation (<list[str]>, <path>, <bool>)."""
    from iqa_cli.cli import manpage

    shown_types = []
    for path, ctx in manpage._commands(manpage.root_context()):
        for param in ctx.command.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None and ("<" in record[0] or "list[" in record[0]):
                shown_types.append(f"{' '.join(path)} {record[0]}")
    assert not shown_types, f"give these a metavar: {', '.join(shown_types)}"
