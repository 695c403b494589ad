"""What a run shows on stderr: the live display (found so far, total, rate, time left), problem lines above it,
no hard wrapping when piped, --quiet keeping the problems, and --verbose's decisions and timings."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console
from rich.table import Table

from iqa_cli.audit.run import AuditSettings, run_audit
from iqa_cli.cli.progress import (
    ProblemLog,
    RunDisplay,
    RunHooks,
    print_timings,
    progress_rows,
    run_with_progress,
)
from iqa_cli.report.summary import PathCell, Summary, middle_truncated
from iqa_cli.testing.cli import invoke_iqa
from iqa_cli.testing.engines import BrightnessEngine

BROKEN = b"\xff\xd8 not really a JPEG"


class FakeClock:
    """Rich's clock, moved by the test: rates and times left without waiting or reading the wall clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _terminal(width: int = 120) -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=width, color_system=None)


def _printed(console: Console) -> str:
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


def _photos(folder: Path, count: int, *, broken: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", (48, 32), (40 + 20 * i, 120, 90)).save(folder / f"img{i}.png")
    if broken:
        (folder / "broken.jpg").write_bytes(BROKEN)
    return folder


def test_the_display_says_found_so_far_until_discovery_ends_then_the_total_and_time_left() -> None:
    console, clock = _terminal(), FakeClock()
    with RunDisplay(console, auto_refresh=False, get_time=clock) as display:
        display.found(3, False)
        display.advance()
        display.refresh()
        before = _printed(console)
        assert "1 done, 3 found so far" in before and "/40" not in before
        display.found(40, True)
        for _ in range(9):
            clock.now += 0.5
            display.advance()
        display.found(256, False)  # a late count from the other walk: the total stays
        display.refresh()
        after = _printed(console)[len(before) :]
    assert "10/40" in after and "found so far" not in after
    assert "2.0 img/s" in after and "0:00:15 left" in after  # 9 images in 4.5 s; 30 to go


def test_problem_lines_print_through_the_live_display_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    console, log = _terminal(), tmp_path / "problems.log"
    problems = ProblemLog(log)  # made with its own stderr console, as the command makes it
    row = {"status": "error", "path": "/photos/broken.jpg", "error_code": "truncated", "error": "cut short"}

    def run(hooks: RunHooks) -> Summary:  # stands in for run_audit, calling the display's callbacks
        assert {"on_found", "on_ready", "on_row", "on_note"} <= set(hooks)
        hooks["on_found"](1, True)
        hooks["on_row"](row)
        hooks["on_ready"]()
        return Summary("fake", "1")

    run_with_progress(run, problems, silent=False, console=console)
    problems.close()
    shown = _printed(console)
    assert "skipped /photos/broken.jpg: truncated: cut short" in shown
    assert "assessing" in shown.split("broken.jpg")[1]  # the bar is drawn again under the line, not overwritten
    assert capsys.readouterr().err == ""  # nothing went around the display
    assert log.read_text().rstrip().endswith("/photos/broken.jpg: truncated: cut short")


def test_a_run_counts_its_files_for_the_display_and_reports_each_one_out_of_the_queue(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos", 6, broken=True)
    for paths in ([str(photos)], iter([str(photos)])):  # a list is counted ahead; a stream as it is walked
        found: list[tuple[int, bool]] = []
        ready: list[None] = []
        summary = run_audit(
            AuditSettings(paths=paths, workers=0),
            BrightnessEngine(),
            [],
            on_found=lambda count, finished: found.append((count, finished)),  # noqa: B023
            on_ready=lambda: ready.append(None),  # noqa: B023
        )
        assert summary.files == 7 and len(ready) == 7
        assert found[-1] == (7, True) and {f for f in found if f[1]} == {(7, True)}
        if not isinstance(paths, list):
            assert found == [*((n, False) for n in range(1, 8)), (7, True)]


def test_piped_output_is_never_hard_wrapped(tmp_path: Path) -> None:
    folder = tmp_path / ("a-folder-with-a-long-name-" * 8)
    _photos(folder, 2, broken=True)
    broken = str(folder / "broken.jpg")
    assert len(broken) > 200
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR")}
    args = ["audit", str(folder), "--out", str(tmp_path / "out"), "-j", "0", "-e", "signal", "--checks", "none"]
    result = subprocess.run(
        [sys.executable, "-m", "iqa_cli", *args], capture_output=True, text=True, env=env, timeout=900, check=False
    )
    assert result.returncode == 0, result.stderr
    problem = [line for line in result.stderr.splitlines() if "broken.jpg" in line]
    assert len(problem) == 1 and broken in problem[0] and "not_an_image" in problem[0], result.stderr
    assert any(broken in line and "not_an_image" in line for line in result.stdout.splitlines()), result.stdout


def test_quiet_and_json_still_print_problem_lines_on_stderr(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos", 2, broken=True)
    base = ("audit", str(photos), "-j", "0", "-e", "signal", "--checks", "none")
    code, out, err = invoke_iqa(*base, "--out", str(tmp_path / "a"), "--quiet")
    assert (code, out) == (0, "")
    assert err.startswith("skipped ") and "broken.jpg: not_an_image" in err and len(err.splitlines()) == 1
    code, out, err = invoke_iqa(*base, "--out", str(tmp_path / "b"), "--json")
    assert code == 0 and json.loads(out)["errors"] == 1  # stdout stays pure JSON
    assert "broken.jpg: not_an_image" in err


def test_verbose_prints_the_decisions_and_the_timings_which_json_has_too(tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos", 3)
    args = ("audit", str(photos), "--out", str(tmp_path / "out"), "-j", "0", "-e", "signal", "--checks", "none")
    code, out, err = invoke_iqa(*args, "-v", "--json", "--batch-size", "2")
    assert code == 0, err
    for said in (
        "engine: signal",
        "chosen with --engine",
        "batch size: 2 images per engine call (--batch-size)",
        "decoding: in this process (--workers 0)",
        "checks: none",
        "results store: 0 of 3 rows replayed",
        "timings: discovery",
    ):
        assert said in err, (said, err)
    timings = json.loads(out)["timings"]
    assert set(timings) == {"discovery", "decode_prepare", "engine", "writing", "total"}
    assert all(seconds >= 0 for seconds in timings.values())
    code, _, err = invoke_iqa(*args, "--json")
    assert code == 0 and "verbose" not in err  # without -v: none of it


def test_timings_line_names_every_stage() -> None:
    console = _terminal()
    print_timings({"discovery": 0.5, "decode_prepare": 2.0, "engine": 1.25, "writing": 0.1, "total": 3.0}, console)
    line = _printed(console).strip()
    assert line == (
        "verbose timings: discovery 0.50 s, decode and prepare (summed over the workers) 2.00 s, engine 1.25 s, "
        "writing 0.10 s; total 3.00 s"
    )


def test_paths_are_shortened_in_the_middle_keeping_the_file_name() -> None:
    path = "/data/photos/2021/holiday-in-the-mountains/day-03/IMG_20210801_123456.jpg"
    assert middle_truncated(path, 200) == path
    short = middle_truncated(path, 40)
    assert len(short) == 40 and short.startswith("/data/photos/") and short.endswith("…/IMG_20210801_123456.jpg")
    assert middle_truncated(path, 12) == "…_123456.jpg"  # not even the name fits: its end
    table = Table()
    table.add_column("image")
    table.add_column("answer")
    table.add_row(PathCell(path), "Blur and noise")
    console = _terminal(width=50)
    console.print(table)
    lines = [line for line in _printed(console).splitlines() if "IMG_" in line]
    assert len(lines) == 1 and "…/IMG_20210801_123456.jpg" in lines[0]  # one line, the name whole


def test_progress_rows_gives_no_callback_without_a_terminal() -> None:
    with progress_rows(10, "evaluating", silent=False) as on_row:  # stderr is captured here: not a terminal
        assert on_row is None
