"""The plugin contract: each hook is what a plugin package may contribute to iqa."""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("iqa")
hookimpl = pluggy.HookimplMarker("iqa")


@hookspec
def iqa_engines() -> list[type]:
    """Engine classes (subclasses of iqa_cli.engines.base.Engine) this plugin provides."""


@hookspec
def iqa_writers() -> list[type]:
    """Report writer classes (subclasses of iqa_cli.report.writers.ReportWriter) this plugin provides."""


@hookspec
def iqa_checks() -> list[type]:
    """Per-image check classes (subclasses of iqa_cli.checks.Check) this plugin provides."""
