"""CPU cost of the signal engine per image: features + model, beside one 768 px measurement (a script, not a test).

    python benchmarks/bench_signal.py [--repeat 5] [--side 1600] [--json FILE] [--profile] [--against COMMIT]

The pair in one run, on the same decoded photos, so a shared machine's load affects both alike:
- `measure_768_issue`: one `measure_pixels` on the image at 768 px with the measuring code of commit
  2058f3f (read from git), the engine's cost when issue 10 set its target ("no more CPU per image than
  today's measurements"): the reference the target is taken against;
- `measure_768`: the same with today's `measure_pixels`, which has become cheaper with the features
  (for comparison only: it is the same code as the features', so it moves with them);
- `features`: `features.extract` (the 512 px image plus the 384 px native crop), in the decode workers;
- `model`: `decide_many` over a batch of 64 feature rows, per image, in the main process;
- with `--against COMMIT`, `features_COMMIT`: that commit's `features.extract` (its features.py, measure.py and
  order_stats.py, read from git), to compare two versions of the features on the same images in one process.
The timings are interleaved: each repeat times every figure once, in an order that alternates, so that a
shared machine's load drifting during the run affects them alike; the ratios are taken per repeat.
Decoding is not timed: it is the loader's cost, measured by bench_decode.py and bench_audit.py.
Prints process CPU time per image (min / median / max over the repeats), the ratios (the median of the ratios
per repeat), the machine and load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # training/ is not an installed package


from iqa_cli.audit.load import load_image
from iqa_cli.engines.signal.decide import decide_many
from iqa_cli.engines.signal.features import DECODE_PLAN, extract
from iqa_cli.engines.signal.measure import measure_pixels
from iqa_cli.images import DecodePlan, LoadedImage
from iqa_cli.testing.photos import CLEAN_PHOTOS, load_all
from training.provenance import commit, machine

# measure.py as it was when the issue was filed (its later changes are the features' own).
ISSUE_COMMIT = "2058f3f"


_SIGNAL = "iqa_cli.engines.signal"


def _module_at(commit_id: str, name: str, own: tuple[str, ...] = ()) -> types.ModuleType | None:
    """The signal engine's module `name` as it was at a commit, its imports of the modules in `own` redirected
    to their versions of that commit (loaded first); None where git or that commit is not at hand."""
    root = Path(__file__).resolve().parents[1]
    path = f"{_SIGNAL.replace('.', '/')}/{name}.py"
    done = subprocess.run(["git", "-C", str(root), "show", f"{commit_id}:{path}"], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    source = done.stdout
    for other in own:
        source = source.replace(f"from {_SIGNAL}.{other} import", f"from {other}_{commit_id} import")
    module = types.ModuleType(f"{name}_{commit_id}")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, f"{commit_id}:{path}", "exec"), module.__dict__)
    return module


def _measure_pixels_at(commit_id: str):
    """`measure_pixels` from measure.py at a commit (its own imports today's), or None."""
    module = _module_at(commit_id, "measure")
    return None if module is None else module.measure_pixels


def _extract_at(commit_id: str):
    """`features.extract` at a commit, with that commit's measure.py and order_stats.py, or None."""
    modules = [_module_at(commit_id, "order_stats")]
    modules.append(_module_at(commit_id, "measure", ("order_stats",)))
    modules.append(_module_at(commit_id, "features", ("order_stats", "measure")))
    return None if None in modules else modules[-1].extract


def _print_profile(images: list[LoadedImage], repeat: int) -> None:
    """Cumulative CPU per image of the signal engine's own functions inside `extract`, under cProfile (which
    adds its own cost per call, so the shares matter more than the absolute figures)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeat):
        for image in images:
            extract(image)
    profiler.disable()
    calls = len(images) * repeat
    rows = [
        (cumulative, f"{Path(file).stem}.{name}")
        for (file, _, name), (_, _, _, cumulative, _) in pstats.Stats(profiler).stats.items()  # type: ignore[attr-defined]
        if "engines/signal/" in file.replace("\\", "/")
    ]
    print(f"under cProfile, cumulative CPU ms per image ({calls} calls of features.extract):")
    for cumulative, name in sorted(rows, reverse=True)[:16]:
        print(f"  {name:<36} {cumulative / calls * 1000:7.2f}")


def _cpu_per_image(timed: dict[str, tuple], repeat: int) -> dict[str, list[float]]:
    """CPU ms per item of each (function, items), every repeat timing each once, in alternating order."""
    out: dict[str, list[float]] = {key: [] for key in timed}
    for n in range(repeat):
        for key in list(timed)[:: 1 if n % 2 == 0 else -1]:
            function, items = timed[key]
            started = time.process_time()
            for item in items:
                function(item)
            out[key].append((time.process_time() - started) / len(items) * 1000)
    return out


def _photos(args: argparse.Namespace, names: tuple[str, ...]):
    if args.folder is None:
        for name, pixels in load_all(names).items():
            yield name, Image.fromarray(pixels)
        return
    files = [p for p in sorted(args.folder.rglob("*")) if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp")]
    sized = sorted(((Image.open(p).size, p) for p in files), key=lambda item: -max(item[0]))
    for _, path in sized[: 2 if args.quick else args.limit]:
        yield path.stem, Image.open(path).convert("RGB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--side", type=int, default=1600, help="long side the photos are saved at (never up)")
    parser.add_argument("--quick", action="store_true", help="two photos, one repeat: a smoke run")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--folder", type=Path, default=None, help="photos to use instead of the bundled ones (e.g. the training cache)"
    )
    parser.add_argument("--limit", type=int, default=24, help="with --folder: at most this many, largest first")
    parser.add_argument(
        "--profile", action="store_true", help="also: where features.extract spends its CPU, per function (cProfile)"
    )
    parser.add_argument("--against", help="also time this commit's features.extract, interleaved with today's")
    args = parser.parse_args(argv)
    names = CLEAN_PHOTOS[:2] if args.quick else CLEAN_PHOTOS
    repeat = 1 if args.quick else args.repeat
    with tempfile.TemporaryDirectory() as folder:
        engine_images, reference_images = [], []
        for name, image in _photos(args, names):
            if max(image.size) > args.side:
                image.thumbnail((args.side, args.side), Image.Resampling.BICUBIC)
            path = Path(folder) / f"{name}.png"
            image.save(path)
            for plan, bucket in ((DECODE_PLAN, engine_images), (DecodePlan(long_side=768), reference_images)):
                loaded = load_image(str(path), plan)
                assert isinstance(loaded, LoadedImage), loaded
                bucket.append(loaded)
        rows = [extract(image) for image in engine_images]
        batch = (rows * (64 // len(rows) + 1))[:64]
        decide_many(batch)  # load the model once, outside the timing
        timed: dict[str, tuple] = {}
        issue_measure = _measure_pixels_at(ISSUE_COMMIT)
        if issue_measure is not None:
            timed["measure_768_issue"] = (lambda im: issue_measure(im.pixels, im.facts.width), reference_images)
        timed["measure_768"] = (lambda im: measure_pixels(im.pixels, im.facts.width), reference_images)
        timed["features"] = (extract, engine_images)
        if args.against:
            other = _extract_at(args.against)
            if other is None:
                parser.error(f"{args.against}: no such commit in this checkout's git history")
            timed[f"features_{args.against}"] = (other, engine_images)
        timed["model"] = (decide_many, [batch])
        figures = _cpu_per_image(timed, repeat)
        figures["model"] = [t / 64 for t in figures["model"]]
        if args.profile:
            _print_profile(engine_images, repeat)
    # Per repeat (the figures of one repeat were timed side by side), then the median over the repeats.
    total = np.array(figures["features"]) + np.array(figures["model"])
    ratios = {
        key: float(np.median(total / np.array(figures[key])))
        for key in ("measure_768_issue", "measure_768")
        if key in figures
    }
    print(
        f"commit {commit()}; {machine()}; load average {os.getloadavg()[0]:.2f}; {len(engine_images)} photos "
        f"at <= {args.side} px, {repeat} repeats; CPU ms per image (min / median / max)"
    )
    for key, values in figures.items():
        print(f"  {key:<17} {min(values):7.2f} {np.median(values):7.2f} {max(values):7.2f}")
    if "measure_768_issue" not in ratios:
        print(f"  (no {ISSUE_COMMIT} in this checkout's git history: the issue's reference was not timed)")
    for key, ratio in ratios.items():
        print(f"  features + model over {key}: {ratio:.2f}x")
    if args.against:
        per_repeat = np.array(figures["features"]) / np.array(figures[f"features_{args.against}"])
        ratios["features_over_" + args.against] = float(np.median(per_repeat))
        print(
            f"  features over features_{args.against}, per repeat: median {np.median(per_repeat):.3f} "
            f"(min {per_repeat.min():.3f}, max {per_repeat.max():.3f})"
        )
    if args.json:
        args.json.write_text(json.dumps({"figures": figures, "ratios": ratios, "machine": machine()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
