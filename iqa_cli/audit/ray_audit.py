"""`iqa audit --ray`: the same audit as a Ray Data pipeline, on a Ray cluster or a local one.

    driver: discover (the same walk and keys as one machine) -> units (a file, a shard, a Parquet file)
    CPU tasks: read + decode + prepare each unit's images (`queue.load_and_prepare`; containers listed there)
    actor pool: the engine, one instance per actor (one GPU each for an accelerated engine), rows as on one machine
    driver: rows in discovery order (Ray Data's preserve_order) -> duplicates, --limit -> one Parquet file per
            block in OUT/report-dataset/ (written under a temporary name, then renamed) -> the summary

Incremental without the SQLite store (one file per machine): a unit image whose path and bytes (content hash)
already have an `ok` row in the dataset under the same settings (`cache_key`, kept in each file's metadata) is
skipped; anything else gets a new row, and a path's newest row is the one `iqa report` reads. Rows reach the
dataset only from the driver, once each, after Ray has retried whatever task or actor died on the way.

Ray Data's own `read_webdataset` / `read_parquet` / `read_binary_files` are not used for the inputs: they give
neither a tar member's offset, a Parquet row's index, nor an error row for a corrupt member (one bad member
fails the read), and the rows must match a single-machine run's. `write_parquet` is not used for the output:
its files appear before they are complete and a retried block could be written twice.
"""

from __future__ import annotations

import functools
import logging
import pickle
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iqa_cli.audit.containers import ContainerProblem, Member, container_kind, members
from iqa_cli.audit.discover import DiscoveryProblem
from iqa_cli.audit.queue import Outcome, WorkerSpec, load_and_prepare, source_hash
from iqa_cli.audit.remote import RemoteFile
from iqa_cli.audit.run import MEMBER_BITS, AuditSettings, RowCallback, _BatchContext, check_findings
from iqa_cli.audit.store import cache_key
from iqa_cli.checks import Check
from iqa_cli.engines.base import AssessRequest, Engine, EngineOptions
from iqa_cli.errors import IqaError
from iqa_cli.images import FileFacts
from iqa_cli.report.dataset import DATASET_DIR, DatasetWriter, reported_images
from iqa_cli.report.schema import EngineStamp, ReportRow
from iqa_cli.report.summary import Summary, SummaryBuilder

OUTCOMES_PER_BLOCK = 32  # a load task's outcomes per output block: prepared payloads are large (DepictQA's tensors)
FILES_PER_TASK = 16  # loose files read by one load task


class RayUnavailable(IqaError):
    """Ray is not installed, or the cluster cannot be reached."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: `address` None starts a local Ray (all cores), "auto" joins the running cluster."""

    address: str | None = None
    actors: int | None = None  # engine actors; None: one per GPU for an accelerated engine, else one per CPU
    num_cpus: int | None = None  # a local Ray's CPUs (None: all of this machine's)


@dataclass(frozen=True)
class _Unit:
    """One thing a load task reads: a file, or a container with all its members; or a problem found walking."""

    index: int  # discovery index: the unit's keys are index << MEMBER_BITS | member number
    root: str
    source: str | RemoteFile  # a path, or a URL's file
    problem: tuple[str, str] | None = None

    @property
    def path(self) -> str:
        """As the report names it (a URL without its credentials)."""
        return self.source.path if isinstance(self.source, RemoteFile) else self.source


@dataclass
class _Item:
    """An image after the load stage, on its way to the engine actors and the driver."""

    outcome: Outcome
    root: str
    sample_key: str | None = None
    source_meta: str | None = None
    counts: bool = True  # counts against --limit (every image, not a discovery or container problem)
    skipped: bool = False  # already in the dataset: no engine, no new row


@dataclass(frozen=True)
class _EngineFacts:
    """What the driver and the load tasks need from the engine, found on the cluster (it may need a GPU)."""

    stamp: EngineStamp
    spec: WorkerSpec
    batch_size: int


def audit_on_ray(
    settings: AuditSettings,
    engine: str | None,
    engine_options: EngineOptions,
    out: Path,
    ray_options: RayOptions,
    *,
    checks: Sequence[Check] = (),
    on_row: RowCallback | None = None,
    on_note: Callable[[str], None] | None = None,
    on_found: Any = None,
    on_ready: Callable[[], None] | None = None,
    on_decision: Callable[[str], None] | None = None,
) -> Summary:
    """`iqa audit --ray`: the engine chosen as on one machine (nothing loaded here), then `run_ray_audit`.
    The display hears each row (`on_ready`); the total is not known ahead, since containers are listed on the
    cluster (`on_found` unused)."""
    from iqa_cli.plugins import choose_engine

    engine_class, note = choose_engine(engine, engine_options)

    def row_written(row: ReportRow) -> None:
        if on_ready is not None:
            on_ready()
        if on_row is not None:
            on_row(row)

    summary = run_ray_audit(
        settings,
        engine_class,
        engine_options,
        out,
        ray_options=ray_options,
        checks=checks,
        engine_note=note,
        on_row=row_written,
        on_decision=on_decision,
    )
    if on_note is not None:
        for line in summary.notes:
            on_note(line)
    return summary


def run_ray_audit(
    settings: AuditSettings,
    engine_class: type[Engine],
    engine_options: EngineOptions,
    out: Path,
    *,
    ray_options: RayOptions = RayOptions(),
    checks: Sequence[Check] = (),
    engine_note: str = "",
    on_row: RowCallback | None = None,
    on_decision: Callable[[str], None] | None = None,
) -> Summary:
    """Audit `settings.paths` on Ray into `out`/report-dataset; the summary covers this run's new rows (the
    images skipped as already reported are counted in its notes). Ctrl-C stops the job: the files written stay,
    and the next run goes on from them. `summary.timings` has the seconds of each stage (`cli.progress.STAGES`)."""
    ray = _ray()
    started = time.perf_counter()
    dataset = out / DATASET_DIR
    dataset.mkdir(parents=True, exist_ok=True)
    started_here = not ray.is_initialized()  # a Ray already started in this process (a test, a notebook) is used as is
    timings: dict[str, float] = {}
    if started_here:
        try:
            ray.init(
                address=ray_options.address,
                num_cpus=ray_options.num_cpus if ray_options.address is None else None,
                include_dashboard=False,
                log_to_driver=False,
                logging_level="ERROR",
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RayUnavailable(f"cannot reach the Ray cluster at {ray_options.address}: {exc}") from None
        timings["ray_start"] = time.perf_counter() - started
    _quiet_ray_data_console()
    try:
        result = _run(ray, settings, engine_class, engine_options, out, dataset, ray_options, checks, engine_note,
                      on_row, on_decision, started, timings)  # fmt: skip
    finally:
        if started_here:
            stopping = time.perf_counter()
            ray.shutdown()
            timings["ray_stop"] = time.perf_counter() - stopping
    timings["total"] = time.perf_counter() - started
    result.timings = {name: round(seconds, 4) for name, seconds in timings.items()}
    return result


def _run(
    ray: Any,
    settings: AuditSettings,
    engine_class: type[Engine],
    engine_options: EngineOptions,
    out: Path,
    dataset: Path,
    ray_options: RayOptions,
    checks: Sequence[Check],
    engine_note: str,
    on_row: RowCallback | None,
    on_decision: Callable[[str], None] | None,
    started: float,
    timings: dict[str, float],
) -> Summary:
    import ray.data

    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = int(ray.cluster_resources().get("CPU", 1))
    per_actor_gpus = 1 if engine_class.accelerated and gpus > 0 else 0
    # A CPU engine's actors have the load tasks' resources, so Ray fuses the two stages: each actor decodes and
    # assesses its own blocks, and one per CPU keeps every core busy.
    actors = ray_options.actors or (gpus if per_actor_gpus else max(1, cpus))
    factory = functools.partial(_create_engine, engine_class, engine_options, tuple(checks), settings.max_pixels)
    describing = time.perf_counter()
    facts: _EngineFacts = ray.get(ray.remote(num_gpus=per_actor_gpus)(_describe).remote(factory))
    timings["engine_plan"] = time.perf_counter() - describing
    key = cache_key(
        facts.stamp,
        detail=settings.detail,
        extra={"max_pixels": settings.max_pixels, "checks": sorted(c.name for c in checks)},
    )
    batch_size = settings.batch_size or facts.batch_size
    known = reported_images(dataset, key) if not settings.rerun else {}
    groups = list(_groups(_units(settings)))
    if not per_actor_gpus:
        # Fused with the load, each group of units is one task on one actor: actors beyond the groups would start
        # (and build the engine) for nothing.
        actors = max(1, min(actors, len(groups)))
    if on_decision is not None:
        on_decision(
            f"ray: {cpus} CPUs, {gpus} GPUs; {actors} engine actor(s) with {per_actor_gpus} GPU each, batches of "
            f"{batch_size}; {len(known)} images already in {dataset}"
        )
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows in discovery order: duplicates and --limit as on one machine
    context.enable_progress_bars = False
    loaded = ray.data.from_items(
        [{"units": pickle.dumps(group)} for group in groups], override_num_blocks=len(groups) or 1
    )
    loaded = loaded.map_batches(
        _load_units,
        batch_size=None,
        fn_kwargs={"spec": facts.spec, "known": ray.put(known), "settings": settings},
        num_cpus=1,  # a task whose worker dies is run again (Ray's default: 3 times); its rows reach the driver once
    )
    assessed = loaded.map_batches(
        _EngineActor,
        fn_constructor_kwargs={
            "factory": factory,
            "detail": settings.detail,
            "min_confidence": settings.min_confidence,
            "batch_size": batch_size,
        },
        # Fused with the load stage (a CPU engine), Ray would bundle its input rows, the groups of units, up to
        # batch_size: one task for the first batch_size groups (thousands of files), no parallelism and no
        # block written before the end. Each load block is taken as it comes and split into engine batches
        # in the actor. A GPU actor's input is the load tasks' rows: Ray bundles them into full batches.
        batch_size=batch_size if per_actor_gpus else None,
        compute=ray.data.ActorPoolStrategy(size=actors),  # an actor that dies is restarted, its batch retried
        num_gpus=per_actor_gpus,
        num_cpus=1,
    )
    summary = SummaryBuilder(facts.stamp.name, facts.stamp.version, engine_note)
    writer = DatasetWriter(dataset, key)
    first_path_of: dict[str, str] = {}
    counted = skipped = 0
    interrupted = False
    running = time.perf_counter()
    timings["writing"] = 0.0
    try:
        # Block by block as each is finished (prefetching would hold a finished block back until the next is done).
        for block in assessed.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
            timings.setdefault("first_block", time.perf_counter() - running)
            rows = []
            for item_bytes in block.column("item").to_pylist():
                if settings.limit is not None and counted >= settings.limit:
                    break
                row, counts, was_skipped, payloads = pickle.loads(item_bytes)
                counted += counts
                if was_skipped:
                    skipped += 1
                    continue
                if row["status"] == "ok":
                    row["findings"] = check_findings(checks, row["path"], payloads)
                if row.get("content_hash"):
                    first = first_path_of.setdefault(row["content_hash"], row["path"])
                    row["duplicate_of"] = None if first == row["path"] else first
                rows.append(row)
            writing = time.perf_counter()
            writer.write(rows)
            timings["writing"] += time.perf_counter() - writing
            for row in rows:
                summary.add(row)
                if on_row is not None:
                    on_row(row)
            if settings.limit is not None and counted >= settings.limit:
                break
    except KeyboardInterrupt:
        interrupted = True
    timings["pipeline"] = time.perf_counter() - running
    result = summary.finish(time.perf_counter() - started, interrupted=interrupted, reports=writer.files)
    if skipped:
        result.notes.append(f"{skipped} images already reported in {dataset} with the same bytes were skipped")
    return result


def _quiet_ray_data_console() -> None:
    """Ray Data's INFO and WARNING lines (plans, progress) would interleave with iqa's display: its console handler
    keeps only errors, while its log file in Ray's session folder keeps everything. After `import ray.data`,
    which configures that logging anew."""
    import ray.data  # noqa: F401 - its import sets up the handlers changed here

    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):  # the console; the session file handler is not a stream
            handler.setLevel(logging.ERROR)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        from iqa_cli.install import install_hint

        raise RayUnavailable(f"--ray needs Ray: install it with {install_hint('ray')}") from None
    return ray


def _create_engine(
    engine_class: type[Engine], options: EngineOptions, checks: tuple[Check, ...], max_pixels: int
) -> tuple[Engine, tuple[Check, ...], int]:
    return engine_class.create(options), checks, max_pixels


def _describe(factory: Callable[[], tuple[Engine, tuple[Check, ...], int]]) -> _EngineFacts:
    """Built once on the cluster (with the actors' resources): the engine's stamp, decode plan and preparer."""
    engine, checks, max_pixels = factory()
    try:
        stamp = EngineStamp(engine.name, engine.version, engine.settings())
        spec = WorkerSpec(engine.decode_plan, engine.preparer(), max_pixels, checks)
        return _EngineFacts(stamp, spec, engine.preferred_batch_size)
    finally:
        engine.close()


def _units(settings: AuditSettings) -> Iterator[_Unit]:
    """The walk of a single-machine run (same discovery indices), without reading any container."""
    for index, (root, item) in enumerate(settings.discovered()):
        if isinstance(item, DiscoveryProblem):
            yield _Unit(index, root, item.path, (item.code, item.message))
        else:
            yield _Unit(index, root, item if isinstance(item, RemoteFile) else str(item))


def _groups(units: Iterator[_Unit]) -> Iterator[list[_Unit]]:
    """Units as the load tasks take them, in order: a container alone (it may hold thousands of images), loose
    files and problems FILES_PER_TASK at a time."""
    loose: list[_Unit] = []
    for unit in units:
        if unit.problem is None and container_kind(unit.path) is not None:
            if loose:
                yield loose
                loose = []
            yield [unit]
            continue
        loose.append(unit)
        if len(loose) == FILES_PER_TASK:
            yield loose
            loose = []
    if loose:
        yield loose


_KNOWN: dict[str, dict[str, str]] = {}  # per worker process: the dataset's reported images, fetched once


def _load_units(
    batch: dict[str, Any], *, spec: WorkerSpec, known: Any, settings: AuditSettings
) -> Iterator[dict[str, list[bytes]]]:
    """Ray task: every image of the batch's groups of units read, decoded and prepared, in blocks of at most
    OUTCOMES_PER_BLOCK, each from one group."""
    import ray

    reported = _KNOWN.get(known.hex())
    if reported is None:
        reported = _KNOWN[known.hex()] = ray.get(known)
    # Ray may hand one task several groups (it bundles small input blocks when it is busy). No block mixes two
    # groups: the engine returns a block's rows together, so a group's rows would otherwise wait for the next
    # group, a container that is slow to read or an engine call that is held.
    for group in batch["units"]:
        items: list[bytes] = []
        for unit in pickle.loads(group):
            for item in _unit_items(unit, spec, reported, settings):
                items.append(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
                if len(items) == OUTCOMES_PER_BLOCK:
                    yield {"item": items}
                    items = []
        if items:
            yield {"item": items}


def _unit_items(unit: _Unit, spec: WorkerSpec, reported: dict[str, str], settings: AuditSettings) -> Iterator[_Item]:
    key = unit.index << MEMBER_BITS
    if unit.problem is not None:
        code, message = unit.problem
        yield _Item(Outcome(key, FileFacts(path=unit.path), error_code=code, error=message), unit.root, counts=False)
        return
    if container_kind(unit.path) is None:
        source = unit.source
        if isinstance(source, RemoteFile):  # read whole through fsspec, named without credentials
            source = Member(source.path, source.url, size=None)
        yield _loaded(key, source, spec, reported, unit.root)
        return
    inside = members(unit.source, image_column=settings.image_column, id_column=settings.id_column)
    for number, member in enumerate(inside):
        if isinstance(member, ContainerProblem):
            outcome = Outcome(key | number, FileFacts(path=member.path), error_code=member.code, error=member.message)
            yield _Item(outcome, unit.root, counts=False)
        elif member.problem is not None:
            code, message = member.problem
            outcome = Outcome(key | number, FileFacts(path=member.path), error_code=code, error=message)
            yield _Item(outcome, unit.root, member.sample_key, member.meta)
        else:
            yield _loaded(key | number, member, spec, reported, unit.root)


def _loaded(key: int, source: str | Member, spec: WorkerSpec, reported: dict[str, str], root: str) -> _Item:
    """An image loaded and prepared, or marked skipped when the dataset has its path with the same bytes."""
    meta = (source.sample_key, source.meta) if isinstance(source, Member) else (None, None)
    path = source.path if isinstance(source, Member) else source
    earlier = reported.get(path)
    if earlier is not None and earlier == source_hash(source):
        return _Item(Outcome(key, FileFacts(path=path)), root, *meta, skipped=True)
    return _Item(load_and_prepare(key, source, spec), root, *meta)


class _EngineActor:
    """Ray actor: one engine, and the rows of each batch as a single-machine run makes them."""

    def __init__(self, factory: Callable[[], tuple[Engine, tuple[Check, ...], int]], detail: bool,
                 min_confidence: float, batch_size: int) -> None:  # fmt: skip
        engine, _, _ = factory()
        self._batch_size = batch_size
        stamp = EngineStamp(engine.name, engine.version, engine.settings())
        # No checks here: their findings are made on the driver, in discovery order (a check may compare an image
        # with the ones before it), from the payloads the load stage measured.
        self._rows = _BatchContext(engine, AssessRequest(detail=detail), stamp, min_confidence, ())

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[bytes]]:
        items: list[_Item] = [pickle.loads(b) for b in batch["item"]]
        fresh = [item.outcome for item in items if not item.skipped]
        self._rows.first_path_of.clear()  # duplicates are found by the driver, across the whole run
        size = self._batch_size
        rows = (row for start in range(0, len(fresh), size) for row in self._rows.rows(fresh[start : start + size]))
        out = []
        for item in items:
            row: ReportRow | None = None
            if not item.skipped:
                row = next(rows)
                row["root"], row["sample_key"], row["source_meta"] = item.root, item.sample_key, item.source_meta
            payloads = item.outcome.check_payloads
            out.append(pickle.dumps((row, item.counts, item.skipped, payloads), protocol=pickle.HIGHEST_PROTOCOL))
        return {"item": out}
