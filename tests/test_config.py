"""Configuration: precedence case by case, key and type checks, `iqa config show/path`, the real `iqa audit`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from typer.testing import CliRunner

from iqa_cli import config
from iqa_cli.cli.app import app as cli_app
from iqa_cli.cli.config import apply_config, config_app
from iqa_cli.errors import UsageError

runner = CliRunner()


def small_app(seen: dict[str, Any]) -> typer.Typer:
    """A two-command app shaped like iqa's, recording what each command received."""
    app = typer.Typer()

    @app.callback()
    def root(ctx: typer.Context) -> None:
        apply_config(ctx)

    @app.command()
    def audit(
        min_confidence: Annotated[float, typer.Option("--min-confidence", min=0.0, max=1.0, help="c")] = 0.6,
        formats: Annotated[str, typer.Option("--format", help="f")] = "parquet",
        workers: Annotated[int | None, typer.Option("--workers", help="w")] = None,
        include: Annotated[list[str] | None, typer.Option("--include", help="i")] = None,
        detail: Annotated[bool, typer.Option("--detail", help="d")] = False,
    ) -> None:
        seen.update(
            command="audit",
            min_confidence=min_confidence,
            formats=formats,
            workers=workers,
            include=include,
            detail=detail,
        )

    @app.command()
    def rank(formats: Annotated[str, typer.Option("--format", help="f")] = "csv") -> None:
        seen.update(command="rank", formats=formats)

    app.add_typer(config_app, name="config")
    return app


@pytest.fixture
def where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A project folder as the working directory and a private user config folder; no IQA_* variables."""
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    for name in [n for n in os.environ if n.startswith("IQA_")]:
        monkeypatch.delenv(name)
    user = tmp_path / "xdg" / "iqa" / "iqa.toml"
    user.parent.mkdir(parents=True)
    assert config.user_config_file() == user
    return {"project": project / "iqa.toml", "user": user}


def run(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    result = runner.invoke(small_app(seen), args, env=env)
    assert result.exit_code == 0, result.output
    return seen


def test_defaults_when_nothing_is_configured(where: dict[str, Path]) -> None:
    assert run(["audit"]) == {
        "command": "audit",
        "min_confidence": 0.6,
        "formats": "parquet",
        "workers": None,
        "include": None,
        "detail": False,
    }


def test_user_file_beats_default(where: dict[str, Path]) -> None:
    where["user"].write_text("min_confidence = 0.4\n")
    assert run(["audit"])["min_confidence"] == 0.4


def test_project_file_beats_user_file(where: dict[str, Path]) -> None:
    where["user"].write_text("min_confidence = 0.4\nworkers = 3\n")
    where["project"].write_text("min_confidence = 0.5\n")
    seen = run(["audit"])
    assert seen["min_confidence"] == 0.5 and seen["workers"] == 3  # the user file still fills the rest


def test_env_beats_project_file(where: dict[str, Path]) -> None:
    where["project"].write_text("min_confidence = 0.5\n")
    assert run(["audit"], env={"IQA_MIN_CONFIDENCE": "0.7"})["min_confidence"] == 0.7


def test_command_line_beats_env(where: dict[str, Path]) -> None:
    where["project"].write_text("min_confidence = 0.5\n")
    seen = run(["audit", "--min-confidence", "0.9"], env={"IQA_MIN_CONFIDENCE": "0.7"})
    assert seen["min_confidence"] == 0.9


def test_empty_env_variable_counts_as_unset(where: dict[str, Path]) -> None:
    where["project"].write_text("workers = 2\n")
    assert run(["audit"], env={"IQA_WORKERS": ""})["workers"] == 2


def test_command_table_beats_top_level_and_applies_to_its_command_only(where: dict[str, Path]) -> None:
    where["project"].write_text('format = "jsonl"\n[audit]\nformat = "csv"\n')
    assert run(["audit"])["formats"] == "csv"
    assert run(["rank"])["formats"] == "jsonl"


def test_a_stronger_source_beats_a_more_specific_table(where: dict[str, Path]) -> None:
    where["user"].write_text('[audit]\nformat = "csv"\n')
    where["project"].write_text('format = "jsonl"\n')
    assert run(["audit"])["formats"] == "jsonl"


def test_env_applies_to_every_command_with_the_option(where: dict[str, Path]) -> None:
    assert run(["rank"], env={"IQA_FORMAT": "jsonl"})["formats"] == "jsonl"
    assert run(["audit"], env={"IQA_FORMAT": "jsonl"})["formats"] == "jsonl"


def test_flags_lists_and_dashed_keys(where: dict[str, Path]) -> None:
    where["project"].write_text('detail = true\ninclude = "*.jpg"\nmin-confidence = 1\n')
    seen = run(["audit"])
    assert seen["detail"] is True and seen["include"] == ["*.jpg"] and seen["min_confidence"] == 1.0
    seen = run(["audit"], env={"IQA_INCLUDE": "*.png *.tif", "IQA_DETAIL": "false"})
    assert seen["include"] == ["*.png", "*.tif"] and seen["detail"] is False


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("min_confidnce = 0.5\n", "unknown setting 'min_confidnce'"),
        ("[audti]\nworkers = 1\n", "unknown table [audti]"),
        ("[rank]\nworkers = 1\n", "valid keys here: format"),
        ("min_confidence = 2.0\n", "less than or equal to 1"),
        ("workers = true\n", "takes a value, not true/false"),
        ("detail = 1\n", "is a switch"),
        ('format = ["csv"]\n', "takes a single value"),
        ("include = [1, [2]]\n", "takes a list of strings"),
        ("workers = \n", "is not valid TOML"),
    ],
)
def test_file_errors_name_the_file_and_key(where: dict[str, Path], text: str, expected: str) -> None:
    where["project"].write_text(text)
    result = runner.invoke(small_app({}), ["audit"])
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())  # Rich wraps long lines
    assert expected in message and str(where["project"]) in message


def test_env_errors_name_the_variable(where: dict[str, Path]) -> None:
    result = runner.invoke(small_app({}), ["audit"], env={"IQA_WORKERS": "many"})
    assert result.exit_code == 2 and "IQA_WORKERS" in result.stderr


def test_config_commands_survive_a_broken_file_until_they_read_it(where: dict[str, Path]) -> None:
    where["project"].write_text("nonsense = 1\n")
    result = runner.invoke(small_app({}), ["config", "path"])
    assert result.exit_code == 0 and str(where["project"]) in result.stdout
    result = runner.invoke(small_app({}), ["config", "show"])
    assert result.exit_code == 2 and "nonsense" in result.stderr


def test_config_show_reports_value_and_source(where: dict[str, Path]) -> None:
    where["user"].write_text("workers = 3\n")
    where["project"].write_text('[audit]\nformat = "csv"\n')
    env = {"IQA_MIN_CONFIDENCE": "0.7", "IQA_FORMT": "x", "IQA_MODELS_DIR": "/m"}
    result = runner.invoke(small_app({}), ["config", "show", "--json"], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    audit = data["settings"]["audit"]
    assert audit["workers"] == {
        "value": 3,
        "source": "user file",
        "from": str(where["user"]),
        "option": "--workers",
        "env": "IQA_WORKERS",
        "refused": None,
    }
    assert audit["format"]["source"] == "project file" and audit["format"]["from"].endswith("[audit]")
    assert audit["min_confidence"]["value"] == 0.7 and audit["min_confidence"]["source"] == "env"
    assert audit["detail"] == {
        "value": False,
        "source": "default",
        "from": None,
        "option": "--detail",
        "env": "IQA_DETAIL",
        "refused": None,
    }
    assert data["unused_env"] == ["IQA_FORMT"]  # IQA_MODELS_DIR is read elsewhere, so not reported
    text = runner.invoke(small_app({}), ["config", "show", "rank"], env={"COLUMNS": "200"})
    assert text.exit_code == 0 and "iqa rank" in text.stdout and "iqa audit" not in text.stdout


def test_real_command_tree_has_every_audit_option(where: dict[str, Path]) -> None:
    import typer.main

    group = typer.main.get_command(cli_app)
    options = config.configurable_options(group.context_class(group, info_name="iqa"))
    keys = {opt.key for opt in options if opt.command == ("audit",)}
    assert {"min_confidence", "format", "workers", "engine", "out", "model", "fail_on", "json"} <= keys
    assert not {"help", "version", "install_completion"} & {opt.key for opt in options}


def test_real_audit_uses_the_resolved_settings(
    where: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`iqa audit` itself, given the default_map the root callback builds (passed in until cli.py wires it)."""
    import typer.main

    from iqa_cli.report.summary import Summary

    captured: dict[str, Any] = {}

    def fake_run(settings: Any, engine: Any, writers: list, **kwargs: Any) -> Summary:
        captured.update(settings=settings, engine=engine.name, writers=[w.format for w in writers])
        summary = Summary(engine.name, "0")
        summary.files = summary.assessed = 1
        return summary

    monkeypatch.setattr("iqa_cli.audit.run.run_audit", fake_run)
    where["user"].write_text('engine = "signal"\n')
    where["project"].write_text('min_confidence = 0.25\n[audit]\nformat = "jsonl"\nout = "r"\n')
    monkeypatch.setenv("IQA_WORKERS", "0")
    group = typer.main.get_command(cli_app)
    resolved = config.resolve(group.context_class(group, info_name="iqa"))
    image = tmp_path / "x.jpg"
    image.write_bytes(b"")  # only its existence matters: the run is faked
    result = runner.invoke(cli_app, ["audit", str(image), "--quiet"], default_map=resolved.default_map)
    assert result.exit_code == 0, result.output
    settings = captured["settings"]
    assert (settings.min_confidence, settings.workers) == (0.25, 0)
    assert captured["engine"] == "signal" and captured["writers"] == ["jsonl"]
    assert (where["project"].parent / "r").is_dir()


def test_merge_default_maps_is_deep() -> None:
    merged = config.merge_default_maps({"audit": {"a": 1, "b": 2}}, {"audit": {"b": 3}, "rank": {"c": 4}})
    assert merged == {"audit": {"a": 1, "b": 3}, "rank": {"c": 4}}


def test_resolve_raises_usage_error(where: dict[str, Path]) -> None:
    import typer.main

    where["project"].write_text("bogus = 1\n")
    group = typer.main.get_command(small_app({}))
    with pytest.raises(UsageError, match="bogus"):
        config.resolve(group.context_class(group, info_name="iqa"))


def test_the_real_app_reads_the_project_file_and_the_environment(tmp_path, monkeypatch) -> None:
    """Wired into `iqa`: ./iqa.toml sets the formats, IQA_OUT beats it, the command line beats both."""
    import json as _json

    from PIL import Image
    from typer.testing import CliRunner

    from iqa_cli.cli.app import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "user-config"))
    Image.new("RGB", (32, 24), (120, 130, 140)).save(tmp_path / "a.png")
    (tmp_path / "iqa.toml").write_text('out = "from-file"\n[audit]\nformat = "jsonl"\nworkers = 0\n')
    monkeypatch.setenv("IQA_OUT", str(tmp_path / "from-env"))
    result = CliRunner().invoke(app, ["audit", "a.png", "--json"])
    assert result.exit_code == 0, result.stderr
    assert _json.loads(result.stdout)["reports"] == [str(tmp_path / "from-env" / "report.jsonl")]
    result = CliRunner().invoke(app, ["audit", "a.png", "--json", "--out", "cli", "--format", "csv"])
    assert _json.loads(result.stdout)["reports"] == ["cli/report.csv"]


def test_a_file_that_is_not_utf8_is_one_line(where: dict[str, Path]) -> None:
    where["project"].write_bytes(b"workers = 1\n# caf\xe9\n")
    result = runner.invoke(small_app({}), ["audit"])
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert "is not UTF-8 text" in message and str(where["project"]) in message


def test_a_project_file_may_not_write_outside_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted ./iqa.toml must not aim the log or the reports at ~/.bashrc; the command line still can."""
    from PIL import Image

    project = tmp_path / "scraped"
    project.mkdir()
    monkeypatch.chdir(project)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "user-config"))
    Image.new("RGB", (32, 24), (120, 130, 140)).save(project / "a.png")
    victim = tmp_path / "fake-bashrc"
    victim.write_text("# mine\n")
    os.symlink(tmp_path, project / "up")  # a link inside the folder that leads out of it counts as outside
    base = ["audit", "a.png", "--workers", "0", "--quiet"]
    for setting in (f'log_file = "{victim}"', 'log_file = "../fake-bashrc"', 'out = "up/reports"'):
        (project / "iqa.toml").write_text(f"[audit]\n{setting}\n")
        result = runner.invoke(cli_app, base)
        assert result.exit_code == 2 and "Traceback" not in result.stderr, result.stderr
        assert "may only write inside its own folder" in " ".join(result.stderr.split())
    assert victim.read_text() == "# mine\n" and not (tmp_path / "reports").exists()
    # Given on the command line, the same paths are the user's choice; inside the folder, the file may set them.
    (project / "iqa.toml").write_text('[audit]\nlog_file = "../fake-bashrc"\nout = "reports"\n')
    result = runner.invoke(cli_app, [*base, "--log-file", str(tmp_path / "mine.log")])
    assert result.exit_code == 0, result.stderr
    assert (project / "reports" / "report.parquet").exists()
