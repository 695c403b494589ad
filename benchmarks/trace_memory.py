"""What the main process of `iqa audit` holds at the end of a run, by source file, for two file counts
(a script, not a test): where `bench_audit.py --memory` sees the main process grow.

    python benchmarks/trace_memory.py [--counts 2000,20000] [--size 320x240] [--set-dir DIR]

Each count runs `iqa audit FOLDER --engine signal --checks none` in this process (its decode workers are
spawned as usual) under tracemalloc, and takes a snapshot when the first report writer is asked to finish:
the end of the run, with everything the run keeps still alive. It prints the Python memory traced then, the
sources that hold the most, and which of them grew between the two counts, per added file. Memory outside
Python's allocator (NumPy buffers, Arrow's pool, SQLite's page cache, the libraries' code) is not traced:
`bench_audit.py --memory` gives the resident total. The files are bench_audit.py's distinct JPEGs.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import bench_audit

TOP = 10


def snapshot_of(folder: Path, out: Path) -> dict[str, int]:
    """Traced bytes by source file at the end of one audit, in a fresh interpreter (imports count once)."""
    code = f"""
import sys, tracemalloc
tracemalloc.start()
from iqa_cli.report import writers

taken = {{}}
finish = writers.ReportWriter.finish

def finish_after_snapshot(self):
    if not taken:
        for stat in tracemalloc.take_snapshot().statistics("filename"):
            taken[stat.traceback[0].filename] = stat.size
    finish(self)

writers.ReportWriter.finish = finish_after_snapshot
sys.argv = ["iqa", "audit", {str(folder)!r}, "--engine", "signal", "--checks", "none", "--out", {str(out)!r},
            "--quiet"]
from iqa_cli.cli import main
try:
    main()
except SystemExit as stop:
    if stop.code:
        raise
for name, size in taken.items():
    print(size, name)
"""
    # A file, not -c: the spawned workers import the parent's main module, which must be guarded or absent.
    script = out.parent / "traced_audit.py"
    script.write_text("if __name__ == '__main__':\n" + "".join(f"    {line}\n" for line in code.splitlines()))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    sizes: dict[str, int] = {}
    for line in done.stdout.splitlines():
        size, name = line.split(" ", 1)
        sizes[name] = int(size)
    return sizes


def short(name: str) -> str:
    """A source file's name without the folders every reader knows."""
    if "/iqa_cli/" in name:
        return "iqa_cli/" + name.split("/iqa_cli/", 1)[1]
    return re.sub(r".*/(site-packages|lib/python3\.\d+)/", "", name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=lambda s: [int(x) for x in s.split(",")], default=[2000, 20000])
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--set-dir", type=Path, default=Path.home() / ".cache" / "iqa-bench")
    args = parser.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))
    print(f"commit {bench_audit.commit()}; {bench_audit.machine()}; load average before: {bench_audit.load()}")
    taken: list[dict[str, int]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.counts:
            folder = args.set_dir / f"{size[0]}x{size[1]}-{count}"
            bench_audit.make_set(folder, count, size)
            sizes = snapshot_of(folder, Path(tmp) / f"out-{count}")
            taken.append(sizes)
            print(f"{count} files: {sum(sizes.values()) / 2**20:.1f} MiB traced in the main process at the end")
            for name, value in sorted(sizes.items(), key=lambda item: -item[1])[:TOP]:
                print(f"  {value / 2**20:6.1f} MiB  {short(name)}")
    if len(taken) >= 2:
        first, last = taken[0], taken[-1]
        added = args.counts[-1] - args.counts[0]
        growth = {name: last.get(name, 0) - first.get(name, 0) for name in set(first) | set(last)}
        # Modules the larger run imported and the smaller did not (pyarrow imports pandas, when it is installed,
        # at the first Parquet row group: 2,048 rows) are a one-time cost, not memory per file.
        imported = {name for name in growth if name not in first or name.startswith("<frozen importlib")}
        once = sum(growth[name] for name in imported)
        total = sum(growth.values()) / 2**20
        print(f"grew from {args.counts[0]} to {args.counts[-1]} files: {total:.1f} MiB, of which {once / 2**20:.1f} MiB"
              " modules imported only in the larger run; the rest by source, per added file:")  # fmt: skip
        rest = {name: value for name, value in growth.items() if name not in imported}
        for name, value in sorted(rest.items(), key=lambda item: -item[1])[:TOP]:
            print(f"  {value / 2**20:6.2f} MiB  {value / added:6.0f} B/file  {short(name)}")
    print(f"load average after: {bench_audit.load()}")


if __name__ == "__main__":
    main()
