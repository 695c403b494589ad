"""Reading a finished report folder back: rows, filters, and the summary, without running anything."""

from __future__ import annotations

import csv as _csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from iqa_cli.errors import UsageError
from iqa_cli.report.schema import COLUMN_NAMES, SCHEMA, ReportRow
from iqa_cli.report.summary import Summary, SummaryBuilder
from iqa_cli.report.writers import LIST_SEPARATOR, CsvWriter, JsonlWriter, ParquetWriter, csv_text


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


def read_rows(out_dir: Path) -> Iterator[ReportRow]:
    """The rows of the report in `out_dir`: Parquet when there, else JSONL, else CSV (lists re-split)."""
    parquet, jsonl, csv = (out_dir / f"report{w.suffix}" for w in (ParquetWriter, JsonlWriter, CsvWriter))
    if parquet.exists():
        for batch in pq.ParquetFile(parquet).iter_batches(batch_size=4096):
            yield from batch.to_pylist()
    elif jsonl.exists():
        with jsonl.open(encoding="utf-8") as lines:
            for line in lines:
                yield json.loads(line)
    elif csv.exists():
        with csv.open(encoding="utf-8", newline="") as handle:
            for record in _csv.DictReader(handle):
                yield {name: _from_text(name, value) for name, value in record.items()}
    else:
        raise UsageError(f"no report in {out_dir}: expected report.parquet, report.jsonl or report.csv there")


_TYPES = {field.name: field.type for field in SCHEMA}


def _from_text(name: str, value: str) -> Any:
    """A CSV cell back as the schema's type (timestamps stay ISO 8601 text)."""
    value = csv_text(value)
    kind = _TYPES.get(name)
    if kind is None or pa.types.is_string(kind) or pa.types.is_timestamp(kind):
        return value if value != "" else None
    if pa.types.is_list(kind):
        items = value.split(LIST_SEPARATOR) if value else []
        return [int(i) for i in items] if pa.types.is_integer(kind.value_type) else items
    if value == "":
        return None
    if pa.types.is_boolean(kind):
        return value == "True"
    return int(value) if pa.types.is_integer(kind) else float(value)


def summarise(rows: Iterator[ReportRow], keep: RowFilter) -> tuple[Summary, list[str]]:
    """The summary of the kept rows, and their paths in report order."""
    builder: SummaryBuilder | None = None
    paths: list[str] = []
    for row in rows:
        if not keep.keeps(row):
            continue
        if builder is None:
            builder = SummaryBuilder(row.get("engine") or "", row.get("engine_version") or "", "from a saved report")
        builder.add({name: row.get(name) for name in COLUMN_NAMES})
        paths.append(row["path"])
    if builder is None:
        builder = SummaryBuilder("", "", "no rows match")
    return builder.finish(0.0), paths
