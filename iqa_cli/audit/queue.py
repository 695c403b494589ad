"""The work queue: decode and prepare images in worker processes ahead of the engine, hand it batches.

Memory is bounded by the in-flight window (workers x prefetch), not by the collection: discovery is a
generator, and at most `window` images are being decoded or waiting at any time. Outcomes come back in
submission order, so a run's report order is deterministic.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from iqa_cli.audit.load import DEFAULT_MAX_PIXELS, load_image
from iqa_cli.checks import Check
from iqa_cli.engines.base import Preparer
from iqa_cli.images import DecodePlan, FileFacts, LoadedImage, LoadFailure


def default_workers() -> int:
    """One decode worker per core the process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@dataclass
class Outcome:
    """One image after the worker stage: either a payload ready for the engine or a failure."""

    key: int
    facts: FileFacts
    payload: Any = None
    width: int = 0
    height: int = 0
    error_code: str | None = None
    error: str | None = None
    seconds: float = 0.0
    check_payloads: dict[str, Any] = field(default_factory=dict)
    replayed: dict[str, Any] | None = None  # a row remembered from an earlier run: nothing to load or assess

    @property
    def needs_engine(self) -> bool:
        """Loaded and prepared, not replayed: the engine must assess it."""
        return self.error_code is None and self.replayed is None


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker needs, sent once per worker rather than once per image."""

    plan: DecodePlan
    preparer: Preparer
    max_pixels: int = DEFAULT_MAX_PIXELS
    checks: tuple[Check, ...] = ()


def load_and_prepare(key: int, path: str, spec: WorkerSpec) -> Outcome:
    """Decode one file and run the engine's preparer on it; never raises for a bad file."""
    started = time.perf_counter()
    loaded = load_image(path, spec.plan, max_pixels=spec.max_pixels)
    if isinstance(loaded, LoadFailure):
        return Outcome(
            key,
            loaded.facts,
            error_code=loaded.code,
            error=loaded.message,
            seconds=time.perf_counter() - started,
        )
    try:
        payload = spec.preparer(loaded)
    except Exception as exc:  # an engine bug on one image must not stop the others
        return Outcome(
            key,
            loaded.facts,
            error_code="prepare_failed",
            error=f"{type(exc).__name__}: {exc}",
            seconds=time.perf_counter() - started,
        )
    height, width = loaded.pixels.shape[:2]
    return Outcome(
        key,
        loaded.facts,
        payload,
        width,
        height,
        seconds=time.perf_counter() - started,
        check_payloads=_measure_checks(spec.checks, loaded),
    )


class CheckFailed:
    """Stands in for a check's payload when its measurement raised; review reports it instead."""

    def __init__(self, exc: Exception) -> None:
        self.message = f"{type(exc).__name__}: {exc}"


def _measure_checks(checks: tuple[Check, ...], loaded: LoadedImage) -> dict[str, Any]:
    payloads: dict[str, Any] = {}
    for check in checks:
        try:
            payloads[check.name] = check.measure(loaded)
        except Exception as exc:  # a plugin's bug costs its own finding, not the image
            payloads[check.name] = CheckFailed(exc)
    return payloads


_worker_spec: WorkerSpec | None = None


def _init_worker(spec: WorkerSpec) -> None:
    global _worker_spec
    _worker_spec = spec
    # Ctrl-C is the main process's to handle: it stops cleanly and writes what is done.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()


def _exit_with_parent() -> None:
    """On Linux, have the kernel send SIGTERM to this worker when the process that started it dies (even by
    SIGKILL): an orphaned worker would otherwise wait on its queue for good, holding memory and the caller's
    output pipes."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # the parent died before the request was in place
        os._exit(1)


def _work(key: int, path: str) -> Outcome:
    assert _worker_spec is not None
    return load_and_prepare(key, path, _worker_spec)


class Prefetcher:
    """Runs `load_and_prepare` over paths in a process pool with a bounded window of work in flight.

    `workers=0` runs everything in the calling process (tests, debugging). A worker that dies (a
    decoder crash on a hostile file) is survived: the pool is rebuilt and the images that were in
    flight are retried one at a time, so only the culprit gets a `worker_crashed` row.
    """

    def __init__(self, spec: WorkerSpec, *, workers: int, prefetch: int = 4, window: int = 0) -> None:
        """At most max(`window`, workers x `prefetch`) images are decoding or decoded and waiting."""
        self.spec = spec
        self.workers = workers
        self.window = max(1, workers * prefetch, window)
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: a forked child of a process holding a GPU context or OpenMP threads can deadlock.
        context = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker, initargs=(self.spec,))

    def run(self, items: Iterable[tuple[int, str] | Outcome]) -> Iterator[Outcome]:
        """Yield one Outcome per (key, path), in the order given; ready Outcomes pass through in place."""
        if self.workers <= 0:
            for item in items:
                yield item if isinstance(item, Outcome) else load_and_prepare(*item, self.spec)
            return
        self._pool = self._new_pool()
        in_flight: deque[tuple[int, str, Future[Outcome]]] = deque()
        source = iter(items)
        try:
            exhausted = False
            while True:
                while not exhausted and len(in_flight) < self.window:
                    item = next(source, None)
                    if item is None:
                        exhausted = True
                        break
                    if isinstance(item, Outcome):
                        done: Future[Outcome] = Future()
                        done.set_result(item)
                        in_flight.append((item.key, item.facts.path, done))
                    else:
                        in_flight.append((*item, self._pool.submit(_work, *item)))
                if not in_flight:
                    return
                future = in_flight[0][2]
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    yield from self._recover([(k, p) for k, p, _ in in_flight])  # finished ones rerun: cheap
                    in_flight.clear()
                    continue
                in_flight.popleft()
                yield outcome
        finally:
            self.close()

    def _recover(self, items: list[tuple[int, str]]) -> Iterator[Outcome]:
        """After a worker crash: rebuild the pool and run the suspects alone to find the one at fault."""
        self.close()
        for key, path in items:
            if self._pool is None:
                self._pool = self._new_pool()
            try:
                yield self._pool.submit(_work, key, path).result()
            except BrokenProcessPool:
                yield Outcome(
                    key,
                    FileFacts(path=path),
                    error_code="worker_crashed",
                    error="the decoder crashed on this file (the process died); file skipped",
                )
                self.close()
        if self._pool is None:
            self._pool = self._new_pool()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
