"""Images inside containers: WebDataset tar shards and Parquet files with image bytes, audited in place."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import iqa_cli
import iqa_cli.audit.containers
import iqa_cli.audit.queue
from iqa_cli.audit.containers import Member, members, sample_key
from iqa_cli.testing.cli import invoke_iqa

PAST = time.time() - 3600  # older than the store's racy window: an unchanged shard is trusted


def _image(kind: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(buffer, format=kind)
    return buffer.getvalue()


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(PAST)
    archive.addfile(info, io.BytesIO(data))


def _shard(path: Path) -> Path:
    """img2dataset's layout: KEY.jpg (or .png), KEY.txt, KEY.json per sample; one corrupt and one non-image."""
    with tarfile.open(path, "w") as archive:
        for i, kind in enumerate(("JPEG", "PNG")):
            key = f"00000/{i:09d}"
            ext = "jpg" if kind == "JPEG" else "png"
            _add(archive, f"{key}.{ext}", _image(kind, i))
            _add(archive, f"{key}.txt", f"caption {i}".encode())
            meta = {"url": f"https://example.com/{i}.{ext}", "key": f"{i:09d}", "status": "success", "width": 48}
            _add(archive, f"{key}.json", json.dumps(meta).encode())
        _add(archive, "00000/000000002.jpg", _image("JPEG", 2)[:300])  # cut short
        _add(archive, "00000/000000003.jpg", b"<html>not found</html>")
        _add(archive, "00000/000000003.cls", b"7")  # a side-car kind that is not an image: not assessed
    os.utime(path, (PAST, PAST))
    return path


def _parquet(path: Path) -> Path:
    good = _image("PNG", 5)
    table = pa.table(
        {
            "key": ["a", "b", "c", "d"],
            "caption": ["one", "two", "three", "four"],
            "jpg": [_image("JPEG", 4), None, b"garbage bytes", good],
        }
    )
    pq.write_table(table, path, row_group_size=2)
    os.utime(path, (PAST, PAST))
    return path


def _audit(out: Path, *paths: Path, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    code, _, stderr = invoke_iqa(
        "audit", *map(str, paths), "--engine", "signal", "--out", str(out), "--quiet", *extra, reraise=True
    )
    assert code == 0, stderr
    return pd.read_parquet(out / "report.parquet").set_index("path")


def _count_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    loaded: list[str] = []
    real = iqa_cli.audit.queue.load_member

    def counting(path, *args, **kwargs):
        loaded.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(iqa_cli.audit.queue, "load_member", counting)
    return loaded


def test_sample_key_is_the_name_up_to_the_first_dot_of_its_basename() -> None:
    assert sample_key("00000/000000012.jpg") == "00000/000000012"
    assert sample_key("a.b/c.seg.png") == "a.b/c"
    assert sample_key("plain") == "plain"


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_shard_gives_one_row_per_image_member(tmp_path: Path, workers: str) -> None:
    shard = _shard(tmp_path / "00000.tar")
    report = _audit(tmp_path / "out", shard, extra=("--workers", workers))
    base = f"{shard}#00000/"
    assert list(report.index) == [f"{base}00000000{i}.{ext}" for i, ext in enumerate(("jpg", "png", "jpg", "jpg"))]
    first = report.loc[f"{base}000000000.jpg"]
    assert first["status"] == "ok" and first["format"] == "JPEG" and first["sample_key"] == "00000/000000000"
    meta = json.loads(first["source_meta"])
    assert meta["url"] == "https://example.com/0.jpg" and meta["txt"] == "caption 0" and meta["width"] == 48
    assert report.loc[f"{base}000000001.png", "status"] == "ok"
    assert report.loc[f"{base}000000002.jpg", "error_code"] == "truncated"
    assert report.loc[f"{base}000000003.jpg", "error_code"] == "not_an_image"
    assert pd.isna(report.loc[f"{base}000000003.jpg", "source_meta"])


def test_a_folder_walk_reads_its_shards_and_a_truncated_shard_keeps_its_first_members(tmp_path: Path) -> None:
    (tmp_path / "shards").mkdir()
    shard = _shard(tmp_path / "shards" / "00000.tar")
    whole = shard.read_bytes()
    cut = tmp_path / "shards" / "00001.tar"
    cut.write_bytes(whole[:6000])  # past the first sample, inside the second image
    between = tmp_path / "shards" / "00002.tar"
    between.write_bytes(whole[:2600])  # inside the header after the first image
    (tmp_path / "shards" / "notes.txt").write_text("not walked")
    report = _audit(tmp_path / "out", tmp_path / "shards", extra=("--workers", "0"))
    rows = report[report.index.str.startswith(str(cut))]
    assert list(rows["status"]) == ["ok", "error"]
    assert rows.iloc[0]["sample_key"] == "00000/000000000"
    assert rows.iloc[1]["error_code"] == "truncated" and rows.index[1] == f"{cut}#00000/000000001.png"
    rows = report[report.index.str.startswith(str(between))]
    assert list(rows.index) == [f"{between}#00000/000000000.jpg", str(between)]
    assert list(rows["error_code"].fillna("")) == ["", "truncated"]
    assert len(report) == 4 + 2 + 2


def test_an_unreadable_container_is_one_error_row(tmp_path: Path) -> None:
    (tmp_path / "bad.tar").write_bytes(b"\x01" * 1000)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    pq.write_table(pa.table({"n": [1, 2]}), tmp_path / "plain.parquet")
    report = _audit(tmp_path / "out", tmp_path / "bad.tar", tmp_path / "bad.parquet", tmp_path / "plain.parquet")
    assert list(report["error_code"]) == ["unreadable_container", "unreadable_container", "no_image_column"]


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_parquet_file_gives_one_row_per_row(tmp_path: Path, workers: str) -> None:
    path = _parquet(tmp_path / "part.parquet")
    report = _audit(tmp_path / "out", path, extra=("--workers", workers, "--id-column", "key"))
    assert list(report.index) == [f"{path}#{i}" for i in range(4)]
    assert list(report["status"]) == ["ok", "error", "error", "ok"]
    assert list(report["error_code"].iloc[1:3]) == ["empty_file", "not_an_image"]
    assert list(report["sample_key"]) == ["a", "b", "c", "d"]
    assert json.loads(report["source_meta"].iloc[3]) == {"caption": "four", "key": "d"}


def test_a_hugging_face_image_struct_column_is_detected(tmp_path: Path) -> None:
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    images = pa.array([{"bytes": _image("PNG", 1), "path": "x.png"}, {"bytes": None, "path": None}], type=struct)
    pq.write_table(pa.table({"image": images, "label": [3, 4]}), tmp_path / "hf.parquet")
    report = _audit(tmp_path / "out", tmp_path / "hf.parquet")
    assert list(report["status"]) == ["ok", "error"]
    assert json.loads(report["source_meta"].iloc[0]) == {"label": 3}


def test_parquet_rows_are_read_in_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(iqa_cli.audit.containers, "PARQUET_BATCH_ROWS", 3)
    rows = 10
    pq.write_table(pa.table({"png": [_image("PNG", i) for i in range(rows)]}), tmp_path / "p.parquet", row_group_size=4)
    seen = [m for m in members(str(tmp_path / "p.parquet")) if isinstance(m, Member)]
    assert [m.path.rsplit("#", 1)[1] for m in seen] == [str(i) for i in range(rows)]


def test_an_unchanged_shard_is_replayed_and_a_touched_one_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shard = _shard(tmp_path / "00000.tar")
    table = _parquet(tmp_path / "part.parquet")
    first = _audit(tmp_path / "out", shard, table, extra=("--workers", "0"))
    loaded = _count_loads(monkeypatch)
    second = _audit(tmp_path / "out", shard, table, extra=("--workers", "0"))
    assert loaded == []
    pd.testing.assert_frame_equal(first.drop(columns="elapsed_ms"), second.drop(columns="elapsed_ms"))
    os.utime(shard, (PAST + 60, PAST + 60))
    third = _audit(tmp_path / "out", shard, table, extra=("--workers", "0"))
    assert sorted(loaded) == sorted(p for p in first.index if p.startswith(str(shard)))
    assert list(third.index) == list(first.index)


@pytest.mark.parametrize(("limit", "rows"), [("3", 3), ("5", 5), ("1", 1)])
def test_limit_stops_inside_a_container_after_exactly_n_image_rows(tmp_path: Path, limit: str, rows: int) -> None:
    shard = _shard(tmp_path / "00000.tar")  # 4 image members
    table = _parquet(tmp_path / "part.parquet")  # 4 rows
    report = _audit(tmp_path / "out", shard, table, extra=("--workers", "0", "--limit", limit))
    expected = [f"{shard}#00000/00000000{i}.{ext}" for i, ext in enumerate(("jpg", "png", "jpg", "jpg"))]
    assert list(report.index) == [*expected, *(f"{table}#{row}" for row in range(4))][:rows]
    only_table = _audit(tmp_path / "out2", table, extra=("--workers", "0", "--limit", "2"))
    assert list(only_table.index) == [f"{table}#0", f"{table}#1"]


def test_limit_stops_inside_a_replayed_container_too(tmp_path: Path) -> None:
    shard = _shard(tmp_path / "00000.tar")
    _audit(tmp_path / "out", shard, extra=("--workers", "0"))
    report = _audit(tmp_path / "out", shard, extra=("--workers", "0", "--limit", "2"))
    assert list(report.index) == [f"{shard}#00000/000000000.jpg", f"{shard}#00000/000000001.png"]


def test_the_python_api_takes_the_image_and_id_columns(tmp_path: Path) -> None:
    path = tmp_path / "two.parquet"
    table = {"thumb": [_image("PNG", 1), _image("PNG", 2)], "photo": [_image("JPEG", 3), b"junk"], "uid": ["x", "y"]}
    pq.write_table(pa.table(table), path)
    result = iqa_cli.audit(path, engine="signal", workers=0, image_column="photo", id_column="uid")
    assert [(row["path"], row["sample_key"], row["error_code"]) for row in result] == [
        (f"{path}#0", "x", None),
        (f"{path}#1", "y", "not_an_image"),
    ]
    assert [row["format"] for row in result] == ["JPEG", None]
    missing = iqa_cli.audit(path, engine="signal", workers=0, image_column="nope")
    assert [row["error_code"] for row in missing] == ["no_image_column"]


def _damaged_row_group(path: Path, group: int) -> Path:
    """Six PNG rows in three row groups of two, the page header of row group `group`'s image column overwritten."""
    pq.write_table(pa.table({"png": [_image("PNG", i) for i in range(6)], "n": list(range(6))}), path, row_group_size=2)
    column = pq.ParquetFile(path).metadata.row_group(group).column(0)
    start = column.dictionary_page_offset or column.data_page_offset
    data = bytearray(path.read_bytes())
    data[start : start + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    return path


def test_a_damaged_row_group_costs_its_own_rows_only(tmp_path: Path) -> None:
    path = _damaged_row_group(tmp_path / "damaged.parquet", 1)
    report = _audit(tmp_path / "out", path, extra=("--workers", "0"))
    assert list(report.index) == [f"{path}#{row}" for row in range(6)]
    assert list(report["error_code"].fillna("")) == ["", "", "corrupt", "corrupt", "", ""]
    assert "row group 1 of the Parquet file cannot be read" in report["error"].iloc[2]


def test_a_parquet_file_damaged_after_a_batch_keeps_the_rows_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(iqa_cli.audit.containers, "PARQUET_BATCH_ROWS", 1)  # the damage found after row 2 is read
    path = _damaged_row_group(tmp_path / "damaged.parquet", 2)
    seen = list(members(str(path)))
    assert [m.path.rsplit("#", 1)[1] for m in seen] == [str(row) for row in range(6)]
    assert [m.problem is None for m in seen] == [True] * 4 + [False] * 2


def test_a_parquet_file_cut_short_is_one_container_error_row(tmp_path: Path) -> None:
    whole = _parquet(tmp_path / "part.parquet").read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(whole[: len(whole) // 2])  # the footer, which says where the rows are, is gone
    report = _audit(tmp_path / "out", cut, _parquet(tmp_path / "fine.parquet"))
    assert list(report.index) == [str(cut), *(f"{tmp_path / 'fine.parquet'}#{row}" for row in range(4))]
    assert report.loc[str(cut), "error_code"] == "unreadable_container"
    assert "not a readable Parquet file" in report.loc[str(cut), "error"]


def test_a_shard_with_a_damaged_header_keeps_the_members_before_it(tmp_path: Path) -> None:
    shard = _shard(tmp_path / "00000.tar")
    with tarfile.open(shard) as archive:
        third = next(info for info in archive if info.name == "00000/000000002.jpg")
    data = bytearray(shard.read_bytes())
    data[third.offset : third.offset + 100] = b"\x07" * 100  # the header's name and checksum: not a header now
    shard.write_bytes(bytes(data))
    report = _audit(tmp_path / "out", shard, extra=("--workers", "0"))
    assert list(report.index) == [f"{shard}#00000/000000000.jpg", f"{shard}#00000/000000001.png", str(shard)]
    assert list(report["error_code"].fillna("")) == ["", "", "truncated"]
    assert "damaged after its last member (a member header that is not one)" in report.loc[str(shard), "error"]
