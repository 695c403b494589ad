"""The examples run: the library API example on generated images, and the cron wrapper as cron runs it."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import skimage.data
from PIL import Image

from iqa_cli.evaluation.distortions import distort

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NIGHTLY = EXAMPLES / "cron" / "iqa-nightly.sh"
CRON_PATH = "/usr/bin:/bin"  # the PATH cron gives its jobs
IQA = Path(sys.executable).parent / "iqa"  # the console script of this environment
needs_console_script = pytest.mark.skipif(not IQA.is_file(), reason="no installed console script beside python")


def test_api_example_lists_the_worst_images(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    clean = skimage.data.astronaut()
    Image.fromarray(clean).save(photos / "clean.png")
    Image.fromarray(distort(clean, "blur", 5)).save(photos / "blurred.png")
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "api_example.py"), str(photos), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("3 files, 2 assessed, 1 errors")
    ranked = [line for line in lines[1:] if line.endswith(".png")]
    assert ranked[0].endswith("blurred.png") and ranked[1].endswith("clean.png")
    assert any("broken.jpg" in line and line.startswith("error") for line in lines)
    assert (tmp_path / "out" / "report.parquet").is_file()


def test_cron_files_are_in_place() -> None:
    assert NIGHTLY.stat().st_mode & 0o111, "iqa-nightly.sh must be executable"
    text = NIGHTLY.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    crontab = (EXAMPLES / "cron" / "crontab.example").read_text()
    assert "iqa-nightly.sh" in crontab
    assert any(line.startswith("IQA=/") for line in crontab.splitlines()), "cron's PATH has no iqa: set IQA"


def drop_folder(root: Path) -> Path:
    """A clean photo, a badly blurred one and a fake JPEG, written an hour ago (so the results store trusts
    them at once: docs/unattended.md, racy files)."""
    drop = root / "incoming"
    drop.mkdir()
    clean = skimage.data.astronaut()
    Image.fromarray(clean).save(drop / "clean.png")
    Image.fromarray(distort(clean, "blur", 5, function="blur_gaussian")).save(drop / "blurred.png")
    (drop / "broken.jpg").write_bytes(b"not a jpeg")
    an_hour_ago = time.time() - 3600
    for path in drop.iterdir():
        os.utime(path, (an_hour_ago, an_hour_ago))
    return drop


def nightly(home: Path, *args: str, **settings: str | Path) -> subprocess.CompletedProcess[str]:
    """The wrapper as cron runs it: an empty environment but for cron's PATH, HOME and the crontab's settings."""
    home.mkdir(exist_ok=True)
    env = [f"PATH={CRON_PATH}", f"HOME={home}", *(f"{name}={value}" for name, value in settings.items())]
    return subprocess.run(
        ["/usr/bin/env", "-i", *env, str(NIGHTLY), *args], capture_output=True, text=True, check=False, timeout=900
    )


@needs_console_script
def test_cron_wrapper_reuses_the_store_and_keeps_a_dated_copy_of_each_night(tmp_path: Path) -> None:
    drop = drop_folder(tmp_path)
    root = tmp_path / "reports"
    nights = ["2030-01-01", "2030-01-02"]
    for night in nights:
        result = nightly(
            tmp_path / "home",
            *("--engine", "signal", "--workers", "0"),
            IQA=IQA,
            DROP_DIR=drop,
            REPORT_ROOT=root,
            FAIL_ON="degraded",
            RUN_DATE=night,
        )
        # 3: an image met FAIL_ON; with no MAIL_TO the list goes to stderr, which cron mails.
        assert result.returncode == 3, result.stderr
        assert f"met --fail-on degraded ({night})" in result.stderr and str(drop / "blurred.png") in result.stderr
    assert (root / "latest" / "iqa-store.sqlite").is_file()  # one output folder for every night
    first, second = (root / night for night in nights)
    for folder in (first, second):
        names = {path.name for path in folder.iterdir()}
        assert {"report.parquet", "report.csv", "summary.json", "iqa.log", "flagged.txt"} <= names
        assert json.loads((folder / "summary.json").read_text())["files"] == 3
        assert (folder / "errors.paths0").read_bytes() == os.fsencode(drop / "broken.jpg") + b"\0"
        flagged = (folder / "flagged.paths0").read_bytes().split(b"\0")[:-1]
        assert os.fsencode(drop / "blurred.png") in flagged and os.fsencode(drop / "clean.png") not in flagged
        assert "flagged files:" in (folder / "flagged.txt").read_text()
    # The second night replayed every row from the store: the same report to the byte, elapsed_ms included,
    # which a fresh assessment would measure anew.
    assert (first / "report.csv").read_bytes() == (second / "report.csv").read_bytes()
    assert (root / "nightly.log").read_text().count("flagged images listed in") == 2


@needs_console_script
def test_cron_wrapper_passes_on_no_image_found_and_prunes_old_nights(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    old = root / "2001-01-01"
    old.mkdir(parents=True)
    long_ago = time.time() - 90 * 86400
    os.utime(old, (long_ago, long_ago))
    (tmp_path / "empty").mkdir()
    result = nightly(
        tmp_path / "home",
        *("--engine", "signal", "--workers", "0"),
        IQA=IQA,
        DROP_DIR=tmp_path / "empty",
        REPORT_ROOT=root,
        RUN_DATE="2030-01-01",
        KEEP_DAYS="30",
    )
    assert result.returncode == 4, result.stderr  # iqa audit's "no image found"
    assert "no image found" in result.stderr
    assert sorted(path.name for path in root.iterdir() if not path.name.startswith(".")) == ["latest", "nightly.log"]


def test_cron_wrapper_without_iqa_says_to_set_IQA(tmp_path: Path) -> None:
    if shutil.which("iqa", path=CRON_PATH):
        pytest.skip(f"an iqa is installed on cron's PATH ({CRON_PATH})")
    settings = {"DROP_DIR": tmp_path, "REPORT_ROOT": tmp_path / "reports"}
    result = nightly(tmp_path / "home", **settings)
    assert result.returncode == 2, result.stderr
    assert "iqa is not on PATH" in result.stderr and "set IQA to the iqa executable" in result.stderr
    assert "command not found" not in result.stderr
    result = nightly(tmp_path / "home", IQA=tmp_path / "no-iqa", **settings)
    assert result.returncode == 2 and f"IQA={tmp_path / 'no-iqa'} is not an executable" in result.stderr
    assert not (tmp_path / "reports").exists()  # nothing was started


@pytest.mark.skipif(shutil.which("flock", path=CRON_PATH) is None, reason="no flock(1) on cron's PATH")
def test_cron_wrapper_skips_a_night_while_the_last_one_runs(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    root.mkdir()
    with open(root / ".iqa-nightly.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a run that is still going holds it
        result = nightly(tmp_path / "home", IQA=sys.executable, DROP_DIR=tmp_path, REPORT_ROOT=root)
    assert result.returncode == 75, result.stderr
    assert "previous run still holds" in result.stderr
    assert "skipped" in (root / "nightly.log").read_text()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_cron_script_passes_shellcheck() -> None:
    result = subprocess.run(
        ["shellcheck", str(EXAMPLES / "cron" / "iqa-nightly.sh")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout
