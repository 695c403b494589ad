"""`iqa model download|check|info` through the CLI runner, against the tiny models and a fake hub."""

from __future__ import annotations

import json
import logging
import random
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from iqa_cli.cli.model import Variant, model_app
from iqa_cli.engines.depictqa import files, verify
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
    hub_logs_shown: list[bool] = []

    def fake_snapshot(repo_id: str, *, local_dir: Path, allow_patterns: list[str]) -> str:
        fetched.append(repo_id)
        hub_logs_shown.append(logging.getLogger("huggingface_hub.utils._http").isEnabledFor(logging.WARNING))
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
    assert hub_logs_shown == [False, False, False]  # no "Retrying in 1s" lines while it fetched...
    assert logging.getLogger("huggingface_hub").isEnabledFor(logging.WARNING)  # ...and as before after


def test_download_rejects_an_unknown_variant(tmp_path: Path) -> None:
    result = runner.invoke(model_app, ["download", "--variant", "dq1", "--dir", str(tmp_path)])
    assert result.exit_code == 2


def test_check_json(tiny_root: Path) -> None:
    result = runner.invoke(model_app, ["check", str(tiny_root), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"models_folder", "ok", "variants", "findings"}
    assert report["models_folder"] == str(tiny_root)
    assert report["ok"] is True and report["variants"] == ["dq495k", "abstractor"]
    assert set(report["findings"][0]) == {"part", "level", "message"}
    assert {f["part"]: f["level"] for f in report["findings"]}["vicuna-7b-v1.5"] == "ok"


def test_check_json_keeps_the_exit_code(tiny_root: Path, tmp_path: Path) -> None:
    models = Path(shutil.copytree(tiny_root, tmp_path / "models"))
    use_16k_vicuna(models)
    result = runner.invoke(model_app, ["check", str(models), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)  # stdout is the JSON alone; the one error line goes to stderr
    assert report["ok"] is False
    errors = [f for f in report["findings"] if f["level"] == "error"]
    assert errors and "vicuna-7b-v1.5-16k" in errors[0]["message"]
    stderr = " ".join(result.stderr.split())
    assert stderr.startswith("error: 1 problem") and "in the JSON on stdout" in stderr


def _garbage_checkpoint(models: Path, kind: str) -> Path:
    """Replace the dq495k checkpoint of a copied models folder with something that is not one."""
    import torch

    path = models / files.variant_dir_name("dq495k") / files.CHECKPOINT
    if kind == "random bytes":
        path.write_bytes(random.Random(kind).randbytes(4096))  # the same bytes every run
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[:2048])
    else:  # a valid PyTorch file, not DepictQA's keys
        torch.save({"model.weight": torch.zeros(4, 4)}, path)
    return path


@pytest.mark.parametrize("kind", ["random bytes", "truncated", "wrong keys"])
def test_info_never_calls_a_garbage_checkpoint_a_variant(tiny_root: Path, tmp_path: Path, kind: str) -> None:
    models = Path(shutil.copytree(tiny_root, tmp_path / "models"))
    _garbage_checkpoint(models, kind)
    result = runner.invoke(model_app, ["info", str(models)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "default variant: dq495k" not in text
    dq495k = next(line for line in result.output.splitlines() if line.strip().startswith("dq495k"))
    assert "unusable" in dq495k
    reason = "not a DepictQA2 checkpoint" if kind == "wrong keys" else "is not a PyTorch checkpoint"
    assert reason in text and f"`iqa model check {models}`" in text
    assert "no usable default variant" in text and "iqa model download --variant dq495k" in text
    abstractor = next(line for line in result.output.splitlines() if line.strip().startswith("abstractor"))
    assert "unusable" not in abstractor and "KB" in abstractor

    listed = json.loads(runner.invoke(model_app, ["info", str(models), "--json"]).stdout)
    assert listed["default_variant"] is None and listed["variants"] == ["abstractor"]
    problem = next(p["problem"] for p in listed["parts"] if p["name"] == "dq495k")
    assert problem and reason in problem


def test_info_flags_a_checkpoint_in_the_wrong_folder(tiny_root: Path, tmp_path: Path) -> None:
    models = Path(shutil.copytree(tiny_root, tmp_path / "models"))
    abstractor = models / files.variant_dir_name("abstractor") / files.CHECKPOINT
    shutil.copyfile(abstractor, models / files.variant_dir_name("dq495k") / files.CHECKPOINT)
    result = runner.invoke(model_app, ["info", str(models)], env={"COLUMNS": "400"})
    assert "has Abstractor weights, so it is not zhiyuanyou/DepictQA2-DQ495K" in result.output
    assert "default variant: dq495k" not in result.output


def test_info_json(tiny_root: Path) -> None:
    result = runner.invoke(model_app, ["info", str(tiny_root), "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert set(listed) == {"models_folder", "parts", "variants", "default_variant"}
    assert listed["default_variant"] == "dq495k" and listed["variants"] == ["dq495k", "abstractor"]
    names = [p["name"] for p in listed["parts"]]
    assert names == ["vicuna", "clip", *files.VARIANTS, "minilm"]
    parts = {p["name"]: p for p in listed["parts"]}
    assert set(parts["vicuna"]) == {"name", "repo_id", "path", "present", "size_bytes", "problem"}
    assert parts["vicuna"]["present"] and parts["vicuna"]["size_bytes"] > 0 and parts["vicuna"]["problem"] is None
    assert parts["qinst"] == {**parts["qinst"], "present": False, "size_bytes": 0, "problem": None}


def test_info_json_of_an_empty_folder(tmp_path: Path) -> None:
    listed = json.loads(runner.invoke(model_app, ["info", str(tmp_path), "--json"]).stdout)
    assert listed["default_variant"] is None and listed["variants"] == []
    assert not any(p["present"] for p in listed["parts"])


def test_check_without_torch_still_refuses_a_garbage_checkpoint(
    tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = Path(shutil.copytree(tiny_root, tmp_path / "models"))
    _garbage_checkpoint(models, "random bytes")

    def no_torch(*args: object, **kwargs: object) -> None:
        raise ImportError("No module named 'torch'")

    monkeypatch.setattr(verify, "read_checkpoint", no_torch)
    findings = {f.part: f for f in verify.check(models).findings}
    assert findings["DepictQA2-DQ495K"].level == "error"
    assert "is not a PyTorch checkpoint" in findings["DepictQA2-DQ495K"].message
    assert findings["DepictQA2-Abstractor-DQ495K"].level == "warning"  # a real one: not verified, not refused


def test_info_reads_torch_legacy_format_too(tiny_root: Path, tmp_path: Path) -> None:
    import torch

    models = Path(shutil.copytree(tiny_root, tmp_path / "models"))
    for variant in ("dq495k", "abstractor"):
        path = models / files.variant_dir_name(variant) / files.CHECKPOINT
        state = torch.load(path, weights_only=True)
        torch.save(state, path, _use_new_zipfile_serialization=False)  # the pre-1.6 format, not a zip
    listed = json.loads(runner.invoke(model_app, ["info", str(models), "--json"]).stdout)
    assert listed["variants"] == ["dq495k", "abstractor"] and listed["default_variant"] == "dq495k"
