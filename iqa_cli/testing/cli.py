"""Running the `iqa` command line inside a test, as a user's shell would, and reading what it printed."""

from __future__ import annotations

from typer.testing import CliRunner

from iqa_cli.cli.app import app


def invoke_iqa(*args: str, reraise: bool = False) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `iqa ARGS...` on a 200-column terminal. `reraise`: an exception the
    command did not turn into an exit code is raised here, with its traceback, instead of becoming exit 1."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    if reraise and result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr
