"""The audit pipeline with a fake engine: ordering, error rows, isolation of failures, interruption, reports."""

from __future__ import annotations

import contextlib
import json
import operator
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from iqa_cli.audit.queue import WorkersFailed
from iqa_cli.audit.run import AuditSettings, run_audit
from iqa_cli.report.schema import SCHEMA
from iqa_cli.report.writers import CsvWriter, JsonlWriter, ParquetWriter
from iqa_cli.testing.engines import BrightnessEngine, SameSizeCheck


def _photo_tree(root: Path, count: int = 7) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        level = 30 if i % 3 == 0 else 180
        pixels = np.clip(rng.normal(level, 10, (40, 60, 3)), 0, 255).astype(np.uint8)
        folder = root / ("sub" if i % 2 else "")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"img{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    (root / "notes.jpg").write_text("<html>not an image</html>")
    return paths


def _audit(root: Path, out: Path, engine: BrightnessEngine, checks=(), **kw):
    out.mkdir(exist_ok=True)
    writers = [ParquetWriter(out), CsvWriter(out), JsonlWriter(out)]
    settings = AuditSettings(paths=[str(root)], **kw)
    return run_audit(settings, engine, writers, checks=checks)


@pytest.mark.parametrize("workers", [0, 2])
def test_rows_in_discovery_order_with_errors(tmp_path: Path, workers: int) -> None:
    _photo_tree(tmp_path / "photos")
    summary = _audit(tmp_path / "photos", tmp_path / "out", BrightnessEngine(), workers=workers, batch_size=3)
    table = pq.read_table(tmp_path / "out" / "report.parquet")
    assert table.schema.equals(SCHEMA)
    rows = table.to_pylist()
    names = [Path(r["path"]).name for r in rows]
    assert names == [
        "img0.png",
        "img2.png",
        "img4.png",
        "img6.png",
        "notes.jpg",
        "img1.png",
        "img3.png",
        "img5.png",
    ]
    bad = next(r for r in rows if r["path"].endswith("notes.jpg"))
    assert bad["status"] == "error" and bad["error_code"] == "not_an_image" and bad["error"]
    assert summary.files == 8 and summary.errors == 1 and summary.assessed == 7
    dark = next(r for r in rows if r["path"].endswith("img0.png"))
    assert dark["verdict"] == "bad" and dark["distortions"] == ["insufficient brightness"]
    assert dark["content_hash"] and dark["width"] == 60 and dark["height"] == 40


def test_same_report_with_and_without_workers(tmp_path: Path) -> None:
    _photo_tree(tmp_path / "photos")
    for workers in (0, 2):
        _audit(tmp_path / "photos", tmp_path / f"out{workers}", BrightnessEngine(), workers=workers)
    drop = ["elapsed_ms"]
    a = pd.read_parquet(tmp_path / "out0" / "report.parquet").drop(columns=drop)
    b = pd.read_parquet(tmp_path / "out2" / "report.parquet").drop(columns=drop)
    pd.testing.assert_frame_equal(a, b)


def test_reports_agree_across_formats(tmp_path: Path) -> None:
    _photo_tree(tmp_path / "photos")
    _audit(tmp_path / "photos", tmp_path / "out", BrightnessEngine(), workers=0, detail=True)
    parquet = pd.read_parquet(tmp_path / "out" / "report.parquet")
    csv = pd.read_csv(tmp_path / "out" / "report.csv")
    lines = [json.loads(x) for x in (tmp_path / "out" / "report.jsonl").read_text().splitlines()]
    assert list(csv.columns) == list(parquet.columns) == list(lines[0])
    assert len(csv) == len(parquet) == len(lines) == 8
    assert csv["distortions"].fillna("").tolist() == ["; ".join(d) for d in parquet["distortions"]]
    assert pa.types.is_list(pq.read_schema(tmp_path / "out" / "report.parquet").field("distortions").type)
    assert parquet["detail"].dropna().str.startswith("mean").all()
    assert not list((tmp_path / "out").glob(".*tmp")), "temporary files left behind"


def test_engine_failure_on_one_image_is_that_images_error(tmp_path: Path) -> None:
    _photo_tree(tmp_path / "photos")
    summary = _audit(
        tmp_path / "photos",
        tmp_path / "out",
        BrightnessEngine(fail_on_name="img2.png"),
        workers=0,
        batch_size=4,
    )
    rows = pd.read_parquet(tmp_path / "out" / "report.parquet").set_index("path")
    failed = rows[rows.index.str.endswith("img2.png")].iloc[0]
    assert failed["status"] == "error" and failed["error_code"] == "engine_failed"
    assert "engine exploded" in failed["error"]
    assert summary.assessed == 6 and summary.errors == 2


def test_worker_crash_costs_only_the_culprit(tmp_path: Path) -> None:
    paths = _photo_tree(tmp_path / "photos")
    Image.open(paths[1]).save(tmp_path / "photos" / "crash-me.png")
    summary = _audit(tmp_path / "photos", tmp_path / "out", BrightnessEngine(), workers=2, batch_size=2)
    rows = pd.read_parquet(tmp_path / "out" / "report.parquet")
    crashed = rows[rows["path"].str.endswith("crash-me.png")].iloc[0]
    assert crashed["error_code"] == "worker_crashed"
    assert summary.assessed == 7 and summary.errors == 2


class _UnloadablePreparer:
    """A preparer that no worker can unpickle: every worker process dies as it starts."""

    def __reduce__(self):
        return operator.truediv, (1, 0)

    def __call__(self, image):
        raise AssertionError("never reached")


class _EngineWhoseWorkersDie(BrightnessEngine):
    def preparer(self):
        return _UnloadablePreparer()


def test_workers_that_cannot_start_are_one_clear_error_not_a_broken_pool(tmp_path: Path) -> None:
    _photo_tree(tmp_path / "photos")
    with pytest.raises(WorkersFailed, match="--workers 0"):
        _audit(tmp_path / "photos", tmp_path / "out", _EngineWhoseWorkersDie(), workers=2)
    # Nothing was read, so nothing is reported: no empty or torn report takes the place of an earlier one.
    assert not list((tmp_path / "out").glob("report.*"))
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_interrupt_keeps_finished_rows(tmp_path: Path) -> None:
    _photo_tree(tmp_path / "photos")
    summary = _audit(
        tmp_path / "photos", tmp_path / "out", BrightnessEngine(interrupt_after=1), workers=0, batch_size=2
    )
    assert summary.interrupted
    rows = pd.read_parquet(tmp_path / "out" / "report.parquet")
    assert rows["status"].eq("ok").sum() == 2  # the first batch, finished before Ctrl-C
    assert len(pd.read_csv(tmp_path / "out" / "report.csv")) == len(rows)


def test_limit_and_filters(tmp_path: Path) -> None:
    _photo_tree(tmp_path / "photos")
    summary = _audit(tmp_path / "photos", tmp_path / "out", BrightnessEngine(), workers=0, limit=3)
    assert summary.files == 3
    summary = _audit(
        tmp_path / "photos",
        tmp_path / "out2",
        BrightnessEngine(),
        workers=0,
        recursive=False,
        exclude=["*.jpg"],
    )
    assert summary.files == 4


@pytest.mark.parametrize("workers", [0, 2])
def test_checks_add_findings_in_report_order(tmp_path: Path, workers: int) -> None:
    paths = _photo_tree(tmp_path / "photos", count=3)
    Image.open(paths[0]).save(tmp_path / "photos" / "boom.png")
    summary = _audit(
        tmp_path / "photos", tmp_path / "out", BrightnessEngine(), checks=[SameSizeCheck()], workers=workers
    )
    rows = pd.read_parquet(tmp_path / "out" / "report.parquet")
    findings = {Path(p).name: list(f) for p, f in zip(rows["path"], rows["findings"], strict=True)}
    assert findings["img0.png"] == [] and findings["notes.jpg"] == []
    assert findings["boom.png"] == ["same-size/check_failed: ValueError: cannot measure"]
    assert findings["img2.png"] == [f"same-size/repeat: same size as {paths[0]}"]
    assert summary.findings == {"same-size/repeat": 2, "same-size/check_failed": 1}


class _SwallowingCheck(SameSizeCheck):
    """Measuring the third image takes a SIGTERM inside code that swallows the KeyboardInterrupt (as a finalizer
    or a library's cleanup may), then goes on as usual."""

    def __init__(self) -> None:
        super().__init__()
        self.measured = 0

    def measure(self, image):
        self.measured += 1
        if self.measured == 3:
            with contextlib.suppress(KeyboardInterrupt):
                signal.raise_signal(signal.SIGTERM)
        return super().measure(image)


def test_a_stop_swallowed_on_the_way_still_stops_the_run(tmp_path: Path) -> None:
    _photo_tree(tmp_path / "photos")
    summary = _audit(tmp_path / "photos", tmp_path / "out", BrightnessEngine(), checks=[_SwallowingCheck()],
                     workers=0, batch_size=2)  # fmt: skip
    assert summary.interrupted
    rows = pd.read_parquet(tmp_path / "out" / "report.parquet")
    assert rows["status"].eq("ok").sum() == 2  # the first batch; the one being loaded at the stop is not written
