"""Calibrate and measure the signal engine: identification accuracy by category and severity, clean-ok rate, time.

Usage: python benchmarks/calibrate_signal.py [--cache FILE] [--functions]

Every photo of photo_set.DISTORTION_PHOTOS gets every DQ-495K function of every category at severities 1-5
(seeded by photo index); the clean set is photo_set.CLEAN_PHOTOS plus the shallow depth-of-field cases.
A distorted image counts as identified when its category is in the engine's brief answer (at most two
names); a clean one is ok when no distortion is reported and the rating is excellent or good.
`--cache` keeps the measurements in a pickle so thresholds in decide.py can be tuned without re-measuring.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from photo_set import CLEAN_PHOTOS, DISTORTION_PHOTOS, SHALLOW_DOF_PHOTOS, load_all

from iqa_cli.distortions import FUNCTIONS, distort
from iqa_cli.engines.signal.decide import decide
from iqa_cli.engines.signal.measure import Measurements, measure_pixels

Row = tuple[str, str, str, int, Measurements]  # photo, category ("clean" for none), function, severity


def measure_all() -> list[Row]:
    """Measure the clean photos and every distorted version."""
    photos = load_all(tuple(dict.fromkeys(CLEAN_PHOTOS + SHALLOW_DOF_PHOTOS)))
    rows: list[Row] = [(name, "clean", "", 0, measure_pixels(px)) for name, px in photos.items()]
    for category, functions in FUNCTIONS.items():
        for function in functions:
            for severity in range(1, 6):
                for seed, name in enumerate(DISTORTION_PHOTOS):
                    pixels = distort(photos[name], category, severity, rng=seed, function=function)
                    rows.append((name, category, function, severity, measure_pixels(pixels)))
    return rows


def report(rows: list[Row], by_function: bool) -> None:
    """Print the identification table and the clean-ok rate."""
    hits: dict[tuple[str, int], list[bool]] = defaultdict(list)
    confusions: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for name, category, function, severity, m in rows:
        verdict = decide(m)
        if category == "clean":
            ok = not verdict.categories and verdict.rating in ("excellent", "good")
            label = "shallow DoF" if name in SHALLOW_DOF_PHOTOS else "clean"
            found = ", ".join(verdict.categories) or "-"
            print(f"{label:12} {name:16} ok={ok!s:5} rating={verdict.rating:9} conf={verdict.confidence:.2f} {found}")
            continue
        key = function if by_function else category
        hits[key, severity].append(category in verdict.categories[:2])
        for other in verdict.categories[:2] or ["none"]:
            if other != category:
                confusions[key][other] += 1
    clean = [r for r in rows if r[1] == "clean" and r[0] in CLEAN_PHOTOS]
    clean_ok = sum(not decide(m).categories and decide(m).rating in ("excellent", "good") for *_, m in clean)
    print(f"\nclean photos called ok: {clean_ok}/{len(clean)}\n")
    keys = list(dict.fromkeys(k for k, _ in hits))
    print(f"{'':30}" + "".join(f"{'sev ' + str(s):>9}" for s in range(1, 6)) + "   most common other answers")
    for key in keys:
        cells = "".join(f"{sum(hits[key, s]):>4}/{len(hits[key, s]):<4}" for s in range(1, 6))
        others = sorted(confusions[key].items(), key=lambda kv: -kv[1])[:3]
        print(f"{key:30}{cells}   " + ", ".join(f"{o} {n}" for o, n in others))


def timing() -> None:
    """Per-image measurement time at the engine's analysis sizes (one core, best of several runs)."""
    photo = load_all(("motorcycle",))["motorcycle"]
    for long_side in (768, 1024):
        short = round(long_side * photo.shape[0] / photo.shape[1])
        pixels = np.asarray(Image.fromarray(photo).resize((long_side, short), Image.Resampling.BICUBIC))
        runs = []
        for _ in range(30):
            start = time.perf_counter()
            measure_pixels(pixels)
            runs.append(time.perf_counter() - start)
        print(f"measure at {long_side}x{short}: median {1000 * np.median(runs):.1f} ms, best {1000 * min(runs):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, help="pickle of measurements to reuse or create")
    parser.add_argument("--functions", action="store_true", help="break the table down by function")
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args()
    if args.cache and args.cache.exists():
        rows = pickle.loads(args.cache.read_bytes())
    else:
        rows = measure_all()
        if args.cache:
            args.cache.write_bytes(pickle.dumps(rows))
    report(rows, args.functions)
    if not args.no_timing:
        timing()


if __name__ == "__main__":
    main()
