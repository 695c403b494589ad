"""The benchmark scripts still run (their quick modes); the numbers themselves are recorded in docs/."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


# Each script with the line that must carry its figure: a run that prints no number has measured nothing.
@pytest.mark.parametrize(
    ("script", "figure"),
    [
        (
            ["bench_audit.py", "--quick", "--set-dir", "{tmp}"],
            r"iqa audit / decode-only throughput, per pair: min \d+\.\d\d / median \d+\.\d\d / max \d+\.\d\d",
        ),
        (
            ["bench_audit.py", "--memory", "8", "--size", "96x64", "--set-dir", "{tmp}"],
            r"8 files of 96x64: peak memory of the process tree \d+ MiB \(main process \d+, workers \d+\)",
        ),
        (
            ["trace_memory.py", "--counts", "4,8", "--size", "96x64", "--set-dir", "{tmp}"],
            r"grew from 4 to 8 files: -?\d+\.\d MiB, of which -?\d+\.\d MiB modules imported only in the larger run",
        ),
        (
            ["profile_audit.py", "--quick", "--set-dir", "{tmp}"],
            r"iqa audit, 8 small files, 2 workers +\d+\.\d\d s",
        ),
        (
            ["bench_decode.py", "--quick"],
            r"\| short 224 / long 672 \(DepictQA\) \| \d+ x \d+ \| \d+ \| \d+ \| \d+\.\dx \|",
        ),
        (
            ["bench_hostile.py", "--quick"],
            r"PNG bomb, 40000 x 40000 declared, \d+ kB on disk: too_many_pixels, peak \d+\.\d MiB",
        ),
        (
            ["bench_startup.py", "--quick"],
            r"iqa --version +\d+\.\d+s +none",
        ),
        (
            ["bench_signal.py", "--quick"],
            r"features \+ model over measure_768: \d+\.\d\dx",
        ),
        (
            ["bench_signal.py", "--quick", "--against", "HEAD"],
            r"features over features_HEAD, per repeat: median \d+\.\d{3} \(min \d+\.\d{3}, max \d+\.\d{3}\)",
        ),
        (
            ["bench_reaudit.py", "--quick"],
            r"re-audit, store only +\d+\.\d+ s +\d+ files/s +\(2000 replayed, 0 decoded\)",
        ),
    ],
)
def test_benchmark_prints_its_figure(script: list[str], figure: str, tmp_path: Path) -> None:
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in script[1:]]
    done = subprocess.run([sys.executable, str(BENCHMARKS / script[0]), *args], capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(figure, done.stdout), done.stdout
