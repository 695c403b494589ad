"""How long the commands people type by hand take to answer: `--version`, `--help`, a TAB completion (a script).

    python benchmarks/bench_startup.py [--repeats 7] [--checkout DIR ...] [--quick]

Each command runs as a fresh process of an `iqa` script (`from iqa_cli.cli import main; main()`, as the
console script does) with PYTHONPATH set to a checkout: this one by default, or each `--checkout` given, run
in turns, so that two commits are compared in pairs on the same machine at the same time (e.g. the current
tree against `git archive OLD | tar -x -C /tmp/old`). Wall time, best of `--repeats` (the machine is shared:
the best run is the one least disturbed). A completion is what the shell asks for on TAB
(`_IQA_COMPLETE=complete_bash`, as man/completion/iqa.bash does); value completion runs twice first, so
that a completion cache, where there is one, is warm, and once more with none, as after an install. The heavy
modules each command imported are listed from `-X importtime`.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("numpy", "PIL", "pyarrow", "torch", "pandas", "scipy")
HERE = Path(__file__).resolve().parent.parent


def _completion(words: str, current: int) -> dict[str, str]:
    """The environment bash's completion function gives a Click program on TAB."""
    return {"_IQA_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(current)}


CASES = [
    ("iqa --version", ["--version"], {}),
    ("iqa audit --help", ["audit", "--help"], {}),
    ("TAB: iqa audit --eng", [], _completion("iqa audit --eng", 2)),
    ("TAB: iqa audit --engine <TAB>", [], _completion("iqa audit --engine ", 3)),
    ("  the same, cold cache", [], {**_completion("iqa audit --engine ", 3), "COLD": "1"}),
]


def _fresh(env: dict[str, str]) -> dict[str, str]:
    """`env`, with a completion cache that does not exist yet where it asks for one (the first TAB after an install)."""
    if env.pop("COLD", None):
        env["XDG_CACHE_HOME"] = tempfile.mkdtemp(dir=env["XDG_CONFIG_HOME"])
    return env


def _run(script: Path, argv: list[str], env: dict[str, str]) -> float:
    env = _fresh(env)
    started = time.perf_counter()
    subprocess.run([sys.executable, str(script), *argv], env=env, capture_output=True, check=False)
    return time.perf_counter() - started


def _heavy_imports(script: Path, argv: list[str], env: dict[str, str]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(script), *argv], env=_fresh(env), capture_output=True, text=True
    )
    names = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    return sorted(name for name in HEAVY if name in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--checkout", action="append", type=Path, help="a checkout to time (repeatable)")
    parser.add_argument("--quick", action="store_true", help="one run each (for the test suite)")
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    checkouts = [path.resolve() for path in args.checkout or [HERE]]
    load = os.getloadavg()[0]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {load:.2f}; Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "iqa"  # named iqa: Click names the completion variable after the program
        script.write_text("from iqa_cli.cli import main\nmain()\n")
        config = {"COLUMNS": "80", "XDG_CONFIG_HOME": tmp, "XDG_CACHE_HOME": str(Path(tmp) / "cache")}
        envs = [{**os.environ, **config, "PYTHONPATH": str(path)} for path in checkouts]
        best = {(c, label): float("inf") for c in range(len(checkouts)) for label, _, _ in CASES}
        for _label, argv, extra in CASES:
            for env in envs:
                for _ in range(2):  # warm any cache, and the page cache
                    _run(script, argv, {**env, **extra})
        for _ in range(repeats):
            for label, argv, extra in CASES:
                for c, env in enumerate(envs):  # in turns: the checkouts share the machine's moods
                    best[c, label] = min(best[c, label], _run(script, argv, {**env, **extra}))
        names = "".join(f" {path.name[:18]:>18}" for path in checkouts)
        print(f"{'command':<32}{names}   heavy modules imported")
        for label, argv, extra in CASES:
            times = "".join(f" {best[c, label]:17.3f}s" for c in range(len(checkouts)))
            heavy = [", ".join(_heavy_imports(script, argv, {**env, **extra})) or "none" for env in envs]
            print(f"{label:<32}{times}   {' | '.join(heavy)}")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
