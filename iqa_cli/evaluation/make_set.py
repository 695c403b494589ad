"""Building a labelled evaluation set from clean photos with the DQ-495K-style distortions (`iqa eval --make-set`)."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from iqa_cli.categories import CATEGORIES
from iqa_cli.errors import UsageError

FUNCTION_CHOICES = ("all", "one-per-category")
# Categories that contradict each other are never paired (DQ-495K does not pair them either).
OPPOSITES = (
    frozenset({"brighten", "darken"}),
    frozenset({"contrast_strengthen", "contrast_weaken"}),
    frozenset({"saturate_strengthen", "saturate_weaken"}),
)
_PAIR_STREAM = 1_000_000  # seed offset that keeps the pairs' random draws apart from the singles'


class SetError(UsageError, ValueError):
    """A labelled set cannot be built as asked; the message says what to change (exit 2)."""


def build_set(
    clean_folder: str | os.PathLike[str],
    out_folder: str | os.PathLike[str],
    *,
    severities: Sequence[int],
    functions: str,
    seed: int,
    pairs: int,
    max_side: int | None,
    workers: int = 1,
) -> Path:
    """See evaluate.make_set; returns the path of the labels file written."""
    if functions not in FUNCTION_CHOICES:
        raise SetError(f"functions must be {' or '.join(FUNCTION_CHOICES)}, not {functions!r}")
    bad = [s for s in severities if s not in (1, 2, 3, 4, 5)]
    if bad or not severities:
        raise SetError(f"severities must be among 1-5, not {','.join(map(str, severities)) or '(none)'}")
    if pairs < 0:
        raise SetError(f"pairs must be 0 or more, not {pairs}")
    if max_side is not None and max_side < 1:
        raise SetError(f"max_side must be a positive number of pixels, not {max_side}")
    out = Path(out_folder)
    photos = list(_clean_photos(Path(clean_folder)))
    if not photos:
        raise SetError(f"no images found under {clean_folder}: give a folder of clean photos")
    recipe = _Recipe(out, tuple(sorted(set(severities))), functions, seed, pairs, max_side)
    jobs = [(recipe, index, stem, source) for index, (stem, source) in enumerate(photos)]
    if workers > 1 and len(jobs) > 1:
        from multiprocessing import get_context

        # Each photo's draws depend only on the seed and its place in the folder, so any number of processes
        # writes the same set; imap keeps the labels in the folder's order.
        with get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            per_photo = list(pool.imap(_photo_rows, jobs))
    else:
        per_photo = [_photo_rows(job) for job in jobs]
    labels = out / "labels.csv"
    with open(labels, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["file", "category", "severity", "function"])
        for rows in per_photo:
            writer.writerows(rows)
    return labels


@dataclass(frozen=True)
class _Recipe:
    """What build_set makes of every photo (picklable, for the worker processes)."""

    out: Path
    severities: tuple[int, ...]
    functions: str
    seed: int
    pairs: int
    max_side: int | None


def _photo_rows(job: tuple[_Recipe, int, str, Path]) -> list[tuple[str, str, str, str]]:
    """Write one photo's clean copy, distortions and pairs; its label rows (module-level: a worker's task)."""
    from iqa_cli.evaluation.distortions import FUNCTIONS, distort  # scipy: imported only when a set is built

    recipe, index, stem, source = job
    out, seed = recipe.out, recipe.seed
    pixels = _load(source, recipe.max_side)
    rows: list[tuple[str, str, str, str]] = [(_save(pixels, out, "clean", stem), "none", "", "")]
    for c_index, category in enumerate(CATEGORIES):
        names = list(FUNCTIONS[category])
        if recipe.functions == "one-per-category":
            pick = np.random.default_rng([seed, index, c_index])
            names = [names[int(pick.integers(len(names)))]]
        for f_index, function in enumerate(names):
            for severity in recipe.severities:
                rng = np.random.default_rng([seed, index, c_index, f_index, severity])
                image = distort(pixels, category, severity, rng=rng, function=function)
                name = _save(image, out, category, f"{stem}-{function}-{severity}")
                rows.append((name, category, str(severity), function))
    for pair in range(recipe.pairs):
        rng = np.random.default_rng([seed, index, _PAIR_STREAM + pair])
        first, second = _pair(rng)
        image = pixels
        chosen = []
        for category in (first, second):
            names = list(FUNCTIONS[category])
            function = names[int(rng.integers(len(names)))]
            severity = int(recipe.severities[int(rng.integers(len(recipe.severities)))])
            image = distort(image, category, severity, rng=rng, function=function)
            chosen.append((category, str(severity), function))
        name = _save(image, out, "pairs", f"{stem}-{pair:02d}-{first}-{second}")
        rows.extend((name, *c) for c in chosen)
    return rows


def _clean_photos(folder: Path) -> Iterator[tuple[str, Path]]:
    """(unique file stem, path) of every image under `folder`, in discovery order."""
    from iqa_cli.audit.discover import DiscoveryProblem, discover

    if not folder.is_dir():
        raise SetError(f"{folder} is not a folder: give the folder of clean photos")
    used: set[str] = set()
    for item in discover([folder]):
        if isinstance(item, DiscoveryProblem):
            raise SetError(f"cannot read {item.path}: {item.message}")
        stem, n = item.stem, 1
        while stem in used:
            n += 1
            stem = f"{item.stem}-{n}"
        used.add(stem)
        yield stem, item


def _load(path: Path, max_side: int | None) -> np.ndarray:
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise SetError(f"cannot read the clean photo {path}: {exc}; remove it from the folder") from None
    if max_side is not None and max(image.size) > max_side:  # shrink, never enlarge
        scale = max_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)


def _save(pixels: np.ndarray, out: Path, folder: str, stem: str) -> str:
    """Write `pixels` as out/folder/stem.png (fast compression: the set is regenerated, not archived)."""
    (out / folder).mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(out / folder / f"{stem}.png", compress_level=1)
    return f"{folder}/{stem}.png"


def _pair(rng: np.random.Generator) -> tuple[str, str]:
    """Two different categories that do not contradict each other."""
    keys = list(CATEGORIES)
    while True:
        a, b = (keys[int(i)] for i in rng.choice(len(keys), size=2, replace=False))
        if frozenset({a, b}) not in OPPOSITES:
            return a, b
