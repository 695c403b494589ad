"""ckpt.pt reading: the real key names, weights-only loading, and clear errors for every kind of bad file."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from iqa_cli.engines.depictqa import checkpoint  # noqa: E402
from iqa_cli.engines.depictqa.checkpoint import expected_shapes, lora_key, read_checkpoint  # noqa: E402
from iqa_cli.errors import ModelFilesError  # noqa: E402
from iqa_cli.testing.tiny_depictqa import TINY, use_16k_vicuna  # noqa: E402

SIZES = {"num_layers": TINY.layers, "hidden": TINY.hidden, "vision_width": TINY.clip_width}


@pytest.fixture
def state(tiny_root: Path) -> dict:
    return dict(torch.load(tiny_root / "DepictQA2-DQ495K" / "ckpt.pt", weights_only=True))


def _save(tmp_path: Path, obj: object) -> Path:
    path = tmp_path / "ckpt.pt"
    torch.save(obj, path)
    return path


def test_reads_the_projector_checkpoint(tiny_root: Path) -> None:
    weights = read_checkpoint(tiny_root / "DepictQA2-DQ495K" / "ckpt.pt", **SIZES)
    assert weights.variant == "dq495k"
    assert weights.abstractor is None
    assert weights.lora_scale == 1.0
    assert weights.lora_rank == TINY.lora_rank
    assert set(weights.lora) == {(i, t) for i in range(TINY.layers) for t in ("q_proj", "k_proj", "v_proj", "o_proj")}
    a, b = weights.lora[(1, "v_proj")]
    assert tuple(a.shape) == (TINY.lora_rank, TINY.hidden) and tuple(b.shape) == (TINY.hidden, TINY.lora_rank)
    assert b.abs().sum() > 0  # the fixture's LoRA B is non-zero, so LoRA changes outputs
    assert tuple(weights.vision_proj_weight.shape) == (TINY.hidden, TINY.clip_width)
    assert tuple(weights.vision_proj_bias.shape) == (TINY.hidden,)
    assert weights.vision_proj_weight.dtype == torch.float16  # kept as released; the loader casts


def test_reads_the_abstractor_checkpoint(tiny_root: Path) -> None:
    weights = read_checkpoint(tiny_root / "DepictQA2-Abstractor-DQ495K" / "ckpt.pt", **SIZES)
    assert weights.variant == "abstractor"
    assert weights.abstractor is not None
    assert tuple(weights.abstractor["query_embeds"].shape) == (64, 1, TINY.clip_width)
    assert tuple(weights.abstractor["abstractor.layers.3.linear1.weight"].shape) == (
        TINY.abstractor_ffn,
        TINY.clip_width,
    )


def test_abstractor_names_are_torch_transformer_decoder_names() -> None:
    layer = torch.nn.TransformerDecoderLayer(d_model=16, nhead=8, dim_feedforward=24)
    decoder = torch.nn.TransformerDecoder(layer, num_layers=4)
    ours = checkpoint.abstractor_shapes(16, 24)
    theirs = {f"abstractor.{k}": tuple(v.shape) for k, v in decoder.state_dict().items()}
    assert {k: v for k, v in ours.items() if k != "query_embeds"} == theirs


def test_expected_sizes_match_the_released_files() -> None:
    # The releases are 42 MB (projector) and 143 MB (Abstractor) of fp16: the key set accounts for both.
    def megabytes(**kwargs: int | None) -> float:
        shapes = expected_shapes(num_layers=32, hidden=4096, vision_width=1024, lora_rank=16, **kwargs)
        return sum(math.prod(s) for s in shapes.values()) * 2 / 1e6

    assert round(megabytes()) == 42
    assert round(megabytes(abstractor_ffn=2048)) == 143
    assert lora_key(31, "o_proj", "B") == "llm.base_model.model.model.layers.31.self_attn.o_proj.lora_B.default.weight"


def test_truncated_file_is_rejected(tiny_root: Path, tmp_path: Path) -> None:
    data = (tiny_root / "DepictQA2-DQ495K" / "ckpt.pt").read_bytes()
    path = tmp_path / "ckpt.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFilesError, match="truncated or corrupted"):
        read_checkpoint(path, **SIZES)


def test_garbage_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"<html>rate limited</html>" * 10)
    with pytest.raises(ModelFilesError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(path, **SIZES)


def test_missing_file_says_how_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesError, match="iqa model download"):
        read_checkpoint(tmp_path / "ckpt.pt", **SIZES)


def test_wrong_shape_names_the_tensor_and_both_shapes(state: dict, tmp_path: Path) -> None:
    state["vision_proj.weight"] = state["vision_proj.weight"].t().contiguous()
    with pytest.raises(ModelFilesError) as info:
        read_checkpoint(_save(tmp_path, state), **SIZES)
    message = str(info.value)
    assert (
        f"vision_proj.weight expected [{TINY.hidden}, {TINY.clip_width}] got [{TINY.clip_width}, {TINY.hidden}]"
        in message
    )
    assert "wrong shape" in message


def test_missing_keys_are_named(state: dict, tmp_path: Path) -> None:
    gone = lora_key(1, "k_proj", "A")
    del state[gone]
    with pytest.raises(ModelFilesError, match=r"1 missing \(.*layers\.1\.self_attn\.k_proj\.lora_A"):
        read_checkpoint(_save(tmp_path, state), **SIZES)


def test_extra_keys_are_named(state: dict, tmp_path: Path) -> None:
    state["llm.base_model.model.lm_head.weight"] = torch.zeros(2, 2, dtype=torch.float16)
    with pytest.raises(ModelFilesError, match=r"1 unexpected \(llm\.base_model\.model\.lm_head\.weight\)"):
        read_checkpoint(_save(tmp_path, state), **SIZES)


def test_checkpoint_for_a_bigger_llm_is_rejected(tiny_root: Path) -> None:
    # The tiny checkpoint against an LLM with one more layer: that layer's LoRA is missing, never skipped.
    with pytest.raises(ModelFilesError, match=r"8 missing .*layers\.2\.self_attn\.q_proj"):
        read_checkpoint(tiny_root / "DepictQA2-DQ495K" / "ckpt.pt", num_layers=TINY.layers + 1, hidden=TINY.hidden,
                        vision_width=TINY.clip_width)  # fmt: skip


def test_partial_abstractor_is_rejected(tiny_root: Path, tmp_path: Path) -> None:
    state = dict(torch.load(tiny_root / "DepictQA2-Abstractor-DQ495K" / "ckpt.pt", weights_only=True))
    del state["abstractor.abstractor.layers.2.norm2.bias"]
    with pytest.raises(ModelFilesError, match=r"abstractor\.abstractor\.layers\.2\.norm2\.bias"):
        read_checkpoint(_save(tmp_path, state), **SIZES)


class NotATensor:
    """A custom class: weights_only loading must refuse to rebuild it."""


class RunsCode:
    """A pickle that would run a command when unpickled without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.makedirs, (str(self.marker),))


def test_pickled_object_is_refused(state: dict, tmp_path: Path) -> None:
    state["extra"] = NotATensor()
    with pytest.raises(ModelFilesError, match=r"not a tensor.*weights_only=True"):
        read_checkpoint(_save(tmp_path, state), **SIZES)


def test_code_in_a_pickle_never_runs(state: dict, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    state["extra"] = RunsCode(marker)
    with pytest.raises(ModelFilesError, match="refuses"):
        read_checkpoint(_save(tmp_path, state), **SIZES)
    assert not marker.exists()


def test_non_tensor_values_and_containers_are_rejected(state: dict, tmp_path: Path) -> None:
    with pytest.raises(ModelFilesError, match="holds a list"):
        read_checkpoint(_save(tmp_path, list(state.values())), **SIZES)
    state["step"] = 5000
    with pytest.raises(ModelFilesError, match="not named tensors: step"):
        read_checkpoint(_save(tmp_path, state), **SIZES)


def test_integer_tensors_are_rejected(state: dict, tmp_path: Path) -> None:
    state["vision_proj.bias"] = torch.zeros(TINY.hidden, dtype=torch.int64)
    with pytest.raises(ModelFilesError, match=r"non-floating-point tensors: vision_proj\.bias"):
        read_checkpoint(_save(tmp_path, state), **SIZES)


def test_fixture_copy_is_independent(tiny_root: Path, tmp_path: Path) -> None:
    # Guard for the tests above: they change copies, never the shared build.
    shutil.copy(tiny_root / "DepictQA2-DQ495K" / "ckpt.pt", tmp_path / "ckpt.pt")
    assert read_checkpoint(tmp_path / "ckpt.pt", **SIZES).variant == "dq495k"


def test_state_mismatch_counts_and_names_every_kind_of_problem() -> None:
    expected = {"a": (2, 3), "b": (4,), "c": None, **{f"m{i}": (1,) for i in range(8)}}
    assert checkpoint.state_mismatch({"a": (2, 3), "c": None}, {"a": [2, 3], "c": [9, 9]}) == ""
    message = checkpoint.state_mismatch(expected, {"a": (3, 2), "b": (4,), "c": (7,), "z": (1,)})
    assert message == (
        "8 missing (m0, m1, m2, m3, m4, m5, ... and 2 more); 1 unexpected (z); "
        "1 with the wrong shape (a expected [2, 3] got [3, 2])"
    )
    assert "unexpected" not in checkpoint.state_mismatch({"a": (1,)}, {"a": (1,), "z": (1,)}, others_allowed=True)


def test_clip_weights_that_do_not_fit_the_tower_are_named(tiny_root: Path) -> None:
    from iqa_cli.engines.depictqa.clip_weights import load_tower_weights, read_vision_weights
    from iqa_cli.engines.depictqa.vision import CLIPVisionTower

    cfg, state = read_vision_weights(tiny_root / "clip-vit-large-patch14")
    tower = CLIPVisionTower(cfg)
    load_tower_weights(tower, state, "tiny")  # the release itself fits
    key = next(k for k in state if k.endswith("fc1.weight"))
    state[key] = state[key][:-1]
    del state[next(k for k in state if k.endswith("pre_layrnorm.bias"))]
    with pytest.raises(ModelFilesError) as info:
        load_tower_weights(tower, state, "tiny")
    message = str(info.value)
    assert "the CLIP weights in tiny do not fit" in message and "1 missing (" in message
    assert "1 with the wrong shape (" in message and "iqa model download" in message


def test_the_loader_refuses_a_16k_vicuna_before_loading_weights(tiny_root: Path, tmp_path: Path) -> None:
    from iqa_cli.engines.depictqa.files import locate
    from iqa_cli.engines.depictqa.loading import load_depictqa

    models = Path(shutil.copytree(tiny_root, tmp_path / "models"))
    use_16k_vicuna(models)
    with pytest.raises(ModelFilesError, match=r"vicuna-7b-v1\.5-16k.*garbage"):
        load_depictqa(locate(models))
