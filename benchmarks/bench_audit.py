"""End-to-end audit throughput on 12 MP JPEGs: discovery, decode, signal engine, reports (a script, not a test).

    python benchmarks/bench_audit.py [--images 120] [--workers N] [--quick]

Builds a folder of 4000x3000 JPEGs from the bundled example photos (upscaled, with sensor-like grain so
they compress like camera files), then times `run_audit` with the signal engine, as `iqa audit` runs it.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from iqa_cli.audit.queue import default_workers
from iqa_cli.audit.run import AuditSettings, run_audit
from iqa_cli.engines.base import EngineOptions
from iqa_cli.engines.signal.engine import SignalEngine
from iqa_cli.report.writers import CsvWriter, ParquetWriter

PHOTOS = Path(__file__).resolve().parent.parent / "examples" / "photos"


def make_camera_jpegs(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    """`count` JPEGs of `size`, made from a few distinct photos and copied (decode cost is per file)."""
    rng = np.random.default_rng(0)
    sources = sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[:6]
    distinct = []
    for i, source in enumerate(sources):
        big = Image.open(source).convert("RGB").resize(size, Image.Resampling.BICUBIC)
        grain = rng.normal(0, 2.0, (size[1], size[0], 3))
        pixels = np.clip(np.asarray(big, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
        path = folder.parent / f"distinct{i}.jpg"  # outside the audited folder: only the copies count
        Image.fromarray(pixels).save(path, quality=90)
        distinct.append(path)
    files = []
    for n in range(count):
        target = folder / f"IMG_{n:05d}.jpg"
        shutil.copyfile(distinct[n % len(distinct)], target)
        files.append(target)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--quick", action="store_true", help="tiny images, for checking the script works")
    args = parser.parse_args()
    size = (400, 300) if args.quick else (4000, 3000)
    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "photos", Path(tmp) / "out"
        folder.mkdir()
        out.mkdir()
        files = make_camera_jpegs(folder, args.images, size)
        megabytes = sum(f.stat().st_size for f in files) / 1e6
        engine = SignalEngine.create(EngineOptions())
        settings = AuditSettings(paths=[str(folder)], workers=args.workers)
        started = time.perf_counter()
        summary = run_audit(settings, engine, [ParquetWriter(out), CsvWriter(out)])
        seconds = time.perf_counter() - started
    print(f"machine: {platform.processor() or platform.machine()}, {default_workers()} usable cores")
    print(f"{args.images} JPEGs of {size[0]}x{size[1]} ({megabytes / args.images:.1f} MB each), workers={args.workers}")
    print(
        f"audit: {seconds:.2f} s, {args.images / seconds:.1f} images/s "
        f"(assessed {summary.assessed}, errors {summary.errors}, pool start-up included)"
    )


if __name__ == "__main__":
    main()
