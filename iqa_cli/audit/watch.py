"""What a run tells a live display and --verbose: its files counted ahead of the work, and the choices it made."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from iqa_cli.checks import Check
    from iqa_cli.engines.base import Engine

FoundCallback = Callable[[int, bool], None]
"""Hears (work items found so far, whether that is all of them): files and discovery problems alike."""


class CountAhead:
    """Counts a run's work items in a thread, on a second walk of its paths, ahead of the work queue (which takes
    them a window at a time), so that a live display learns the total early: `report` hears the count now and
    then, and the total, unless the run's own walk ended first (`walked`; it then reports the total itself).
    With no `walk` (the paths are a stream, a list on stdin, say) nothing is counted here. Used as a context:
    leaving it stops the count at its next item, without waiting for it."""

    EVERY = 256  # items between reports

    def __init__(self, walk: Callable[[], Iterable[object]] | None, report: FoundCallback | None) -> None:
        self.walked = threading.Event()
        self._walk = walk if report is not None else None
        self._report = report
        self._stop = threading.Event()

    @property
    def counting(self) -> bool:
        return self._walk is not None

    def __enter__(self) -> CountAhead:
        if self._walk is not None:
            threading.Thread(target=self._count, args=(self._walk,), name="iqa-count-ahead", daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()

    def _count(self, walk: Callable[[], Iterable[object]]) -> None:
        assert self._report is not None
        count = 0
        try:
            for _ in walk():
                if self._stop.is_set() or self.walked.is_set():
                    return
                count += 1
                if count % self.EVERY == 0:
                    self._report(count, False)
        except Exception:  # only a display's count: the run's own walk reports what went wrong, and the total
            return
        if not self._stop.is_set() and not self.walked.is_set():
            self._report(count, True)


def decisions(
    engine: Engine,
    engine_note: str,
    *,
    batch_size: int,
    batch_size_given: bool,
    window: int,
    workers: int,
    checks: Sequence[Check],
    store: bool,
    rerun: bool,
) -> Iterator[str]:
    """What a run chose, and why, one line each, for --verbose."""
    yield f"engine: {engine.name} {engine.version}" + (f" ({engine_note})" if engine_note else "")
    why = "--batch-size" if batch_size_given else "the engine's preferred size"
    yield f"batch size: {batch_size} images per engine call ({why}); up to {window} images decoded ahead"
    where = "in this process (--workers 0)" if workers <= 0 else f"in {workers} worker processes"
    yield f"decoding: {where}; {_plan(engine)}"
    yield f"checks: {', '.join(c.name for c in checks) or 'none'}"
    if store:
        yield "results store: " + ("--rerun, every file assessed again" if rerun else "unchanged files replayed")


def _plan(engine: Engine) -> str:
    plan = engine.decode_plan
    sides = [
        f"{name} side {value} px" for name, value in (("short", plan.short_side), ("long", plan.long_side)) if value
    ]
    parts = [f"pixels at {' and '.join(sides)}" if sides else "pixels at full size"]
    parts.append("JPEGs drafted at a reduced scale first" if plan.draft else "exact decoding")
    if plan.native_crop:
        parts.append(f"a {plan.native_crop} px crop at the file's own resolution")
    return ", ".join(parts)
