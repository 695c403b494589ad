"""The writer interface and the built-in Parquet, CSV and JSONL writers; each file appears only when complete."""

from __future__ import annotations

import csv
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any, ClassVar

import pyarrow as pa
import pyarrow.parquet as pq

from iqa_cli.report.schema import COLUMN_NAMES, SCHEMA

LIST_SEPARATOR = "; "


class ReportWriter(ABC):
    """Receives rows as they finish and leaves one complete file at `path` on close.

    Rows go to a temporary file beside the target, renamed into place by `close`, so a reader never
    sees a half-written report and an earlier report stays intact until the new one is complete.
    """

    format: ClassVar[str]
    suffix: ClassVar[str]

    def __init__(self, out_dir: Path, stem: str = "report") -> None:
        self.path = out_dir / f"{stem}{self.suffix}"
        self._tmp = out_dir / f".{stem}{self.suffix}.{os.getpid()}.tmp"
        self.rows_written = 0

    @abstractmethod
    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        """Append rows (dicts keyed by schema column)."""

    @abstractmethod
    def _finish(self) -> None:
        """Flush and close the temporary file."""

    def close(self) -> Path:
        """Finish the file and move it into place; returns its path."""
        self._finish()
        os.replace(self._tmp, self.path)
        return self.path

    def discard(self) -> None:
        """Drop the temporary file (used when the run fails before producing anything worth keeping)."""
        self._tmp.unlink(missing_ok=True)


class _TextWriter(ReportWriter):
    """Shared file handling of the line-oriented writers."""

    def __init__(self, out_dir: Path, stem: str = "report") -> None:
        super().__init__(out_dir, stem)
        self._file: IO[str] = open(self._tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115

    def _finish(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def discard(self) -> None:
        self._file.close()
        super().discard()


class ParquetWriter(ReportWriter):
    """Parquet with the real types (lists, timestamps); rows buffered into row groups."""

    format = "parquet"
    suffix = ".parquet"
    row_group_rows = 2048

    def __init__(self, out_dir: Path, stem: str = "report") -> None:
        super().__init__(out_dir, stem)
        self._writer = pq.ParquetWriter(self._tmp, SCHEMA, compression="zstd")
        self._pending: list[dict[str, Any]] = []

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        self._pending.extend(rows)
        if len(self._pending) >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.Table.from_pylist(self._pending, schema=SCHEMA))
            self.rows_written += len(self._pending)
            self._pending = []

    def _finish(self) -> None:
        self._flush()
        self._writer.close()

    def discard(self) -> None:
        self._writer.close()
        super().discard()


def _flat(value: Any) -> Any:
    """A cell as plain text-friendly value: lists joined, timestamps in ISO 8601."""
    if isinstance(value, list):
        return LIST_SEPARATOR.join(str(item) for item in value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class CsvWriter(_TextWriter):
    """CSV with the same columns, lists joined with "; " and timestamps in ISO 8601."""

    format = "csv"
    suffix = ".csv"

    def __init__(self, out_dir: Path, stem: str = "report") -> None:
        super().__init__(out_dir, stem)
        self._csv = csv.DictWriter(self._file, fieldnames=COLUMN_NAMES)
        self._csv.writeheader()

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            self._csv.writerow({name: _flat(value) for name, value in row.items()})
        self.rows_written += len(rows)


class JsonlWriter(_TextWriter):
    """One JSON object per line, lists kept as arrays."""

    format = "jsonl"
    suffix = ".jsonl"

    def write(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            self._file.write(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n")
        self.rows_written += len(rows)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


BUILTIN_WRITERS: tuple[type[ReportWriter], ...] = (ParquetWriter, CsvWriter, JsonlWriter)
