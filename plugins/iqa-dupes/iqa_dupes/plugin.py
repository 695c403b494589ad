"""Registers the near-duplicate check with iqa through the `iqa_checks` hook."""

from __future__ import annotations

from iqa_cli.hookspecs import hookimpl


@hookimpl
def iqa_checks() -> list[type]:
    # Imported when asked for, as the built-ins do, so loading plugins stays cheap for every command.
    from iqa_dupes.check import NearDuplicateCheck

    return [NearDuplicateCheck]
