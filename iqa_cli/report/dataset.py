"""A report as a Parquet dataset: a folder of files, one per block of rows, as `iqa audit --ray` writes it.

Each file is complete or absent (written under a hidden temporary name, then renamed) and holds in its metadata
the settings key its rows were made with (`store.cache_key`). File names sort in the order they were written,
so where a path has rows in several files (a later run re-assessed a changed file) the last file's row is the
path's row: `dataset_rows` gives only those.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from iqa_cli.errors import UsageError
from iqa_cli.report.schema import SCHEMA, ReportRow

DATASET_DIR = "report-dataset"
"""The folder of Parquet files a Ray run writes into its output folder (`iqa report OUT` reads it)."""
RUN_KEY = b"iqa.run_key"  # each file's metadata: the settings its rows were made with (`cache_key`)


class DatasetWriter:
    """One Parquet file per block of rows, complete or absent: written as a hidden temporary, then renamed."""

    def __init__(self, folder: Path, key: str) -> None:
        self.folder = folder
        self.key = key
        # Names sort in run order, so a path's newest row is in the last file holding it.
        self.prefix = f"part-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
        self.files: list[str] = []

    def write(self, rows: list[ReportRow]) -> None:
        if not rows:
            return
        table = pa.Table.from_pylist(rows, schema=SCHEMA).replace_schema_metadata({RUN_KEY: self.key.encode()})
        final = self.folder / f"{self.prefix}-{len(self.files):06d}.parquet"
        temporary = self.folder / f".{final.name}.tmp"
        try:
            pq.write_table(table, temporary)
            os.replace(temporary, final)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        self.files.append(str(final))


def dataset_files(folder: Path) -> list[Path]:
    """The complete Parquet files of a Ray run's dataset folder, oldest first."""
    return sorted(p for p in folder.glob("part-*.parquet") if p.is_file())


def reported_images(folder: Path, key: str) -> dict[str, str]:
    """path -> content hash of every `ok` row made with settings `key`, the newest row of each path winning."""
    reported: dict[str, str] = {}
    for path in dataset_files(folder):
        try:
            parquet = pq.ParquetFile(path)
            metadata = parquet.schema_arrow.metadata or {}
            if metadata.get(RUN_KEY) != key.encode():
                continue
            table = parquet.read(columns=["path", "status", "content_hash"])
        except (pa.ArrowException, OSError) as exc:
            raise UsageError(f"{path} cannot be read ({exc}); move it out of {folder} and run again") from None
        for row_path, status, content in zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True):
            if status == "ok" and content:
                reported[row_path] = content
            else:
                reported.pop(row_path, None)
    return reported


def dataset_rows(folder: Path) -> Iterator[dict]:
    """Every path's newest row, file by file (oldest file first). A file that cannot be read raises the reader's
    error (pyarrow's ArrowException or OSError)."""
    files = dataset_files(folder)
    newest: dict[str, int] = {}
    for number, path in enumerate(files):
        for row_path in pq.read_table(path, columns=["path"]).column("path").to_pylist():
            newest[row_path] = number
    for number, path in enumerate(files):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                if newest.get(row["path"]) == number:
                    yield row
