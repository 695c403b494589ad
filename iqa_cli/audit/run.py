"""An audit run: discover -> replay or prefetch (load + prepare) -> engine batches -> flag -> writers and summary."""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from iqa_cli.audit import remote
from iqa_cli.audit.containers import ContainerProblem, Member, container_kind, members
from iqa_cli.audit.discover import DiscoveryProblem, discover_with_roots
from iqa_cli.audit.flag import DEFAULT_MIN_CONFIDENCE, needs_review, verdict_for
from iqa_cli.audit.load import DEFAULT_MAX_PIXELS
from iqa_cli.audit.queue import DEFAULT_FILE_TIMEOUT, CheckFailed, Outcome, Prefetcher, WorkerSpec, default_workers
from iqa_cli.audit.remote import RemoteFile
from iqa_cli.audit.store import ResultStore, Stat, cache_key
from iqa_cli.audit.watch import CountAhead, FoundCallback, decisions
from iqa_cli.checks import Check, Finding
from iqa_cli.engines.base import Assessment, AssessRequest, Engine, Prepared
from iqa_cli.images import FileFacts
from iqa_cli.report.schema import EngineStamp, ReportRow, assessed_row, error_row
from iqa_cli.report.summary import Summary, SummaryBuilder
from iqa_cli.report.writers import ReportWriter


@dataclass
class AuditSettings:
    """Everything an audit needs besides the engine and the writers (the CLI's options, resolved).

    `paths` may be any iterable (a file list read lazily from stdin, say): it is walked once.
    """

    paths: Iterable[str]
    detail: bool = False
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    recursive: bool = True
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    include_hidden: bool = False
    follow_outside: bool = True  # False: links leading out of the folder they are in are reported, not read
    workers: int = field(default_factory=default_workers)
    batch_size: int | None = None  # None: the engine's preferred batch size
    limit: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    file_timeout: float = DEFAULT_FILE_TIMEOUT  # seconds a file may take in the workers; 0: no limit
    rerun: bool = False
    image_column: str | None = None  # a Parquet file's column of image bytes; None: detected by name
    id_column: str | None = None  # a Parquet column whose value is each row's sample_key

    def discovered(self) -> Iterator[tuple[str, Any]]:
        """The walk of `paths` with these settings, containers included: (root given, file or problem)."""
        return discover_with_roots(
            self.paths,
            recursive=self.recursive,
            include=self.include,
            exclude=self.exclude,
            include_hidden=self.include_hidden,
            follow_outside=self.follow_outside,
            containers=True,
        )


RowCallback = Callable[[ReportRow], None]
MEMBER_BITS = 40  # a container may hold up to 2**40 members (a work item's key: see _Sources._found)
MEMBER_MASK = (1 << MEMBER_BITS) - 1
HELD_ROWS = 256  # rows without engine work that may wait for a batch to fill before they are written


def run_audit(
    settings: AuditSettings,
    engine: Engine,
    writers: Sequence[ReportWriter],
    *,
    store: ResultStore | None = None,
    checks: Sequence[Check] = (),
    engine_note: str = "",
    on_row: RowCallback | None = None,
    on_note: Callable[[str], None] | None = None,
    on_found: FoundCallback | None = None,
    on_ready: Callable[[], None] | None = None,
    on_decision: Callable[[str], None] | None = None,
) -> Summary:
    """Assess every image under `settings.paths`, stream rows to `writers`, and return the summary.

    For a live display: `on_found` hears how many files (and discovery problems) have been found, with True
    once that is the total (walked ahead of the work in a thread when the paths can be walked twice);
    `on_ready` hears each one as it comes out of the work queue, before its batch; `on_decision` hears
    what the run chose (engine, batch size, workers) and, at the end, what the store replayed.
    `summary.timings` has the seconds spent per stage.

    With a `store`, an unchanged file's earlier row is replayed (no decoding, no engine) unless
    `settings.rerun`, and every fresh row is recorded batch by batch, so a killed run loses only the
    images in flight. The writers are closed (their files moved into place) whatever happens: on
    Ctrl-C the summary is marked interrupted and holds what was finished; other exceptions propagate
    after the close.
    """
    if store is not None:
        settings = replace(settings, paths=_Rewalkable(settings.paths))  # an interrupted run walks them again
    stamp = EngineStamp(engine.name, engine.version, engine.settings())
    summary = SummaryBuilder(engine.name, engine.version, engine_note)
    spec = WorkerSpec(engine.decode_plan, engine.preparer(), settings.max_pixels, tuple(checks))
    batch = _BatchContext(engine, AssessRequest(detail=settings.detail), stamp, settings.min_confidence, checks)
    key = cache_key(
        stamp,
        detail=settings.detail,
        extra={"max_pixels": settings.max_pixels, "checks": sorted(c.name for c in checks)},
    )

    def tell(note: str) -> None:
        summary.summary.notes.append(note)
        if on_note is not None:
            on_note(note)

    ahead = CountAhead(_Sources(settings, None, key).walk_again(), on_found)
    sources = _Sources(
        settings, store if not settings.rerun else None, key, on_found, ahead, recorder=store, on_note=tell
    )
    batch_size = settings.batch_size or engine.preferred_batch_size
    # Two batches in flight: the workers decode the next batch while the engine works on this one.
    prefetcher = Prefetcher(spec, workers=settings.workers, window=2 * batch_size, file_timeout=settings.file_timeout)
    if on_decision is not None:
        for line in decisions(
            engine,
            engine_note,
            batch_size=batch_size,
            batch_size_given=settings.batch_size is not None,
            window=prefetcher.window,
            workers=settings.workers,
            checks=checks,
            store=store is not None,
            rerun=settings.rerun,
        ):
            on_decision(line)
    started = time.perf_counter()
    timings = dict.fromkeys(("discovery", "decode_prepare", "engine", "writing"), 0.0)
    replayed = 0
    interrupted = False

    failed = False  # a writer or the store failed (a full disk): the earlier complete reports are kept
    writers = list(writers)  # a plugin writer that fails is dropped from it

    def drop(writer: ReportWriter, exc: Exception) -> None:
        """A plugin writer's bug costs its own report, not the run: reported, its file abandoned, not written again."""
        writer.abandon()
        writers.remove(writer)
        tell(
            f"the {writer.format} report writer ({type(writer).__module__}) failed: {type(exc).__name__}: {exc};"
            " it is disabled for this run and its previous report kept. Upgrade or uninstall the plugin"
        )

    last_written = -1  # outcomes come and are written in key order: every key up to this one is in the reports

    def write(outcomes: list[Outcome]) -> None:
        nonlocal failed, last_written
        rows = batch.rows(outcomes)
        writing = time.perf_counter()
        for outcome, row in zip(outcomes, rows, strict=True):
            row["root"] = sources.roots.pop(outcome.key, None)
            if outcome.replayed is None:  # a replayed row has the store's
                row["sample_key"], row["source_meta"] = sources.meta.pop(outcome.key, (None, None))
        try:
            for writer in list(writers):
                try:
                    writer.write(rows)
                except Exception as exc:
                    if not _is_plugin(writer, exc):
                        raise
                    drop(writer, exc)
            for outcome, row in zip(outcomes, rows, strict=True):
                summary.add(row)
                if store is not None and outcome.replayed is None:
                    if outcome.key in sources.container_of:
                        sources.record_member(store, outcome.key, row)
                    else:
                        store.record(outcome.facts.path, sources.stats.pop(outcome.key, None), row, key)
                if on_row is not None:
                    on_row(row)
            if store is not None:
                store.flush()
        except Exception:
            failed = True  # keep the earlier complete reports rather than a torn or short set
            raise
        finally:
            timings["writing"] += time.perf_counter() - writing
        if outcomes:
            last_written = outcomes[-1].key

    def emit(outcomes: list[Outcome]) -> None:
        # A batch's rows reach every writer and the store, or none of them: a Ctrl-C in between would leave
        # reports of different lengths. It is held until the batch is written, then acted on.
        with stop_signals.held():
            write(outcomes)

    pending: list[Outcome] = []
    ready = 0  # outcomes in `pending` the engine must assess
    with _StopSignals() as stop_signals, ahead:
        try:
            for outcome in prefetcher.run(sources.items()):
                pending.append(outcome)
                ready += outcome.needs_engine
                timings["decode_prepare"] += outcome.seconds
                replayed += outcome.replayed is not None
                if on_ready is not None:
                    on_ready()
                # Rows that need no engine (errors, replays) are not held back for long: at most HELD_ROWS of
                # them wait for the next engine batch, so memory stays bounded and a killed run loses few.
                if ready >= batch_size or len(pending) - ready >= HELD_ROWS:
                    emit(pending)
                    pending, ready = [], 0
            emit(pending)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            # A second Ctrl-C (or a SIGTERM after the first) must not tear the final writes: only counted.
            stop_signals.stopping()
            try:
                prefetcher.close()
                insisted = False
                if interrupted and store is not None and not failed:
                    # The reports get the remembered row of every file this run did not reach, so an interrupted
                    # run (a --rerun too) never leaves a shorter report than the store can give. Only replays, no
                    # decoding. A further Ctrl-C here means "stop now": complete earlier reports are then kept.
                    for chunk in _chunks(sources.remembered(store, after=last_written), HELD_ROWS):
                        if stop_signals.later:
                            insisted = any(writer.path.exists() for writer in writers)
                            break
                        write(chunk)
                        summary.summary.carried_over += sum(o.replayed is not None for o in chunk)
                # Nothing found, a writer that failed, or a stop during the carrying over: the earlier reports
                # are worth more than an empty, torn or short set.
                keep_earlier = summary.summary.files == 0 or failed or insisted
                finishing = time.perf_counter()
                reports = _abandon(writers) if keep_earlier else _finish_all(writers, drop)
                timings["writing"] += time.perf_counter() - finishing
            finally:
                if isinstance(settings.paths, _Rewalkable):
                    settings.paths.close()
    result = summary.finish(time.perf_counter() - started, interrupted=interrupted, reports=reports)
    # decode_prepare is summed over the workers, which run side by side: it may exceed the total.
    timings.update(discovery=sources.seconds, engine=batch.seconds, total=result.seconds)
    result.timings = {name: round(seconds, 4) for name, seconds in timings.items()}
    if on_decision is not None and store is not None:
        on_decision(f"results store: {replayed} of {result.files} rows replayed unchanged, nothing decoded for them")
    return result


class _StopSignals:
    """Ctrl-C (SIGINT) and SIGTERM (timeout, systemd, docker stop, Kubernetes) while a run is on.

    The first one stops the run (KeyboardInterrupt), unless it comes while a batch is being written (`held`),
    where it is acted on once the batch is in every report. From the first stop on, every later signal is only
    counted in `later`: a second Ctrl-C pressed while the exception unwinds cannot tear the final writes.
    A KeyboardInterrupt that some code swallowed (a finalizer, a library's cleanup) is raised again before the
    next batch is written, so a stop is never lost. Handlers change only in the main thread; elsewhere this does
    nothing.
    """

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.later = 0
        self._stopping = False
        self._raised = False  # a stop was raised and the run has not yet said it ends
        self._holding = False
        self._pending = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._on_signal) for sig in self._SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self._stopping:
            self.later += 1
        elif self._holding:
            self._pending = True
        else:
            self._stopping = self._raised = True
            raise KeyboardInterrupt

    def stopping(self) -> None:
        """The run ends (interrupted or not): signals from now on are only counted."""
        self._stopping = True
        self._raised = False

    @contextmanager
    def held(self) -> Iterator[None]:
        """The block runs to its end; a stop that came meanwhile is raised after it."""
        if self._raised:  # the run goes on after a stop: its KeyboardInterrupt was swallowed on the way
            raise KeyboardInterrupt
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self._pending and not self._stopping:
            self._pending = False
            self._stopping = True
            raise KeyboardInterrupt


def _chunks(items: Iterable[Outcome], size: int) -> Iterator[list[Outcome]]:
    chunk: list[Outcome] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _abandon(writers: Sequence[ReportWriter]) -> list[str]:
    for writer in writers:
        writer.abandon()
    return []


def _is_plugin(writer: ReportWriter, exc: Exception) -> bool:
    """Whether `exc` is a plugin writer's own failure (a bug), not the disk's: a plugin is dropped for it."""
    return not type(writer).__module__.startswith("iqa_cli.") and not isinstance(exc, OSError)


def _finish_all(writers: list[ReportWriter], drop: Callable[[ReportWriter, Exception], None]) -> list[str]:
    """Every report completed first, then all moved into place: if one cannot be finished (a full disk), none
    replaces its predecessor, so the folder never holds reports of two different runs. A plugin writer that
    fails to finish is dropped (`drop`), the others go on."""
    try:
        for writer in list(writers):
            try:
                writer.finish()
            except Exception as exc:
                if not _is_plugin(writer, exc):
                    raise
                drop(writer, exc)
    except BaseException:
        _abandon(writers)
        raise
    return [str(writer.commit()) for writer in writers]


def audit_folder(
    settings: AuditSettings,
    make_engine: Callable[[], tuple[Engine, str]],
    out: Path,
    writer_classes: Sequence[type[ReportWriter]],
    *,
    checks: Sequence[Check] = (),
    on_note: Callable[[str], None] | None = None,
    on_row: RowCallback | None = None,
    on_found: FoundCallback | None = None,
    on_ready: Callable[[], None] | None = None,
    on_decision: Callable[[str], None] | None = None,
) -> Summary:
    """`iqa audit` into the output folder `out`: its results store opened (and locked) first, so a second run
    on the same folder is refused before a model loads; then the engine from `make_engine` (engine, note),
    one writer per class, the run, and the engine closed whatever happens. `on_note` hears the store's notes
    (a damaged store set aside); it and the other callbacks go on to `run_audit`."""
    out.mkdir(parents=True, exist_ok=True)
    with ResultStore.open(out) as store:
        for note in store.notes:
            if on_note is not None:
                on_note(note)
        engine, engine_note = make_engine()
        try:
            writers = [cls(out) for cls in writer_classes]
            return run_audit(
                settings,
                engine,
                writers,
                store=store,
                checks=checks,
                engine_note=engine_note,
                on_row=on_row,
                on_note=on_note,
                on_found=on_found,
                on_ready=on_ready,
                on_decision=on_decision,
            )
        finally:
            engine.close()


class _Rewalkable:
    """The given paths, walkable a second time even when they come from a stream (a list on stdin): what the
    first walk took is kept in a temporary file, not in memory, and the second walk goes on with the rest."""

    def __init__(self, paths: Iterable[str]) -> None:
        self._fixed = paths if isinstance(paths, (list, tuple)) else None
        self._source = iter(paths)
        self._taken: IO[bytes] | None = None

    @property
    def fixed(self) -> bool:
        """The paths are a list: walking them again, even from another thread, reads no stream."""
        return self._fixed is not None

    def __iter__(self) -> Iterator[str]:
        if self._fixed is not None:
            yield from self._fixed
        elif self._taken is None:
            self._taken = tempfile.TemporaryFile()  # noqa: SIM115 - open across both walks, closed by close()
            for path in self._source:
                self._taken.write(os.fsencode(path) + b"\0")
                yield path
        else:
            self._taken.flush()
            self._taken.seek(0)
            rest = b""
            while block := self._taken.read(1 << 20):
                *whole, rest = (rest + block).split(b"\0")
                yield from map(os.fsdecode, whole)
            yield from self._source

    def close(self) -> None:
        if self._taken is not None:
            self._taken.close()


class _Sources:
    """The run's work items in discovery order: paths to load, and ready outcomes (problems, replays).

    `stats` holds the stat taken before each path was read (a remote file's version), for the store, and `roots`
    the path given that each was found under, for its row, only while it is in flight.
    """

    def __init__(
        self,
        settings: AuditSettings,
        store: ResultStore | None,
        key: str,
        on_found: FoundCallback | None = None,
        ahead: CountAhead | None = None,
        *,
        recorder: ResultStore | None = None,
        on_note: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store  # replays from it (None with --rerun)
        self.recorder = recorder  # records into it (the run's store, also with --rerun)
        self.key = key
        self.on_found = on_found
        self.ahead = ahead
        self.on_note = on_note
        self.seconds = 0.0  # spent walking, in stat and in the store's lookups
        self.stats: dict[int, Stat | None] = {}
        self.roots: dict[int, str] = {}
        self.meta: dict[int, tuple[str | None, str | None]] = {}  # a container member's sample_key, source_meta
        # A container being read: its members' keys in flight -> its path, and what the store needs once all are in.
        self.container_of: dict[int, str] = {}
        self.reading: dict[str, _Reading] = {}
        self.unversioned: set[str] = set()  # the protocols whose files were found without a version (said once)

    def items(self) -> Iterator[tuple[int, str | Member] | Outcome]:
        for key, root, item in self._walked():
            self.roots[key] = root
            if isinstance(item, (DiscoveryProblem, ContainerProblem)):
                yield Outcome(key, FileFacts(path=item.path), error_code=item.code, error=item.message)
                continue
            if isinstance(item, _Remembered):
                yield Outcome(key, FileFacts(path=item.row["path"]), replayed=item.row)
                continue
            if isinstance(item, Member):
                self.meta[key] = (item.sample_key, item.meta)
                if item.problem is not None:
                    yield Outcome(key, FileFacts(path=item.path), error_code=item.problem[0], error=item.problem[1])
                else:
                    yield key, item
                continue
            st, replayed = self._replay(item, self.store)
            if replayed is not None:
                yield Outcome(key, FileFacts(path=_name(item)), replayed=replayed)
            else:
                self.stats[key] = st
                # A remote file is read through fsspec by the workers, under its URL without credentials.
                yield key, Member(item.path, item.url, size=None) if isinstance(item, RemoteFile) else item

    def remembered(self, store: ResultStore, *, after: int) -> Iterator[Outcome]:
        """The discovery walked again from key `after` + 1: `store`'s row of each unchanged file and the
        problems, skipping files that would need work. Settings's `paths` must be walkable twice (a list)."""
        self.stats.clear()
        self.roots.clear()  # of outcomes that were in flight: they come again, with their roots
        for key, root, item in self._found(replay_only=True):
            if key <= after:
                continue
            if isinstance(item, _Remembered):
                self.roots[key] = root
                yield Outcome(key, FileFacts(path=item.row["path"]), replayed=item.row)
                continue
            if isinstance(item, DiscoveryProblem):
                self.roots[key] = root
                yield Outcome(key, FileFacts(path=item.path), error_code=item.code, error=item.message)
                continue
            _, replayed = self._replay(item, store)
            if replayed is not None:
                self.roots[key] = root
                yield Outcome(key, FileFacts(path=_name(item)), replayed=replayed)

    def _walked(self) -> Iterator[tuple[int, str, Found]]:
        """`_found`, timed, and counted for `on_found` (unless `ahead` counts), which hears the total at the end."""
        found, count = self._found(), 0
        counted_ahead = self.ahead is not None and self.ahead.counting
        while True:
            started = time.perf_counter()
            item = next(found, None)
            self.seconds += time.perf_counter() - started
            if item is None:
                break
            count += 1
            if self.on_found is not None and not counted_ahead:
                self.on_found(count, False)
            yield item
        if self.ahead is not None:
            self.ahead.walked.set()
        if self.on_found is not None:
            self.on_found(count, True)

    def walk_again(self) -> Callable[[], Iterator[object]] | None:
        """A second walk of the same paths, independent of the run's (from another thread): where they are a list."""
        paths = self.settings.paths
        if isinstance(paths, (list, tuple)) or (isinstance(paths, _Rewalkable) and paths.fixed):
            return lambda: self._found(counting=True)
        return None

    def _found(self, *, counting: bool = False, replay_only: bool = False) -> Iterator[tuple[int, str, Found]]:
        """(key, root given, absolute path, container member or problem) in discovery order, up to the --limit'th
        image. A container's members share its discovery index: key = index << MEMBER_BITS | member number, so
        keys rise in order and a container's keys do not depend on how many members the ones before it had.
        `counting` only counts: a Parquet file's rows come from its metadata, their bytes unread. An unchanged
        container in the store comes as its remembered rows (`_Remembered`); with `replay_only`, a container that
        is not is skipped unread."""
        s = self.settings
        found = s.discovered()
        files = 0
        for index, (root, item) in enumerate(found):
            key = index << MEMBER_BITS
            if isinstance(item, DiscoveryProblem):
                yield key, root, item
                continue
            source = item if isinstance(item, RemoteFile) else str(item)
            path = _name(source)  # as the report and the store name it
            if container_kind(path) is None:
                if s.limit is not None and files >= s.limit:
                    return
                files += 1
                yield key, root, source
                continue
            st, remembered = (None, None) if counting else self._replay_container(source)
            if remembered is not None:
                for number, row in remembered:
                    if s.limit is not None and files >= s.limit:
                        return
                    files += row["status"] != "error" or row["error_code"] not in _CONTAINER_CODES
                    yield key | number, root, _Remembered(row)
                continue
            if replay_only:
                continue
            inside = (
                _counted_rows(source)
                if counting and container_kind(path) == "parquet"
                else members(source, image_column=s.image_column, id_column=s.id_column)
            )
            reading = _Reading(st) if st is not None and not counting and self.recorder is not None else None
            if reading is not None:
                self.reading[path] = reading
            number = -1
            for number, member in enumerate(inside):
                if isinstance(member, Member):
                    if s.limit is not None and files >= s.limit:
                        self.reading.pop(path, None)  # cut short: never remembered as complete
                        return
                    files += 1
                if reading is not None:
                    self.container_of[key | number] = path
                yield key | number, root, member
            if reading is not None:
                reading.total = number + 1
                self._settle(path)

    def _replay_container(self, source: str | RemoteFile) -> tuple[Stat | None, Iterator[tuple[int, ReportRow]] | None]:
        """The container's stat before it is read, and its remembered rows in the store when it is unchanged."""
        started = time.perf_counter()
        st = self._stat(source)  # None: members() says what is wrong with it, or a remote file without a version
        try:
            if st is None or self.store is None:
                return st, None
            return st, self.store.replay_container(_name(source), st, self.key)
        finally:
            self.seconds += time.perf_counter() - started

    def record_member(self, store: ResultStore, key: int, row: ReportRow) -> None:
        """Record a container member's fresh row; once its container's every row is recorded, the container."""
        path = self.container_of.pop(key)
        reading = self.reading.get(path)
        if reading is None:
            return
        reading.written += 1
        reading.complete &= store.record_member(path, key & MEMBER_MASK, row, self.key)
        self._settle(path, store)

    def _settle(self, path: str, store: ResultStore | None = None) -> None:
        """A container whose members are all listed and written: remembered as complete when all were recorded."""
        reading = self.reading.get(path)
        store = store or self.recorder
        if reading is None or reading.total is None or reading.written < reading.total:
            return
        del self.reading[path]
        if reading.complete and store is not None:
            store.record_container(path, reading.st, reading.total)

    def _replay(self, source: str | RemoteFile, store: ResultStore | None) -> tuple[Stat | None, ReportRow | None]:
        """The file's stat before it is read, and its remembered row in `store` when it is unchanged."""
        started = time.perf_counter()
        st = self._stat(source)  # None: the loader will say what is wrong with it
        replayed = store.replay(_name(source), st, self.key) if store is not None and st is not None else None
        self.seconds += time.perf_counter() - started
        return st, replayed

    def _stat(self, source: str | RemoteFile) -> Stat | None:
        """A local file's stat, or a remote file's version (its size and mtime or ETag); None when there is none:
        not remembered then, so read again next time (said once per protocol)."""
        if isinstance(source, str):
            try:
                return os.stat(source)
            except OSError:
                return None
        version = remote.examined(source).stat
        name = remote.protocol(source.url)
        if version is None and name not in self.unversioned and self.on_note is not None:
            self.unversioned.add(name)
            self.on_note(
                f"{name}:// gives no modification time or ETag for some files (such as {source.path}): they are"
                " read again on every run, not replayed from the results store"
            )
        return version


def _name(source: str | RemoteFile) -> str:
    """A file's name in the report and the store: its path, or its URL without credentials."""
    return source.path if isinstance(source, RemoteFile) else source


@dataclass
class _Remembered:
    """A container member's row replayed from the store."""

    row: ReportRow


Found = str | RemoteFile | DiscoveryProblem | Member | ContainerProblem | _Remembered
"""What discovery gives the run: a file's path or URL, an image inside a container (to read, or remembered), or
a problem (one row each)."""


@dataclass
class _Reading:
    """A container being read afresh: its stat before, its members listed (once known) and written so far."""

    st: Stat
    total: int | None = None
    written: int = 0
    complete: bool = True  # every row written was recorded


# A container's own problems: error rows that are not images, for --limit.
_CONTAINER_CODES = frozenset(("unreadable_container", "no_image_column"))


def _counted_rows(source: str | RemoteFile) -> Iterator[object]:
    """One placeholder per row of a Parquet file, from its metadata (for counting ahead; no bytes read)."""
    import pyarrow.parquet as pq

    try:
        with remote.open_file(source.url) if isinstance(source, RemoteFile) else open(source, "rb") as handle:
            rows = pq.read_metadata(handle).num_rows
    except Exception:
        rows = 1  # its error row
    return iter(range(rows))


@dataclass
class _BatchContext:
    """What turning a batch of outcomes into rows needs, and the duplicates seen so far."""

    engine: Engine
    request: AssessRequest
    stamp: EngineStamp
    min_confidence: float
    checks: Sequence[Check]
    first_path_of: dict[str, str] = field(default_factory=dict)  # content hash -> first path with it
    seconds: float = 0.0  # spent in the engine, for the run's timings

    def rows(self, outcomes: list[Outcome]) -> list[ReportRow]:
        """Run the engine on the loaded outcomes and turn every outcome into a row, in order."""
        ready = [o for o in outcomes if o.needs_engine]
        results: dict[int, Assessment | Exception] = {}
        engine_seconds = 0.0
        if ready:
            started = time.perf_counter()
            results = _assess_batch(self.engine, ready, self.request)
            self.seconds += time.perf_counter() - started
            engine_seconds = (time.perf_counter() - started) / len(ready)
        rows = []
        for outcome in outcomes:
            result = results.get(outcome.key)
            if outcome.replayed is not None:
                row = dict(outcome.replayed)
                if row["status"] == "ok":  # --min-confidence is not part of the stored settings
                    row["needs_review"] = needs_review(row["confidence"], row["detail_confidence"], self.min_confidence)
            elif not outcome.needs_engine:
                code, message = outcome.error_code or "error", outcome.error or ""
                row = error_row(outcome.facts, code, message, stamp=self.stamp)
            elif isinstance(result, Exception):
                message = f"{type(result).__name__}: {result}"
                row = error_row(outcome.facts, "engine_failed", message, stamp=self.stamp)
            else:
                assert result is not None
                row = assessed_row(
                    outcome.facts,
                    self.stamp,
                    result,
                    verdict=verdict_for(result),
                    needs_review=needs_review(result.confidence, result.detail_confidence, self.min_confidence),
                    elapsed_ms=(outcome.seconds + engine_seconds) * 1000.0,
                    findings=self._findings(outcome),
                )
            row["duplicate_of"] = self._duplicate_of(row)
            rows.append(row)
        return rows

    def _duplicate_of(self, row: ReportRow) -> str | None:
        """The first path of this run with the same bytes, when this is not it."""
        content = row.get("content_hash")
        if content is None:
            return None
        first = self.first_path_of.setdefault(content, row["path"])
        return None if first == row["path"] else first

    def _findings(self, outcome: Outcome) -> list[str]:
        return check_findings(self.checks, outcome.facts.path, outcome.check_payloads)


def check_findings(checks: Sequence[Check], path: str, payloads: dict[str, Any]) -> list[str]:
    """What the checks say of an assessed image from their payloads, in the run's order (a check may compare an
    image with the ones before it, as iqa-dupes does); a check that fails costs its own finding, not the image."""
    found: list[str] = []
    for check in checks:
        payload = payloads.get(check.name)
        if isinstance(payload, CheckFailed):
            found.append(str(Finding(check.name, "check_failed", payload.message)))
            continue
        try:
            found.extend(str(f) for f in check.review(path, payload))
        except Exception as exc:  # a plugin's bug costs its own finding, not the image
            found.append(str(Finding(check.name, "check_failed", f"{type(exc).__name__}: {exc}")))
    return found


def _assess_batch(engine: Engine, ready: list[Outcome], request: AssessRequest) -> dict[int, Assessment | Exception]:
    """Assess a batch; if the engine fails on it, retry one image at a time so one bad image fails alone."""
    prepared = [Prepared(o.key, o.payload, o.width, o.height) for o in ready]
    try:
        return dict(zip([p.key for p in prepared], engine.assess(prepared, request), strict=True))
    except Exception as exc:
        if len(prepared) == 1:
            return {prepared[0].key: exc}
    results: dict[int, Assessment | Exception] = {}
    for item in prepared:
        try:
            results[item.key] = engine.assess([item], request)[0]
        except Exception as exc:  # recorded as this image's error row
            results[item.key] = exc
    return results
