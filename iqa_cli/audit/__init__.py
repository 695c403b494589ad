"""The audit, stage by stage: discover -> load -> queue -> (engine) -> flag -> store; `run.py` drives them.

`AuditSettings` and `run_audit` are reachable from here for the Python API; they load on first use, so a
decode worker that imports `iqa_cli.audit.load` does not pay for the whole run module.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AuditSettings", "run_audit"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from iqa_cli.audit import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
