"""Running a comparison or ranking: load and prepare images in the workers, ask the engine, match method
folders, write the pairs, ranking and methods tables."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from iqa_cli.audit.discover import DiscoveryProblem, discover
from iqa_cli.audit.queue import Outcome, Prefetcher, WorkerSpec
from iqa_cli.defaults import DEFAULT_FILE_TIMEOUT, DEFAULT_MAX_PIXELS, PAIR_LIMIT
from iqa_cli.engines.base import AssessRequest, Comparison, Engine, Prepared
from iqa_cli.errors import UsageError
from iqa_cli.rank.model import (
    METHODS_SCHEMA,
    PAIRS_SCHEMA,
    RANKING_SCHEMA,
    Judge,
    MethodSummary,
    PairResult,
    Ranking,
    Standing,
    aggregate,
    combine,
    method_rows,
    pair_rows,
    ranking_rows,
    standings,
    tournament,
)
from iqa_cli.report.writers import ReportWriter

# --------------------------------------------------------------------------------- running engines


@dataclass
class RankSettings:
    """What a compare or rank run needs besides the engine (the command line's options, resolved)."""

    detail: bool = False
    pair_limit: int = PAIR_LIMIT
    workers: int = 0
    batch_size: int = 8
    seed: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    file_timeout: float = DEFAULT_FILE_TIMEOUT  # seconds a file may take in the workers; 0: no limit


def _judge(engine: Engine, items: Sequence[Prepared], ref: Prepared | None, settings: RankSettings) -> Judge:
    """A Judge asking `engine` each pair both ways, in batches; a failing batch is retried pair by pair."""
    request = AssessRequest(detail=settings.detail)

    def ask(triples: list[tuple[Prepared, Prepared, Prepared | None]]) -> list[Comparison | Exception]:
        out: list[Comparison | Exception] = []
        for start in range(0, len(triples), settings.batch_size):
            chunk = triples[start : start + settings.batch_size]
            try:
                out += engine.compare(chunk, request)
            except Exception:
                for triple in chunk:
                    try:
                        out += engine.compare([triple], request)
                    except Exception as exc:  # this pair's error record
                        out.append(exc)
        return out

    def judge(pairs: list[tuple[int, int]]) -> list[PairResult]:
        triples = [t for i, j in pairs for t in ((items[i], items[j], ref), (items[j], items[i], ref))]
        answers = ask(triples)
        results = []
        for k, (i, j) in enumerate(pairs):
            forward, backward = answers[2 * k], answers[2 * k + 1]
            if isinstance(forward, Exception) or isinstance(backward, Exception):
                failed = forward if isinstance(forward, Exception) else backward
                results.append(PairResult(i, j, error=f"{type(failed).__name__}: {failed}"))
            else:
                results.append(combine(i, j, forward, backward))
        return results

    return judge


def _rank_loaded(
    group: str, outcomes: list[Outcome], labels: list[str], ref: Outcome | None, engine: Engine, settings: RankSettings
) -> Ranking:
    """Rank the loaded candidates of one group; load failures become unranked rows with their error."""
    usable = [k for k, o in enumerate(outcomes) if o.needs_engine]
    items = [Prepared(k, outcomes[k].payload, outcomes[k].width, outcomes[k].height) for k in usable]
    ref_item = Prepared(-1, ref.payload, ref.width, ref.height) if ref is not None else None
    local = tournament(len(items), _judge(engine, items, ref_item, settings), pair_limit=settings.pair_limit)
    pairs = [PairResult(usable[r.a], usable[r.b], r.p_a, r.agree, r.forward, r.backward, r.error) for r in local]
    rows = standings([o.facts.path for o in outcomes], labels, pairs)
    for k, outcome in enumerate(outcomes):
        if not outcome.needs_engine:
            rows[k].error_code, rows[k].error = outcome.error_code, outcome.error
        elif rows[k].rank is None:
            failures = [p.error for p in pairs if p.error and k in (p.a, p.b)]
            rows[k].error_code = "compare_failed" if failures else "not_compared"
            rows[k].error = failures[0] if failures else "no other candidate could be compared with it"
    return Ranking(group, ref.facts.path if ref is not None else None, rows, pairs)


def _load(engine: Engine, groups: Sequence[list[str]], settings: RankSettings) -> Iterator[list[Outcome]]:
    """Load and prepare each group of paths in the decode workers; yields one group's outcomes at a time."""
    spec = WorkerSpec(engine.decode_plan, engine.compare_preparer(), settings.max_pixels)
    prefetcher = Prefetcher(spec, workers=settings.workers, file_timeout=settings.file_timeout)
    flat = ((key, path) for key, path in enumerate(p for g in groups for p in g))
    outcomes = prefetcher.run(flat)
    try:
        for group in groups:
            yield [next(outcomes) for _ in group]
    finally:
        prefetcher.close()


def _reference_problem(outcome: Outcome) -> str | None:
    """Why a reference cannot be used, or None when it loaded."""
    if outcome.needs_engine:
        return None
    return f"the reference {outcome.facts.path} could not be read: {outcome.error_code}: {outcome.error}"


def rank_files(paths: Sequence[str], reference: str | None, engine: Engine, settings: RankSettings) -> Ranking:
    """Rank image files, optionally against a reference; raises UsageError when the reference is unreadable."""
    if len(paths) < 2:
        raise UsageError("give at least two images to rank (the reference does not count)")
    (loaded,) = _load(engine, [[*paths, *([reference] if reference else [])]], settings)
    ref = loaded[-1] if reference else None
    problem = _reference_problem(ref) if ref is not None else None
    if problem:
        raise UsageError(f"{problem}; fix the path, or leave out --ref to rank without a reference")
    return _rank_loaded("", loaded[: len(paths)], [Path(p).name for p in paths], ref, engine, settings)


# ------------------------------------------------------------------------------------ folder mode


@dataclass
class Matching:
    """Files matched across method folders by name: `groups` are (name, one path per method, reference)."""

    methods: list[str]
    groups: list[tuple[str, list[str], str | None]] = field(default_factory=list)
    unmatched: list[tuple[str, str]] = field(default_factory=list)  # (path or name, why)


def _index(folder: str) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Image files under `folder` by match key (relative path without extension, lower case), and problems."""
    found: dict[str, str] = {}
    problems = []
    for item in discover([folder]):
        if isinstance(item, DiscoveryProblem):
            problems.append((item.path, f"{item.code}: {item.message}"))
            continue
        key = str(Path(os.path.relpath(item, folder)).with_suffix("")).replace(os.sep, "/").lower()
        if key in found:
            problems.append((str(item), f"same name as {found[key]} in that folder; rename one to match it"))
            continue
        found[key] = str(item)
    return found, problems


def method_labels(folders: Sequence[str]) -> list[str]:
    """Folder names as method names; the paths as given when two folders share a name."""
    names = [Path(f).name or f for f in folders]
    return names if len(set(names)) == len(names) else [str(f) for f in folders]


def match_folders(folders: Sequence[str], ref_dir: str | None = None) -> Matching:
    """Match files across method folders (and the reference folder) by name, ignoring extension and case."""
    for folder in [*folders, *([ref_dir] if ref_dir else [])]:
        if not Path(folder).is_dir():
            raise UsageError(f"{folder} is not a folder; folder mode takes one folder per method (and --ref-dir)")
    matching = Matching(method_labels(folders))
    indexes = []
    for folder in folders:
        found, problems = _index(folder)
        indexes.append(found)
        matching.unmatched += problems
    refs, problems = _index(ref_dir) if ref_dir else ({}, [])
    matching.unmatched += problems
    sources = [*zip(matching.methods, indexes, strict=True), *([("reference", refs)] if ref_dir else [])]
    for key in sorted(set().union(*(found.keys() for _, found in sources))):
        missing = [name for name, found in sources if key not in found]
        if missing:
            matching.unmatched.append((key, f"missing from {', '.join(missing)}"))
        else:
            matching.groups.append((key, [found[key] for found in indexes], refs.get(key)))
    return matching


def rank_folders(matching: Matching, engine: Engine, settings: RankSettings) -> list[Ranking]:
    """Rank the methods on every matched image; an image whose reference is unreadable is all error rows."""
    groups = [[*paths, *([ref] if ref else [])] for _, paths, ref in matching.groups]
    rankings = []
    for (name, paths, ref_path), loaded in zip(matching.groups, _load(engine, groups, settings), strict=True):
        ref = loaded[-1] if ref_path else None
        problem = _reference_problem(ref) if ref is not None else None
        if problem:
            rows = [
                Standing(k, p, matching.methods[k], error_code="reference_unreadable", error=problem)
                for k, p in enumerate(paths)
            ]
            rankings.append(Ranking(name, ref_path, rows, []))
            continue
        rankings.append(_rank_loaded(name, loaded[: len(paths)], matching.methods, ref, engine, settings))
    return rankings


@dataclass
class RankPlan:
    """What `iqa rank` ranks: image files (every one a candidate) with an optional reference, or method folders
    matched by name."""

    candidates: list[str]
    reference: str | None = None
    matching: Matching | None = None


def plan_rank(paths: Sequence[str], ref: str | None, ref_dir: str | None) -> RankPlan:
    """Folder mode when every path is a folder (or --ref-dir is given), else image files, each of them a candidate
    (a reference only with `ref`: `iqa rank out/*.png` must rank every file); UsageError for a mix, or for folders
    that share no file name. Decided before any engine loads."""
    folder_mode = ref_dir is not None or all(Path(p).is_dir() for p in paths)
    if folder_mode and (ref is not None or any(not Path(p).is_dir() for p in paths)):
        raise UsageError("folder mode takes only folders (one per method) and --ref-dir, not files or --ref")
    if not folder_mode and any(Path(p).is_dir() for p in paths):
        raise UsageError("give either image files or method folders, not both")
    if not folder_mode:
        return RankPlan(list(paths), ref)
    matching = match_folders(paths, ref_dir)
    if not matching.groups:
        raise UsageError("no file name is present in every folder; nothing to rank (see the unmatched list)")
    return RankPlan(list(paths), matching=matching)


def run_rank(
    plan: RankPlan, engine: Engine, settings: RankSettings
) -> tuple[list[Ranking], list[MethodSummary] | None]:
    """The rankings of a plan, and in folder mode the methods' summary over every matched image."""
    if plan.matching is None:
        return [rank_files(plan.candidates, plan.reference, engine, settings)], None
    rankings = rank_folders(plan.matching, engine, settings)
    return rankings, aggregate(plan.matching.methods, rankings, seed=settings.seed)


def write_tables(
    out_dir: Path,
    writer_classes: Sequence[type[ReportWriter]],
    rankings: Sequence[Ranking],
    summaries: Sequence[MethodSummary] | None,
) -> list[Path]:
    """pairs, ranking (and, for folders, methods) tables in `out_dir`, one file per writer class; each file
    appears only when complete, as the audit's reports do."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = [
        ("pairs", PAIRS_SCHEMA, [row for ranking in rankings for row in pair_rows(ranking)]),
        ("ranking", RANKING_SCHEMA, [row for ranking in rankings for row in ranking_rows(ranking)]),
    ]
    if summaries is not None:
        tables.append(("methods", METHODS_SCHEMA, method_rows(summaries)))
    written = []
    for stem, schema, rows in tables:
        for cls in writer_classes:
            writer = cls(out_dir, stem, schema=schema)
            writer.write(rows)
            written.append(writer.close())
    return written
