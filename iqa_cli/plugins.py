"""The plugin manager: built-ins plus packages that declare an `iqa` entry point; names must be unique."""

from __future__ import annotations

import functools

import pluggy

from iqa_cli import builtins, hookspecs
from iqa_cli.checks import Check
from iqa_cli.engines.base import Engine
from iqa_cli.errors import UsageError
from iqa_cli.report.writers import ReportWriter

ENTRY_POINT_GROUP = "iqa"


@functools.cache
def plugin_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("iqa")
    manager.add_hookspecs(hookspecs)
    manager.register(builtins, name="iqa_cli.builtins")
    manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return manager


def _by_name(classes: list[list[type]], attribute: str, kind: str) -> dict[str, type]:
    found: dict[str, type] = {}
    for group in classes:
        for cls in group:
            name = getattr(cls, attribute)
            if name in found and found[name] is not cls:
                raise UsageError(
                    f"two plugins provide the {kind} {name!r} ({found[name].__module__} and {cls.__module__}); "
                    "uninstall one of them"
                )
            found[name] = cls
    return found


def engines() -> dict[str, type[Engine]]:
    """Every installed engine class by name."""
    return _by_name(plugin_manager().hook.iqa_engines(), "name", "engine")


def writers() -> dict[str, type[ReportWriter]]:
    """Every installed report writer class by format name."""
    return _by_name(plugin_manager().hook.iqa_writers(), "format", "report format")


def checks() -> dict[str, type[Check]]:
    """Every installed per-image check class by name."""
    return _by_name(plugin_manager().hook.iqa_checks(), "name", "check")


def origin(cls: type) -> str:
    """Where a plugin class comes from: "built in", or the distribution ("name version") that provides it."""
    package = cls.__module__.split(".")[0]
    for plugin, dist in plugin_manager().list_plugin_distinfo():
        if getattr(plugin, "__name__", "").split(".")[0] == package:
            return f"{dist.metadata['name']} {dist.version}"
    return "built in" if package == "iqa_cli" else package
