"""The writer interface and the built-in Parquet, CSV and JSONL writers; each file appears only when complete.

Every string cell is written whatever it holds: a lone surrogate (the bytes of a file name that is not UTF-8,
as Python decodes them, quoted in a message, say), which UTF-8 cannot encode, becomes `\\xNN` text in Parquet
and CSV (`schema.safe_text`) and a `\\udcNN` escape in JSONL, which Python reads back exactly. Only a cell
that holds one pays for it: the text files' encoders call their error handler, Parquet retries the batch.
A name's exact bytes are the `path_bytes` column: binary in Parquet, hex in CSV and JSONL; JSONL's `path`
holds them too.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import json
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq

from iqa_cli.report.schema import SCHEMA, safe_text, writable_cell

LIST_SEPARATOR = "; "


class ReportWriter(ABC):
    """Receives rows as they finish and leaves one complete file at `path` on close.

    Rows go to a temporary file beside the target, renamed into place by `close`, so a reader never sees a
    half-written file and an earlier report stays until the new one is closed. The audit closes its writers
    however the run ends, so an interrupted or failed run leaves the rows it finished.

    `schema` is the table's columns: the audit report's by default; `iqa rank` writes its pairs, ranking and
    methods tables through the same writers.
    """

    format: ClassVar[str]
    suffix: ClassVar[str]
    writes_any_schema: ClassVar[bool] = False  # True: any `schema` works, not only the audit report's

    def __init__(self, out_dir: Path, stem: str = "report", *, schema: pa.Schema = SCHEMA) -> None:
        self.schema = schema
        self.path = out_dir / f"{stem}{self.suffix}"
        self._tmp = out_dir / f".{stem}{self.suffix}.{os.getpid()}.tmp"
        self.rows_written = 0

    @abstractmethod
    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append rows (dicts keyed by schema column)."""

    @abstractmethod
    def _finish(self) -> None:
        """Flush and close the temporary file."""

    def close(self) -> Path:
        """Finish the file and move it into place; returns its path."""
        self.finish()
        return self.commit()

    def finish(self) -> None:
        """Complete the temporary file. If that fails (a full disk) the temporary file is removed, the previous
        report stays, and the error is raised."""
        try:
            self._finish()
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            raise

    def commit(self) -> Path:
        """Move the finished temporary file into place (an atomic rename); returns the report's path."""
        os.replace(self._tmp, self.path)
        return self.path

    def abandon(self) -> None:
        """Drop what was written: the temporary file goes and the previous report stays as it was."""
        with contextlib.suppress(Exception):
            self._finish()
        with contextlib.suppress(OSError):
            os.unlink(self._tmp)


def create_temporary(path: Path) -> int:
    """A new file at `path`, opened for writing without following a link planted there (O_NOFOLLOW, O_EXCL);
    a leftover of a killed run with our pid is removed first (unlink removes a link, never its target)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)


def _as_safe_text(error: UnicodeError) -> tuple[str, int]:
    """The encoding error handler "iqa.safe_text": what UTF-8 cannot encode (lone surrogates, nothing else)
    written as `safe_text` shows it."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    return safe_text(error.object[error.start : error.end]), error.end


codecs.register_error("iqa.safe_text", _as_safe_text)


class _TextWriter(ReportWriter):
    """Shared file handling of the line-oriented writers: UTF-8, with `encoding_errors` for lone surrogates."""

    encoding_errors: ClassVar[str]

    def __init__(self, out_dir: Path, stem: str = "report", *, schema: pa.Schema = SCHEMA) -> None:
        super().__init__(out_dir, stem, schema=schema)
        self._file: IO[str] = open(  # noqa: SIM115
            create_temporary(self._tmp), "w", encoding="utf-8", errors=self.encoding_errors, newline=""
        )

    def _finish(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        finally:
            with contextlib.suppress(OSError):  # a failed flush leaves bytes buffered: closing retries them
                self._file.close()


class ParquetWriter(ReportWriter):
    """Parquet with the real types (lists, timestamps); rows buffered into row groups."""

    writes_any_schema = True
    format = "parquet"
    suffix = ".parquet"
    row_group_rows = 2048

    def __init__(self, out_dir: Path, stem: str = "report", *, schema: pa.Schema = SCHEMA) -> None:
        super().__init__(out_dir, stem, schema=schema)
        self._sink = open(create_temporary(self._tmp), "wb")  # noqa: SIM115
        self._writer = pq.ParquetWriter(self._sink, schema, compression="zstd")
        self._pending: list[Mapping[str, Any]] = []

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        self._pending.extend(rows)
        if len(self._pending) >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            try:
                table = pa.Table.from_pylist(self._pending, schema=self.schema)
            except UnicodeEncodeError:  # a lone surrogate in some text: Arrow strings are UTF-8
                table = pa.Table.from_pylist([_utf8_row(row) for row in self._pending], schema=self.schema)
            self._writer.write_table(table)
            self.rows_written += len(self._pending)
            self._pending = []

    def _finish(self) -> None:
        try:
            self._flush()
            self._writer.close()
            self._sink.flush()
            os.fsync(self._sink.fileno())
        finally:
            self._sink.close()


def _utf8_row(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: writable_cell(value) for name, value in row.items()}


# A spreadsheet reads a cell that starts with one of these as a formula (=HYPERLINK(...) in a file name).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _flat(value: Any) -> Any:
    """A cell as plain text-friendly value: lists joined, timestamps in ISO 8601, bytes in hex, NaN left empty
    as None is, and text that a spreadsheet would run as a formula prefixed with ' (OWASP's advice for CSV
    injection)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list):
        value = LIST_SEPARATOR.join(str(item) for item in value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str) and value.lstrip("'").startswith(FORMULA_STARTS):
        return "'" + value  # also before existing quotes, so that reading back (csv_text) is exact
    return value


def csv_text(cell: str) -> str:
    """A CSV cell's text as it was before `_flat` neutralised a formula start."""
    return cell[1:] if cell.startswith("'") and cell.lstrip("'").startswith(FORMULA_STARTS) else cell


class CsvWriter(_TextWriter):
    """CSV (UTF-8) with the same columns, lists joined with "; ", timestamps in ISO 8601, bytes in hex, missing
    values (None, NaN) empty, lone surrogates as \\xNN text, and text cells that would start a spreadsheet formula
    (= + - @ tab CR) prefixed with '. Parquet and JSONL keep every other value exact."""

    writes_any_schema = True
    format = "csv"
    suffix = ".csv"
    encoding_errors = "iqa.safe_text"

    def __init__(self, out_dir: Path, stem: str = "report", *, schema: pa.Schema = SCHEMA) -> None:
        super().__init__(out_dir, stem, schema=schema)
        self._csv = csv.DictWriter(self._file, fieldnames=schema.names)
        self._csv.writeheader()

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for row in rows:
            self._csv.writerow({name: _flat(value) for name, value in row.items()})
        self.rows_written += len(rows)


class JsonlWriter(_TextWriter):
    """One JSON object per line (UTF-8), lists kept as arrays, bytes in hex, and every string exact: a lone
    surrogate is written as a \\udXXX escape, and `path` is the exact name (from `path_bytes`) when it has one."""

    writes_any_schema = True
    format = "jsonl"
    suffix = ".jsonl"
    # A lone surrogate becomes \udcff: outside strings JSON is ASCII, so it is inside one, where that escape
    # means the same character (Python's json reads it back as it was).
    encoding_errors = "backslashreplace"

    def write(self, rows: Sequence[Mapping[str, Any]]) -> None:
        for row in rows:
            exact = row.get("path_bytes")
            if exact is not None:
                row = {**row, "path": os.fsdecode(exact)}  # the name as Python holds it: surrogates for odd bytes
            self._file.write(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n")
        self.rows_written += len(rows)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


BUILTIN_WRITERS: tuple[type[ReportWriter], ...] = (ParquetWriter, CsvWriter, JsonlWriter)
