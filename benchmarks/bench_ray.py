"""`iqa audit --ray` on a local Ray: 1 against 2 CPU engine actors, in pairs (a script, not a test).

    python benchmarks/bench_ray.py [--images 120] [--size 4000x3000] [--pairs 3]

Each pair runs, one after the other on the same distinct 12 MP JPEGs (bench_audit.py's set), the installed
`iqa audit FOLDER --engine signal --checks none --ray --ray-actors N` for N = 1 and 2 as subprocesses, start to
exit: the local Ray's start and stop (several seconds) are inside every figure, as a user pays them. The order
alternates between pairs; each run's dataset must hold an `ok` row for every file, or no figure is printed.
For reference the same pair also times the single-machine `iqa audit` with 2 workers. Only wall time is
given: Ray's worker processes are not this process's children, so their CPU time cannot be summed here.
Each Ray run's own stage timings (its `--json` summary) split that wall time: the local Ray's start, the
pipeline (its first block includes starting the actors and building the engine in them) and Ray's stop.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_audit import audit_command, commit, load, machine, make_set, spread, timed

from iqa_cli.audit.ray_audit import FILES_PER_TASK

DEFAULT_SET_DIR = Path.home() / ".cache" / "iqa-bench"


def assessed_dataset(out: Path, expected: int) -> None:
    """Stop unless the run's dataset holds an `ok` row for every file."""
    from iqa_cli.report.dataset import DATASET_DIR, dataset_rows

    status = [row["status"] for row in dataset_rows(out / DATASET_DIR)]
    if len(status) != expected or set(status) != {"ok"}:
        raise SystemExit(f"the Ray run assessed {status.count('ok')} of {expected} files; see {out}")


def timed_ray(command: list[str]) -> tuple[float, dict[str, float]]:
    """(wall seconds, the run's stage timings) of a Ray run, from its --json summary."""
    started = time.perf_counter()
    process = subprocess.run([*command, "--json"], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({process.returncode}): {process.stderr[-2000:]}")
    return wall, json.loads(process.stdout)["timings"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--set-dir", type=Path, default=DEFAULT_SET_DIR)
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    folder = args.set_dir / f"{width}x{height}-{args.images}"
    files = make_set(folder, args.images, (width, height))
    n = len(files)
    print(f"commit {commit()}; {machine()}; load average before: {load()}")
    print(f"{n} distinct JPEGs of {width}x{height}; a local Ray of all usable cores per run")
    names = ["ray, 1 actor", "ray, 2 actors", "one machine, 2 workers"]
    walls: dict[str, list[float]] = {name: [] for name in names}
    stages: dict[str, list[dict[str, float]]] = {name: [] for name in names[:2]}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        for pair in range(args.pairs):
            for name in names if pair % 2 == 0 else names[1::-1] + names[2:]:
                command = audit_command(folder, out, 2)
                if name.startswith("ray"):
                    command += ["--ray", "--ray-actors", name.split(", ")[1].split()[0]]
                if name.startswith("ray"):
                    wall, timings = timed_ray(command)
                    assessed_dataset(out, n)
                    stages[name].append(timings)
                else:
                    wall, _, _ = timed(command)
                walls[name].append(wall)
                shutil.rmtree(out, ignore_errors=True)
    for name, results in walls.items():
        print(f"{name:24s} images/s {spread([n / wall for wall in results], '.1f')}; wall s {spread(results, '.1f')}")
    for name, runs in stages.items():
        parts = ", ".join(
            f"{stage} {statistics.median(run[stage] for run in runs):.1f}"
            for stage in ("ray_start", "first_block", "pipeline", "ray_stop")
        )
        # The loose files come in blocks of FILES_PER_TASK: the rate of those after the first one.
        rest = n - min(n, FILES_PER_TASK)
        after_first = [rest / max(run["pipeline"] - run["first_block"], 1e-9) for run in runs]
        print(f"{name:24s} median s: {parts}; after the first block images/s {spread(after_first, '.1f')}")
    ratios = [one / two for one, two in zip(walls[names[0]], walls[names[1]], strict=True)]
    print(f"2 actors / 1 actor throughput, per pair: {spread(ratios, '.2f')}")
    print(f"load average after: {load()}")


if __name__ == "__main__":
    main()
