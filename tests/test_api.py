"""The one-call Python API, `iqa_cli.audit`: the same rows as `iqa audit`, nothing written without `out`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import skimage.data
from PIL import Image

import iqa_cli
from iqa_cli.api import AuditResult, NoSuchPath
from iqa_cli.errors import UsageError
from iqa_cli.evaluation.distortions import distort
from iqa_cli.testing.cli import invoke_iqa
from iqa_cli.testing.engines import BrightnessEngine


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean photo, a blurred one in a sub-folder, a copy of the clean one and a fake JPEG, written an hour
    ago (so the results store trusts them at once: docs/unattended.md, racy files)."""
    root = tmp_path_factory.mktemp("photos")
    clean = skimage.data.astronaut()
    Image.fromarray(clean).save(root / "clean.png")
    (root / "sub").mkdir()
    Image.fromarray(distort(clean, "blur", 5, function="blur_gaussian")).save(root / "sub" / "blurred.png")
    (root / "copy.png").write_bytes((root / "clean.png").read_bytes())
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    an_hour_ago = time.time() - 3600
    for path in root.rglob("*"):
        os.utime(path, (an_hour_ago, an_hour_ago))
    return root


@pytest.fixture(scope="module")
def cli_rows(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """What `iqa audit --format jsonl` writes for the folder."""
    out = tmp_path_factory.mktemp("cli") / "out"
    args = ["audit", str(photos), "--out", str(out), "--format", "jsonl", "--engine", "signal", "--workers", "0"]
    code, _, stderr = invoke_iqa(*args, "--quiet")
    assert code == 0, stderr
    return [json.loads(line) for line in (out / "report.jsonl").read_text(encoding="utf-8").splitlines()]


def as_jsonl(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the JSONL report holds it (timestamps in ISO 8601, bytes in hex)."""

    def plain(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime) else value.hex()

    return json.loads(json.dumps(row, default=plain))


def without_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{name: value for name, value in row.items() if name != "elapsed_ms"} for row in rows]


@pytest.mark.parametrize("workers", [0, 1])
def test_rows_are_the_cli_report_and_nothing_is_written(
    workers: int, photos: Path, cli_rows: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the command line's default --out would be ./iqa-report
    result = iqa_cli.audit(photos, engine="signal", workers=workers)
    assert isinstance(result, AuditResult)
    assert without_time([as_jsonl(row) for row in result.rows]) == without_time(cli_rows)
    assert [row["path"] for row in result] == [row["path"] for row in cli_rows]
    s = result.summary
    assert (s.files, s.assessed, s.errors, s.duplicates) == (4, 3, 1, 1)
    assert s.engine == "signal" and s.reports == [] and result.reports == [] and result.out is None
    assert len(result) == 4 and "files=4" in repr(result)
    assert list(tmp_path.iterdir()) == []  # no report, no store
    assert not list(photos.rglob("*.sqlite")) and not list(photos.rglob("report.*"))


def test_with_out_it_is_iqa_audit_out_and_replays(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = iqa_cli.audit([str(photos)], engine="signal", workers=0, out=out, formats="parquet,jsonl")
    assert sorted(p.name for p in first.reports) == ["report.jsonl", "report.parquet"]
    assert (out / "iqa-store.sqlite").is_file() and first.out == out
    frame = first.to_pandas()
    pd.testing.assert_frame_equal(frame, pd.read_parquet(out / "report.parquet"))
    assert frame.loc[frame["status"] == "error", "path"].tolist() == [str(photos / "broken.jpg")]
    # A second run replays every unchanged file from the store: the rows come back as they were, even the
    # elapsed_ms of a file whose bytes no other file has, which a fresh assessment would measure anew.
    second = iqa_cli.audit(photos, engine="signal", workers=0, out=out, formats=["parquet"])
    assert without_time(second.rows) == without_time(first.rows)
    blurred = [i for i, row in enumerate(first.rows) if row["path"].endswith("blurred.png")]
    assert [second.rows[i]["elapsed_ms"] for i in blurred] == [first.rows[i]["elapsed_ms"] for i in blurred]
    assert [p.name for p in second.reports] == ["report.parquet"]


def test_to_pandas_without_pandas_says_how_to_install(photos: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = iqa_cli.audit(photos / "clean.png", engine="signal", workers=0, checks="none")
    monkeypatch.setitem(sys.modules, "pandas", None)  # import fails as if not installed
    with pytest.raises(ImportError, match="pip install pandas"):
        result.to_pandas()
    assert result.rows[0]["status"] == "ok"  # the rows need nothing


def test_bad_paths_are_error_rows(photos: Path, tmp_path: Path) -> None:
    missing = tmp_path / "gone.png"
    result = iqa_cli.audit([photos / "broken.jpg", missing, photos / "clean.png"], engine="signal", workers=0)
    by_path = {row["path"]: row for row in result.rows}
    assert by_path[str(photos / "broken.jpg")]["status"] == "error"
    assert by_path[str(missing)]["error_code"] == "not_found"
    assert by_path[str(photos / "clean.png")]["status"] == "ok"
    assert result.summary.errors == 2


def test_only_missing_paths_raise_and_touch_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(NoSuchPath, match=r"no such file or folder: .*nope.*nothing was audited") as caught:
        iqa_cli.audit([tmp_path / "nope", tmp_path / "neither"], engine="signal", out=out)
    assert isinstance(caught.value, UsageError) and isinstance(caught.value, FileNotFoundError)
    assert caught.value.exit_code == 2
    assert not out.exists()
    with pytest.raises(UsageError, match="give image files or folders"):
        iqa_cli.audit([])


def test_no_image_found_is_an_empty_result(tmp_path: Path) -> None:
    result = iqa_cli.audit(tmp_path, engine="signal", workers=0, out=tmp_path / "out")
    assert result.rows == [] and result.summary.files == 0 and result.reports == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": -1}, "workers=-1"),
        ({"min_confidence": 2.0}, "min_confidence=2.0"),
        ({"engine": "nope"}, "unknown engine 'nope'"),
        ({"checks": "nope"}, "unknown check nope"),
        ({"formats": "csv"}, "give out= too"),
    ],
)
def test_what_the_command_line_refuses_is_a_usage_error(photos: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        iqa_cli.audit(photos, **options)


def test_a_given_engine_is_used_and_left_open(photos: Path, tmp_path: Path) -> None:
    closed: list[bool] = []

    class Owned(BrightnessEngine):
        def close(self) -> None:
            closed.append(True)

    engine = Owned()
    for out in (None, tmp_path / "out"):
        result = iqa_cli.audit(photos, engine=engine, workers=0, checks="none", out=out)
        assert {row["engine"] for row in result.rows} == {"brightness"}
    assert result.summary.engine_note == "given by the caller"
    assert closed == [] and len(engine.batches) == 2


def test_ctrl_c_stops_the_run_cleanly_and_raises(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    engine = BrightnessEngine(interrupt_after=1)  # the second batch is "interrupted"
    with pytest.raises(KeyboardInterrupt):
        iqa_cli.audit(photos, engine=engine, workers=0, checks="none", batch_size=1, out=out, formats="jsonl")
    written = (out / "report.jsonl").read_text(encoding="utf-8").splitlines()
    assert 1 <= len(written) < 4  # the reports keep what finished


def test_import_is_cheap_and_audit_stays_callable() -> None:
    # Spawned decode workers import iqa_cli again: it must not pull in the decoders, Arrow or pandas.
    probe = (
        "import sys, iqa_cli; heavy = {'numpy', 'PIL', 'pyarrow', 'pandas', 'rich', 'typer'} & set(sys.modules);"
        "import iqa_cli.audit.run; print(sorted(heavy), callable(iqa_cli.audit), iqa_cli.audit.run.run_audit.__name__)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[] True run_audit", result.stdout + result.stderr
