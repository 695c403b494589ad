"""How long the commands people type by hand take to answer: `--version`, `--help`, a TAB completion (a script).

    python benchmarks/bench_startup.py [--repeats 7] [--quick]

Each command runs as a fresh process of the installed `iqa` console script (or `python -m iqa_cli` when the
script is not on PATH), wall time, best of `--repeats` (the machine is shared: the best run is the one least
disturbed). A completion is what the shell asks for on TAB (`_IQA_COMPLETE=complete_bash`, as
man/completion/iqa.bash does). The heavy modules each command imported are listed from `-X importtime`.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time

HEAVY = ("numpy", "PIL", "pyarrow", "torch", "pandas", "scipy")


def _command() -> list[str]:
    found = shutil.which("iqa")
    return [found] if found else [sys.executable, "-m", "iqa_cli"]


def _best(argv: list[str], env: dict[str, str], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        best = min(best, time.perf_counter() - started)
    return best


def _heavy_imports(args: list[str], env: dict[str, str]) -> list[str]:
    # The console script itself, so that the program is called "iqa" (Click names the completion variable after it).
    script = _command()[1:] if len(_command()) > 1 else _command()
    done = subprocess.run([sys.executable, "-X", "importtime", *script, *args], env=env, capture_output=True, text=True)
    names = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    return sorted(name for name in HEAVY if name in names)


def _completion(words: str, current: int) -> dict[str, str]:
    """The environment bash's completion function gives a Click program on TAB."""
    return {"_IQA_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(current)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="one run each (for the test suite)")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    base = {**os.environ, "COLUMNS": "80"}
    cases = [
        ("iqa --version", ["--version"], {}),
        ("iqa audit --help", ["audit", "--help"], {}),
        ("TAB: iqa audit --eng", [], _completion("iqa audit --eng", 2)),
        ("TAB: iqa audit --engine <TAB>", [], _completion("iqa audit --engine ", 3)),
    ]
    load = os.getloadavg()[0]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {load:.2f}; Python {platform.python_version()}")
    print(f"{'command':<32} {'best of ' + str(repeats):>10}   heavy modules imported")
    python_start = _best([sys.executable, "-c", "pass"], base, repeats)
    print(f"{'(python -c pass)':<32} {python_start:9.3f} s")
    for label, argv, extra in cases:
        env = {**base, **extra}
        seconds = _best([*_command(), *argv], env, repeats)
        heavy = _heavy_imports(argv, env)
        print(f"{label:<32} {seconds:9.3f} s   {', '.join(heavy) or 'none'}")


if __name__ == "__main__":
    main()
