"""The built-in engines and writers, registered through the same hooks as third-party plugins."""

from __future__ import annotations

from iqa_cli.hookspecs import hookimpl


@hookimpl
def iqa_engines() -> list[type]:
    # Importing the engine classes is cheap: the model engine imports torch only when created.
    from iqa_cli.engines.depictqa.engine import DepictQAEngine
    from iqa_cli.engines.signal.engine import SignalEngine

    return [DepictQAEngine, SignalEngine]


@hookimpl
def iqa_writers() -> list[type]:
    from iqa_cli.report.writers import BUILTIN_WRITERS

    return list(BUILTIN_WRITERS)
