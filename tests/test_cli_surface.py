"""The command line's first impression: start-up imports, --help at 80 columns, shell completion, `iqa report`'s
filters and heading, `iqa plugins --json`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from iqa_cli.cli import manpage
from iqa_cli.cli.app import app
from iqa_cli.cli.options import complete_engines, complete_formats, complete_table_formats
from iqa_cli.report.writers import ParquetWriter
from iqa_cli.testing.cli import invoke_iqa
from iqa_cli.testing.rows import ok_row

HEAVY = ("numpy", "PIL", "pyarrow", "torch", "iqa_cli.plugins", "iqa_cli.audit.run", "iqa_cli.report.schema")
PANELS = ("Input", "Engine", "Model (depictqa engine)", "Output", "Behaviour")


def _fresh_iqa(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """Run `iqa ARGS` in a new Python, as the console script does; its stdout and the heavy modules it imported."""
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['iqa', *{list(args)!r}]\n"
        "try:\n"
        "    runpy.run_module('iqa_cli', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m in {HEAVY!r}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,  # no project iqa.toml, and a user file only where XDG_CONFIG_HOME says
        env={
            **os.environ,
            "COLUMNS": "80",
            "XDG_CONFIG_HOME": str(tmp_path),
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            **(env or {}),
        },
    )
    output, _, loaded = result.stdout.rpartition("LOADED ")
    return output, [m.strip("'") for m in loaded.strip().strip("[]").split(", ") if m]


@pytest.mark.parametrize(
    "args",
    [("--version",), ("--help",), ("audit", "--help"), ("rank", "--help"), ("report", "--help"), ("eval", "--help")],
)
def test_version_and_help_load_no_heavy_module(tmp_path: Path, args: tuple[str, ...]) -> None:
    output, loaded = _fresh_iqa(tmp_path, *args)
    assert output.strip(), "the command printed nothing"
    assert loaded == [], f"iqa {' '.join(args)} imported {loaded}"


def test_completing_an_option_name_loads_no_heavy_module(tmp_path: Path) -> None:
    words = {"_IQA_COMPLETE": "complete_bash", "COMP_WORDS": "iqa audit --eng", "COMP_CWORD": "2"}
    output, loaded = _fresh_iqa(tmp_path, env=words)
    assert output.split() == ["--engine"] and loaded == []


def test_completing_engine_and_format_values(tmp_path: Path) -> None:
    words = {"_IQA_COMPLETE": "complete_bash", "COMP_WORDS": "iqa audit --engine ", "COMP_CWORD": "3"}
    engines, _ = _fresh_iqa(tmp_path, env=words)
    assert {"auto", "signal", "depictqa"} <= set(engines.split())
    words = {"_IQA_COMPLETE": "complete_bash", "COMP_WORDS": "iqa audit --format parquet,", "COMP_CWORD": "3"}
    formats, _ = _fresh_iqa(tmp_path, env=words)
    assert {"parquet,csv", "parquet,jsonl"} <= set(formats.split()) and "parquet,parquet" not in formats.split()
    words = {"_IQA_COMPLETE": "complete_bash", "COMP_WORDS": "iqa rank --format ", "COMP_CWORD": "3"}
    tables, _ = _fresh_iqa(tmp_path, env=words)
    assert {"csv", "jsonl", "parquet"} <= set(tables.split())


def test_completion_functions_follow_the_plugin_registry() -> None:
    from iqa_cli.plugins import engines, writers

    assert [name for name, _ in complete_engines("")] == ["auto", *sorted(engines())]
    assert [name for name, _ in complete_engines("si")] == ["signal"]
    assert [name for name, _ in complete_formats("")] == sorted(writers())
    assert [name for name, _ in complete_formats("csv,j")] == ["csv,jsonl"]
    any_table = sorted(n for n, cls in writers().items() if getattr(cls, "writes_any_schema", False))
    assert [name for name, _ in complete_table_formats("")] == any_table
    assert all(why for _, why in complete_engines("")), "every engine completes with a description"


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_the_shipped_bash_script_completes_engines(tmp_path: Path) -> None:
    iqa = Path(sys.executable).with_name("iqa")
    if not iqa.exists():
        pytest.skip("the iqa console script is not installed next to this Python")
    script = Path(__file__).resolve().parents[1] / "man" / "completion" / "iqa.bash"
    probe = (
        f'source "{script}"; COMP_WORDS=(iqa audit --engine ""); COMP_CWORD=3; _iqa_completion iqa; '
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", probe],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**os.environ, "PATH": f"{iqa.parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert result.returncode == 0, result.stderr
    assert {"auto", "signal", "depictqa"} <= set(result.stdout.split())


# ------------------------------------------------------------------------------------------- --help


def _help(path: tuple[str, ...]) -> str:
    """`iqa PATH --help` on an 80-column terminal."""
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.stderr
    return result.stdout


def _flat(text: str) -> str:
    """Help text without the panels' box lines, whitespace collapsed (so wrapped cells read as one line)."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


COMMANDS = [path[1:] for path, _ in manpage._commands(manpage.root_context())]


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "iqa")
def test_help_at_80_columns_names_no_python_type(path: tuple[str, ...]) -> None:
    text = _help(path)
    assert "list[" not in text and not re.search(r"<\w[^>]*>", text), text
    assert max(len(line) for line in text.splitlines()) <= 80


@pytest.mark.parametrize("command", ["audit", "rank", "compare", "eval"])
def test_options_are_grouped_in_panels(command: str) -> None:
    text = _help((command,))
    titles = re.findall(r"╭─ (.+?) ─", text)
    assert [t for t in titles if t in PANELS] == list(PANELS), titles
    # Only --help is left in the catch-all panel.
    options = text.split("╭─ Options ")[1].split("╰")[0]
    assert re.findall(r"--[\w-]+", options) == ["--help"]


def test_defaults_meaning_auto_are_said() -> None:
    text = _flat(_help(("audit",)))
    for shown in (
        "[default: (one per core)]",
        "[default: (the engine's: signal 64, depictqa 256 on cuda, 8 on cpu)]",
        "[default: 120.0]",
        "[default: (cuda when available, else cpu)]",
    ):
        assert shown in text, shown
    assert "--workers -j N" in text and "--file-timeout SECONDS" in text and "--include GLOB" in text


# --------------------------------------------------------------------------------------- iqa report


@pytest.fixture
def report_dir(tmp_path: Path) -> Path:
    rows = [
        ok_row("/photos/a.png"),
        ok_row("/photos/b.png", verdict="bad", distortions=["blur"], answer="Blur", score=0.2),
        ok_row("/photos/c.png", verdict="degraded", distortions=["overly high brightness"], answer="Overly high"),
    ]
    out = tmp_path / "out"
    out.mkdir()
    writer = ParquetWriter(out)
    writer.write(rows)
    writer.close()
    return out


def test_report_refuses_an_unknown_verdict_and_names_the_closest(report_dir: Path) -> None:
    code, out, err = invoke_iqa("report", str(report_dir), "--verdict", "bda")
    assert code == 2 and out == ""
    assert "unknown verdict 'bda'" in err and "did you mean 'bad'?" in err and "ok, degraded, bad" in err


def test_report_refuses_an_unknown_distortion_and_names_the_closest(report_dir: Path) -> None:
    code, out, err = invoke_iqa("report", str(report_dir), "--distortion", "blurr", "--export", "-")
    assert code == 2 and out == ""  # nothing exported either
    assert "unknown distortion 'blurr'" in err and "did you mean 'blur'?" in err and "oversharpening" in err


def test_report_takes_category_keys_and_any_case(report_dir: Path) -> None:
    code, out, err = invoke_iqa("report", str(report_dir), "--distortion", "Brighten", "--export", "-")
    assert code == 0, err
    assert out.split() == ["/photos/c.png"]
    code, out, err = invoke_iqa("report", str(report_dir), "--verdict", "BAD", "--export", "-")
    assert code == 0 and out.split() == ["/photos/b.png"], err


def test_report_accepts_a_distortion_name_its_report_holds(tmp_path: Path) -> None:
    """An engine from a plugin may name distortions DQ-495K has no word for: filtering by one must work."""
    out = tmp_path / "out"
    out.mkdir()
    writer = ParquetWriter(out)
    writer.write([ok_row("/p/x.png", verdict="bad", distortions=["lens flare"]), ok_row("/p/y.png")])
    writer.close()
    code, listed, err = invoke_iqa("report", str(out), "--distortion", "lens flare", "--export", "-")
    assert code == 0 and listed.split() == ["/p/x.png"], err
    code, _, err = invoke_iqa("report", str(out), "--distortion", "lens flair")
    assert code == 2 and "did you mean 'lens flare'?" in err


def test_report_is_headed_as_a_report_not_a_run(report_dir: Path) -> None:
    code, out, err = invoke_iqa("report", str(report_dir), "--verdict", "bad")
    assert code == 0, err
    first = out.splitlines()[0]
    assert first == f"iqa report {report_dir}: 1 of 3 files match (verdict=bad)", first
    assert "images/s" not in out and "iqa audit" not in out
    code, out, _ = invoke_iqa("report", str(report_dir))
    assert out.splitlines()[0] == f"iqa report {report_dir}: 3 of 3 files match"


# -------------------------------------------------------------------------------------- iqa plugins


def test_plugins_json_lists_every_plugin_with_its_distribution() -> None:
    from iqa_cli import __version__
    from iqa_cli.plugins import checks, engines, writers

    code, out, err = invoke_iqa("plugins", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert all(set(entry) == {"kind", "name", "class", "distribution", "version", "built_in"} for entry in listed)
    by_kind: dict[str, list[str]] = {}
    for entry in listed:
        by_kind.setdefault(entry["kind"], []).append(entry["name"])
    assert by_kind.get("engine") == sorted(engines()) and by_kind.get("format") == sorted(writers())
    assert by_kind.get("check", []) == sorted(checks())
    signal = next(e for e in listed if e["name"] == "signal")
    assert signal == {
        "kind": "engine",
        "name": "signal",
        "class": "iqa_cli.engines.signal.engine.SignalEngine",
        "distribution": "iqa-cli",
        "version": __version__,
        "built_in": True,
    }
    for entry in listed:
        if not entry["built_in"]:
            assert entry["distribution"] and entry["version"], entry


def test_value_completion_after_the_first_reads_the_cache_and_loads_no_plugin(tmp_path: Path) -> None:
    words = {"_IQA_COMPLETE": "complete_bash", "COMP_WORDS": "iqa audit --engine ", "COMP_CWORD": "3"}
    first, loaded_first = _fresh_iqa(tmp_path, env=words)
    assert "signal" in first.split() and "numpy" in loaded_first  # the plugins were loaded once
    second, loaded_second = _fresh_iqa(tmp_path, env=words)
    assert second == first and loaded_second == []
    assert (tmp_path / "cache" / "iqa" / "completion.json").is_file()
