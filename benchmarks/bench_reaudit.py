"""Re-audit of a large unchanged folder from the results store: discover + stat + lookup, no decoding (a script).

    python benchmarks/bench_reaudit.py [--files 100000] [--quick] [--keep DIR]

Creates `--files` tiny files (random bytes named .jpg: only their stat and the store matter here) in
folders of 1000, records a plausible assessed row for each as a finished run would, then times the
re-audit: `discover` + `os.stat` + `ResultStore.replay` per file, then the same again also streaming
the rows to the Parquet and CSV writers and the summary, as `iqa audit` would. A bulk preload of the
whole store into a dict is timed for comparison with one indexed query per file.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import tempfile
import time
from pathlib import Path

from iqa_cli.audit.discover import discover
from iqa_cli.audit.store import STORE_NAME, ResultStore, cache_key
from iqa_cli.engines.base import Assessment
from iqa_cli.images import FileFacts
from iqa_cli.report.schema import EngineStamp, assessed_row
from iqa_cli.report.summary import SummaryBuilder
from iqa_cli.report.writers import CsvWriter, ParquetWriter

STAMP = EngineStamp("signal", "1.0", {"long_side": 1024})
PER_FOLDER = 1000
HOUR_NS = 3600 * 10**9


def make_files(folder: Path, count: int) -> None:
    """`count` small distinct files, backdated an hour (a freshly written file is not trusted yet)."""
    old = time.time_ns() - HOUR_NS
    for n in range(count):
        sub = folder / f"d{n // PER_FOLDER:04d}"
        if n % PER_FOLDER == 0:
            sub.mkdir()
        path = sub / f"IMG_{n:06d}.jpg"
        path.write_bytes(os.urandom(32))
        os.utime(path, ns=(old, old))


def row_for(path: str, n: int) -> dict:
    """A row shaped like a real assessed image's."""
    facts = FileFacts(path=path, file_size=32, content_hash=f"{n:032x}", width=4000, height=3000, format="JPEG")
    result = Assessment(
        task="distortion_identification",
        question="What distortions are present in the image?",
        answer="Blur and noise",
        distortions=["blur", "noise"],
        severities=[3, 2],
        rating="fair",
        score=0.55,
        confidence=0.8,
    )
    return assessed_row(facts, STAMP, result, verdict="degraded", needs_review=False, elapsed_ms=120.0)


def fill(folder: Path, out: Path, key: str) -> float:
    started = time.perf_counter()
    with ResultStore.open(out) as store:
        for n, path in enumerate(p for p in discover([folder]) if isinstance(p, Path)):
            store.record(str(path), os.stat(path), row_for(str(path), n), key)
    return time.perf_counter() - started


def reaudit(folder: Path, out: Path, key: str, *, write: bool) -> tuple[float, int, int]:
    """Time one re-audit; returns (seconds, rows replayed, misses)."""
    started = time.perf_counter()
    hits = misses = 0
    writers = [ParquetWriter(out), CsvWriter(out)] if write else []
    summary = SummaryBuilder(STAMP.name, STAMP.version)
    batch: list[dict] = []
    with ResultStore.open(out) as store:
        for item in discover([folder]):
            path = str(item)
            row = store.replay(path, os.stat(path), key)
            if row is None:
                misses += 1
                continue
            hits += 1
            if write:
                batch.append(row)
                summary.add(row)
                if len(batch) >= 256:
                    for writer in writers:
                        writer.write(batch)
                    batch = []
    for writer in writers:
        writer.write(batch)
        writer.close()
    return time.perf_counter() - started, hits, misses


def walk_only(folder: Path) -> float:
    """The floor: discovery and one stat per file, nothing else."""
    started = time.perf_counter()
    for item in discover([folder]):
        os.stat(item)
    return time.perf_counter() - started


def preload(folder: Path, out: Path, key: str) -> tuple[float, int]:
    """The alternative: read every (path, stat, row) of the store into a dict, then look up in memory."""
    import sqlite3

    started = time.perf_counter()
    db = sqlite3.connect(out / STORE_NAME)
    table = {
        os.fsdecode(p): (s, m, c, i, r)
        for p, s, m, c, i, r in db.execute(
            "SELECT f.path, f.size, f.mtime_ns, f.ctime_ns, f.inode, r.row FROM files f"
            " JOIN results r ON r.content_key = f.content_key AND r.cache_key = ?",
            (key,),
        )
    }
    db.close()
    hits = 0
    for item in discover([folder]):
        st = os.stat(item)
        known = table.get(str(item))
        if known is not None and known[:4] == (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino):
            hits += 1
    return time.perf_counter() - started, hits


def cpu_model() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name")), "?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="2000 files, for checking the script works")
    parser.add_argument("--keep", type=Path, help="build in this folder instead of a temporary one")
    args = parser.parse_args()
    count = 2000 if args.quick else args.files
    with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
        folder, out = Path(tmp) / "photos", Path(tmp) / "out"
        folder.mkdir()
        started = time.perf_counter()
        make_files(folder, count)
        print(f"created {count} files in {time.perf_counter() - started:.1f} s")
        key = cache_key(STAMP, detail=False)
        seconds = fill(folder, out, key)
        size = (out / STORE_NAME).stat().st_size
        per_file = seconds / count * 1e6
        print(f"first run's store writes: {seconds:.2f} s ({per_file:.0f} µs/file), store {size / 1e6:.1f} MB")
        print(f"cpu: {cpu_model()}, {len(os.sched_getaffinity(0))} cores usable, Python {platform.python_version()}")
        seconds = walk_only(folder)
        print(f"{'discover + stat only (the floor)':34s} {seconds:6.2f} s  {count / seconds:9.0f} files/s")
        for label, write in (("re-audit, store only", False), ("re-audit + parquet/csv + summary", True)):
            seconds, hits, misses = reaudit(folder, out, key, write=write)
            assert hits == count and misses == 0, (hits, misses)
            print(f"{label:34s} {seconds:6.2f} s  {count / seconds:9.0f} files/s  ({hits} replayed, {misses} decoded)")
        seconds, hits = preload(folder, out, key)
        assert hits == count
        print(f"{'(bulk preload into a dict instead)':34s} {seconds:6.2f} s  {count / seconds:9.0f} files/s")
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
