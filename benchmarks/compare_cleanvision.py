"""iqa's signal engine beside cleanvision on the same photos, clean and distorted (a script, not a test).

    pip install cleanvision        # not an iqa dependency: only this script needs it
    python benchmarks/compare_cleanvision.py [--json FILE] [--quick] [--workdir DIR]

The photos are the ones training/train_signal.py holds out (gather_photos over the photo cache, without
fetching; its monochrome photos left out as it leaves them out; then split_photos with seed 0, the "test
photos" of the current training script). The model measured is the one train_signal.py fitted without them
(training/evaluate_shipped.py's `measured_model_file`: the packaged model is that recipe refitted on every
photo, so it saw them), passed to iqa as `--model`. Each is shrunk to at
most 1600 px on its long side (never enlarged, with the resampling the training corpus uses) and saved as
PNG. `iqa eval --make-set` then adds one distortion function per category (drawn per photo) at severities
2 and 4: 25 images per photo, which keeps a full run near five minutes on two cores (`--functions all`
would be 71 per photo). `--quick`: 2 photos, severity 4 only.

Both tools see the same files:
- iqa: `iqa eval LABELS --engine signal --json --out DIR`, the installed command in a subprocess; a clean
  photo is called ok when nothing is named and the verdict is ok; a distorted one is flagged when anything
  is named or the verdict is not ok, identified when its category is named (docs/eval.md);
- cleanvision: `Imagelab(data_path=SET).find_issues(issue_types=...)` with its default issue types less
  the two duplicate checks (every distorted copy is a near duplicate of its photo by construction). An
  image is flagged when any issue is found; its issue matches when cleanvision names the counterpart of the
  category: blurry - blur, dark - darken, light - brighten, grayscale - saturate_weaken (the other eight
  categories have none).

images/s is the number of images over the wall time of each call (iqa's includes starting the command and
writing its tables; cleanvision's includes reading the folder), printed beside the commit, the CPU and the
1-minute load average just before the call (cleanvision runs right after iqa, so its figure carries some of
iqa's load): on a shared machine, compare the two only at similar loads. Both use 2 processes on 2 cores
(iqa's decode workers default to the cores; cleanvision's n_jobs to the physical cores).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # training/ is not an installed package

from iqa_cli.categories import CATEGORIES  # noqa: E402
from training.provenance import commit, machine  # noqa: E402

MAX_SIDE = 1600
SEVERITIES = (2, 4)
SPLIT_SEED = 0
SET_SEED = 0
QUICK_PHOTOS = 2
CLEANVISION_TYPES = ("dark", "light", "blurry", "low_information", "odd_aspect_ratio", "grayscale", "odd_size")
MATCHES = {"blur": "blurry", "darken": "dark", "brighten": "light", "saturate_weaken": "grayscale"}


# --- photos and the labelled set ------------------------------------------------------------------------


def validation_photos(scratch: Path) -> list[tuple[str, str, int]]:
    """(key, path, long side) of the photos training/train_signal.py holds out of training, in key order; the
    bundled photos among them are written into scratch, as gather_photos writes them.

    train_signal.py first leaves out the monochrome photos (the median chroma_p95 of their clean copies under
    MONOCHROME_CHROMA_P95) and splits the rest; the same rule is applied here to each photo's one clean copy at
    <= MAX_SIDE px, so the photos passed to split_photos are the ones training passed."""
    from training import photos as photo_source
    from training import train_signal

    args = argparse.Namespace(quick=False, fetch=False, cache=photo_source.default_cache(), quick_photos=0)
    found = train_signal.gather_photos(args, scratch)
    limit = getattr(train_signal, "MONOCHROME_CHROMA_P95", None)
    if limit is not None:
        found = [photo for photo in found if _chroma_p95(photo[1], scratch) >= limit]
    chosen = train_signal.split_photos([key for key, _, _ in found], seed=SPLIT_SEED)
    return [photo for photo in found if photo[0] in chosen]


def _chroma_p95(path: str, scratch: Path) -> float:
    """The signal features' chroma_p95 of the photo's clean copy, as write_clean saves it."""
    from iqa_cli.audit.load import load_image
    from iqa_cli.engines.signal.features import DECODE_PLAN, extract

    copy = scratch / "chroma" / "photo.png"
    copy.parent.mkdir(parents=True, exist_ok=True)
    _clean_copy(path).save(copy, compress_level=1)
    loaded = load_image(str(copy), DECODE_PLAN)
    return float(extract(loaded)["chroma_p95"])


def _clean_copy(path: str) -> Image.Image:
    """The photo upright, in RGB, at most MAX_SIDE px on its long side (never enlarged)."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    if max(image.size) > MAX_SIDE:
        ratio = MAX_SIDE / max(image.size)
        size = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
        # The resampling training/train_signal.py renders its corpus with.
        image = image.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    return image


def write_clean(photos: list[tuple[str, str, int]], folder: Path) -> None:
    """Each photo as folder/SOURCE__NAME.png, at most MAX_SIDE px on its long side (never enlarged)."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, path, _ in photos:
        stem = key.replace("/", "__").rsplit(".", 1)[0]
        _clean_copy(path).save(folder / f"{stem}.png", compress_level=1)


def iqa_command() -> str:
    """The installed `iqa` of this interpreter's environment (the venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("iqa")
    found = str(beside) if beside.is_file() else shutil.which("iqa")
    if not found:
        raise SystemExit("iqa is not installed: pip install -e . in this environment first")
    return found


def make_set(clean: Path, out: Path, severities: tuple[int, ...]) -> Path:
    """`iqa eval --make-set`: the labels file of the clean photos and their distortions."""
    subprocess.run(
        [
            iqa_command(), "eval", "--make-set", str(clean), "--set-out", str(out),
            "--severities", ",".join(map(str, severities)), "--functions", "one-per-category",
            "--seed", str(SET_SEED), "--json",
        ],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return out / "labels.csv"


def read_labels(labels: Path) -> dict[str, tuple[str, int]]:
    """file (relative to the set) -> (category or none, severity); the set has no pairs, so one row a file."""
    with open(labels, newline="", encoding="utf-8") as handle:
        return {row["file"]: (row["category"], int(row["severity"] or 0)) for row in csv.DictReader(handle)}


# --- the two tools --------------------------------------------------------------------------------------


def run_iqa(labels: Path, out: Path, model: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]], float]:
    """(summary JSON, per-file rows, wall seconds) of `iqa eval --engine signal --model MODEL`."""
    started = time.perf_counter()
    subprocess.run(
        [iqa_command(), "eval", str(labels), "--engine", "signal", "--model", str(model), "--json", "--out", str(out),
         "--format", "csv"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wall = time.perf_counter() - started
    summary = json.loads((out / "eval-summary.json").read_text())
    with open(out / "eval-rows.csv", newline="", encoding="utf-8") as handle:
        rows = {_relative(row["file"], labels.parent): row for row in csv.DictReader(handle)}
    return summary, rows, wall


def _relative(file: str, root: Path) -> str:
    return Path(file).resolve().relative_to(root).as_posix()


def run_cleanvision(folder: Path) -> tuple[dict[str, set[str]], float]:
    """(file relative to folder -> the issue types found, wall seconds) of cleanvision's non-duplicate checks."""
    from cleanvision import Imagelab

    root = folder.resolve()
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its progress; the table is the output here
        lab = Imagelab(data_path=str(root))
        lab.find_issues(issue_types={name: {} for name in CLEANVISION_TYPES}, verbose=False)
    wall = time.perf_counter() - started
    found: dict[str, set[str]] = {}
    for file, row in lab.issues.iterrows():
        found[_relative(str(file), root)] = {name for name in CLEANVISION_TYPES if bool(row[f"is_{name}_issue"])}
    return found, wall


# --- the comparison -------------------------------------------------------------------------------------


def _share(hits: int, n: int) -> float | None:
    return hits / n if n else None


def compare(
    labels: dict[str, tuple[str, int]],
    iqa_rows: dict[str, dict[str, Any]],
    summary: dict[str, Any],
    issues: dict[str, set[str]],
    severities: tuple[int, ...],
) -> dict[str, Any]:
    """The table's figures: the clean row, then per category and severity (shares, with image counts)."""
    clean = [f for f, (c, _) in labels.items() if c == "none"]
    iqa_ok = sum(1 for f in clean if not _named(iqa_rows[f]) and iqa_rows[f]["verdict"] == "ok")
    cv_ok = sum(1 for f in clean if not issues.get(f))
    clean_issues = _counts(issues, clean)
    identified = {(r["row"], r["severity"]): r for r in summary["identification"]}
    rows = []
    for severity in sorted(severities, reverse=True):
        for category in CATEGORIES:
            files = [f for f, (c, s) in labels.items() if c == category and s == severity]
            if not files:
                continue
            iqa_flagged = sum(1 for f in files if _named(iqa_rows[f]) or iqa_rows[f]["verdict"] != "ok")
            cv_flagged = sum(1 for f in files if issues.get(f))
            match = MATCHES.get(category)
            cell = identified.get((category, severity), {})
            rows.append(
                {
                    "category": category,
                    "severity": severity,
                    "images": len(files),
                    "iqa_flagged": _share(iqa_flagged, len(files)),
                    "iqa_identified": cell.get("rate"),
                    "cleanvision_flagged": _share(cv_flagged, len(files)),
                    "cleanvision_issue": match,
                    "cleanvision_matched": (
                        _share(sum(1 for f in files if match in issues.get(f, ())), len(files)) if match else None
                    ),
                    "cleanvision_issues": _counts(issues, files),
                }
            )
    return {
        "clean": {
            "images": len(clean),
            "iqa_called_ok": _share(iqa_ok, len(clean)),
            "iqa_clean_flagged_summary": summary["clean_flagged"],
            "cleanvision_called_ok": _share(cv_ok, len(clean)),
            "cleanvision_issues_on_clean": clean_issues,
        },
        "distorted": rows,
        "iqa_failed": summary.get("failed", []),
    }


def _counts(issues: dict[str, set[str]], files: list[str]) -> dict[str, int]:
    """How many of `files` have each cleanvision issue type (the types found at least once)."""
    counts = {name: sum(1 for f in files if name in issues.get(f, ())) for name in CLEANVISION_TYPES}
    return {name: n for name, n in counts.items() if n}


def _named(row: dict[str, Any]) -> bool:
    return bool(row.get("named"))  # CSV lists are ';'-joined: empty means nothing named


# --- the run --------------------------------------------------------------------------------------------


def model_id(model: Path) -> str:
    try:
        return json.loads(gzip.decompress(model.read_bytes()))["info"]["id"]
    except (OSError, KeyError, ValueError):
        return "unknown"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:5.1f}%"


def render(result: dict[str, Any]) -> str:
    """The table, as printed."""
    run, clean = result["run"], result["comparison"]["clean"]
    head = f"{'':<28} {'iqa signal':^25} {'cleanvision':^24}"
    sub = f"{'':<28} {'flagged':>12} {'named it':>12} {'flagged':>11} {'its issue':>12}"
    lines = [
        f"{run['photos']} held-out photos, {run['images']} images (<= {MAX_SIDE} px PNG, one function per "
        f"category, severities {','.join(map(str, run['severities']))}); model {run['model']}; cleanvision "
        f"{run['cleanvision_version']}",
        head,
        sub,
        f"{'clean: called ok (' + str(clean['images']) + ')':<28} {_pct(clean['iqa_called_ok']):>12} {'':>12} "
        f"{_pct(clean['cleanvision_called_ok']):>11}",
    ]
    for row in result["comparison"]["distorted"]:
        label = f"{row['category']} s{row['severity']} ({row['images']})"
        lines.append(
            f"{label:<28} {_pct(row['iqa_flagged']):>12} {_pct(row['iqa_identified']):>12} "
            f"{_pct(row['cleanvision_flagged']):>11} {_pct(row['cleanvision_matched']):>6} "
            f"{row['cleanvision_issue'] or ''}"
        )
    found = ", ".join(f"{k} {v}" for k, v in clean["cleanvision_issues_on_clean"].items()) or "none"
    lines.append(f"cleanvision issues on the clean photos: {found}")
    distorted: dict[str, int] = {}
    for row in result["comparison"]["distorted"]:
        for name, n in row["cleanvision_issues"].items():
            distorted[name] = distorted.get(name, 0) + n
    found = ", ".join(f"{k} {v}" for k, v in distorted.items()) or "none"
    lines.append(f"cleanvision issues on the distorted images: {found}")
    if result["comparison"]["iqa_failed"]:
        lines.append(f"iqa could not read {len(result['comparison']['iqa_failed'])} files")
    for tool in ("iqa", "cleanvision"):
        t = run[tool]
        lines.append(
            f"{tool + ':':<13} {t['images_per_s']:6.2f} images/s ({run['images']} images in {t['wall_s']:.1f} s; "
            f"load average {t['load_before']:.2f} before)"
        )
    lines.append(f"commit {run['commit']}; {run['machine']}; set built in {run['make_set_s']:.1f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_PHOTOS} photos, severity 4 only: a smoke run")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the photos, set and tables here")
    args = parser.parse_args(argv)
    try:
        import cleanvision
    except ImportError:
        print("cleanvision is not installed: pip install cleanvision", file=sys.stderr)
        return 2
    from training import photos as photo_source
    from training.evaluate_shipped import measured_model_file

    try:
        model = measured_model_file(photo_source.default_cache().parent)
    except LookupError as exc:
        print(exc, file=sys.stderr)
        return 2
    severities = (4,) if args.quick else SEVERITIES

    with contextlib.ExitStack() as stack:
        work = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="iqa-vs-cv-")))
        work = work.resolve()
        work.mkdir(parents=True, exist_ok=True)
        photos = validation_photos(work / "scratch")
        if args.quick:
            photos = photos[:QUICK_PHOTOS]
        print(f"{len(photos)} held-out photos; building the set in {work}", file=sys.stderr, flush=True)
        write_clean(photos, work / "photos")
        started = time.perf_counter()
        labels_file = make_set(work / "photos", work / "set", severities)
        make_set_s = time.perf_counter() - started
        labels = read_labels(labels_file)

        load_iqa = os.getloadavg()[0]
        print(f"iqa eval on {len(labels)} images", file=sys.stderr, flush=True)
        summary, iqa_rows, iqa_s = run_iqa(labels_file, work / "iqa-eval", model)
        load_cv = os.getloadavg()[0]
        print(f"cleanvision on {len(labels)} images", file=sys.stderr, flush=True)
        issues, cv_s = run_cleanvision(work / "set")
        missing = sorted(set(labels) - set(issues))
        if missing:
            raise SystemExit(f"cleanvision did not report {len(missing)} files, e.g. {missing[0]}")

    result = {
        "run": {
            "photos": len(photos),
            "photo_keys": [key for key, _, _ in photos],
            "images": len(labels),
            "severities": list(severities),
            "functions": "one-per-category",
            "max_side": MAX_SIDE,
            "model": model_id(model),
            "cleanvision_version": cleanvision.__version__,
            "cleanvision_issue_types": list(CLEANVISION_TYPES),
            "commit": commit(),
            "machine": machine(),
            "make_set_s": make_set_s,
            "iqa": {"wall_s": iqa_s, "images_per_s": len(labels) / iqa_s, "load_before": load_iqa},
            "cleanvision": {"wall_s": cv_s, "images_per_s": len(labels) / cv_s, "load_before": load_cv},
        },
        "comparison": compare(labels, iqa_rows, summary, issues, severities),
    }
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
