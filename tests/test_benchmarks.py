"""The benchmark scripts still run (their quick modes); the numbers themselves are recorded in docs/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.parametrize(
    "script",
    [
        ["bench_audit.py", "--quick", "--images", "8"],
        ["bench_decode.py", "--quick"],
        ["bench_reaudit.py", "--quick"],
    ],
)
def test_benchmark_runs(script: list[str]) -> None:
    done = subprocess.run([sys.executable, str(BENCHMARKS / script[0]), *script[1:]], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "a benchmark prints its figures"
