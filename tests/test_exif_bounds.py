"""Hostile files cost bounded work: EXIF parsing capped by bytes and entries, no decode before the pixel limit, and a
per-file time limit in the workers that turns a stuck file into a `timeout` row."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageFile, TiffImagePlugin, TiffTags

import iqa_cli.audit.exif
import iqa_cli.audit.run
from iqa_cli.audit.exif import LOCATE_BYTES, MAX_IFD_ENTRIES, MAX_TEXT_BYTES, ExifInfo, read_exif
from iqa_cli.audit.run import AuditSettings, run_audit
from iqa_cli.report.writers import ParquetWriter
from iqa_cli.testing.cli import invoke_iqa
from iqa_cli.testing.engines import BrightnessEngine
from iqa_cli.testing.images import bomb_png, gps_fan_out_tiff, png_chunk, tiff_entry, tiff_ifd

# --- EXIF: bounded by entries and bytes --------------------------------------------------------------


def test_a_gps_fan_out_costs_two_ifds(monkeypatch: pytest.MonkeyPatch) -> None:
    data = gps_fan_out_tiff(3000)
    assert len(data) > 3_900_000
    read = []
    real = iqa_cli.audit.exif._read_ifd
    monkeypatch.setattr(iqa_cli.audit.exif, "_read_ifd", lambda *a: read.append(a[2]) or real(*a))
    info = read_exif(data)
    assert (info.camera_make, info.camera_model, info.iso) == ("Canon", "EOS R5", 400)
    assert info.captured_at == datetime(2021, 7, 4, 12, 30, 59)
    assert len(read) == 2  # IFD0 and the EXIF sub-IFD; the 3,000 GPS pointers are never followed


def test_a_tiff_with_thousands_of_text_tags() -> None:
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    for i in range(3000):
        tags[40000 + i] = f"note {i} " * 160
        tags.tagtype[40000 + i] = TiffTags.ASCII
    tags[0x010F] = "FUJIFILM"
    tags[0x0110] = "X-T4"
    tags[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "TIFF", tiffinfo=tags)
    assert buffer.tell() > 3_000_000
    info = read_exif(buffer.getvalue())
    assert (info.camera_make, info.camera_model, info.orientation) == ("FUJIFILM", "X-T4", 6)
    assert read_exif(buffer) == info  # a file object is read whole, the same way


def test_entries_past_the_cap_are_not_looked_at() -> None:
    def tiff_with_make_after(fillers: int) -> bytes:
        entries = [tiff_entry(0x0131, 3, 1, b"\x01\x00") for _ in range(fillers)]  # Software, as a number
        return b"II*\x00" + struct.pack("<I", 8) + tiff_ifd([*entries, tiff_entry(0x010F, 2, 4, b"Sny\x00")])

    assert read_exif(tiff_with_make_after(MAX_IFD_ENTRIES - 1)).camera_make == "Sny"
    assert read_exif(tiff_with_make_after(MAX_IFD_ENTRIES)) == ExifInfo()


def test_a_long_text_is_cut_to_the_cap() -> None:
    make = b"M" * 1_000_000 + b"\x00"
    ifd = tiff_ifd([tiff_entry(0x010F, 2, len(make), struct.pack("<I", 26))])
    data = b"II*\x00" + struct.pack("<I", 8) + ifd + make
    assert read_exif(data).camera_make == "M" * MAX_TEXT_BYTES


def _exif_block(tag: int, text: str) -> bytes:
    exif = Image.Exif()
    exif[tag] = text
    return exif.tobytes()[6:]  # without the "Exif\0\0" of a JPEG segment, as PNG's eXIf holds it


def test_the_container_walk_stops_at_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    png = io.BytesIO()
    Image.new("L", (4, 4)).save(png, "PNG")
    head, tail = png.getvalue()[:33], png.getvalue()[33:]  # signature + IHDR, then IDAT and IEND

    exif = png_chunk(b"eXIf", _exif_block(0x010F, "Canon"))

    def png_with_chunks_before_exif(count: int) -> bytes:
        return head + png_chunk(b"prVt", b"") * count + tail[:-12] + exif + tail[-12:]

    monkeypatch.setattr(iqa_cli.audit.exif, "LOCATE_READS", 50)
    assert read_exif(png_with_chunks_before_exif(10)).camera_make == "Canon"  # found after the pixel data
    # Over budget the walk gives up (the fallback cannot see an eXIf after the pixel data without decoding).
    assert read_exif(png_with_chunks_before_exif(60)) == ExifInfo()
    with pytest.raises(iqa_cli.audit.exif._WalkBudgetSpent):
        iqa_cli.audit.exif._BoundedReader(b"").read(LOCATE_BYTES + 1)  # refused before it is read


def test_camera_fields_from_a_tiff() -> None:
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0112] = 3
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "TIFF", exif=exif)
    info = read_exif(buffer.getvalue())
    assert (info.camera_make, info.orientation) == ("Canon", 3)


# --- no decode before the pixel limit ----------------------------------------------------------------


# The child's own peak: VmHWM belongs to its address space. (Its ru_maxrss would not do: Linux carries the peak of
# the process it was forked from, pytest's, across the exec.)
_PEAK_RSS = """
import json, sys
from iqa_cli.audit.load import load_image
from iqa_cli.images import DecodePlan

result = load_image(sys.argv[1], DecodePlan(long_side=64))
with open("/proc/self/status") as status:
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"code": getattr(result, "code", None), "peak_mb": peak_kib / 1024}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak from /proc (Linux)")
def test_a_png_bomb_is_refused_without_being_decoded(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    # EXIF without any of our fields: the fallback parser is asked too (it used to decode the image to find more).
    path.write_bytes(bomb_png(40_000, 40_000, _exif_block(0x0131, "Bomber 1.0")))
    assert path.stat().st_size < 1_000_000
    # In a fresh process, so the peak is this file's alone (decoding it peaks at 1.6 GB).
    found = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(path)], capture_output=True, text=True, check=True)
    result = json.loads(found.stdout)
    assert result["code"] == "too_many_pixels"
    assert result["peak_mb"] < 300


def test_exif_of_a_png_never_decodes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self))
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")  # no EXIF at all: both parsers are asked
    assert read_exif(png.getvalue()) == ExifInfo()
    assert read_exif(bomb_png(4000, 4000, b"II*\x00\x00\x00\x00\x00")) == ExifInfo()
    assert decoded == []


# --- a time limit per file in the workers ------------------------------------------------------------

LIMIT = 3.0  # seconds: some 60 times what one of these files takes in a worker


def _photos(root: Path, *extra: str) -> list[str]:
    """Seven small photos and `extra` copies of the first (a stall-*, a crash-* name), in discovery order."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(7):
        pixels = np.clip(rng.normal(30 if i % 3 == 0 else 180, 10, (40, 60, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"img{i}.png")
    for name in extra:
        Image.open(root / "img1.png").save(root / name)
    return sorted(p.name for p in root.iterdir())


def _audit(root: Path, out: Path, workers: int) -> tuple[int, list[dict]]:
    out.mkdir()
    settings = AuditSettings(paths=[str(root)], workers=workers, batch_size=2, file_timeout=LIMIT)
    summary = run_audit(settings, BrightnessEngine(), [ParquetWriter(out)])
    return summary.errors, pq.read_table(out / "report.parquet").to_pylist()


@pytest.mark.parametrize("extra", [("stall-me.png",), ("crash-me.png", "stall-me.png")])
def test_a_stuck_file_becomes_a_timeout_row(tmp_path: Path, extra: tuple[str, ...]) -> None:
    names = _photos(tmp_path / "photos", *extra)
    errors, rows = _audit(tmp_path / "photos", tmp_path / "out", workers=2)
    assert [Path(r["path"]).name for r in rows] == names  # every file once, in discovery order
    by_name = {Path(r["path"]).name: r for r in rows}
    stuck = by_name.pop("stall-me.png")
    assert stuck["status"] == "error" and stuck["error_code"] == "timeout"
    assert f"longer than {LIMIT:g} s" in stuck["error"] and "--file-timeout" in stuck["error"]
    if "crash-me.png" in by_name:
        assert by_name.pop("crash-me.png")["error_code"] == "worker_crashed"
    assert errors == len(extra)
    # Every other file gets the row an in-process run gives it.
    for name in extra:
        (tmp_path / "photos" / name).unlink()
    _, expected = _audit(tmp_path / "photos", tmp_path / "in-process", workers=0)
    got = pd.DataFrame([by_name[Path(r["path"]).name] for r in expected]).drop(columns=["elapsed_ms"])
    pd.testing.assert_frame_equal(got, pd.DataFrame(expected).drop(columns=["elapsed_ms"]))


def test_file_timeout_option_and_setting_reach_the_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("RGB", (32, 32), (120, 130, 140)).save(tmp_path / "a.png")
    limits = []
    real = iqa_cli.audit.run.Prefetcher

    def spy(*args, **kwargs):
        limits.append(kwargs["file_timeout"])
        return real(*args, **kwargs)

    monkeypatch.setattr(iqa_cli.audit.run, "Prefetcher", spy)
    audit = ("audit", str(tmp_path / "a.png"), "--engine", "signal", "--workers", "0", "--quiet")
    code, _, err = invoke_iqa(*audit, "--out", str(tmp_path / "o1"), "--file-timeout", "7.5")
    assert code == 0, err
    monkeypatch.setenv("IQA_FILE_TIMEOUT", "0")
    code, _, err = invoke_iqa(*audit, "--out", str(tmp_path / "o2"))
    assert code == 0, err
    assert limits == [7.5, 0.0]
    code, _, err = invoke_iqa(*audit, "--out", str(tmp_path / "o3"), "--file-timeout", "-1")
    assert code == 2 and "file-timeout" in err


def test_a_timeout_is_not_remembered(tmp_path: Path) -> None:
    """A busy machine or a low limit is a fact of this run, not of the file: the next run tries it again."""
    import os
    import time

    from iqa_cli.audit.store import ResultStore

    past = time.time() - 3600  # older than the store's racy window: an unchanged file is known
    for name in _photos(tmp_path / "photos", "stall-me.png"):
        os.utime(tmp_path / "photos" / name, (past, past))
    out = tmp_path / "out"
    with ResultStore.open(out) as store:
        settings = AuditSettings(paths=[str(tmp_path / "photos")], workers=1, batch_size=2, file_timeout=LIMIT)
        summary = run_audit(settings, BrightnessEngine(), [ParquetWriter(out)], store=store)
    assert summary.error_codes == {"timeout": 1}
    with ResultStore.open(out, lock=False) as store:
        stuck = tmp_path / "photos" / "stall-me.png"
        assert store.known(str(stuck), os.stat(stuck)) is None
        assert store.counts()[0] == 7 and store.known(
            str(tmp_path / "photos" / "img0.png"), os.stat(stuck.parent / "img0.png")
        )
