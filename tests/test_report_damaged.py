"""`iqa report` over a damaged report file: one line on stderr naming the file and what to do, exit code 1,
nothing exported; never a traceback."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from iqa_cli.cli.app import app
from iqa_cli.errors import EXIT_FAILURE
from iqa_cli.report.reread import read_rows
from iqa_cli.report.writers import BUILTIN_WRITERS
from iqa_cli.testing.rows import ok_row

ROWS = 3000  # more than one Parquet row group and read batch


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete report folder in all three formats."""
    out = tmp_path_factory.mktemp("good")
    rows = [ok_row(f"/photos/{i}.png", verdict="bad", distortions=["blur", "noise"]) for i in range(ROWS)]
    for writer_class in BUILTIN_WRITERS:
        writer = writer_class(out)
        writer.write(rows)
        writer.close()
    return out


def _report(out: Path, *args: str) -> tuple[int, str, str]:
    # Wide, so that the one line is not wrapped by the console.
    result = CliRunner().invoke(app, ["report", str(out), *args], env={"COLUMNS": "1000"})
    return result.exit_code, result.stdout, result.stderr


def _damaged(good: Path, tmp_path: Path, name: str, damage: Callable[[bytes], bytes]) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_bytes(damage((good / name).read_bytes()))
    return out


def _assert_one_line(out: Path, name: str, *, says: str) -> None:
    code, stdout, stderr = _report(out, "--export", str(out / "list.txt"))
    assert code == EXIT_FAILURE, stderr
    [line] = stderr.strip().splitlines()
    assert line.startswith(f"error: {name} in {out} cannot be read (")
    assert says in line, line
    assert line.endswith(f"rerun iqa audit with --out {out} to write it again")
    assert "Traceback" not in stderr and stdout == ""
    assert not (out / "list.txt").exists()  # nothing exported from a report read halfway


def _cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _garbage(data: bytes) -> bytes:
    return bytes((i * 131 + 7) % 256 for i in range(len(data)))


def _empty(data: bytes) -> bytes:
    return b""


def _flipped_middle(data: bytes) -> bytes:  # the footer intact, a page's compressed bytes not
    third = len(data) // 3
    return data[:third] + bytes(b ^ 0x55 for b in data[third : third + 500]) + data[third + 500 :]


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (_cut, "Parquet magic bytes not found in footer"),
        (_garbage, "Parquet magic bytes not found in footer"),
        (_empty, "it is empty"),
        (_flipped_middle, ""),  # whatever the decoder says about the page
    ],
    ids=["truncated", "garbage", "empty", "corrupt page"],
)
def test_damaged_parquet(good: Path, tmp_path: Path, damage: Callable[[bytes], bytes], says: str) -> None:
    _assert_one_line(_damaged(good, tmp_path, "report.parquet", damage), "report.parquet", says=says)


def test_a_parquet_of_another_table(tmp_path: Path) -> None:
    pq.write_table(pa.table({"name": ["a.png"], "score": [0.5]}), tmp_path / "report.parquet")
    _assert_one_line(tmp_path, "report.parquet", says="it has no path column")


def test_a_parquet_with_a_column_of_another_kind(good: Path, tmp_path: Path) -> None:
    table = pq.read_table(good / "report.parquet")
    index = table.schema.get_field_index("score")
    table = table.set_column(index, "score", pa.array(["high"] * len(table)))
    pq.write_table(table, tmp_path / "report.parquet")
    _assert_one_line(tmp_path, "report.parquet", says="its score column holds text, not a number")


def _cut_in(row: int) -> Callable[[bytes], bytes]:
    """The file cut short in the middle of the row of /photos/ROW.png (just after its path)."""

    def damage(data: bytes) -> bytes:
        return data[: data.index(f"/photos/{row}.png".encode()) + 20]

    return damage


def _csv_line(number: int, edit: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """Line NUMBER (1: the header) edited."""

    def damage(data: bytes) -> bytes:
        lines = data.split(b"\r\n")
        lines[number - 1] = edit(lines[number - 1])
        return b"\r\n".join(lines)

    return damage


LATIN_1 = "/photos/café.png".encode("latin-1")


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda data: b"name,size,colour\r\na.png,1,red\r\n", "its header has no path column"),
        (_csv_line(1, lambda line: line.replace(b"status", b"state")), "its header has no status column"),
        (_csv_line(9, lambda line: LATIN_1 + line[13:]), "it is not UTF-8 text"),
        (_csv_line(9, lambda line: line + b",extra"), "line 9 does not have the"),
        (_csv_line(10, lambda line: b"/photos/9.png,,ok"), "line 10 does not have the"),
        (_csv_line(6, lambda line: line.replace(b",0.9,", b",very,")), "line 6: score 'very' is not a number"),
        (_csv_line(7, lambda line: line.replace(b"/photos/5.png", b"")), "line 7 has no path"),
        (_cut_in(1500), "line 1502 does not have the"),
        (_empty, "it is empty"),
    ],
    ids=["other columns", "no status", "latin-1", "extra field", "missing fields", "not a number", "no path",
         "truncated", "empty"],
)  # fmt: skip
def test_damaged_csv(good: Path, tmp_path: Path, damage: Callable[[bytes], bytes], says: str) -> None:
    _assert_one_line(_damaged(good, tmp_path, "report.csv", damage), "report.csv", says=says)


def _jsonl_line(number: int, edit: Callable[[dict], object]) -> Callable[[bytes], bytes]:
    def damage(data: bytes) -> bytes:
        lines = data.split(b"\n")
        lines[number - 1] = json.dumps(edit(json.loads(lines[number - 1]))).encode()
        return b"\n".join(lines)

    return damage


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (_cut_in(1500), "line 1501 is not JSON"),
        (lambda data: data.replace(b'"status": "ok"', b'"status": "ok', 1), "line 1 is not JSON"),
        (_jsonl_line(3, lambda row: [row]), "line 3 is not a JSON object"),
        (_jsonl_line(4, lambda row: {**row, "score": "high"}), "line 4: score is not a number"),
        (_jsonl_line(5, lambda row: {**row, "distortions": [1, 2]}), "line 5: distortions is not a list of text"),
        (_jsonl_line(6, lambda row: {k: v for k, v in row.items() if k != "path"}), "line 6 has no path"),
        (_jsonl_line(7, lambda row: {**row, "path_bytes": "zz"}), "line 7: path_bytes is not hex"),
        (_empty, "it is empty"),
        (lambda data: data.replace(b"/photos/8.png", LATIN_1, 1), "it is not UTF-8 text"),
    ],
    ids=["truncated", "broken line", "not an object", "wrong type", "wrong items", "no path", "bad hex", "empty",
         "latin-1"],
)  # fmt: skip
def test_damaged_jsonl(good: Path, tmp_path: Path, damage: Callable[[bytes], bytes], says: str) -> None:
    _assert_one_line(_damaged(good, tmp_path, "report.jsonl", damage), "report.jsonl", says=says)


def test_the_line_names_another_format_that_is_there(good: Path, tmp_path: Path) -> None:
    out = _damaged(good, tmp_path, "report.parquet", _cut)
    (out / "report.csv").write_bytes((good / "report.csv").read_bytes())
    code, _, stderr = _report(out)
    assert code == EXIT_FAILURE
    assert stderr.strip().endswith("to write it again, or remove it to read report.csv")


def test_a_report_the_system_refuses_says_so(good: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    out = _damaged(good, tmp_path, "report.parquet", lambda data: data)
    (out / "report.parquet").chmod(0)
    code, _, stderr = _report(out)
    assert code == EXIT_FAILURE and "Permission denied" in stderr and "cannot be read (" not in stderr


@pytest.mark.parametrize("name", ["report.parquet", "report.jsonl", "report.csv"])
def test_the_good_reports_still_read(good: Path, tmp_path: Path, name: str) -> None:
    out = _damaged(good, tmp_path, name, lambda data: data)
    code, stdout, stderr = _report(out, "--json")
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["files"] == ROWS and summary["verdicts"]["bad"] == ROWS
    assert summary["distortions"] == {"blur": ROWS, "noise": ROWS}


def test_a_spreadsheets_csv_reads(good: Path, tmp_path: Path) -> None:
    """Saved again by a spreadsheet: a byte-order mark first, and TRUE/FALSE for booleans."""
    data = (good / "report.csv").read_bytes().replace(b",False,", b",FALSE,")
    (tmp_path / "report.csv").write_bytes(b"\xef\xbb\xbf" + data)
    rows = list(read_rows(tmp_path))
    assert len(rows) == ROWS and rows[0]["path"] == "/photos/0.png" and rows[0]["needs_review"] is False
