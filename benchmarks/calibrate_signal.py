"""Calibrate and measure the signal engine: identification accuracy by category and severity, clean-ok rate, time.

Usage: python benchmarks/calibrate_signal.py [--cache FILE] [--functions] [--steps] [--jobs N] [--no-timing]

Every photo of photo_set.DISTORTION_PHOTOS gets every DQ-495K function of every category at severities 1-5
(seeded by photo index); the clean set is photo_set.CLEAN_PHOTOS plus the shallow depth-of-field cases.
JPEG compression goes through a real file: the photo is saved as a JPEG at the function's quality and read
back with iqa_cli.load.load_image, so the quality setting read from the quantization tables is exercised.
A distorted image counts as identified when its category is in the engine's brief answer (at most two
names); a clean one is ok when no distortion is reported and the rating is excellent or good.
Thresholds are set on photo_set.TUNING_PHOTOS; photo_set.HELD_OUT_PHOTOS are reported on their own.
`--cache` keeps the measurements in a pickle so thresholds in decide.py can be tuned without re-measuring;
`--steps` prints, per rule clause, the median of its severity feature at each severity (decide.py's steps).
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from photo_set import (
    CLEAN_PHOTOS,
    DISTORTION_PHOTOS,
    HELD_OUT_PHOTOS,
    SHALLOW_DOF_PHOTOS,
    TUNING_PHOTOS,
    load_all,
    load_photo,
)

from iqa_cli.distortions import FUNCTIONS, distort
from iqa_cli.engines.signal.decide import RULES, decide, derived
from iqa_cli.engines.signal.engine import DECODE_PLAN
from iqa_cli.engines.signal.measure import Measurements, measure, measure_pixels
from iqa_cli.images import LoadedImage
from iqa_cli.load import load_image

Row = tuple[str, str, str, int, Measurements]  # photo, category ("clean" for none), function, severity

# distortions.compression_jpeg's quality per severity (DQ-495K's); measure_photo checks that the file read
# back has the pixels distort() makes, so a change there cannot go unnoticed.
JPEG_QUALITY = (25, 18, 12, 8, 5)


def _jpeg_file_measurement(pixels: np.ndarray, severity: int, folder: Path) -> tuple[Measurements, np.ndarray]:
    path = folder / f"q{JPEG_QUALITY[severity - 1]}.jpg"
    Image.fromarray(pixels).save(path, format="JPEG", quality=JPEG_QUALITY[severity - 1])
    loaded = load_image(str(path), DECODE_PLAN)
    if not isinstance(loaded, LoadedImage):
        raise RuntimeError(f"could not read back {path}: {loaded.message}")
    return measure(loaded), loaded.pixels


def measure_photo(index: int, name: str) -> list[Row]:
    """Every distorted version of one distortion photo, measured (one worker's job)."""
    photo = load_photo(name)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for category, functions in FUNCTIONS.items():
            for function in functions:
                for severity in range(1, 6):
                    pixels = distort(photo, category, severity, rng=index, function=function)
                    if function == "compression_jpeg":
                        m, read_back = _jpeg_file_measurement(photo, severity, Path(tmp))
                        if not np.array_equal(read_back, pixels):
                            raise RuntimeError("JPEG_QUALITY no longer matches distortions.compression_jpeg")
                    else:
                        m = measure_pixels(pixels)
                    rows.append((name, category, function, severity, m))
    return rows


def measure_all(jobs: int) -> list[Row]:
    """Measure the clean photos and every distorted version (`jobs` worker processes)."""
    photos = load_all(tuple(dict.fromkeys(CLEAN_PHOTOS + SHALLOW_DOF_PHOTOS)))
    rows: list[Row] = [(name, "clean", "", 0, measure_pixels(px)) for name, px in photos.items()]
    with ProcessPoolExecutor(jobs) as pool:
        for photo_rows in pool.map(measure_photo, range(len(DISTORTION_PHOTOS)), DISTORTION_PHOTOS):
            rows.extend(photo_rows)
    return rows


def is_ok(m: Measurements) -> bool:
    """A clean photo is ok: no distortion named, rated excellent or good."""
    verdict = decide(m)
    return not verdict.categories and verdict.rating in ("excellent", "good")


def clean_report(rows: list[Row]) -> None:
    """One line per clean photo, then the clean-ok count."""
    print("| photo | kind | ok | rating | confidence | closest call |\n|---|---|---|---|---|---|")
    for name, category, _, _, m in rows:
        if category != "clean":
            continue
        verdict = decide(m)
        kind = "shallow DoF" if name in SHALLOW_DOF_PHOTOS else "clean"
        closest = max(verdict.margins, key=lambda c: verdict.margins[c])
        print(
            f"| {name} | {kind} | {'yes' if is_ok(m) else 'NO'} | {verdict.rating} | {verdict.confidence:.2f} | "
            f"{closest} ({verdict.margins[closest]:+.1f}) |"
        )
    clean = [m for name, category, *_, m in rows if category == "clean" and name in CLEAN_PHOTOS]
    print(f"\nclean photos called ok: {sum(is_ok(m) for m in clean)}/{len(clean)}\n")


def identification_table(rows: Iterable[Row], by_function: bool, title: str) -> None:
    """Identified / total by category (or function) and severity, with the most common other answers."""
    hits: dict[tuple[str, int], list[bool]] = defaultdict(list)
    others: dict[str, Counter[str]] = defaultdict(Counter)
    for _, category, function, severity, m in rows:
        if category == "clean":
            continue
        named = decide(m).categories[:2]
        key = function if by_function else category
        hits[key, severity].append(category in named)
        if severity == 4:
            others[key].update(other for other in (named or ["none"]) if other != category)
    print(
        f"{title}\n\n| {'function' if by_function else 'category'} | sev 1 | sev 2 | sev 3 | sev 4 | sev 5 | "
        "other answers at sev 4 |\n|---|---|---|---|---|---|---|"
    )
    for key in dict.fromkeys(k for k, _ in hits):
        cells = " | ".join(f"{sum(hits[key, s])}/{len(hits[key, s])}" for s in range(1, 6))
        common = ", ".join(f"{o} {n}" for o, n in others[key].most_common(3))
        print(f"| {key} | {cells} | {common} |")
    print()


def suggested_steps(rows: list[Row]) -> None:
    """Per clause, the median of its severity feature at severities 1-5 where the clause holds (tuning photos)."""
    for rule in RULES:
        for i, clause in enumerate(rule.clauses):
            feature = clause.tests[0].feature
            medians = []
            for severity in range(1, 6):
                values = [
                    derived(m)[feature]
                    for name, category, _, s, m in rows
                    if category == rule.category
                    and s == severity
                    and name in TUNING_PHOTOS
                    and clause.margin(derived(m)) > 0
                ]
                medians.append(f"{np.median(values):.3g} ({len(values)})" if values else "-")
            print(f"{rule.category:20} clause {i} {feature:14} steps {clause.steps}  medians: {', '.join(medians)}")


def timing() -> None:
    """Per-image measurement time at the engine's analysis size (one core), as a 12 MP file reaches it."""
    photo = load_all(("motorcycle",))["motorcycle"]
    for size in ((768, 512), (768, 576)):
        pixels = np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.BICUBIC))
        runs = []
        for _ in range(50):
            start = time.perf_counter()
            measure_pixels(pixels, source_width=4000)  # a resized file: no JPEG grid, as in an audit
            runs.append(time.perf_counter() - start)
        print(f"measure at {size[0]}x{size[1]}: median {1000 * np.median(runs):.1f} ms, best {1000 * min(runs):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, help="pickle of measurements to reuse or create")
    parser.add_argument("--functions", action="store_true", help="break the table down by function")
    parser.add_argument("--steps", action="store_true", help="print the severity-step medians per clause")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for measuring")
    parser.add_argument("--no-timing", action="store_true")
    args = parser.parse_args()
    if args.cache and args.cache.exists():
        rows = pickle.loads(args.cache.read_bytes())
    else:
        rows = measure_all(args.jobs)
        if args.cache:
            args.cache.write_bytes(pickle.dumps(rows))
    clean_report(rows)
    tuning = [r for r in rows if r[0] in TUNING_PHOTOS]
    held_out = [r for r in rows if r[0] in HELD_OUT_PHOTOS]
    identification_table(rows, False, f"All {len(DISTORTION_PHOTOS)} distortion photos, by category")
    identification_table(tuning, False, f"Tuning photos ({len(TUNING_PHOTOS)}), by category")
    identification_table(held_out, False, f"Held-out photos ({', '.join(HELD_OUT_PHOTOS)}), by category")
    if args.functions:
        identification_table(rows, True, f"All {len(DISTORTION_PHOTOS)} distortion photos, by function")
    if args.steps:
        suggested_steps(rows)
    if not args.no_timing:
        timing()


if __name__ == "__main__":
    main()
