"""iqa: audit the quality of photo collections with a vision-language model or pixel measurements.

In Python, `iqa_cli.audit(paths, engine="signal")` audits as `iqa audit` does and returns an `AuditResult`:
`.rows`, `.summary`, `.to_pandas()` (`iqa_cli.api`; typed code imports `audit` from there).

This module stays cheap to import (spawned decode workers import it again): the API loads on first use.
"""

from __future__ import annotations

import types
from typing import Any

from iqa_cli import audit  # the audit package: its own __init__ loads nothing (its names load on first use)

__version__ = "0.1.0"
__all__ = ["AuditResult", "NoSuchPath", "__version__", "audit"]


class _CallableAuditPackage(types.ModuleType):
    """`iqa_cli.audit` names the `iqa_cli/audit/` package as well: once any of its modules is imported, Python sets
    that package as the attribute, so a plain function of that name would be hidden. The package is therefore
    made callable instead, and stays the package in every other way (`iqa_cli.audit.run`, patching by name)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """`iqa_cli.api.audit(...)`: assess every image under the paths and return an `AuditResult`."""
        from iqa_cli import api

        return api.audit(*args, **kwargs)


audit.__class__ = _CallableAuditPackage


def __getattr__(name: str) -> Any:
    if name in ("AuditResult", "NoSuchPath"):
        from iqa_cli import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
