"""The command that installs one of iqa's extras, for how this copy of iqa was installed (`install_hint`)."""

from __future__ import annotations

import functools
import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

DISTRIBUTION = "iqa-cli"  # pyproject's name; no package of that name on PyPI is ours, so no hint names it
CPU_TORCH = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
# Extras that pull torch: from PyPI a bare torch requirement is the CUDA build with its nvidia-* wheels (GBs).
TORCH_EXTRAS = frozenset({"depictqa"})

_EXTRA_MARKER = re.compile(r"""^extra\s*==\s*(['"])(?P<name>[^'"]+)\1$""")


@functools.cache
def install_hint(extra: str) -> str:
    """`pip install ...` that adds `extra` to this iqa, as it was installed; never raises.

    From the installed distribution's direct_url.json (PEP 610): a local folder -> `pip install '<dir>[extra]'`
    (`-e` when editable), a local archive -> `pip install '<file>[extra]'`; any other origin, or a folder or file
    that is gone -> the extra's own requirements from the metadata. For an extra with torch, how to get the CPU build.
    """
    command = _attempt(_from_origin, extra) or _attempt(_from_requirements, extra)
    if command is None:  # iqa run from its sources without being installed, or metadata that says nothing
        command = f"pip install '<the iqa checkout>[{extra}]'"
    if extra in TORCH_EXTRAS:
        command += f" (for the CPU-only torch, first: {CPU_TORCH})"
    return command


def _attempt(way: Callable[[str], str | None], extra: str) -> str | None:
    """`way(extra)`, or None when it fails: damaged metadata must not turn a hint into a traceback."""
    try:
        return way(extra)
    except Exception:
        return None


def _distribution() -> Any:
    """The installed iqa distribution (importlib.metadata's), or None when iqa runs without being installed.

    The one pip installed (it wrote direct_url.json) before any other on sys.path: run from a checkout, the
    current folder's `iqa_cli.egg-info`, a leftover of a setuptools build, would otherwise come first.
    """
    from importlib import metadata

    found = list(metadata.distributions(name=DISTRIBUTION))
    return next((d for d in found if d.read_text("direct_url.json")), found[0] if found else None)


def _from_origin(extra: str) -> str | None:
    """The command for a local folder or archive named in direct_url.json; None for any other origin."""
    dist = _distribution()
    text = dist.read_text("direct_url.json") if dist is not None else None
    if not text:
        return None
    import json

    origin = json.loads(text)
    path = _local_path(origin.get("url", "")) if isinstance(origin, dict) else None
    if path is None:
        return None
    if isinstance(origin.get("dir_info"), dict) and path.is_dir():
        editable = origin["dir_info"].get("editable") is True
        return f"pip install {'-e ' if editable else ''}{shlex.quote(f'{path}[{extra}]')}"
    if isinstance(origin.get("archive_info"), dict) and path.is_file():
        return f"pip install {shlex.quote(f'{path}[{extra}]')}"
    return None


def _local_path(url: Any) -> Path | None:
    """The path of a `file:` URL (PEP 610 writes local origins so), else None."""
    from urllib.parse import unquote, urlsplit

    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        return None
    path = unquote(parts.path)
    if os.name == "nt" and re.match(r"^/[A-Za-z]:", path):  # file:///C:/x -> C:/x
        path = path[1:]
    return Path(path)


def _from_requirements(extra: str) -> str | None:
    """`pip install` of the extra's own requirements (`Requires-Dist: ...; extra == "name"`), None if it has none."""
    dist = _distribution()
    if dist is None:
        return None
    wanted = _normalized(extra)
    requirements = []
    for line in dist.requires or ():
        requirement, _, marker = line.partition(";")
        clauses = [c.strip() for c in re.split(r"\s+and\s+", marker.strip())] if marker.strip() else []
        extras = [m.group("name") for c in clauses if (m := _EXTRA_MARKER.match(c))]
        if not any(_normalized(name) == wanted for name in extras):
            continue
        rest = [c for c in clauses if not _EXTRA_MARKER.match(c)]
        # A marker with `or` or parentheses is not split further: the requirement is asked for without it.
        condition = " and ".join(rest) if rest and not any(" or " in c or "(" in c for c in rest) else ""
        requirements.append(f"{requirement.strip()}; {condition}" if condition else requirement.strip())
    if not requirements:
        return None
    return "pip install " + " ".join(shlex.quote(r) for r in requirements)


def _normalized(extra: str) -> str:
    """An extra's name as PEP 685 compares them."""
    return re.sub(r"[-_.]+", "-", extra).lower()
