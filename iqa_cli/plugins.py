"""The plugin manager: built-ins plus packages that declare an `iqa` entry point; names must be unique.
Also which engine runs when none is named (`create_engine`)."""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Sequence

import pluggy

from iqa_cli import builtins, hookspecs
from iqa_cli.checks import Check
from iqa_cli.defaults import AUTO
from iqa_cli.engines.base import Engine, EngineOptions
from iqa_cli.errors import EngineUnavailable, UsageError
from iqa_cli.report.writers import ReportWriter

ENTRY_POINT_GROUP = "iqa"
# Tried in this order when no engine is named: the model gives the answers iqa exists for.
PREFERENCE = ("depictqa", "signal")


@functools.cache
def plugin_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("iqa")
    manager.add_hookspecs(hookspecs)
    manager.register(builtins, name="iqa_cli.builtins")
    _load_entry_points(manager)
    return manager


def _load_entry_points(manager: pluggy.PluginManager) -> None:
    """Register every `iqa` entry point, one at a time, so a failure names the plugin that failed."""
    seen: dict[str, str] = {}  # entry-point name -> the distribution that declared it first
    for dist in importlib.metadata.distributions():
        for entry in dist.entry_points.select(group=ENTRY_POINT_GROUP):
            where = f"{dist.metadata['name']} {dist.version}"
            if entry.name in seen and seen[entry.name] != where:
                # pluggy registers by entry-point name and would skip the second one without a word.
                raise UsageError(
                    f"two plugins declare the iqa entry point {entry.name!r} ({seen[entry.name]} and {where}); "
                    "uninstall one of them"
                )
            seen[entry.name] = where
            try:
                manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=entry.name)
            except Exception as exc:
                raise UsageError(
                    f"the iqa plugin {entry.name!r} ({entry.value}, from {where}) failed to load: "
                    f"{type(exc).__name__}: {exc}; reinstall it, or uninstall it "
                    f"(pip uninstall {dist.metadata['name']})"
                ) from exc


def _contributions(hook_name: str, attribute: str) -> list[list[type]]:
    """What each plugin's `hook_name` hook returns, called one plugin at a time (pluggy's order), so that a hook
    that raises, or returns something other than a list of classes with `attribute`, is a line naming its plugin
    rather than a traceback."""
    manager = plugin_manager()
    groups = []
    for impl in reversed(getattr(manager.hook, hook_name).get_hookimpls()):
        who = _distribution_of(manager, impl.plugin) or impl.plugin_name
        try:
            group = impl.function()
        except Exception as exc:
            raise UsageError(
                f"the iqa plugin {impl.plugin_name!r} (from {who}) failed in its {hook_name} hook: "
                f"{type(exc).__name__}: {exc}; upgrade or reinstall it, or uninstall it"
            ) from None
        if not isinstance(group, (list, tuple)) or not all(
            isinstance(cls, type) and isinstance(getattr(cls, attribute, None), str) for cls in group
        ):
            raise UsageError(
                f"the iqa plugin {impl.plugin_name!r} (from {who}) returned something other than a list of classes"
                f" with a {attribute!r} from its {hook_name} hook; upgrade or reinstall it, or uninstall it"
            )
        groups.append(list(group))
    return groups


def _distribution_of(manager: pluggy.PluginManager, plugin: object) -> str | None:
    for registered, dist in manager.list_plugin_distinfo():
        if registered is plugin:
            return f"{dist.metadata['name']} {dist.version}"
    return None


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
    return _by_name(_contributions("iqa_engines", "name"), "name", "engine")


def choose_engine(name: str | None, options: EngineOptions) -> tuple[type[Engine], str]:
    """The engine class to use (`name`, or the first of PREFERENCE that can run with `options`) and a note for the
    summary saying how it was chosen; nothing is loaded (`iqa audit --ray` builds it on the cluster)."""
    available = engines()
    if name and name != AUTO:
        if name not in available:
            raise UsageError(f"unknown engine {name!r}; installed engines: {', '.join(sorted(available))}")
        reason = available[name].availability(options)
        if reason is not None:
            raise EngineUnavailable(f"the {name} engine cannot run: {reason}")
        return available[name], "chosen with --engine"
    skipped = []
    for candidate in PREFERENCE:
        cls = available.get(candidate)
        if cls is None:
            continue
        reason = cls.availability(options)
        if reason is None:
            return cls, f"auto-selected{'; ' + '; '.join(skipped) if skipped else ''}"
        skipped.append(f"{candidate} not used: {reason.split('. ')[0]}")
    raise EngineUnavailable("no engine can run here; " + "; ".join(skipped))


def create_engine(name: str | None, options: EngineOptions) -> tuple[Engine, str]:
    """The engine to use, built, and a note for the summary saying how it was chosen."""
    cls, note = choose_engine(name, options)
    return cls.create(options), note


def writers() -> dict[str, type[ReportWriter]]:
    """Every installed report writer class by format name."""
    return _by_name(_contributions("iqa_writers", "format"), "format", "report format")


def checks() -> dict[str, type[Check]]:
    """Every installed per-image check class by name."""
    return _by_name(_contributions("iqa_checks", "name"), "name", "check")


def distribution(cls: type) -> tuple[str, str] | None:
    """The installed distribution (name, version) whose `iqa` entry point provides a plugin class, or None: built
    in, or registered some other way."""
    package = cls.__module__.split(".")[0]
    for plugin, dist in plugin_manager().list_plugin_distinfo():
        if getattr(plugin, "__name__", "").split(".")[0] == package:
            return dist.metadata["name"], dist.version
    return None


def chosen_writers(formats: str | Sequence[str], *, any_schema: bool = False) -> list[type[ReportWriter]]:
    """The writer classes of format names (a comma-separated string or a sequence), each once, in the order given.

    `any_schema`: the caller writes tables other than the audit report (`iqa rank`, `iqa eval`), which only writers
    declaring `writes_any_schema` can hold."""
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    wanted = [name.strip().lower() for name in names if name.strip()]
    available = {
        name: cls for name, cls in writers().items() if not any_schema or getattr(cls, "writes_any_schema", False)
    }
    unknown = [name for name in wanted if name not in available]
    if unknown or not wanted:
        raise UsageError(f"unknown report format {', '.join(unknown) or '(none)'}; choose from {', '.join(available)}")
    return [available[name] for name in dict.fromkeys(wanted)]


def chosen_checks(names: str | Sequence[str]) -> list[Check]:
    """The checks to run: "all", "none", or names (a comma-separated string or a sequence). "none" asks no plugin:
    a check's module may be costly to import (iqa-dupes brings SciPy's FFT)."""
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    if wanted in ([], ["none"]):
        return []
    available = checks()
    if wanted == ["all"]:
        return [cls() for _, cls in sorted(available.items())]
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise UsageError(f"unknown check {', '.join(unknown)}; installed: {', '.join(sorted(available)) or 'none'}")
    return [available[n]() for n in dict.fromkeys(wanted)]


def origin(cls: type) -> str:
    """Where a plugin class comes from: "built in", or the distribution ("name version") that provides it."""
    found = distribution(cls)
    if found is not None:
        return f"{found[0]} {found[1]}"
    return "built in" if cls.__module__.split(".")[0] == "iqa_cli" else cls.__module__.split(".")[0]
