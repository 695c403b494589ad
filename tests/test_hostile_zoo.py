"""Hostile input never crashes a run nor stops other images: the zoo audited in one run, row by row."""

from __future__ import annotations

import errno
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from hostile_zoo import EXPLICIT, NOTES, build_undecodable_name, build_zoo
from PIL import Image

import iqa_cli.audit.run
from iqa_cli.audit.run import AuditSettings, run_audit
from iqa_cli.report.summary import Summary
from iqa_cli.report.writers import CsvWriter, JsonlWriter, ParquetWriter
from iqa_cli.testing.engines import BrightnessEngine
from iqa_cli.testing.images import png_header_only


def audit(paths: list[Path], out: Path, workers: int) -> tuple[Summary, list[dict[str, Any]]]:
    out.mkdir(exist_ok=True)
    writers = [ParquetWriter(out), CsvWriter(out), JsonlWriter(out)]
    settings = AuditSettings(paths=[str(p) for p in paths], workers=workers, batch_size=4)
    summary = run_audit(settings, BrightnessEngine(), writers)
    return summary, pq.read_table(out / "report.parquet").to_pylist()


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Summary, list[dict[str, Any]]]:
    root = tmp_path_factory.mktemp("hostile") / "zoo"
    expected = build_zoo(root)
    summary, rows = audit([root, *(root / p for p in EXPLICIT)], root.parent / "out", workers=2)
    return root, expected, summary, rows


def by_path(root: Path, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {Path(row["path"]).relative_to(root).as_posix(): row for row in rows}


def test_every_file_has_exactly_one_row_in_every_report(zoo_run) -> None:
    root, expected, _, rows = zoo_run
    paths = [row["path"] for row in rows]
    assert len(paths) == len(set(paths)) == len(expected)
    assert set(by_path(root, rows)) == set(expected)
    out = root.parent / "out"
    # The newline in a name must not split a row in the text formats.
    assert len(pd.read_csv(out / "report.csv")) == len(rows)
    lines = (out / "report.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["path"] for line in lines] == paths


def test_each_case_gets_its_exact_row(zoo_run) -> None:
    root, expected, _, rows = zoo_run
    found = by_path(root, rows)
    wrong = {}
    for path, code in expected.items():
        row = found[path]
        got = "ok" if row["status"] == "ok" else row["error_code"]
        if got != code:
            wrong[path] = (code, got, row["error"])
        elif code == "ok":
            assert row["verdict"] and row["error"] is None, path
            assert list(row["notes"]) == NOTES.get(path, []), path
        else:
            assert row["status"] == "error" and row["error"], path
    assert not wrong, wrong


def test_summary_counts_errors_by_code(zoo_run) -> None:
    _, expected, summary, rows = zoo_run
    codes = Counter(row["error_code"] for row in rows if row["status"] == "error")
    assert summary.error_codes == dict(codes)
    assert summary.files == len(expected) and summary.errors == sum(codes.values())
    assert summary.assessed == sum(row["status"] == "ok" for row in rows)
    assert not summary.interrupted
    settled = Counter(code for path, code in expected.items() if code != "ok")
    assert all(codes[code] >= count for code, count in settled.items()), (codes, settled)


def test_duplicates_share_the_content_hash(zoo_run) -> None:
    root, _, _, rows = zoo_run
    found = by_path(root, rows)
    hashes = {found[p]["content_hash"] for p in ("dup_a.png", "dup_b.png", "png_named.jpg", "café 日本 📷.png")}
    assert len(hashes) == 1 and None not in hashes


def test_name_that_is_not_utf8(tmp_path: Path) -> None:
    name = build_undecodable_name(tmp_path / "photos")
    Image.new("RGB", (8, 8)).save(tmp_path / "photos" / "fine.png")
    summary, rows = audit([tmp_path / "photos"], tmp_path / "out", workers=0)
    assert summary.files == 2 and summary.errors == 0
    # The bytes that are not UTF-8 are written as \xNN escapes, the rest as it is.
    assert any(name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") in r["path"] for r in rows)


def test_unreadable_files_get_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests run as root, which chmod 000 does not stop: refuse the opening itself (workers=0).
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a_denied.png", "b_ioerror.png", "c_fine.png"):
        Image.new("RGB", (8, 8), (200, 200, 200)).save(photos / name)
    real_open = os.open

    def open_(file: Any, *args: Any, **kwargs: Any) -> Any:
        name = os.path.basename(str(file))
        if name == "a_denied.png":
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        if name == "b_ioerror.png":
            raise OSError(errno.EIO, "Input/output error", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", open_)  # the loader opens with os.open (iqa_cli/files.py)
    summary, rows = audit([photos], tmp_path / "out", workers=0)
    codes = {Path(r["path"]).name: r["error_code"] for r in rows}
    assert codes == {"a_denied.png": "permission_denied", "b_ioerror.png": "read_error", "c_fine.png": None}
    assert summary.error_codes == {"permission_denied": 1, "read_error": 1}


def test_files_deleted_or_changed_mid_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a_vanishes.png", "b_shrinks.png", "c_grows.png", "d_fine.png"):
        Image.new("RGB", (32, 32), (200, 100, 50)).save(photos / name)
    real_discover = iqa_cli.audit.run.discover_with_roots

    def discover(*args: Any, **kwargs: Any) -> Iterator[Any]:
        # Between discovery and decoding (workers=0 decodes each file right after it is found).
        for root, item in real_discover(*args, **kwargs):
            name = getattr(item, "name", "")
            if name == "a_vanishes.png":
                item.unlink()
            elif name == "b_shrinks.png":
                item.write_bytes(item.read_bytes()[:60])
            elif name == "c_grows.png":
                item.write_bytes(png_header_only(60_000, 60_000))
            yield root, item

    monkeypatch.setattr(iqa_cli.audit.run, "discover_with_roots", discover)
    summary, rows = audit([photos], tmp_path / "out", workers=0)
    codes = {Path(r["path"]).name: r["error_code"] for r in rows}
    assert codes == {
        "a_vanishes.png": "not_found",
        "b_shrinks.png": "truncated",
        "c_grows.png": "too_many_pixels",
        "d_fine.png": None,
    }
    assert summary.files == 4 and summary.assessed == 1
