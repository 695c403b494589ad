"""Time full vs draft-mode JPEG decoding + resize through the loader, and how far apart the results are.

Run: python benchmarks/bench_decode.py [--quick] [--runs N]. The numbers go into docs/decoding.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata

from iqa_cli.audit.load import _decode, load_image
from iqa_cli.engines.signal.features import DECODE_PLAN as SIGNAL_PLAN
from iqa_cli.images import DecodePlan, FileFacts, LoadedImage, fit_size

PLANS = {
    f"long {SIGNAL_PLAN.long_side} + {SIGNAL_PLAN.native_crop} native crop (signal engine)": SIGNAL_PLAN,
    "short 224 / long 672 (DepictQA)": DecodePlan(short_side=224, long_side=672),
}


def make_photo(width: int, height: int, path: Path) -> None:
    """A real photo (skimage's astronaut) upscaled, with fine grain so it has detail at every scale."""
    base = Image.fromarray(skdata.astronaut()).resize((width, height), Image.Resampling.BICUBIC)
    rng = np.random.default_rng(0)
    grain = rng.normal(0, 6, (height, width, 1))  # film-like luminance grain
    pixels = np.clip(np.asarray(base, np.float32) + grain, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def time_load(path: Path, plan: DecodePlan, runs: int) -> tuple[float, np.ndarray]:
    """Median milliseconds of `load_image` (read, hash, EXIF, decode, resize) and its pixels."""
    times, pixels = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = load_image(str(path), plan)
        times.append(time.perf_counter() - start)
        assert isinstance(result, LoadedImage), result
        pixels = result.pixels
    return statistics.median(times) * 1000, pixels


def time_oversampled(path: Path, plan: DecodePlan, runs: int, factor: float) -> tuple[float, np.ndarray]:
    """Like time_load in draft mode, asking the draft decoder for `factor` x the final size."""
    data = path.read_bytes()
    times, pixels = [], None
    for _ in range(runs):
        start = time.perf_counter()
        pixels, _, _ = _decode(data, plan, 10**9, FileFacts(path=str(path)), draft_oversample=factor)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, pixels


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 1200 x 900 image and 3 runs: a smoke test")
    parser.add_argument("--runs", type=int, default=None, help="runs per measurement (default 15, quick 3)")
    args = parser.parse_args()
    width, height = (1200, 900) if args.quick else (4000, 3000)
    runs = args.runs or (3 if args.quick else 15)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "photo.jpg"
        make_photo(width, height, path)
        print(f"{width} x {height} JPEG (quality 90), {path.stat().st_size / 1e6:.1f} MB")
        print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; Pillow {Image.__version__}; median of {runs} runs")
        print("times include reading, hashing and EXIF; PSNR is against the full decode's output")
        print()
        columns = ["plan", "output", "full ms", "draft ms", "speed-up", "draft PSNR dB"]
        columns += ["draft 2x ms", "draft 2x PSNR dB"]
        print("| " + " | ".join(columns) + " |")
        print("|---|---|---|---|---|---|---|---|")
        for name, plan in PLANS.items():
            out_w, out_h = fit_size(width, height, plan)
            load_image(str(path), plan)  # warm the file cache and Pillow's plugin registry
            full_ms, full = time_load(path, replace(plan, draft=False), runs)
            draft_ms, draft = time_load(path, plan, runs)
            over_ms, over = time_oversampled(path, plan, runs, 2.0)
            assert full.shape == draft.shape == over.shape == (out_h, out_w, 3)
            print(
                f"| {name} | {out_w} x {out_h} | {full_ms:.0f} | {draft_ms:.0f} | {full_ms / draft_ms:.1f}x"
                f" | {psnr(draft, full):.1f} | {over_ms:.0f} | {psnr(over, full):.1f} |"
            )


if __name__ == "__main__":
    main()
