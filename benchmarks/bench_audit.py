"""Whole-process `iqa audit` against the machine's decode limit, in pairs (a script, not a test).

    python benchmarks/bench_audit.py [--images 120] [--workers N] [--pairs 3] [--size 4000x3000] [--quick]
    python benchmarks/bench_audit.py --memory 2000,20000 [--size 320x240]

Each pair times, on the same distinct files and the same number of processes, one after the other:
- `iqa audit FOLDER --engine signal` as a subprocess of the installed command, start to exit (interpreter
  start, imports, worker start-up, discovery, decode, engine, store, reports, summary);
- a decode-only pool (`decode_only.py`): a subprocess that starts the same number of spawned processes,
  each of which only reads, decodes and resizes its files with the signal engine's decode plan (iqa's own
  `decode_pixels`, so both sides make the same pixels the same way), and exits.
Their wall-time ratio is the share of the machine's limit that `iqa audit` reaches; the CPU time of each
whole process tree (every worker included) is given per image. Pairs alternate which side runs first.

The files are distinct 12 MP JPEGs (quality 90, 4:2:0, as cameras write them) cut from the real photos of
the calibration packages (`training/photos.py` fetches them into ~/.cache/iqa-training/photos), upscaled
where needed, each with its own crop, mirror and grain, so neither the page cache nor the decoder sees
one file twice; without that cache the bundled example photos are used the same way. They are made once
into ~/.cache/iqa-bench/ (or --set-dir).

--memory N,M audits N and M small distinct files and prints the peak resident memory of the whole process
tree (main process and workers together, sampled every 20 ms).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "photos"
PHOTO_CACHE = Path(os.environ.get("IQA_TRAINING_CACHE", Path.home() / ".cache" / "iqa-training" / "photos"))
MIN_SOURCE_PIXELS = 1_000_000

DECODE_ONLY = Path(__file__).resolve().parent / "decode_only.py"


def sources() -> list[Path]:
    """Real photos of at least 1 MP: the calibration cache when it is there, else the bundled examples."""
    found = []
    for path in sorted(PHOTO_CACHE.rglob("*")) if PHOTO_CACHE.is_dir() else []:
        try:
            with Image.open(path) as image:
                if image.width * image.height >= MIN_SOURCE_PIXELS:
                    found.append(path)
        except (OSError, ValueError):
            continue
    return found or sorted(p for p in EXAMPLES.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})


def make_set(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """`count` distinct JPEGs of `size` (w, h) in `folder`, made once: each file is its own crop (70-100% of
    a source's area at the target aspect), mirror and sensor-like grain of one of the real photos."""
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / f"IMG_{n:05d}.jpg" for n in range(count)]
    if all(f.is_file() for f in files):
        return files
    photos = sources()
    rng = np.random.default_rng(seed)
    aspect = size[0] / size[1]
    opened: dict[Path, Image.Image] = {}
    for n, target in enumerate(files):
        if target.is_file():
            continue
        photo = _source(photos[n % len(photos)], size, opened)
        if (photo.width > photo.height) != (size[0] > size[1]):
            photo = photo.transpose(Image.Transpose.ROTATE_90)
        scale = rng.uniform(0.7, 1.0) ** 0.5
        crop_w = min(photo.width, round(min(photo.width, photo.height * aspect) * scale))
        crop_h = min(photo.height, round(crop_w / aspect))
        left = int(rng.integers(0, photo.width - crop_w + 1))
        top = int(rng.integers(0, photo.height - crop_h + 1))
        image = photo.crop((left, top, left + crop_w, top + crop_h)).resize(size, Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        grain = rng.normal(0, rng.uniform(1.0, 2.5), (size[1], size[0], 1)).astype(np.float32)
        pixels = np.clip(np.asarray(image, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
        partial = target.with_suffix(".partial")
        Image.fromarray(pixels).save(partial, format="JPEG", quality=90, subsampling="4:2:0")
        os.replace(partial, target)
    return files


def _source(path: Path, size: tuple[int, int], opened: dict[Path, Image.Image]) -> Image.Image:
    """A source photo as RGB, opened once per set; shrunk (never below twice the target) for small targets."""
    if path not in opened:
        with Image.open(path) as image:
            photo = image.convert("RGB")
        photo.thumbnail((max(size) * 2, max(size) * 2), Image.Resampling.LANCZOS)  # only ever shrinks
        opened[path] = photo
    return opened[path]


class TreeMemory:
    """Peak resident memory of a process and all its descendants, summed, sampled from /proc; and apart, the
    peaks of the process itself and of its descendants (the workers), to say which side grows."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.pid, self.every, self.peak = pid, every, 0
        self.main_peak = self.workers_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            parents: dict[int, int] = {}
            rss: dict[int, int] = {}
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/stat") as handle:
                        fields = handle.read().rsplit(")", 1)[1].split()
                    parents[int(entry)] = int(fields[1])
                    rss[int(entry)] = int(fields[21]) * page
                except (OSError, IndexError, ValueError):
                    continue
            tree, grew = {self.pid}, True
            while grew:
                more = {pid for pid, parent in parents.items() if parent in tree} - tree
                grew = bool(more)
                tree |= more
            main = rss.get(self.pid, 0)
            workers = sum(rss.get(pid, 0) for pid in tree - {self.pid})
            self.peak = max(self.peak, main + workers)
            self.main_peak = max(self.main_peak, main)
            self.workers_peak = max(self.workers_peak, workers)
            self._stop.wait(self.every)

    def stop(self) -> TreeMemory:
        self._stop.set()
        self._thread.join()
        return self


def timed(command: list[str], *, memory: bool = False) -> tuple[float, float, TreeMemory | None]:
    """(wall seconds, CPU seconds of the whole process tree, its memory peaks or None) of a command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = TreeMemory(process.pid) if memory else None
    _, stderr = process.communicate()
    wall = time.perf_counter() - started
    peaks = sampler.stop() if sampler else None
    if process.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({process.returncode}): {stderr.decode(errors='replace')[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, peaks


def assessed(out: Path, expected: int) -> None:
    """Stop unless the audit's report holds an assessed row for every file: a run that failed fast is no figure."""
    import pyarrow.parquet as pq

    status = pq.read_table(out / "report.parquet", columns=["status"]).column("status").to_pylist()
    if len(status) != expected or set(status) != {"ok"}:
        raise SystemExit(f"the audit assessed {status.count('ok')} of {expected} files; see {out}")


def iqa_command() -> str:
    """The installed `iqa` beside this interpreter (a venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "iqa"
    found = str(beside) if beside.is_file() else shutil.which("iqa")
    if found is None:
        raise SystemExit("no installed `iqa` command: pip install -e . first")
    return found


def audit_command(folder: Path, out: Path, workers: int) -> list[str]:
    shutil.rmtree(out, ignore_errors=True)
    # --checks none: the core tool as a plain install has it; installed check plugins add their own cost.
    return [iqa_command(), "audit", str(folder), "--engine", "signal", "--checks", "none", "--out", str(out),
            "--workers", str(workers)]  # fmt: skip


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        pass
    return f"{model}, {len(os.sched_getaffinity(0))} usable cores"


def commit() -> str:
    try:
        described = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, check=True
        )
        return described.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def spread(values: list[float], spec: str) -> str:
    return f"min {min(values):{spec}} / median {statistics.median(values):{spec}} / max {max(values):{spec}}"


def throughput(args: argparse.Namespace, size: tuple[int, int]) -> None:
    folder = args.set_dir / f"{size[0]}x{size[1]}-{args.images}"
    files = make_set(folder, args.images, size)
    megabytes = sum(f.stat().st_size for f in files) / 1e6 / len(files)
    decode_only = [sys.executable, str(DECODE_ONLY), str(args.workers), *map(str, files)]
    print(f"commit {commit()}; {machine()}; load average before: {load()}")
    print(f"{len(files)} distinct JPEGs of {size[0]}x{size[1]} ({megabytes:.1f} MB each), {args.workers} processes")
    runs: dict[str, list[tuple[float, float]]] = {"iqa audit": [], "decode only": []}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        for pair in range(args.pairs):
            order = ["iqa audit", "decode only"] if pair % 2 == 0 else ["decode only", "iqa audit"]
            for name in order:
                command = audit_command(folder, out, args.workers) if name == "iqa audit" else decode_only
                wall, cpu, _ = timed(command)
                if name == "iqa audit":
                    assessed(out, len(files))
                runs[name].append((wall, cpu))
    n = len(files)
    for name, results in runs.items():
        rates = [n / wall for wall, _ in results]
        cpu_ms = [cpu / n * 1000 for _, cpu in results]
        print(f"{name:12s} images/s {spread(rates, '.1f')}; CPU ms/image {spread(cpu_ms, '.1f')}")
    ratios = [d[0] / a[0] for a, d in zip(runs["iqa audit"], runs["decode only"], strict=True)]
    print(f"iqa audit / decode-only throughput, per pair: {spread(ratios, '.2f')}")
    print(f"load average after: {load()}")


def memory(args: argparse.Namespace, size: tuple[int, int]) -> None:
    print(f"commit {commit()}; {machine()}; load average before: {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.memory:
            folder = args.set_dir / f"{size[0]}x{size[1]}-{count}"
            make_set(folder, count, size)
            wall, cpu, peaks = timed(audit_command(folder, Path(tmp) / "out", args.workers), memory=True)
            assessed(Path(tmp) / "out", count)
            assert peaks is not None
            print(
                f"{count} files of {size[0]}x{size[1]}: peak memory of the process tree {peaks.peak / 2**20:.0f} MiB"
                f" (main process {peaks.main_peak / 2**20:.0f}, workers {peaks.workers_peak / 2**20:.0f}), "
                f"{wall:.1f} s, {cpu / count * 1000:.1f} ms CPU per image"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--pairs", type=int, default=3, help="audit/decode-only pairs, alternating the order")
    parser.add_argument("--size", default=None, help="WIDTHxHEIGHT of the files (default 4000x3000)")
    parser.add_argument("--memory", type=lambda s: [int(x) for x in s.split(",")], help="file counts to audit")
    parser.add_argument("--set-dir", type=Path, default=Path.home() / ".cache" / "iqa-bench")
    parser.add_argument("--quick", action="store_true", help="8 small files, one pair: checks the script runs")
    args = parser.parse_args()
    if args.quick:
        args.images, args.pairs, args.size = 8, 1, args.size or "400x300"
    default = "320x240" if args.memory else "4000x3000"
    size = tuple(int(x) for x in (args.size or default).lower().split("x"))
    if args.memory:
        memory(args, size)
    else:
        throughput(args, size)


if __name__ == "__main__":
    main()
