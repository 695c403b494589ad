"""Registers the HTML report writer with iqa through the `iqa_writers` hook."""

from __future__ import annotations

from iqa_cli.hookspecs import hookimpl


@hookimpl
def iqa_writers() -> list[type]:
    # Imported when asked for, as the built-ins do, so loading plugins stays cheap for every command.
    from iqa_html.writer import HtmlWriter

    return [HtmlWriter]
