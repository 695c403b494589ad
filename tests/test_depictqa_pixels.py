"""`--pixels authors`: DepictQA's authors' loader exactly; the default notes every file where iqa's pixels differ."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from iqa_cli.audit.load import load_image
from iqa_cli.engines.depictqa.preprocess import PAPER, depictqa_decode_plan, pad_and_normalize
from iqa_cli.images import DecodePlan, LoadedImage
from iqa_cli.testing import pixel_cases

torch_needed = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "transformers", "sentencepiece")),
    reason="the DepictQA engine needs torch, transformers and sentencepiece",
)


IQA = replace(depictqa_decode_plan(), authors_notes=True)  # what the engine asks for by default
AUTHORS = replace(IQA, pixels="authors")


def authors_loader(path: Path, resize: int = PAPER.resize, max_size: int = PAPER.max_size) -> np.ndarray:
    """The authors' pixels, written from their description: open, convert("RGB"), their resize rule."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    if resize <= min(h, w) or max_size <= max(h, w):
        ratio = min(resize / min(h, w), max_size / max(h, w))
        image = image.resize((round(w * ratio), round(h * ratio)), Image.Resampling.BICUBIC)
    return np.asarray(image)


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    folder = tmp_path_factory.mktemp("pixel-cases")
    kinds = pixel_cases.write_pixel_cases(folder)
    # CMYK with an embedded profile: iqa tries it (an RGB profile here, so it falls back to the formula), the
    # authors never look; the pixels agree but the authors' row says the profile was ignored.
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.open(folder / "cmyk.jpg").save(folder / "cmyk-profile.jpg", quality=92, icc_profile=srgb)
    kinds["cmyk-profile.jpg"] = "cmyk"
    return folder, kinds


def _load(path: Path, plan: DecodePlan) -> LoadedImage:
    result = load_image(str(path), plan)
    assert isinstance(result, LoadedImage), result
    return result


def test_the_cases_cover_every_kind_the_issue_names(cases):
    folder, kinds = cases
    modes = {Image.open(folder / name).mode for name in kinds}
    assert {"RGBA", "LA", "P", "CMYK", "I;16", "RGB"} <= modes
    assert {Image.open(folder / n).getexif().get(0x0112) for n, k in kinds.items() if k == "exif"} == set(range(2, 9))


def test_authors_mode_gives_the_authors_pixels(cases):
    folder, kinds = cases
    for name in kinds:
        got = _load(folder / name, AUTHORS)
        assert np.array_equal(got.pixels, authors_loader(folder / name)), name


def test_authors_mode_never_drafts_and_keeps_the_upright_size_in_the_facts(cases):
    folder, _ = cases
    drafted = _load(folder / "exif-6.jpg", replace(AUTHORS, draft=True))
    assert np.array_equal(drafted.pixels, authors_loader(folder / "exif-6.jpg"))
    assert drafted.pixels.shape == (224, 299, 3) and (drafted.facts.width, drafted.facts.height) == (480, 640)
    assert _load(folder / "exif-6.jpg", IQA).pixels.shape == (299, 224, 3)


def test_the_issue_example_through_the_preparer(tmp_path):
    """A 640 x 480 JPEG with Orientation=6: 308 x 224 (upright) for iqa, 224 x 308 for the authors."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (640, 480), (90, 120, 150)).save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert pad_and_normalize(_load(tmp_path / "r.jpg", IQA).pixels).shape == (3, 308, 224)
    assert pad_and_normalize(_load(tmp_path / "r.jpg", AUTHORS).pixels).shape == (3, 224, 308)


def _differ(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape != b.shape or not np.array_equal(a, b)


def test_iqa_mode_notes_exactly_the_files_whose_pixels_differ(cases):
    folder, kinds = cases
    for name, kind in kinds.items():
        ours, theirs = _load(folder / name, IQA), _load(folder / name, AUTHORS)
        noted = [n for n in ours.facts.notes if n.startswith("pixels:")]
        assert bool(noted) == _differ(ours.pixels, theirs.pixels), (name, ours.facts.notes)
        assert bool(noted) == (kind not in ("cmyk", "plain")), name
        # The authors' rows say what their loader did, on the same files.
        assert bool([n for n in theirs.facts.notes if n.startswith("pixels:")]) == (
            name not in ("cmyk.jpg", "plain.jpg")
        )
    notes = {name: _load(folder / name, IQA).facts.notes for name in ("exif-6.jpg", "rgba-0.png", "grey16-full.png")}
    assert notes["exif-6.jpg"] == ["pixels: EXIF orientation applied (the authors' loader ignores it)"]
    assert notes["rgba-0.png"] == ["pixels: transparency composited over white (the authors' loader drops alpha)"]
    assert notes["grey16-full.png"][0].startswith("pixels: 16-bit image scaled to 8 bits")
    assert _load(folder / "cmyk-profile.jpg", IQA).facts.notes == ["converted from CMYK"]
    assert _load(folder / "cmyk-profile.jpg", AUTHORS).facts.notes == [
        "pixels: CMYK converted without its ICC profile, as the authors' loader does"
    ]


def test_other_engines_get_no_pixels_notes(cases):
    """The notes are DepictQA's business: a plan without authors_notes keeps the loader's usual notes."""
    folder, kinds = cases
    for name in kinds:
        assert not any(n.startswith("pixels:") for n in _load(folder / name, DecodePlan(224, 672)).facts.notes)
    assert _load(folder / "rgba-0.png", DecodePlan(224, 672)).facts.notes == ["transparency composited over white"]


def test_unknown_pixels_mode_is_refused():
    with pytest.raises(ValueError, match="unknown pixels mode 'theirs'"):
        DecodePlan(pixels="theirs")


@torch_needed
def test_benchmark_prints_its_figures(tmp_path):
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "pixels_effect.py"
    done = subprocess.run([sys.executable, str(script), "--work", str(tmp_path), "--max-new-tokens", "2"],
                          capture_output=True, text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| exif | 7 | 7 |" in done.stdout and "| plain | 1 | 0 | 0 |" in done.stdout
    assert re.search(r"pixels differ on 15 of 17 files \(all noted: yes\); answer changed on \d+", done.stdout)


# --------------------------------------------------------------------------------------------- the engine


@torch_needed
def test_engine_setting_reaches_the_plan_and_the_settings(tiny_root):
    from iqa_cli.engines.base import EngineOptions
    from iqa_cli.engines.depictqa.engine import DepictQAEngine
    from iqa_cli.errors import EngineUnavailable

    options = EngineOptions(model_dir=str(tiny_root), device="cpu", dtype="float32", max_new_tokens=2)
    ours = DepictQAEngine.create(options)
    assert (ours.decode_plan.pixels, ours.decode_plan.authors_notes, ours.settings()["pixels"]) == ("iqa", True, "iqa")
    theirs = DepictQAEngine.create(replace(options, pixels="authors", draft_decode=True))
    assert (theirs.decode_plan.pixels, theirs.decode_plan.draft, theirs.settings()["pixels"]) == (
        "authors",
        False,
        "authors",
    )
    assert theirs.settings()["draft_decode"] is False  # the authors' loader decodes in full
    with pytest.raises(EngineUnavailable, match="unknown pixels mode"):
        DepictQAEngine.create(replace(options, pixels="theirs"))


@torch_needed
def test_iqa_audit_pixels_authors_end_to_end(tiny_root, cases, tmp_path):
    """`--pixels authors` reaches the loader, the notes say so, and the store does not replay the other mode's rows."""
    import pandas as pd

    from iqa_cli.testing.cli import invoke_iqa

    folder, _ = cases
    out = tmp_path / "out"
    base = ["audit", str(folder), "--model", str(tiny_root), "--device", "cpu", "--dtype", "float32",
            "--max-new-tokens", "2", "--workers", "0", "--json", "--out", str(out), "--checks", "none"]  # fmt: skip
    rows = {}
    for mode in ("iqa", "authors"):
        code, stdout, stderr = invoke_iqa(*base, "--pixels", mode)
        assert code == 0, stderr
        assert json.loads(stdout)["assessed"] == 18
        table = pd.read_parquet(out / "report.parquet")
        rows[mode] = {Path(p).name: list(n) for p, n in zip(table["path"], table["notes"], strict=True)}
        assert {json.loads(s)["pixels"] for s in table["engine_settings"]} == {mode}
    assert rows["iqa"]["exif-6.jpg"] == ["pixels: EXIF orientation applied (the authors' loader ignores it)"]
    assert rows["authors"]["exif-6.jpg"] == ["pixels: EXIF orientation ignored, as the authors' loader does"]
    assert rows["iqa"]["plain.jpg"] == rows["authors"]["plain.jpg"] == []
