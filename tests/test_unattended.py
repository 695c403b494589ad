"""Unattended runs: incremental re-audits, resume after SIGKILL, one run per output folder, input lists, logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import iqa_cli.audit.queue
from iqa_cli.audit.run import AuditSettings, run_audit
from iqa_cli.audit.store import ResultStore
from iqa_cli.cli.app import app
from iqa_cli.report.writers import CsvWriter, ParquetWriter
from iqa_cli.testing.engines import BrightnessEngine

TESTS = Path(__file__).resolve().parent
PAST = time.time() - 3600  # files older than the store's racy window are trusted when unchanged


def _photos(root: Path, count: int) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    paths = []
    for i in range(count):
        path = root / f"img{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path)
        os.utime(path, (PAST, PAST))
        paths.append(path)
    return paths


def _run(root: Path, out: Path, **settings) -> tuple[object, pd.DataFrame]:
    out.mkdir(parents=True, exist_ok=True)
    with ResultStore.open(out) as store:
        summary = run_audit(
            AuditSettings(paths=[str(root)], workers=0, batch_size=4, **settings),
            BrightnessEngine(),
            [ParquetWriter(out), CsvWriter(out)],
            store=store,
        )
    return summary, pd.read_parquet(out / "report.parquet")


def _count_loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    loaded: list[str] = []
    real = iqa_cli.audit.queue.load_image

    def counting(path, *args, **kwargs):
        loaded.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(iqa_cli.audit.queue, "load_image", counting)
    return loaded


def test_rerun_over_unchanged_folder_decodes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _photos(tmp_path / "photos", 10)
    _, first = _run(tmp_path / "photos", tmp_path / "out")
    loaded = _count_loads(monkeypatch)
    _, second = _run(tmp_path / "photos", tmp_path / "out")
    assert loaded == []
    pd.testing.assert_frame_equal(first, second)

    # A changed file and a new one are assessed; a deleted one drops out of the report.
    Image.new("RGB", (32, 24), (10, 10, 10)).save(paths[3])
    os.utime(paths[3], (PAST + 60, PAST + 60))
    Image.new("RGB", (32, 24), (250, 250, 250)).save(tmp_path / "photos" / "new.png")
    os.utime(tmp_path / "photos" / "new.png", (PAST, PAST))
    paths[5].unlink()
    _, third = _run(tmp_path / "photos", tmp_path / "out")
    assert sorted(loaded) == ["img003.png", "new.png"]
    assert len(third) == 10 and not third["path"].str.endswith("img005.png").any()
    assert third.set_index("path").loc[str(paths[3]), "verdict"] == "bad"

    loaded.clear()
    _run(tmp_path / "photos", tmp_path / "out", rerun=True)
    assert len(loaded) == 10


def test_min_confidence_applies_to_remembered_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _photos(tmp_path / "photos", 4)
    _, strict = _run(tmp_path / "photos", tmp_path / "out", min_confidence=0.95)
    loaded = _count_loads(monkeypatch)
    _, lenient = _run(tmp_path / "photos", tmp_path / "out", min_confidence=0.1)
    assert strict["needs_review"].all() and not lenient["needs_review"].any()
    assert loaded == []  # the second run replayed every row from the store: the threshold applied to them


def test_an_interrupted_rerun_of_a_streamed_list_reports_every_remembered_row(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "photos", 12)
    _, complete = _run(tmp_path / "photos", tmp_path / "out")
    # A list read from a stream (stdin) can be walked once only: the carrying over must still find every file.
    listed = (str(p) for p in [*paths, tmp_path / "gone.png"])
    out = tmp_path / "out"
    with ResultStore.open(out) as store:
        summary = run_audit(
            AuditSettings(paths=listed, workers=0, batch_size=4, rerun=True),
            BrightnessEngine(interrupt_after=1),
            [ParquetWriter(out)],
            store=store,
        )
    assert summary.interrupted and summary.carried_over == 8  # the first batch of 4 was assessed afresh
    report = pd.read_parquet(out / "report.parquet")
    assert report["path"].tolist() == [*complete["path"], str(tmp_path / "gone.png")]
    assert report["error_code"].tolist()[-1] == "not_found"


RUNNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from iqa_cli.testing.engines import BrightnessEngine
    from iqa_cli.audit.run import AuditSettings, run_audit
    from iqa_cli.report.writers import ParquetWriter
    from iqa_cli.audit.store import ResultStore

    root, out, delay = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    with ResultStore.open(out) as store:
        run_audit(AuditSettings(paths=[root], workers=0, batch_size=4), BrightnessEngine(delay=delay),
                  [ParquetWriter(out)], store=store)
    """
)


def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_report(tmp_path: Path) -> None:
    _photos(tmp_path / "photos", 40)
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, str(script), str(tmp_path / "photos"), str(out), "0.25"], env=env)
    deadline = time.monotonic() + 600  # only keeps a broken run from hanging the suite
    while True:  # strike once some batches are committed
        if (out / "iqa-store.sqlite").exists():
            with ResultStore.open(out, lock=False) as peek:
                if peek.counts()[0] >= 8:
                    break
        assert process.poll() is None and time.monotonic() < deadline, "the run never committed 8 rows"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=600)
    assert not (out / "report.parquet").exists()  # it never finished

    done_before = ResultStore.open(out, lock=False)
    committed = done_before.counts()[0]
    done_before.close()
    assert 8 <= committed < 40

    _, resumed = _run(tmp_path / "photos", out)
    _, clean = _run(tmp_path / "photos", tmp_path / "uninterrupted")
    drop = ["elapsed_ms"]  # time spent differs; every answer must not
    pd.testing.assert_frame_equal(resumed.drop(columns=drop), clean.drop(columns=drop))


def test_second_run_on_the_same_output_folder_is_refused(tmp_path: Path) -> None:
    _photos(tmp_path / "photos", 2)
    with ResultStore.open(tmp_path / "out"):
        result = CliRunner().invoke(app, ["audit", str(tmp_path / "photos"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "another iqa run" in result.stderr.lower() or "in use" in result.stderr.lower(), result.stderr
    assert "Traceback" not in result.stderr


def test_from_file_on_stdin_with_duplicates_and_a_log(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "photos", 3)
    copy = tmp_path / "photos" / "copy of img000.png"
    copy.write_bytes(paths[0].read_bytes())
    listing = "\n".join([str(paths[0]), "", str(copy), str(paths[2]), str(tmp_path / "gone.jpg")]) + "\n"
    log = tmp_path / "audit.log"
    result = CliRunner().invoke(
        app,
        [
            "audit",
            "--from-file",
            "-",
            "--out",
            str(tmp_path / "out"),
            "--workers",
            "0",
            "--engine",
            "signal",
            "--log-file",
            str(log),
            "--json",
        ],
        input=listing,
    )
    assert result.exit_code == 0, result.stderr
    rows = pd.read_parquet(tmp_path / "out" / "report.parquet").set_index("path")
    assert list(rows.index) == [str(paths[0]), str(copy), str(paths[2]), str(tmp_path / "gone.jpg")]
    assert rows.loc[str(copy), "duplicate_of"] == str(paths[0])
    assert pd.isna(rows.loc[str(paths[0]), "duplicate_of"])
    lines = log.read_text().splitlines()
    assert len(lines) == 1 and lines[0].endswith(
        f"{tmp_path / 'gone.jpg'}: not_found: no such file or folder; check the path"
    )
    summary = json.loads(result.stdout)
    assert summary["duplicates"] == 1 and summary["duplicate_groups"] == [[str(paths[0]), str(copy)]]


def test_quiet_cron_run_prints_nothing_and_fail_on_sets_the_exit_code(tmp_path: Path) -> None:
    _photos(tmp_path / "photos", 2)
    Image.new("RGB", (64, 48), (3, 3, 3)).save(tmp_path / "photos" / "black.png")
    result = CliRunner().invoke(
        app,
        [
            "audit",
            str(tmp_path / "photos"),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
            "--workers",
            "0",
            "--engine",
            "signal",
            "--fail-on",
            "bad",
        ],
    )
    assert (result.stdout, result.stderr) == ("", "")
    assert result.exit_code == 3  # the black frame is bad


@pytest.mark.parametrize("only", ["parquet", "csv"])
def test_report_reprints_filters_and_exports_without_running(tmp_path: Path, only: str) -> None:
    _photos(tmp_path / "photos", 3)
    Image.new("RGB", (32, 24), (5, 5, 5)).save(tmp_path / "photos" / "dark.png")
    Image.new("RGB", (32, 24), (8, 8, 8)).save(tmp_path / "photos" / "darker.png")
    _, rows = _run(tmp_path / "photos", tmp_path / "out")
    (tmp_path / "out" / ("report.csv" if only == "parquet" else "report.parquet")).unlink()
    runner = CliRunner()

    result = runner.invoke(app, ["report", str(tmp_path / "out"), "--verdict", "bad", "--export", "-"])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        str(tmp_path / "photos" / "dark.png"),
        str(tmp_path / "photos" / "darker.png"),
    ]

    result = runner.invoke(app, ["report", str(tmp_path / "out"), "--distortion", "insufficient brightness", "--json"])
    summary = json.loads(result.stdout)
    assert summary["files"] == 2 and summary["verdicts"]["bad"] == 2
    assert summary["distortions"] == {"insufficient brightness": 2}

    result = runner.invoke(app, ["report", str(tmp_path / "out"), "--export", str(tmp_path / "all.txt")])
    assert result.exit_code == 0 and "5 files" in result.stdout
    assert (tmp_path / "all.txt").read_text().splitlines() == list(rows["path"])


def test_report_on_a_folder_without_a_report_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "no report in" in result.stderr


def test_a_missing_list_file_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["audit", "--from-file", str(tmp_path / "nope.txt"), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "cannot read the list" in result.stderr
