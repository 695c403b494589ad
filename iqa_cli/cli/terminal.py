"""The Rich consoles every command prints through: results on stdout, progress and problems on stderr.

`NO_COLOR` (https://no-color.org, any non-empty value) means plain text: no colour, no other styles and no
live redraws (progress bars), even on a terminal, as for output that is not a terminal.

Output that is not a terminal (a pipe, a file, cron's mail) is never wrapped: a line is as long as it is, so
a path or an error message reaches `grep` and the reader whole. On a terminal, lines wrap at its width and
the summary's tables shorten paths in the middle (`report/summary.py`).
"""

from __future__ import annotations

import os

from rich.console import Console

UNWRAPPED_WIDTH = 1 << 16
"""The width given to a console that is not a terminal: wider than any line or table row iqa prints."""


def no_color() -> bool:
    return bool(os.environ.get("NO_COLOR"))


def stdout_console() -> Console:
    """Where results go."""
    return _console(stderr=False)


def stderr_console() -> Console:
    """Where logs, progress and errors go (stdout is for results)."""
    return _console(stderr=True)


def _console(*, stderr: bool) -> Console:
    console = Console(stderr=stderr, color_system=None if no_color() else "auto")
    if not console.is_terminal:
        # Rich would hard-wrap at COLUMNS or 80 here, breaking paths mid-name in a log or a mail.
        console.soft_wrap = True
        console.width = UNWRAPPED_WIDTH
    return console


def live_display(console: Console) -> bool:
    """Whether a progress bar may redraw on `console`: a terminal, and NO_COLOR not set."""
    return console.is_terminal and not no_color()
