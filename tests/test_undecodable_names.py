"""File names that are not UTF-8: every writer writes them, each format gives their exact bytes back, a check
that quotes them in a finding breaks nothing, a second run replays them, and `iqa report --export` gives the
very bytes (for `xargs -0 rm`)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from iqa_cli import plugins
from iqa_cli.audit.run import AuditSettings, audit_folder
from iqa_cli.cli.app import app
from iqa_cli.cli.options import engine_from
from iqa_cli.images import FileFacts
from iqa_cli.report.reread import RowFilter, read_rows, summarise
from iqa_cli.report.schema import COLUMN_NAMES, error_row, file_name, path_columns, safe_text
from iqa_cli.report.writers import BUILTIN_WRITERS, CsvWriter, JsonlWriter, ParquetWriter
from iqa_cli.testing.engines import SameSizeCheck
from iqa_cli.testing.photos import load_photo
from iqa_cli.testing.rows import ok_row

PHOTO = b"photo\xff.png"  # a photo whose name is not UTF-8
TWIN = b"twin.png"  # the same bytes under a UTF-8 name: the store keeps one row for both
COPY = b"zcopy.jpg"  # a smaller JPEG of the photo: a near copy, not the same bytes
BROKEN = b"broken\xfe.jpg"  # not an image: an error row


def _name(folder: Path, raw: bytes) -> bytes:
    return os.fsencode(folder) + b"/" + raw


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("undecodable")
    image = Image.fromarray(load_photo("astronaut"))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    for raw in (PHOTO, TWIN):
        with open(_name(root, raw), "wb") as file:
            file.write(buffer.getvalue())
    with open(_name(root, COPY), "wb") as file:
        image.resize((256, 256)).save(file, "JPEG", quality=80)
    with open(_name(root, BROKEN), "wb") as file:
        file.write(b"\xff\xd8 not a jpeg at all")
    an_hour_ago = time.time() - 3600  # older than the store's racy window, so a second run trusts their stat
    for raw in (PHOTO, TWIN, COPY, BROKEN):
        os.utime(_name(root, raw), (an_hour_ago, an_hour_ago))
    return root


def _invoke(*args: str) -> tuple[int, bytes, str]:
    """(exit code, stdout as bytes, stderr) of `iqa ARGS...`: the exported names are bytes, not text."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.stdout_bytes, result.stderr


def _by_name(names: list[bytes]) -> dict[bytes, int]:
    return {os.path.basename(name): i for i, name in enumerate(names)}


def _replayed(before: Path, after: Path) -> bool:
    """Whether the second run replayed the near copy: a replayed row keeps the time of the run that assessed
    it (the photo and its twin share one stored row, so their times are the later one's)."""
    times = [
        {
            r["path"]: r["elapsed_ms"]
            for r in pq.read_table(out / "report.parquet", columns=["path", "elapsed_ms"]).to_pylist()
        }
        for out in (before, after)
    ]
    copy = next(path for path in times[0] if path.endswith("zcopy.jpg"))
    return times[0][copy] == times[1][copy]


def _check_reports(out: Path, photos: Path) -> None:
    """All three reports of an audit of `photos`: exact bytes in each, readable text, the finding written."""
    exact = {raw: _name(photos, raw) for raw in (PHOTO, TWIN, COPY, BROKEN)}
    shown = {raw: safe_text(os.fsdecode(name)) for raw, name in exact.items()}

    table = pq.read_table(out / "report.parquet")
    assert table.schema.field("path_bytes").type == pa.binary()
    rows = table.to_pylist()
    names = [row["path_bytes"] or row["path"].encode() for row in rows]
    assert sorted(names) == sorted(exact.values())
    row = {raw: rows[i] for raw, i in _by_name(names).items()}
    assert row[PHOTO]["path"] == shown[PHOTO] and row[PHOTO]["path"].endswith("photo\\xff.png")
    assert row[PHOTO]["path_bytes"] == exact[PHOTO] and row[BROKEN]["path_bytes"] == exact[BROKEN]
    assert row[TWIN]["path_bytes"] is None and row[COPY]["path_bytes"] is None  # valid UTF-8: the path says it
    assert row[BROKEN]["status"] == "error"
    assert row[TWIN]["duplicate_of"] == shown[PHOTO]

    with (out / "report.jsonl").open(encoding="utf-8") as lines:  # strict UTF-8: the file is valid
        records = [json.loads(line) for line in lines]
    assert "\\udcff" in (out / "report.jsonl").read_text(encoding="utf-8")
    assert [os.fsencode(r["path"]) for r in records] == names  # the exact name, as surrogate escapes
    assert [r["path_bytes"] for r in records] == [r["path_bytes"] and r["path_bytes"].hex() for r in rows]

    with (out / "report.csv").open(encoding="utf-8", newline="") as handle:
        cells = list(csv.DictReader(handle))
    assert [c["path"] for c in cells] == [r["path"] for r in rows]
    assert [bytes.fromhex(c["path_bytes"]) if c["path_bytes"] else None for c in cells] == [
        r["path_bytes"] for r in rows
    ]
    # A check's finding quotes the photo's name: written as readable text in every format.
    quoted = "photo\\xff.png"
    assert any(quoted in finding for r in rows for finding in r["findings"])
    assert any(quoted in c["findings"] for c in cells)
    assert any(quoted in finding for r in records for finding in r["findings"])


def _audit_with_the_test_check(photos: Path, out: Path) -> None:
    """The library's audit with the test check, which names the first image of each size: no plugin needed."""
    summary = audit_folder(
        AuditSettings(paths=[str(photos)], workers=0),
        lambda: engine_from("signal", None, None, None, None),
        out,
        BUILTIN_WRITERS,
        checks=[SameSizeCheck()],
    )
    assert summary.files == 4 and summary.errors == 1


@pytest.fixture(scope="module")
def reports(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reports")
    _audit_with_the_test_check(photos, out)
    return out


def test_a_check_quoting_the_name_breaks_no_writer(reports: Path, photos: Path, tmp_path: Path) -> None:
    _check_reports(reports, photos)
    rows = {os.path.basename(file_name(r)): r for r in read_rows(reports)}
    assert rows[os.fsdecode(TWIN)]["findings"] == [f"same-size/repeat: same size as {rows[os.fsdecode(PHOTO)]['path']}"]

    again = tmp_path / "again"
    shutil.copytree(reports, again)
    _audit_with_the_test_check(photos, again)  # replays every file from the store
    _check_reports(again, photos)
    assert _replayed(reports, again)
    # Not findings: the store keeps one row per content, and this check's finding differs between the twins.
    same = ["path", "path_bytes", "status", "error", "duplicate_of", "content_hash"]
    assert pq.read_table(again / "report.parquet", columns=same) == pq.read_table(
        reports / "report.parquet", columns=same
    )


def _invoke_audit(photos: Path, out: Path, *options: str) -> None:
    code, _, err = _invoke(
        "audit", str(photos), "--out", str(out), "--engine", "signal", "--workers", "0", "--quiet",
        "--format", "parquet,csv,jsonl", *options,
    )  # fmt: skip
    assert code == 0, err


@pytest.fixture(scope="module")
def audited(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`iqa audit` of the folder with the near-duplicate check (iqa-dupes): it quotes the photo's name."""
    plugins.plugin_manager.cache_clear()
    if "near-duplicate" not in plugins.checks():
        pytest.skip("needs the iqa-dupes plugin: pip install -e plugins/iqa-dupes")
    out = tmp_path_factory.mktemp("out")
    _invoke_audit(photos, out, "--checks", "near-duplicate")
    return out


def test_audit_with_a_near_copy_of_an_undecodable_name_writes_every_report(audited: Path, photos: Path) -> None:
    _check_reports(audited, photos)
    copy = next(r for r in pq.read_table(audited / "report.parquet").to_pylist() if r["path"].endswith("zcopy.jpg"))
    [finding] = copy["findings"]
    assert finding.startswith(f"near-duplicate/near_copy: looks like {safe_text(os.fsdecode(_name(photos, PHOTO)))}")


def test_a_second_run_replays_the_exact_names(audited: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    shutil.copytree(audited, out)
    before = pq.read_table(out / "report.parquet").to_pylist()
    _invoke_audit(photos, out, "--checks", "near-duplicate")
    _check_reports(out, photos)
    assert _replayed(audited, out)
    after = pq.read_table(out / "report.parquet").to_pylist()
    keep = ("path", "path_bytes", "findings", "duplicate_of", "status", "error")
    assert [{k: r[k] for k in keep} for r in after] == [{k: r[k] for k in keep} for r in before]


@pytest.mark.parametrize("kept", ["report.parquet", "report.jsonl", "report.csv"])
def test_report_exports_the_exact_bytes_from_each_format(
    reports: Path, photos: Path, tmp_path: Path, kept: str
) -> None:
    out = tmp_path / "one"
    out.mkdir()
    shutil.copy(reports / kept, out / kept)

    code, stdout, err = _invoke("report", str(out), "--errors", "--export", "-", "--export0")
    assert code == 0, err
    assert stdout == _name(photos, BROKEN) + b"\0"

    code, stdout, err = _invoke("report", str(out), "--export", "-")
    assert code == 0, err
    assert sorted(stdout.splitlines()) == sorted(_name(photos, raw) for raw in (PHOTO, TWIN, COPY, BROKEN))

    code, _, err = _invoke("report", str(out), "--export", str(tmp_path / "list"), "-0")
    assert code == 0, err
    assert sorted((tmp_path / "list").read_bytes().split(b"\0")[:-1]) == sorted(stdout.splitlines())

    rows = list(read_rows(out))
    assert [row["path_bytes"] for row in rows if row["path"].endswith("photo\\xff.png")] == [_name(photos, PHOTO)]


# --- the writers on their own ------------------------------------------------------------------------------

ODD = os.fsdecode(b"/photos/caf\xe9 \xff.jpg")  # Latin-1 bytes: not UTF-8


def _odd_row() -> dict:
    """A row with lone surrogates in every kind of text cell, as plugins and messages may hand a writer."""
    row = dict(ok_row(ODD, notes=[f"note about {ODD}"]))
    row.update(findings=[f"check/code: like {ODD}", "other/\ud800: not even a file system's"], detail=ODD)
    row["error"] = f"quoted {ODD}"  # the row builders make it safe; a plugin's row may not be
    return row


@pytest.mark.parametrize("writer", BUILTIN_WRITERS, ids=lambda w: w.format)
def test_every_writer_writes_lone_surrogates_in_any_text(writer: type, tmp_path: Path) -> None:
    w = writer(tmp_path)
    w.write([_odd_row(), ok_row("/photos/plain.png")])
    path = w.close()
    text_formats = (CsvWriter, JsonlWriter)
    if writer in text_formats:
        path.read_bytes().decode("utf-8")  # valid UTF-8 throughout
    rows = list(read_rows(tmp_path))
    shown = "/photos/caf\\xe9 \\xff.jpg"
    assert [row["path_bytes"] for row in rows] == [os.fsencode(ODD), None]
    assert rows[0]["path"] == shown and file_name(rows[0]) == ODD
    if writer is JsonlWriter:  # exact: Python reads the escapes back as the surrogates they were
        assert rows[0]["findings"] == [f"check/code: like {ODD}", "other/\ud800: not even a file system's"]
        assert rows[0]["error"] == f"quoted {ODD}"
    else:
        assert rows[0]["findings"] == [f"check/code: like {shown}", "other/\\ud800: not even a file system's"]
        assert rows[0]["notes"] == [f"note about {shown}"]


@pytest.mark.parametrize("writer", BUILTIN_WRITERS, ids=lambda w: w.format)
def test_writers_of_other_tables_write_lone_surrogates(writer: type, tmp_path: Path) -> None:
    schema = pa.schema([("path", pa.string()), ("labels", pa.list_(pa.string())), ("rank", pa.int32())])
    w = writer(tmp_path, "ranking", schema=schema)
    w.write([{"path": ODD, "labels": [ODD], "rank": 1}])
    path = w.close()
    if writer is ParquetWriter:
        assert pq.read_table(path).to_pylist() == [{"path": safe_text(ODD), "labels": [safe_text(ODD)], "rank": 1}]
    else:
        text = path.read_bytes().decode("utf-8")
        assert (safe_text(ODD) if writer is CsvWriter else "\\udcff") in text


def test_the_row_builders_keep_text_writable_and_the_bytes_exact() -> None:
    row = error_row(FileFacts(path=ODD), "not_an_image", f"cannot open {ODD}")
    assert list(row) == COLUMN_NAMES
    assert row["path"] == safe_text(ODD) and row["path_bytes"] == os.fsencode(ODD)
    assert row["error"] == "cannot open /photos/caf\\xe9 \\xff.jpg"
    assert path_columns("/photos/café.jpg") == {"path": "/photos/café.jpg", "path_bytes": None}
    assert safe_text("a\ud800b") == "a\\ud800b"  # never an encoding error, whatever the surrogate


def test_summarise_gives_the_exact_names(tmp_path: Path) -> None:
    w = ParquetWriter(tmp_path)
    w.write([ok_row(ODD), ok_row("/photos/new\nline.png")])
    w.close()
    _, paths = summarise(read_rows(tmp_path), RowFilter())
    assert paths == [ODD, "/photos/new\nline.png"]
