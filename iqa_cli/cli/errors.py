"""The one place where project errors become a line on stderr and an exit code, for every command."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

from iqa_cli.cli.terminal import stderr_console
from iqa_cli.errors import EXIT_FAILURE, IqaError
from iqa_cli.text import shown


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn project errors into one line on stderr and their exit code, with no traceback."""
    try:
        yield
    except IqaError as exc:
        _say(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except OSError as exc:
        # The output folder, a log file or a list that the system refuses (a file where a folder should
        # be, no permission, a full disk): say which and why, as a runtime failure.
        _say(str(exc))
        raise typer.Exit(EXIT_FAILURE) from None


def _say(message: str) -> None:
    # soft_wrap: one line that Rich never breaks (a terminal folds it on screen; a log or a mail keeps it whole).
    stderr_console().print(f"[red]error:[/red] {shown(message)}", highlight=False, soft_wrap=True)
