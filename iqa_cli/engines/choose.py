"""Choosing and building the engine: the one named, else the model when installed, else the signal engine."""

from __future__ import annotations

from iqa_cli.engines.base import Engine, EngineOptions
from iqa_cli.errors import EngineUnavailable, UsageError
from iqa_cli.plugins import engines

AUTO = "auto"
# Tried in this order when no engine is named: the model gives the answers iqa exists for.
PREFERENCE = ("depictqa", "signal")


def create_engine(name: str | None, options: EngineOptions) -> tuple[Engine, str]:
    """The engine to use and a note for the summary saying how it was chosen."""
    available = engines()
    if name and name != AUTO:
        if name not in available:
            raise UsageError(f"unknown engine {name!r}; installed engines: {', '.join(sorted(available))}")
        reason = available[name].availability(options)
        if reason is not None:
            raise EngineUnavailable(f"the {name} engine cannot run: {reason}")
        return available[name].create(options), "chosen with --engine"
    skipped = []
    for candidate in PREFERENCE:
        cls = available.get(candidate)
        if cls is None:
            continue
        reason = cls.availability(options)
        if reason is None:
            return cls.create(options), f"auto-selected{'; ' + '; '.join(skipped) if skipped else ''}"
        skipped.append(f"{candidate} not used: {reason.split('. ')[0]}")
    raise EngineUnavailable("no engine can run here; " + "; ".join(skipped))
