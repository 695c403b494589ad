"""End to end: `iqa audit` with the installed plugin finds a resized JPEG copy of a photo."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest

# Here, not in conftest.py: a skip raised while pytest loads a conftest named on its command line (or in
# testpaths) aborts the whole run instead of skipping these tests.
pytest.importorskip("iqa_dupes", reason="the iqa-dupes plugin is not installed: pip install -e plugins/iqa-dupes")

from dupestools import photo
from iqa_cli import plugins
from iqa_cli.cli.app import app
from typer.testing import CliRunner

runner = CliRunner()


@pytest.fixture(autouse=True)
def _installed() -> None:
    plugins.plugin_manager.cache_clear()
    if "near-duplicate" not in plugins.checks():
        pytest.skip("iqa-dupes is importable but not installed (no entry point): pip install -e plugins/iqa-dupes")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A photo, an unrelated photo, and a half-size JPEG copy of the first (named to sort after it)."""
    root = tmp_path / "photos"
    root.mkdir()
    original = photo("astronaut")
    original.save(root / "a-astronaut.png")
    photo("coffee").save(root / "b-coffee.png")
    original.resize((256, 256)).save(root / "c-astronaut-small.jpg", quality=80)
    return root


def audit(folder: Path, out: Path, *options: str) -> tuple[int, dict]:
    args = ["audit", str(folder), "--out", str(out), "--engine", "signal", "--workers", "0", "--json", *options]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.exit_code, json.loads(result.stdout)


def test_audit_reports_the_near_copy(folder: Path, tmp_path: Path) -> None:
    _, summary = audit(folder, tmp_path / "out", "--checks", "near-duplicate", "--format", "parquet")
    rows = pd.read_parquet(tmp_path / "out" / "report.parquet")
    findings = {Path(p).name: list(f) for p, f in zip(rows["path"], rows["findings"], strict=True)}
    assert findings["a-astronaut.png"] == [] and findings["b-coffee.png"] == []
    [finding] = findings["c-astronaut-small.jpg"]
    assert finding.startswith(f"near-duplicate/near_copy: looks like {folder / 'a-astronaut.png'} (hash distance ")
    assert rows["duplicate_of"].isna().all()  # not the same bytes: only the check can see it
    assert summary["findings"] == {"near-duplicate/near_copy": 1}


def test_runs_by_default_and_none_disables(folder: Path, tmp_path: Path) -> None:
    _, by_default = audit(folder, tmp_path / "default", "--format", "jsonl")
    _, disabled = audit(folder, tmp_path / "none", "--format", "jsonl", "--checks", "none")
    assert by_default["findings"] == {"near-duplicate/near_copy": 1}
    assert not disabled["findings"]


def test_listed_by_iqa_plugins() -> None:
    result = runner.invoke(app, ["plugins"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    [line] = [line for line in result.stdout.splitlines() if "near-duplicate" in line]
    assert "check" in line and "iqa_dupes.check.NearDuplicateCheck" in line and "iqa-dupes 0.1.0" in line


def test_a_near_copy_of_a_name_that_is_not_utf8(tmp_path: Path) -> None:
    """The finding quotes the original's name, whose bytes are not UTF-8: every report is still written, on
    every run, with the name's exact bytes in `path_bytes` and the finding readable."""
    root = tmp_path / "photos"
    root.mkdir()
    original = os.fsencode(root) + b"/a-astronaut\xff.png"
    with open(original, "wb") as file:
        photo("astronaut").save(file, "PNG")
    photo("astronaut").resize((256, 256)).save(root / "c-astronaut-small.jpg", quality=80)
    an_hour_ago = time.time() - 3600  # older than the store's racy window: the second run trusts their stat
    for name in (original, root / "c-astronaut-small.jpg"):
        os.utime(name, (an_hour_ago, an_hour_ago))
    for _ in range(2):  # the second run replays the first's rows from the results store
        audit(root, tmp_path / "out", "--checks", "near-duplicate", "--format", "parquet,csv,jsonl")
        rows = pd.read_parquet(tmp_path / "out" / "report.parquet")
        assert list(rows["path_bytes"]) == [original, None]
        [finding] = rows["findings"][1]
        assert finding.startswith(f"near-duplicate/near_copy: looks like {rows['path'][0]} (hash distance ")
        assert rows["path"][0].endswith("a-astronaut\\xff.png")
        jsonl = [json.loads(line) for line in (tmp_path / "out" / "report.jsonl").read_text().splitlines()]
        assert os.fsencode(jsonl[0]["path"]) == original and jsonl[1]["findings"] == [finding]
        csv = pd.read_csv(tmp_path / "out" / "report.csv")
        assert list(csv["findings"].fillna("")) == ["", finding]
