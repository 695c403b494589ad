"""`iqa model download|check|info` through the CLI runner, against the tiny models and a fake hub."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from iqa_cli.cli.model import Variant, model_app
from iqa_cli.engines.depictqa import files
from iqa_cli.testing.tiny_depictqa import use_16k_vicuna

runner = CliRunner()


def test_variant_choices_are_the_released_checkpoints() -> None:
    assert [v.value for v in Variant] == list(files.VARIANTS)


def test_every_command_has_help() -> None:
    for command in ("download", "check", "info"):
        result = runner.invoke(model_app, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert "Models folder" in result.output
    assert "dq495k" in runner.invoke(model_app, ["download", "--help"]).output


def test_check_passes_on_good_models(tiny_root: Path) -> None:
    result = runner.invoke(model_app, ["check", str(tiny_root)])
    assert result.exit_code == 0, result.output
    assert "ready: dq495k, abstractor" in result.output
    assert "vicuna-7b-v1.5: LLaMA" in result.output


def test_check_uses_the_environment_default(tiny_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IQA_MODELS_DIR", str(tiny_root))
    result = runner.invoke(model_app, ["check"])
    assert result.exit_code == 0, result.output
    assert str(tiny_root) in " ".join(result.output.split())  # the report names the folder it checked


def test_check_fails_with_the_problem_and_the_fix(tiny_root: Path, tmp_path: Path) -> None:
    models = Path(shutil.copytree(tiny_root, tmp_path / "models"))
    use_16k_vicuna(models)
    result = runner.invoke(model_app, ["check", str(models)])
    assert result.exit_code == 1
    assert "vicuna-7b-v1.5-16k" in result.output
    assert "error:" in result.output and "iqa model download" in result.output
    assert "Traceback" not in result.output


def test_info_lists_what_is_installed(tiny_root: Path) -> None:
    result = runner.invoke(model_app, ["info", str(tiny_root)])
    assert result.exit_code == 0, result.output
    assert "lmsys/vicuna-7b-v1.5" in result.output
    assert "default variant: dq495k" in result.output
    qinst = next(line for line in result.output.splitlines() if line.strip().startswith("qinst"))
    assert "missing" in qinst


def test_info_of_an_empty_folder(tmp_path: Path) -> None:
    result = runner.invoke(model_app, ["info", str(tmp_path)])
    assert result.exit_code == 0
    assert "no DepictQA checkpoint: run `iqa model download`" in result.output


def test_download_fetches_then_checks(tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing here may reach a hub
    sources = {files.VICUNA_REPO: files.LLM_DIR, files.CLIP_REPO: files.CLIP_DIR, files.MINILM_REPO: files.MINILM_DIR}
    fetched: list[str] = []

    def fake_snapshot(repo_id: str, *, local_dir: Path, allow_patterns: list[str]) -> str:
        fetched.append(repo_id)
        shutil.copytree(tiny_root / sources.get(repo_id, repo_id.split("/")[1]), local_dir, dirs_exist_ok=True)
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda repo_id: ["config.json", "model.safetensors"])
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    result = runner.invoke(model_app, ["download", "--variant", "dq495k", "--dir", str(tmp_path / "m"), "--no-minilm"])
    assert result.exit_code == 0, result.output
    assert fetched == ["zhiyuanyou/DepictQA2-DQ495K", "openai/clip-vit-large-patch14", "lmsys/vicuna-7b-v1.5"]
    assert "fetching lmsys/vicuna-7b-v1.5" in result.output
    assert "ready: dq495k" in result.output
    assert "warning" in result.output  # MiniLM was skipped: the check says what that costs


def test_download_rejects_an_unknown_variant(tmp_path: Path) -> None:
    result = runner.invoke(model_app, ["download", "--variant", "dq1", "--dir", str(tmp_path)])
    assert result.exit_code == 2
