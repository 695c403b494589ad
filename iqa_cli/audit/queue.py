"""The work queue: decode and prepare images in worker processes ahead of the engine, hand it batches.

Memory is bounded by the in-flight window (workers x prefetch), not by the collection: discovery is a
generator, and at most `window` images are being decoded or waiting at any time. Outcomes come back in
submission order, so a run's report order is deterministic. A file that takes longer than the time limit in
the workers (load, EXIF, decode, the engine's preparer, the checks' measurements) becomes a ``timeout`` row.
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
from concurrent.futures import TimeoutError as FutureTimeout  # the builtin TimeoutError from Python 3.11 on
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any

from iqa_cli.audit.containers import Member
from iqa_cli.audit.load import content_hash, load_image, load_member
from iqa_cli.checks import Check
from iqa_cli.defaults import DEFAULT_FILE_TIMEOUT, DEFAULT_MAX_PIXELS
from iqa_cli.engines.base import Preparer
from iqa_cli.errors import IqaError
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


class WorkersFailed(IqaError):
    """The decode workers exit as they start, before any file: no file is at fault, so no row can say it."""


Source = str | Member
"""What a work item names: a file's path, or an image inside a container (read by offset, or its bytes)."""


def name_of(source: Source) -> str:
    """The report's `path` of a work item: the file's, or ``CONTAINER#MEMBER``."""
    return source.path if isinstance(source, Member) else source


def load_and_prepare(key: int, path: Source, spec: WorkerSpec) -> Outcome:
    """Decode one file (or container member) and run the engine's preparer on it; never raises for a bad file."""
    started = time.perf_counter()
    if isinstance(path, Member):
        loaded = load_member(
            path.path,
            spec.plan,
            container=path.container,
            offset=path.offset,
            size=path.size,
            data=path.data,
            max_pixels=spec.max_pixels,
        )
    else:
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


def source_hash(source: Source) -> str | None:
    """The content hash `load_and_prepare` would find for a work item, reading its bytes only (None: unreadable)."""
    if isinstance(source, Member):
        return content_hash(
            source.path, container=source.container, offset=source.offset, size=source.size, data=source.data
        )
    return content_hash(source)


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


def _work(key: int, path: Source) -> Outcome:
    assert _worker_spec is not None
    return load_and_prepare(key, path, _worker_spec)


def _ready() -> None:
    """Submitted to a new pool and waited for: once it returns, a worker is up and takes files in order."""


def _finished(future: Future[Outcome]) -> bool:
    """The future holds an outcome (not a cancellation, nor the error of a pool that was stopped)."""
    return future.done() and not future.cancelled() and future.exception() is None


class Prefetcher:
    """Runs `load_and_prepare` over paths in a process pool with a bounded window of work in flight.

    `workers=0` runs everything in the calling process (tests, debugging); nothing can stop a file there, so
    `file_timeout` does not apply. A worker that dies (a decoder crash on a hostile file) is survived: the pool
    is rebuilt and the images that were in flight are retried one at a time, so only the culprit gets a
    `worker_crashed` row. A file still unfinished `file_timeout` seconds (0: no limit) after it became the
    oldest in flight gets a `timeout` row: the workers are stopped (the stuck one cannot be reached alone) and
    the files in flight that had not finished are submitted again to a fresh pool, in their places.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        *,
        workers: int,
        prefetch: int = 4,
        window: int = 0,
        file_timeout: float = DEFAULT_FILE_TIMEOUT,
    ) -> None:
        """At most max(`window`, workers x `prefetch`) images are decoding or decoded and waiting."""
        self.spec = spec
        self.workers = workers
        self.window = max(1, workers * prefetch, window)
        self.file_timeout = file_timeout
        self._pool: ProcessPoolExecutor | None = None
        self._pool_ready = 0.0  # time.monotonic() when the pool's first worker was up
        self._in_flight: deque[tuple[int, Source, Future[Outcome]]] = deque()

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: a forked child of a process holding a GPU context or OpenMP threads can deadlock.
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker, initargs=(self.spec,))
        # Workers take files in submission order, so the oldest file in flight is being worked on, once a
        # worker is up: waiting for one here keeps the pool's start (spawning, imports) off a file's clock.
        try:
            pool.submit(_ready).result()
        except BrokenProcessPool:
            pool.shutdown(wait=True, cancel_futures=True)
            raise WorkersFailed(
                "the decode workers exited as they started, before reading any file (their error, if any, is"
                " above); run with --workers 0 to decode in this process. From a Python script, start iqa"
                ' under `if __name__ == "__main__":`: each worker imports the script again'
            ) from None
        self._pool_ready = time.monotonic()
        return pool

    def _submit(self, key: int, path: Source) -> Future[Outcome]:
        if self._pool is None:  # started at the first file to load: a run that only replays needs no workers
            self._pool = self._new_pool()
        return self._pool.submit(_work, key, path)

    def _time_left(self, since: float) -> float | None:
        """Seconds the oldest file in flight, oldest since `since`, may still take; None without a limit."""
        if self.file_timeout <= 0:
            return None
        return max(0.0, self.file_timeout - (time.monotonic() - max(since, self._pool_ready)))

    def _timed_out(self, key: int, path: Source) -> Outcome:
        return Outcome(
            key,
            FileFacts(path=name_of(path)),
            error_code="timeout",
            error=f"loading and preparing the file took longer than {self.file_timeout:g} s; file skipped "
            "(raise --file-timeout)",
        )

    def run(self, items: Iterable[tuple[int, Source] | Outcome]) -> Iterator[Outcome]:
        """Yield one Outcome per (key, path), in the order given; ready Outcomes pass through in place."""
        if self.workers <= 0:
            for item in items:
                yield item if isinstance(item, Outcome) else load_and_prepare(*item, self.spec)
            return
        in_flight = self._in_flight = deque()
        source = iter(items)
        head_since = time.monotonic()  # when in_flight[0] became the oldest in flight
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
                        in_flight.append((*item, self._submit(*item)))
                if not in_flight:
                    return
                key, path, future = in_flight[0]
                try:
                    outcome = future.result(timeout=self._time_left(head_since))
                except BrokenProcessPool:
                    suspects = [(k, p) for k, p, _ in in_flight]  # finished ones rerun: cheap
                    in_flight.clear()
                    yield from self._recover(suspects)
                    head_since = time.monotonic()
                    continue
                except FutureTimeout:
                    outcome = self._timed_out(key, path)
                    in_flight.popleft()
                    self._restart(in_flight)
                else:
                    in_flight.popleft()
                head_since = time.monotonic()
                yield outcome
        finally:
            self.close()

    def _restart(self, in_flight: deque[tuple[int, Source, Future[Outcome]]]) -> None:
        """After a file ran out of time: stop every worker, and submit the files in flight that had not finished
        again to a fresh pool, in their places (finished ones keep their outcome: none is lost or repeated)."""
        self._stop_pool(kill=True)
        for index, (key, path, future) in enumerate(in_flight):
            if not _finished(future):
                in_flight[index] = (key, path, self._submit(key, path))

    def _recover(self, items: list[tuple[int, Source]]) -> Iterator[Outcome]:
        """After a worker crash: rebuild the pool and run the suspects alone to find the one at fault."""
        self._stop_pool(kill=True)  # the others may still be busy with files that are about to run again
        for key, path in items:
            future = self._submit(key, path)
            try:
                outcome = future.result(timeout=self._time_left(time.monotonic()))
            except BrokenProcessPool:
                outcome = Outcome(
                    key,
                    FileFacts(path=name_of(path)),
                    error_code="worker_crashed",
                    error="the decoder crashed on this file (the process died); file skipped",
                )
                self._stop_pool(kill=False)
            except FutureTimeout:
                outcome = self._timed_out(key, path)
                self._stop_pool(kill=True)
            yield outcome

    def _stop_pool(self, *, kill: bool) -> None:
        """Shut the pool down; with `kill`, end its workers first, even one stuck in a decoder that never returns
        (Python before 3.14 has no public way to reach a pool's processes)."""
        if self._pool is None:
            return
        if kill:
            for process in list((getattr(self._pool, "_processes", None) or {}).values()):
                process.kill()
        self._pool.shutdown(wait=kill, cancel_futures=True)
        self._pool = None

    def close(self) -> None:
        """Shut the workers down; a later `run` starts a fresh pool. Files still in flight when the caller stops
        early (Ctrl-C, an error) may be stuck: their workers are ended rather than waited for."""
        self._stop_pool(kill=bool(self._in_flight))
        self._in_flight.clear()
