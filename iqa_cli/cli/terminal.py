"""The Rich consoles every command prints through: results on stdout, progress and problems on stderr.

`NO_COLOR` (https://no-color.org, any non-empty value) means plain text: no colour, no other styles and no
live redraws (progress bars), even on a terminal, as for output that is not a terminal.
"""

from __future__ import annotations

import os

from rich.console import Console


def no_color() -> bool:
    return bool(os.environ.get("NO_COLOR"))


def stdout_console() -> Console:
    """Where results go."""
    return Console(color_system=None if no_color() else "auto")


def stderr_console() -> Console:
    """Where logs, progress and errors go (stdout is for results)."""
    return Console(stderr=True, color_system=None if no_color() else "auto")


def live_display(console: Console) -> bool:
    """Whether a progress bar may redraw on `console`: a terminal, and NO_COLOR not set."""
    return console.is_terminal and not no_color()
