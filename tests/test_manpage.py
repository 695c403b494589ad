"""man/ is current with the command tree, every command and option has help, pages format, bash completes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from iqa_cli.cli import manpage

MAN = Path(__file__).resolve().parents[1] / "man"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("man")
    manpage.write(out)
    return out


def test_man_folder_is_current() -> None:
    problems = manpage.differences(MAN)
    assert not problems, f"man/ is out of date ({'; '.join(problems)}): run `{manpage.REGENERATE}` and commit man/"


def test_generation_is_deterministic(generated: Path, tmp_path: Path) -> None:
    manpage.write(tmp_path)
    for page in generated.rglob("*.1"):
        assert (tmp_path / page.name).read_text() == page.read_text()


def test_check_mode_reports_differences(tmp_path: Path) -> None:
    manpage.write(tmp_path)
    assert manpage.main([str(tmp_path), "--check"]) == 0
    (tmp_path / "iqa-audit.1").write_text("old\n")
    (tmp_path / "iqa-gone.1").write_text("old\n")
    assert manpage.differences(tmp_path) == ["out of date iqa-audit.1", "no such command: iqa-gone.1"]


def test_every_command_and_option_has_help() -> None:
    """The meta-test: a command or option without help text would leave a hole in --help and in its man page."""
    missing = []
    for path, ctx in manpage._commands(manpage.root_context()):
        command = ctx.command
        if not (command.help or "").strip():
            missing.append(f"command {' '.join(path)}")
        for param in command.get_params(ctx):
            if not (getattr(param, "help", None) or "").strip():
                missing.append(f"{' '.join(path)} {param.name}")
    assert not missing, f"add help text to: {', '.join(missing)}"


def test_pages_have_the_sections(generated: Path) -> None:
    audit = (generated / "iqa-audit.1").read_text()
    for section in (
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "EXAMPLES",
        "SEE ALSO",
    ):
        assert f".SH {section}\n" in audit, section
    assert "IQA_MIN_CONFIDENCE" in audit and "\\fB3\\fR" in audit  # epilog's exit codes, config variables
    root = (generated / "iqa.1").read_text()
    assert "\\fBiqa\\-audit\\fR(1)" in root and "\\fBiqa\\-model\\fR(1)" in root


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_a_page_formats_without_warnings(generated: Path) -> None:
    result = subprocess.run(
        ["man", "--warnings", "-l", str(generated / "iqa-audit.1")],
        capture_output=True,
        text=True,
        env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat"},
        check=False,
        timeout=600,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
    assert "SYNOPSIS" in result.stdout and "--min-confidence" in result.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_script_completes_a_command(generated: Path) -> None:
    """Source the static script and ask it to complete `iqa au`, as bash would on <TAB>."""
    iqa = Path(sys.executable).with_name("iqa")
    if not iqa.exists():
        pytest.skip("the iqa console script is not installed next to this Python")
    script = generated / "completion" / "iqa.bash"
    probe = (
        f'source "{script}"; COMP_WORDS=(iqa au); COMP_CWORD=1; _iqa_completion iqa; printf "%s\\n" "${{COMPREPLY[@]}}"'
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
    assert result.stdout.split() == ["audit"]
