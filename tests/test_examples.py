"""The examples run: the library API example on generated images, and the cron wrapper passes shellcheck."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import skimage.data
from PIL import Image

from iqa_cli.evaluation.distortions import distort

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


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
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("3 files, 2 assessed, 1 errors")
    ranked = [line for line in lines[1:] if line.endswith(".png")]
    assert ranked[0].endswith("blurred.png") and ranked[1].endswith("clean.png")
    assert any("broken.jpg" in line and line.startswith("error") for line in lines)
    assert (tmp_path / "out" / "report.parquet").is_file()


def test_cron_files_are_in_place() -> None:
    script = EXAMPLES / "cron" / "iqa-nightly.sh"
    assert script.stat().st_mode & 0o111, "iqa-nightly.sh must be executable"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
    assert "iqa-nightly.sh" in (EXAMPLES / "cron" / "crontab.example").read_text()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_cron_script_passes_shellcheck() -> None:
    result = subprocess.run(
        ["shellcheck", str(EXAMPLES / "cron" / "iqa-nightly.sh")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout
