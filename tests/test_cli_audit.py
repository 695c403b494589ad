"""`iqa audit` through its real command line: options, reports, summary, exit codes, output streams."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import skimage.data
from PIL import Image
from typer.testing import CliRunner

from iqa_cli.cli.app import app
from iqa_cli.evaluation.distortions import distort
from iqa_cli.testing.cli import invoke_iqa

runner = CliRunner()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean photo, a badly blurred one, a noisy one in a sub-folder, and a fake JPEG."""
    root = tmp_path_factory.mktemp("photos")
    clean = skimage.data.astronaut()
    Image.fromarray(clean).save(root / "clean.png")
    Image.fromarray(distort(clean, "blur", 5, function="blur_gaussian")).save(root / "blurred.png")
    (root / "sub").mkdir()
    Image.fromarray(distort(clean, "noise", 5, function="noise_gaussian_rgb")).save(root / "sub" / "noisy.png")
    (root / "sub" / "page.jpg").write_text("<!doctype html><p>saved from a browser</p>")
    return root


def audit(*args: str) -> tuple[int, str, str]:
    return invoke_iqa("audit", *args)


def test_help_explains_every_option() -> None:
    result = runner.invoke(app, ["audit", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in (
        "--detail",
        "--out",
        "--format",
        "--engine",
        "--min-confidence",
        "--recursive",
        "--include",
        "--exclude",
        "--workers",
        "--batch-size",
        "--limit",
        "--quiet",
        "--json",
        "--fail-on",
    ):
        assert option in result.stdout, option
    assert "iqa audit ./photos --detail" in result.stdout


def test_audit_writes_reports_and_summary(photos: Path, tmp_path: Path) -> None:
    code, out, err = audit(str(photos), "--out", str(tmp_path), "--workers", "0", "--detail")
    assert code == 0, err
    rows = pd.read_parquet(tmp_path / "report.parquet").set_index("path")
    assert len(rows) == 4 and len(pd.read_csv(tmp_path / "report.csv")) == 4
    assert rows.loc[str(photos / "clean.png"), "verdict"] == "ok"
    blurred = rows.loc[str(photos / "blurred.png")]
    assert blurred["verdict"] == "bad" and "blur" in list(blurred["distortions"])
    assert blurred["detail"] and blurred["engine"] == "signal"
    assert "noise" in list(rows.loc[str(photos / "sub" / "noisy.png"), "distortions"])
    page = rows.loc[str(photos / "sub" / "page.jpg")]
    assert page["status"] == "error" and page["error_code"] == "not_an_image"
    assert "4 files, 3 assessed, 1 errors" in out
    assert "Worst images" in out and "blurred.png" in out
    assert "page.jpg" in err  # problems are logged on stderr as they happen
    assert "\x1b[" not in out + err  # not a terminal: no colour codes


def test_clean_share_reweights_the_confidence_and_re_assesses(tmp_path: Path) -> None:
    # Expecting mostly clean photos makes "None" more believable, expecting mostly distorted ones less; the store
    # keeps answers per setting, so each run with another share assesses again instead of reusing them.
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(skimage.data.coffee()).save(folder / "coffee.png")  # a photo the model never trained on
    confidence = {}
    for share in (None, "0.95", "0.01"):
        extra = () if share is None else ("--clean-share", share)
        code, _, err = audit(str(folder), "--out", str(tmp_path / "report"), "--workers", "0", *extra)
        assert code == 0, err
        row = pd.read_parquet(tmp_path / "report" / "report.parquet").iloc[0]
        assert row["answer"] == "None"
        confidence[share] = row["confidence"]
    assert confidence["0.01"] < confidence[None] < confidence["0.95"]
    code, _, err = audit(str(folder), "--out", str(tmp_path / "report"), "--clean-share", "1.5")
    assert code == 2 and "clean-share" in err


def test_json_summary_on_stdout(photos: Path, tmp_path: Path) -> None:
    code, out, _ = audit(
        str(photos / "clean.png"),
        str(photos / "sub"),
        "--out",
        str(tmp_path),
        "--json",
        "--format",
        "jsonl",
        "--workers",
        "0",
    )
    assert code == 0
    summary = json.loads(out)
    assert summary["files"] == 3 and summary["errors"] == 1 and summary["engine"] == "signal"
    assert summary["reports"] == [str(tmp_path / "report.jsonl")]
    assert not (tmp_path / "report.parquet").exists()


def test_quiet_prints_nothing_on_success(photos: Path, tmp_path: Path) -> None:
    code, out, err = audit(str(photos / "clean.png"), "--out", str(tmp_path), "--quiet", "--workers", "0")
    assert (code, out, err) == (0, "", "")


@pytest.mark.parametrize(("fail_on", "expected"), [("bad", 3), ("degraded", 3), ("review", 0)])
def test_fail_on(photos: Path, tmp_path: Path, fail_on: str, expected: int) -> None:
    code, out, _ = audit(str(photos), "--out", str(tmp_path), "--fail-on", fail_on, "--workers", "0", "--json")
    assert code == expected
    assert json.loads(out)["needs_review"] == 0  # every answer here is confident: review has nothing to fail on
    code, _, _ = audit(str(photos / "clean.png"), "--out", str(tmp_path), "--fail-on", "degraded", "--workers", "0")
    assert code == 0


def test_fail_on_review_exits_3_when_an_answer_is_doubtful(photos: Path, tmp_path: Path) -> None:
    # A grey copy of a colour photo: the signal engine names desaturation but is unsure (confidence < 0.6).
    folder = tmp_path / "in"
    folder.mkdir()
    grey = Image.open(photos / "clean.png").convert("L").convert("RGB")
    grey.save(folder / "grey.png")
    code, out, _ = audit(str(folder), "--out", str(tmp_path / "o"), "--fail-on", "review", "-j", "0", "--json")
    assert json.loads(out)["needs_review"] == 1 and code == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "xlsx"], "unknown report format xlsx"),
        (["--engine", "nope"], "unknown engine 'nope'"),
        (["--min-confidence", "2"], "min-confidence"),
    ],
)
def test_usage_errors_exit_2(photos: Path, tmp_path: Path, args: list[str], message: str) -> None:
    code, _, err = audit(str(photos), "--out", str(tmp_path), *args)
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_model_engine_without_model_says_what_to_do(photos: Path, tmp_path: Path) -> None:
    code, _, err = audit(
        str(photos), "--out", str(tmp_path), "--engine", "depictqa", "--model", str(tmp_path / "no-models")
    )
    assert code == 2 and "Traceback" not in err
    said = " ".join(err.split())  # Rich wraps the message
    assert "iqa model download --dir" in said and "--model or $IQA_MODELS_DIR" in said


def test_a_missing_path_beside_real_ones_is_a_row_not_a_crash(photos: Path, tmp_path: Path) -> None:
    code, out, _ = audit(
        str(photos), str(tmp_path / "nowhere"), "--out", str(tmp_path / "out"), "--json", "--workers", "0"
    )
    assert code == 0
    assert json.loads(out)["error_codes"] == {"not_found": 1, "not_an_image": 1}  # the fake JPEG is the other


def test_only_missing_paths_is_a_usage_error_that_keeps_the_old_reports(photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert audit(str(photos), "--out", str(out), "--workers", "0", "--quiet")[0] == 0
    before = {p.name: p.read_bytes() for p in out.glob("report.*")}
    code, _, err = audit(str(tmp_path / "nowhere"), "--out", str(out), "--workers", "0")
    assert code == 2 and "no such file or folder" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.glob("report.*")} == before


def test_a_folder_without_images_exits_4_and_keeps_the_old_reports(photos: Path, tmp_path: Path) -> None:
    out, empty = tmp_path / "out", tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not an image")
    assert audit(str(photos), "--out", str(out), "--workers", "0", "--quiet")[0] == 0
    before = {p.name: p.read_bytes() for p in out.glob("report.*")}
    code, _, err = audit(str(empty), "--out", str(out), "--workers", "0")
    assert code == 4 and "no image found" in err
    assert {p.name: p.read_bytes() for p in out.glob("report.*")} == before
    assert not list(out.glob(".*.tmp"))  # the abandoned reports left nothing behind


def _default_signals() -> None:
    # A child of a background job inherits SIGINT ignored, and Python then installs no Ctrl-C handler:
    # reset it, so that the test does not depend on how the test runner was started.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _many_photos(root: Path, count: int = 150) -> Path:
    root.mkdir()
    base = Image.fromarray(skimage.data.coffee())
    past = time.time() - 3600  # older than the store's racy window: an unchanged file is trusted
    for i in range(count):
        base.save(root / f"{i:03d}.jpg", quality=90)
        os.utime(root / f"{i:03d}.jpg", (past, past))
    return root


def _start_audit(photos: Path, out: Path, *extra: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "iqa_cli",
        "audit",
        str(photos),
        "--out",
        str(out),
        "--format",
        "csv,jsonl,parquet",
    ]
    return subprocess.Popen(
        [*command, "--workers", "0", "--batch-size", "1", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=_default_signals,
    )


def _interrupt_after_rows(
    process: subprocess.Popen, out: Path, signals: list[int], rows: int = 3
) -> tuple[bytes, bytes]:
    """Send `signals` one after the other once the CSV being written holds `rows` rows; the run's stdout, stderr."""
    # A condition, polled: not a fixed wait. The limit only keeps a broken run from hanging the suite.
    deadline = time.monotonic() + 600
    while not ((partial := list(out.glob(".report.csv.*.tmp"))) and partial[0].read_text().count("\n") > rows):
        assert process.poll() is None and time.monotonic() < deadline, f"the run never wrote {rows} rows"
        time.sleep(0.05)
    for sent in signals:  # pressed quickly, one after the other
        process.send_signal(sent)
    return process.communicate(timeout=600)


def _report_lengths(out: Path) -> tuple[int, int, int]:
    return (
        len(pd.read_csv(out / "report.csv")),
        len(pd.read_parquet(out / "report.parquet")),
        len((out / "report.jsonl").read_text().splitlines()),
    )


@pytest.mark.parametrize("signals", [[signal.SIGINT], [signal.SIGTERM], [signal.SIGINT, signal.SIGINT, signal.SIGINT]])
def test_ctrl_c_or_sigterm_stops_cleanly_and_keeps_finished_rows(tmp_path: Path, signals: list[int]) -> None:
    out = tmp_path / "out"
    process = _start_audit(_many_photos(tmp_path / "many"), out)
    _, err = _interrupt_after_rows(process, out, signals)
    assert process.returncode == 130, err
    assert b"Traceback" not in err
    rows = pd.read_csv(out / "report.csv")
    assert 3 <= len(rows) < 150
    assert (rows["status"] == "ok").all()
    assert _report_lengths(out) == (len(rows),) * 3  # every report holds the same rows
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("signals", [[signal.SIGINT], [signal.SIGTERM, signal.SIGINT, signal.SIGINT]])
def test_an_interrupted_rerun_keeps_every_row_the_store_has(tmp_path: Path, signals: list[int]) -> None:
    photos, out = _many_photos(tmp_path / "many"), tmp_path / "out"
    first = _start_audit(photos, out, "--quiet")
    assert first.wait(timeout=900) == 0
    complete = pd.read_parquet(out / "report.parquet")
    process = _start_audit(photos, out, "--rerun")
    summary, err = _interrupt_after_rows(process, out, signals)
    assert process.returncode == 130 and b"Traceback" not in err, err
    # The files the rerun did not reach keep their remembered rows; a stop pressed again during that carrying
    # over keeps the earlier complete reports. Either way no report is shorter than the complete one.
    assert _report_lengths(out) == (150, 150, 150)
    again = pd.read_parquet(out / "report.parquet")
    assert again["path"].tolist() == complete["path"].tolist()
    assert again.drop(columns=["elapsed_ms"]).equals(complete.drop(columns=["elapsed_ms"]))
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    if signals == [signal.SIGINT]:
        assert b"rows carried over unchanged from earlier runs" in summary


def test_summary_prints_bracketed_text_literally(photos: Path, tmp_path: Path, monkeypatch) -> None:
    # Rich would swallow "[depictqa]" as a markup tag; the engine note must reach the user intact.
    monkeypatch.setattr(
        "iqa_cli.cli.options.create_engine", _signal_with_note("install it with pip install '.[depictqa]'")
    )
    code, out, _ = audit(str(photos / "clean.png"), "--out", str(tmp_path), "--workers", "0")
    assert code == 0 and "'.[depictqa]'" in out


def _signal_with_note(note: str):
    from iqa_cli.engines.base import EngineOptions
    from iqa_cli.engines.signal.engine import SignalEngine

    return lambda name, options: (SignalEngine.create(EngineOptions()), note)


def test_output_folder_that_is_a_file_is_one_clear_line(photos: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file, not a folder")
    code, _, err = audit(str(photos / "clean.png"), "--out", str(tmp_path / "taken"), "--workers", "0")
    assert code == 1 and "taken" in err and "Traceback" not in err


def test_checks_none_asks_no_plugin_for_its_checks(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A check plugin's module may be costly to import (iqa-dupes brings SciPy's FFT): --checks none skips it.
    import iqa_cli.plugins

    def refuse() -> dict:
        raise AssertionError("the check plugins were loaded")

    monkeypatch.setattr(iqa_cli.plugins, "checks", refuse)
    out = tmp_path / "out"
    args = ["audit", str(photos), "--out", str(out), "--workers", "0", "--engine", "signal", "--json"]
    result = runner.invoke(app, [*args, "--checks", "none"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"] > 0
    assert runner.invoke(app, args).exit_code != 0  # the default (every installed check) does ask


@pytest.mark.parametrize("how", ["module", "script"])
def test_a_spawned_worker_does_not_import_the_cli(how: str) -> None:
    # spawn re-runs the parent's main module as __mp_main__ in every decode worker (runpy, as here): the
    # console script and `python -m iqa_cli` must not pull Typer, Rich and PyArrow in with it.
    script = Path(sys.executable).parent / "iqa"
    if how == "script" and not script.is_file():
        pytest.skip("no installed console script beside this interpreter")
    run = "runpy.run_module('iqa_cli.__main__', run_name='__mp_main__')"
    if how == "script":
        run = f"runpy.run_path({str(script)!r}, run_name='__mp_main__')"
    probe = f"import runpy, sys; {run}; print(sorted({{'typer', 'rich', 'pyarrow'}} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_reports_name_files_absolutely_whatever_folder_they_are_read_from(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path as typed (relative) would name other files for an `iqa report --export` run elsewhere."""
    monkeypatch.chdir(photos.parent)
    out = tmp_path / "out"
    code, _, err = audit(photos.name, "--out", str(out), "--workers", "0", "--quiet", "--format", "parquet,jsonl")
    assert code == 0, err
    rows = pd.read_parquet(out / "report.parquet")
    assert all(Path(p).is_absolute() and Path(p).exists() for p in rows["path"])
    assert set(rows["root"]) == {photos.name}  # as typed, for display
    assert [json.loads(line)["root"] for line in (out / "report.jsonl").read_text().splitlines()] == list(rows["root"])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, exported, err = invoke_iqa("report", str(out), "--export", "-")
    assert code == 0, err
    assert exported.split() == list(rows["path"])
