"""Reading a finished report folder back: rows, filters, and the summary, without running anything.

A report file that cannot be read (cut short, overwritten, edited into another shape) is `ReportUnreadable`:
one line naming the file and saying to run the audit again, never a traceback.
"""

from __future__ import annotations

import csv as _csv
import difflib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from iqa_cli.categories import CATEGORIES
from iqa_cli.errors import IqaError, UsageError, first_line
from iqa_cli.report.dataset import DATASET_DIR, dataset_files, dataset_rows
from iqa_cli.report.schema import COLUMN_NAMES, SCHEMA, VERDICTS, ReportRow, file_name, path_columns
from iqa_cli.report.summary import Summary, SummaryBuilder
from iqa_cli.report.writers import LIST_SEPARATOR, CsvWriter, JsonlWriter, ParquetWriter, csv_text


class ReportUnreadable(IqaError):
    """A report file in the folder is damaged or is not a report iqa wrote."""


class _Damaged(Exception):
    """Internal: what is wrong with the file being read, as the error line says it."""


@dataclass(frozen=True)
class RowFilter:
    """Which rows to keep; every given condition must hold (an empty filter keeps all)."""

    verdicts: Sequence[str] = ()
    needs_review: bool = False
    distortions: Sequence[str] = ()
    errors: bool = False

    def keeps(self, row: ReportRow) -> bool:
        if self.errors and row["status"] != "error":
            return False
        if self.verdicts and row.get("verdict") not in self.verdicts:
            return False
        if self.needs_review and not row.get("needs_review"):
            return False
        wanted = {d.lower() for d in self.distortions}
        return not wanted or bool(wanted & {d.lower() for d in row.get("distortions") or []})

    def described(self) -> str:
        """The filter as the report header says it: "verdict=bad, needs review", or "" for none."""
        parts = [f"verdict={'|'.join(self.verdicts)}"] if self.verdicts else []
        parts += [f"distortion={'|'.join(self.distortions)}"] if self.distortions else []
        parts += ["needs review"] if self.needs_review else []
        parts += ["errors"] if self.errors else []
        return ", ".join(parts)


def _did_you_mean(value: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(value.lower(), choices, n=2, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def checked_filter(keep: RowFilter) -> RowFilter:
    """`keep` with its values checked before any report is read (UsageError, exit 2, naming the closest choice):
    verdicts must be ok, degraded or bad; distortions DQ-495K names ("blur", "overly high brightness") or their
    category keys ("brighten"), which become the names. Another distortion name passes here and must then be
    in the report (`unmatched_distortions`): an engine from a plugin may use its own names."""
    verdicts = []
    for verdict in keep.verdicts:
        if verdict.lower() not in VERDICTS:
            raise UsageError(
                f"unknown verdict {verdict!r} for --verdict{_did_you_mean(verdict, VERDICTS)} "
                f"(choose from {', '.join(VERDICTS)})"
            )
        verdicts.append(verdict.lower())
    names = [CATEGORIES.get(d.lower(), d.lower()) for d in keep.distortions]
    return replace(keep, verdicts=tuple(dict.fromkeys(verdicts)), distortions=tuple(dict.fromkeys(names)))


def unmatched_distortions(keep: RowFilter, seen: set[str]) -> UsageError | None:
    """The error for a --distortion that is neither a DQ-495K name nor in the report (`seen`: its distortion names,
    lower case), or None."""
    known = set(CATEGORIES.values())
    unknown = [d for d in keep.distortions if d not in known and d not in seen]
    if not unknown:
        return None
    choices = sorted(known | seen)
    hint = _did_you_mean(unknown[0], list(dict.fromkeys([*choices, *CATEGORIES])))
    return UsageError(
        f"unknown distortion {unknown[0]!r} for --distortion{hint} (DQ-495K names, or their keys such as brighten: "
        f"{', '.join(choices)})"
    )


def read_rows(out_dir: Path) -> Iterator[ReportRow]:
    """The rows of the report in `out_dir`: Parquet when there, else JSONL, else CSV (lists re-split).

    Rows come as the audit made them: `path` readable text and `path_bytes` the exact bytes of a name that
    is not UTF-8, whichever format they are read from. A damaged file raises `ReportUnreadable`."""
    found = [out_dir / f"report{w.suffix}" for w in (ParquetWriter, JsonlWriter, CsvWriter)]
    present = [path for path in found if path.exists()]
    if not present:
        dataset = out_dir / DATASET_DIR if (out_dir / DATASET_DIR).is_dir() else out_dir
        if dataset_files(dataset):
            yield from _dataset_rows(dataset)
            return
        raise UsageError(
            f"no report in {out_dir}: expected report.parquet, report.jsonl, report.csv or a {DATASET_DIR} folder "
            "(iqa audit --ray) there"
        )
    path = present[0]
    read = _READERS[path.suffix]
    try:
        if path.is_file() and path.stat().st_size == 0:
            raise _Damaged("it is empty")
        yield from read(path)
    except _Damaged as exc:
        others = f", or remove it to read {present[1].name}" if len(present) > 1 else ""
        raise ReportUnreadable(
            f"{path.name} in {out_dir} cannot be read ({exc}); rerun iqa audit with --out {out_dir} to write it "
            f"again{others}"
        ) from None


def _dataset_rows(folder: Path) -> Iterator[ReportRow]:
    """The rows of a Ray run's dataset folder (each path's newest), checked as a report's rows."""
    try:
        for number, row in enumerate(dataset_rows(folder), 1):
            yield _checked(row, f"row {number}")
    except (pa.ArrowException, OSError, _Damaged) as exc:
        raise ReportUnreadable(
            f"the dataset {folder} cannot be read ({_reason(exc)}); move the damaged file out of it and run "
            "iqa audit --ray again: the images it held are assessed again"
        ) from None


_TYPES = {field.name: field.type for field in SCHEMA}


def _reason(exc: Exception) -> str:
    """A library's complaint in a few words: its first sentence ("Parquet magic bytes not found in footer")."""
    return first_line(exc, 160).split(". ", 1)[0].rstrip(".")


def _kind(dtype: pa.DataType) -> str:
    """What a column holds, as far as reading it back goes: a Parquet rewritten by another tool may widen an
    integer column to floats (pandas does, for one with nulls), which is still a number."""
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "text"
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return "bytes"
    if pa.types.is_boolean(dtype):
        return "bool"
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype):
        return "number"
    if pa.types.is_timestamp(dtype):
        return "time"
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return f"list of {_kind(dtype.value_type)}"
    return str(dtype)


def _said(kind: str) -> str:
    """A kind of `_kind` as a message says it."""
    if kind.startswith("list of "):
        return "a list of " + {"number": "numbers"}.get(kind[8:], kind[8:])
    return {"number": "a number", "bool": "true or false", "time": "a timestamp"}.get(kind, kind)


def _checked(row: dict[str, Any], where: str) -> ReportRow:
    """`row` if it has what every report row has (a path and a status), else `_Damaged`."""
    if not isinstance(row.get("path"), str) or not row["path"]:
        raise _Damaged(f"{where} has no path")
    if not isinstance(row.get("status"), str):
        raise _Damaged(f"{where} has no status")
    return row  # type: ignore[return-value]


def _parquet_rows(path: Path) -> Iterator[ReportRow]:
    # Opened here, so that a file the system refuses (no permission) says so as itself, not as damage.
    with path.open("rb") as handle:
        try:
            report = pq.ParquetFile(handle)
            columns = {field.name: field.type for field in report.schema_arrow}
            for name in ("path", "status"):
                if name not in columns:
                    raise _Damaged(f"it has no {name} column")
            for name, dtype in columns.items():
                if name in _TYPES and _kind(dtype) != _kind(_TYPES[name]):
                    raise _Damaged(f"its {name} column holds {_said(_kind(dtype))}, not {_said(_kind(_TYPES[name]))}")
            number = 0
            for batch in report.iter_batches(batch_size=4096):
                for row in batch.to_pylist():
                    number += 1
                    yield _checked(row, f"row {number}")
        except (pa.ArrowException, OSError, ValueError) as exc:  # a cut or overwritten file, a corrupt page
            raise _Damaged(_reason(exc)) from None


# What a JSON value of each kind of column may be (timestamps are ISO 8601 text, bytes hex).
_JSON_TYPES: dict[str, tuple[type, ...]] = {"text": (str,), "time": (str,), "bytes": (str,), "number": (int, float)}


def _json_fits(value: Any, kind: str) -> bool:
    if value is None:
        return True
    if kind.startswith("list of "):
        return isinstance(value, list) and all(item is not None and _json_fits(item, kind[8:]) for item in value)
    if kind == "bool":
        return isinstance(value, bool)
    allowed = _JSON_TYPES.get(kind)
    return allowed is None or (isinstance(value, allowed) and not isinstance(value, bool))


def _jsonl_rows(path: Path) -> Iterator[ReportRow]:
    with path.open(encoding="utf-8") as lines:
        try:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise _Damaged(f"line {number} is not JSON: {exc.msg} (column {exc.colno})") from None
                if not isinstance(record, dict):
                    raise _Damaged(f"line {number} is not a JSON object")
                yield _checked(_from_json(record, f"line {number}"), f"line {number}")
        except UnicodeDecodeError as exc:
            raise _Damaged(f"it is not UTF-8 text: {exc.reason}") from None


def _from_json(record: dict[str, Any], where: str) -> dict[str, Any]:
    """A JSONL record as a row: its types checked, `path_bytes` from hex, `path` readable text."""
    for name, value in record.items():
        if name in _TYPES and not _json_fits(value, _kind(_TYPES[name])):
            raise _Damaged(f"{where}: {name} is not {_said(_kind(_TYPES[name]))}")
    exact = record.get("path_bytes")
    if exact is not None:
        try:
            record["path_bytes"] = bytes.fromhex(exact)
        except ValueError:
            raise _Damaged(f"{where}: path_bytes is not hex") from None
        record["path"] = path_columns(file_name(record))["path"]
    elif isinstance(record.get("path"), str):
        record.update(path_columns(record["path"]))  # JSONL's path is the exact name: surrogates for odd bytes
    return record


def _csv_rows(path: Path) -> Iterator[ReportRow]:
    # utf-8-sig: a spreadsheet that saves "CSV UTF-8" puts a byte-order mark before the header.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        try:
            reader = _csv.DictReader(handle)
            header = reader.fieldnames
            if not header:
                raise _Damaged("it has no header line")
            for name in ("path", "status"):
                if name not in header:
                    raise _Damaged(f"its header has no {name} column")
            for record in reader:
                where = f"line {reader.line_num}"
                if None in record or None in record.values():
                    raise _Damaged(f"{where} does not have the {len(header)} fields of the header")
                yield _checked({name: _from_text(name, value, where) for name, value in record.items()}, where)
        except UnicodeDecodeError as exc:
            raise _Damaged(f"it is not UTF-8 text: {exc.reason}") from None
        except _csv.Error as exc:
            raise _Damaged(_reason(exc)) from None


def _from_text(name: str, value: str, where: str = "a cell") -> Any:
    """A CSV cell back as the schema's type (timestamps stay ISO 8601 text, bytes come from hex)."""
    value = csv_text(value)
    kind = _TYPES.get(name)
    if kind is None or pa.types.is_string(kind) or pa.types.is_timestamp(kind):
        return value if value != "" else None
    try:
        if pa.types.is_binary(kind):
            return bytes.fromhex(value) if value else None
        if pa.types.is_list(kind):
            items = value.split(LIST_SEPARATOR) if value else []
            return [int(i) for i in items] if pa.types.is_integer(kind.value_type) else items
        if value == "":
            return None
        if pa.types.is_boolean(kind):
            return _BOOLEANS[value.lower()]
        return int(value) if pa.types.is_integer(kind) else float(value)
    except (ValueError, KeyError):
        raise _Damaged(f"{where}: {name} {value[:40]!r} is not {_said(_kind(kind))}") from None


# As this CSV writer writes them, and as a spreadsheet that saved the file may have.
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}

_READERS: dict[str, Callable[[Path], Iterator[ReportRow]]] = {
    ParquetWriter.suffix: _parquet_rows,
    JsonlWriter.suffix: _jsonl_rows,
    CsvWriter.suffix: _csv_rows,
}


@dataclass
class Selection:
    """The rows of a report that a filter keeps: their summary and file names, and what the whole report held."""

    summary: Summary
    paths: list[str]  # in report order, as Python holds them (see `select`)
    rows: int = 0  # rows (files) in the report, kept or not
    distortions: set[str] = field(default_factory=set)  # every distortion name the report uses, lower case


def select(rows: Iterator[ReportRow], keep: RowFilter) -> Selection:
    """The summary of the kept rows, and their file names in report order (as Python holds them: the exact
    bytes of a name that is not UTF-8 are lone surrogates, which os.fsencode turns back into those bytes)."""
    builder: SummaryBuilder | None = None
    paths: list[str] = []
    total = 0
    seen: set[str] = set()
    for row in rows:
        total += 1
        seen.update(d.lower() for d in row.get("distortions") or [])
        if not keep.keeps(row):
            continue
        if builder is None:
            builder = SummaryBuilder(row.get("engine") or "", row.get("engine_version") or "", "from a saved report")
        builder.add({name: row.get(name) for name in COLUMN_NAMES})
        paths.append(file_name(row))
    if builder is None:
        builder = SummaryBuilder("", "", "no rows match")
    return Selection(builder.finish(0.0), paths, total, seen)


def summarise(rows: Iterator[ReportRow], keep: RowFilter) -> tuple[Summary, list[str]]:
    """`select`'s summary and file names."""
    chosen = select(rows, keep)
    return chosen.summary, chosen.paths
