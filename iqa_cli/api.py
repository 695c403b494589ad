"""The one-call Python API: `audit(paths)` runs `iqa audit` in this process and returns its rows and summary."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union, cast

import pyarrow as pa

from iqa_cli.audit.discover import missing_given, require_backends
from iqa_cli.audit.flag import DEFAULT_MIN_CONFIDENCE
from iqa_cli.audit.load import DEFAULT_MAX_PIXELS
from iqa_cli.audit.queue import DEFAULT_FILE_TIMEOUT, default_workers
from iqa_cli.audit.run import AuditSettings, audit_folder, run_audit
from iqa_cli.engines.base import Engine, EngineOptions
from iqa_cli.errors import UsageError
from iqa_cli.plugins import AUTO, chosen_checks, chosen_writers, create_engine
from iqa_cli.report.schema import SCHEMA, ReportRow, writable_cell
from iqa_cli.report.summary import Summary

if TYPE_CHECKING:
    import pandas as pd

PathArg = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
DEFAULT_FORMATS = ("parquet", "csv")  # as `iqa audit --out`


class NoSuchPath(UsageError, FileNotFoundError):
    """None of the paths given exists: nothing was audited and no output folder was touched."""


@dataclass(repr=False)
class AuditResult:
    """What `audit` found: one row per file (the report schema's columns, as dicts) and the run's summary.

    `out` is the output folder when one was given (its reports are `reports`); `notes` are things worth
    knowing about the run itself (a damaged results store set aside), which the command line would log.
    """

    rows: list[ReportRow]
    summary: Summary
    out: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def reports(self) -> list[Path]:
        """The report files written into `out` (none without it, or when nothing was found)."""
        return [Path(path) for path in self.summary.reports]

    def to_pandas(self) -> pd.DataFrame:
        """The rows as a pandas DataFrame with the report's column types: the frame `pandas.read_parquet` gives
        for the Parquet report. pandas is not a dependency of iqa: `pip install pandas`."""
        try:
            import pandas  # noqa: F401 - only to say what is missing before pyarrow does, less clearly
        except ImportError:
            raise ImportError(
                "AuditResult.to_pandas needs pandas, which iqa does not install: pip install pandas"
            ) from None
        try:
            table = pa.Table.from_pylist(cast(list[dict[str, Any]], self.rows), schema=SCHEMA)
        except UnicodeEncodeError:  # a lone surrogate in some text: Arrow strings are UTF-8, as in the Parquet report
            table = pa.Table.from_pylist([_utf8_row(row) for row in self.rows], schema=SCHEMA)
        return table.to_pandas()

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[ReportRow]:
        return iter(self.rows)

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"AuditResult(files={s.files}, assessed={s.assessed}, errors={s.errors}, verdicts={s.verdicts}, "
            f"needs_review={s.needs_review}, engine={s.engine!r}, out={self.out!r})"
        )


def audit(
    paths: PathArg | Iterable[PathArg],
    *,
    engine: str | Engine = AUTO,
    detail: bool = False,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    out: PathArg | None = None,
    formats: str | Sequence[str] | None = None,
    workers: int | None = None,
    recursive: bool = True,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    hidden: bool = False,
    limit: int | None = None,
    batch_size: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    file_timeout: float = DEFAULT_FILE_TIMEOUT,
    rerun: bool = False,
    image_column: str | None = None,
    id_column: str | None = None,
    checks: str | Sequence[str] = "all",
    engine_options: EngineOptions | None = None,
    on_row: Callable[[ReportRow], None] | None = None,
) -> AuditResult:
    """Assess every image under `paths` (files, folders, WebDataset .tar shards, Parquet files, brace patterns and
    URLs, mixed: docs/inputs.md) and return the rows and the summary.

    The keywords are `iqa audit`'s options of the same names (`image_column` and `id_column` are
    ``--image-column`` and ``--id-column``, for Parquet files): `engine` is "auto" (the DepictQA model when it
    is installed, else the signal engine), "signal", "depictqa" or a plugin's name, or an `Engine` you made
    (used and left open, so a loaded model serves many calls); `engine_options` holds the model's folder,
    device and dtype for an engine named here. `workers` decoding processes (default: one per core; 0
    decodes in this process); `checks` is "all" (every installed check plugin), "none" or check names.

    Without `out` nothing is written: no reports and no results store. With `out` it is `iqa audit --out`:
    the reports (`formats`, default Parquet and CSV) and the results store there, so a second call replays
    the unchanged files without decoding them (`rerun=True` redoes them).

    A file that cannot be read or assessed is a row with `status` "error", never an exception. Raises
    `NoSuchPath` (a `UsageError` and a `FileNotFoundError`) when none of the paths given exists, and other
    `iqa_cli.errors.IqaError`s for what the command line would refuse with exit code 1 or 2 (an unknown
    engine, a locked output folder, a URL whose fsspec backend is not installed). No image found is an empty
    result (`summary.files == 0`). Ctrl-C stops the run cleanly (with `out`, the reports keep what finished) and
    then raises KeyboardInterrupt.

    The rows are kept in memory: for millions of files, give `out` and read the reports, or take each row
    from `on_row` as it finishes. With `workers` >= 1 the decoders are spawned processes, which import the
    calling script again: keep the call under `if __name__ == "__main__":`.

    Example (the rows are dicts keyed by the report's columns)::

        import iqa_cli

        result = iqa_cli.audit("photos/", engine="signal")
        for row in result.rows:
            if row["verdict"] != "ok":
                print(row["path"], row["verdict"], row["answer"], row["confidence"])
        worst = result.to_pandas().sort_values("score").head()  # pip install pandas
    """
    given = _paths(paths)
    out_dir = None if out is None else Path(os.fsdecode(out))
    if isinstance(given, list):
        if not given:
            raise UsageError("give image files or folders to audit")
        # Before the store or any report is touched, as on the command line.
        require_backends(given)
        missing = missing_given(given)
        if missing is not None:
            unchanged = f", {out_dir} is unchanged" if out_dir is not None else ""
            raise NoSuchPath(f"no such file or folder: {missing}; nothing was audited{unchanged}")
    if formats is not None and out_dir is None:
        raise UsageError("formats= names the reports written into out=; give out= too, or leave formats out")
    selected_writers = chosen_writers(formats or DEFAULT_FORMATS) if out_dir is not None else []
    settings = AuditSettings(
        paths=given,
        detail=detail,
        min_confidence=min_confidence,
        recursive=recursive,
        include=include,
        exclude=exclude,
        include_hidden=hidden,
        workers=default_workers() if workers is None else workers,
        batch_size=batch_size,
        limit=limit,
        max_pixels=max_pixels,
        file_timeout=file_timeout,
        rerun=rerun,
        image_column=image_column,
        id_column=id_column,
    )
    _check_settings(settings)
    selected_checks = chosen_checks(checks)
    options = engine_options or EngineOptions()
    make_engine = _lent(engine) if isinstance(engine, Engine) else (lambda: create_engine(engine, options))

    rows: list[ReportRow] = []
    notes: list[str] = []

    def keep(row: ReportRow) -> None:
        rows.append(row)
        if on_row is not None:
            on_row(row)

    if out_dir is not None:
        summary = audit_folder(
            settings, make_engine, out_dir, selected_writers, checks=selected_checks, on_note=notes.append, on_row=keep
        )
    else:
        made, note = make_engine()
        try:
            summary = run_audit(settings, made, [], checks=selected_checks, engine_note=note, on_row=keep)
        finally:
            made.close()
    if summary.interrupted:
        raise KeyboardInterrupt
    return AuditResult(rows, summary, out_dir, notes)


def _paths(paths: PathArg | Iterable[PathArg]) -> list[str] | Iterator[str]:
    """The paths as text: a list when given as one path or a sequence, else read lazily (a generator)."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        return [os.fsdecode(paths)]
    if isinstance(paths, Sequence):
        return [os.fsdecode(p) for p in paths]
    return (os.fsdecode(p) for p in paths)


def _check_settings(settings: AuditSettings) -> None:
    """Refuse what the command line's option types refuse."""
    limits = [
        ("min_confidence", settings.min_confidence, 0.0 <= settings.min_confidence <= 1.0, "between 0 and 1"),
        ("workers", settings.workers, settings.workers >= 0, "0 or more"),
        ("batch_size", settings.batch_size, settings.batch_size is None or settings.batch_size >= 1, "1 or more"),
        ("limit", settings.limit, settings.limit is None or settings.limit >= 0, "0 or more"),
        ("max_pixels", settings.max_pixels, settings.max_pixels >= 1, "1 or more"),
        ("file_timeout", settings.file_timeout, settings.file_timeout >= 0, "0 (no limit) or more seconds"),
    ]
    for name, value, fine, wanted in limits:
        if not fine:
            raise UsageError(f"{name}={value!r} cannot be used: it must be {wanted}")


def _lent(engine: Engine) -> Callable[[], tuple[Engine, str]]:
    """An engine the caller made, for `audit_folder` (which closes its engine): the run uses it, the caller
    closes it."""

    def make() -> tuple[Engine, str]:
        return cast(Engine, _Borrowed(engine)), "given by the caller"

    return make


class _Borrowed:
    """An engine whose `close` is left to its owner; everything else is the engine's own."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    def close(self) -> None:
        pass


def _utf8_row(row: ReportRow) -> dict[str, Any]:
    return {name: writable_cell(value) for name, value in row.items()}
