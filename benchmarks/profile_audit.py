"""Where an audit's CPU goes: per image in a decode worker, and the fixed cost of a run (a script, not a test).

    python benchmarks/profile_audit.py [--images 40] [--set-dir DIR]

Per image: `load_and_prepare` with the signal engine's plan and preparer, as a worker runs it, over distinct
12 MP JPEGs (bench_audit.py's set), under cProfile, grouped into stages. Fixed: the CPU time of the whole
process tree of `iqa audit` and of the decode-only pool on 8 small files (so almost nothing but start-up,
imports and set-up), and of importing the CLI alone.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_audit

from iqa_cli.audit.queue import WorkerSpec, load_and_prepare
from iqa_cli.engines.base import EngineOptions
from iqa_cli.engines.signal.engine import SignalEngine

# cProfile entries, by a fragment of "file function" -> stage (first match wins); what is left is "other".
STAGES = (
    ("ImagingDecoder", "JPEG decode"),
    ("'resize' of 'ImagingCore'", "resize"),
    ("signal/", "signal measurements (Python)"),
    ("numpy", "NumPy (mostly the measurements)"),
    ("BufferedReader", "file read"),
    ("exif", "EXIF"),
)


def stage_of(file: str, function: str) -> str:
    text = f"{file} {function}"
    return next((stage for fragment, stage in STAGES if fragment in text), "other (hashing included)")


def per_image(files: list[Path]) -> None:
    engine = SignalEngine.create(EngineOptions())
    spec = WorkerSpec(engine.decode_plan, engine.preparer())
    load_and_prepare(0, str(files[0]), spec)  # imports and caches outside the figures
    profile = cProfile.Profile()
    started = time.process_time()
    profile.enable()
    for key, path in enumerate(files):
        load_and_prepare(key, str(path), spec)
    profile.disable()
    cpu = (time.process_time() - started) / len(files) * 1000
    totals: dict[str, float] = {}
    for (file, _, function), (_, _, tottime, _, _) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        stage = stage_of(file, function)
        totals[stage] = totals.get(stage, 0.0) + tottime
    profiled = sum(totals.values())
    print(f"per image in a worker: {cpu:.1f} ms of CPU under the profiler; by stage:")
    for stage, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"  {stage:32s} {seconds / len(files) * 1000:6.1f} ms  ({seconds / profiled:.0%})")


def tree_cpu(command: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def fixed(set_dir: Path) -> None:
    small = bench_audit.make_set(set_dir / "400x300-8", 8, (400, 300))
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            "iqa audit, 8 small files, 2 workers": lambda: bench_audit.audit_command(
                set_dir / "400x300-8", Path(tmp) / "out", 2
            ),
            "decode-only pool, same files": lambda: [
                sys.executable,
                str(bench_audit.DECODE_ONLY),
                "2",
                *map(str, small),
            ],
            "import iqa_cli.cli.app alone": lambda: [sys.executable, "-c", "import iqa_cli.cli.app"],
            "python -c pass": lambda: [sys.executable, "-c", "pass"],
        }
        print("fixed cost per run, CPU of the whole process tree (median of 3):")
        for name, command in runs.items():
            times = sorted(tree_cpu(command()) for _ in range(3))
            print(f"  {name:40s} {times[1]:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--set-dir", type=Path, default=Path.home() / ".cache" / "iqa-bench")
    parser.add_argument("--quick", action="store_true", help="4 small files: checks the script runs")
    args = parser.parse_args()
    print(f"commit {bench_audit.commit()}; {bench_audit.machine()}; load average {bench_audit.load()}")
    count, size = (4, (800, 600)) if args.quick else (120, (4000, 3000))
    files = bench_audit.make_set(args.set_dir / f"{size[0]}x{size[1]}-{count}", count, size)
    per_image(files[: args.images])
    fixed(args.set_dir)


if __name__ == "__main__":
    main()
