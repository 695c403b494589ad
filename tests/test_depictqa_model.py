"""DepictQA model parts on the tiny fixture: preprocessing, position embeddings, CLIP loading, LoRA, batching."""

from __future__ import annotations

import io
import math
import pickle
import struct
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

from iqa_cli.engines.depictqa import checkpoint  # noqa: E402
from iqa_cli.engines.depictqa.clip_weights import (  # noqa: E402
    convert_openai_clip,
    load_vision_tower,
    read_openai_archive,
)
from iqa_cli.engines.depictqa.generate import greedy_generate, pad_left  # noqa: E402
from iqa_cli.engines.depictqa.loading import load_depictqa  # noqa: E402
from iqa_cli.engines.depictqa.model import LoRALinear  # noqa: E402
from iqa_cli.engines.depictqa.preprocess import (  # noqa: E402
    ABSTRACTOR,
    PAPER,
    depictqa_decode_plan,
    pad_and_normalize,
)
from iqa_cli.engines.depictqa.prompts import ImageSlot, build_chunks  # noqa: E402
from iqa_cli.engines.depictqa.tokenizer import PromptTokenizer  # noqa: E402
from iqa_cli.engines.depictqa.torchscript import read_torchscript_state  # noqa: E402
from iqa_cli.engines.depictqa.vision import interpolate_position_embedding  # noqa: E402
from iqa_cli.errors import ModelFilesError  # noqa: E402
from iqa_cli.images import fit_size  # noqa: E402
from iqa_cli.testing import tiny_depictqa  # noqa: E402


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return tiny_depictqa.build_tiny_models(tmp_path_factory.mktemp("dq-models"))


@pytest.fixture(scope="module")
def unmerged(layout):
    return load_depictqa(layout, merge_lora=False)


# ------------------------------------------------------------------------------------------ preprocessing


def _authors_size(w: int, h: int, resize: int, max_size: int) -> tuple[int, int]:
    """The authors' rule, written out independently of images.fit_size."""
    if resize <= min(h, w) or max_size <= max(h, w):
        ratio = min(resize / min(h, w), max_size / max(h, w))
        return round(w * ratio), round(h * ratio)
    return w, h


@pytest.mark.parametrize(
    "size", [(3000, 2000), (2000, 3000), (224, 224), (100, 71), (50, 30), (5000, 400), (1000, 999)]
)
@pytest.mark.parametrize("cfg", [PAPER, ABSTRACTOR])
def test_decode_size_follows_the_authors_rule(size, cfg):
    plan = depictqa_decode_plan(cfg)
    assert plan.draft is False
    assert fit_size(*size, plan) == _authors_size(*size, cfg.resize, cfg.max_size)


def test_a_3_2_photo_gives_384_image_tokens():
    w, h = fit_size(3000, 2000, depictqa_decode_plan(PAPER))
    out = pad_and_normalize(np.zeros((h, w, 3), np.uint8))
    assert out.shape == (3, 224, 336) and (224 // 14) * (336 // 14) == 384


@pytest.mark.parametrize("hw", [(224, 336), (100, 71), (50, 30), (71, 100), (15, 200), (70, 70)])
def test_padding_and_normalisation_match_an_independent_computation(hw):
    h, w = hw
    rng = np.random.default_rng(h * 1000 + w)
    pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = pad_and_normalize(pixels)
    # Independent: PIL canvas, pasted at the torchvision center_crop padding offsets.
    ph, pw = (math.ceil(max(70, s) / 14) * 14 for s in (h, w))
    canvas = Image.new("RGB", (pw, ph))
    canvas.paste(Image.fromarray(pixels), ((pw - w) // 2, (ph - h) // 2))
    mean = np.array([0.48145466, 0.4578275, 0.40821073])
    std = np.array([0.26862954, 0.26130258, 0.27577711])
    expected = ((np.asarray(canvas) / 255.0 - mean) / std).transpose(2, 0, 1)
    assert out.shape == (3, ph, pw) and out.dtype == np.float32
    assert ph % 14 == 0 and pw % 14 == 0 and ph >= 70 and pw >= 70
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


def test_odd_padding_goes_right_and_bottom():
    out = pad_and_normalize(np.full((69, 69, 3), 255, np.uint8))  # pads to 70: 0 before, 1 after
    white = out[:, :69, :69]
    assert np.all(white > 1.5) and np.all(out[:, 69, :] < 0) and np.all(out[:, :, 69] < 0)


# ------------------------------------------------------------------------------------ position embeddings


def _keys_cubic_resize_1d(x: np.ndarray, out_len: int) -> np.ndarray:
    """Resize along axis 0 with Keys' cubic (a = -0.75), align_corners=True, border indices clamped."""
    a = -0.75

    def w(d):
        d = abs(d)
        if d <= 1:
            return (a + 2) * d**3 - (a + 3) * d**2 + 1
        if d < 2:
            return a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a
        return 0.0

    n = x.shape[0]
    scale = (n - 1) / (out_len - 1) if out_len > 1 else 0.0
    out = np.zeros((out_len, *x.shape[1:]))
    for i in range(out_len):
        src = i * scale
        base = math.floor(src)
        t = src - base
        for k in range(-1, 3):
            out[i] += w(t - k) * x[min(max(base + k, 0), n - 1)]
    return out


@pytest.mark.parametrize("grid", [(16, 24), (5, 5), (24, 16), (48, 11), (16, 16)])
def test_position_interpolation_matches_direct_bicubic(grid):
    rng = np.random.default_rng(1)
    table = rng.standard_normal((1 + 16 * 16, 8)).astype(np.float32)
    out = interpolate_position_embedding(torch.from_numpy(table), *grid).numpy()
    patches = table[1:].reshape(16, 16, 8).astype(np.float64)
    expected = _keys_cubic_resize_1d(_keys_cubic_resize_1d(patches, grid[0]).swapaxes(0, 1), grid[1]).swapaxes(0, 1)
    assert out.shape == (1 + grid[0] * grid[1], 8)
    np.testing.assert_array_equal(out[0], table[0])  # CLS position kept
    np.testing.assert_allclose(out[1:].reshape(*grid, 8), expected, atol=1e-5)


# ------------------------------------------------------------------------------------------- CLIP loading


def test_vision_tower_matches_transformers_clip_at_224(layout):
    from transformers import CLIPVisionModel

    tower = load_vision_tower(layout.clip)
    reference = CLIPVisionModel.from_pretrained(layout.clip).eval()
    pixels = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ours = tower(pixels)
        theirs = reference(pixel_values=pixels).last_hidden_state[:, 1:]  # last block, no post-norm
    assert ours.shape == (2, 256, tower.cfg.width)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def _as_openai(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Hugging Face vision weights -> OpenAI CLIP names (q, k, v fused), for the conversion test."""
    out = {
        "visual.conv1.weight": state["embeddings.patch_embedding.weight"],
        "visual.class_embedding": state["embeddings.class_embedding"],
        "visual.positional_embedding": state["embeddings.position_embedding.weight"],
        "visual.ln_pre.weight": state["pre_layrnorm.weight"],
        "visual.ln_pre.bias": state["pre_layrnorm.bias"],
        "visual.ln_post.weight": state["post_layernorm.weight"],
        "visual.ln_post.bias": state["post_layernorm.bias"],
        "visual.proj": torch.zeros(state["pre_layrnorm.weight"].shape[0], 4),
    }
    layers = {int(k.split(".")[2]) for k in state if k.startswith("encoder.layers.")}
    for i in layers:
        s, d = f"encoder.layers.{i}.", f"visual.transformer.resblocks.{i}."
        out[d + "attn.in_proj_weight"] = torch.cat([state[f"{s}self_attn.{n}_proj.weight"] for n in "qkv"])
        out[d + "attn.in_proj_bias"] = torch.cat([state[f"{s}self_attn.{n}_proj.bias"] for n in "qkv"])
        for a, b in (
            ("attn.out_proj", "self_attn.out_proj"),
            ("ln_1", "layer_norm1"),
            ("ln_2", "layer_norm2"),
            ("mlp.c_fc", "mlp.fc1"),
            ("mlp.c_proj", "mlp.fc2"),
        ):
            out[f"{d}{a}.weight"] = state[f"{s}{b}.weight"]
            out[f"{d}{a}.bias"] = state[f"{s}{b}.bias"]
    return out


class _QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class _ResidualBlock(nn.Module):
    """OpenAI's ResidualAttentionBlock, for archives laid out like theirs."""

    def __init__(self, width: int, intermediate: int, attn_mask: torch.Tensor | None = None) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, max(width // 64, 1))
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, intermediate)),
                    ("gelu", _QuickGELU()),
                    ("c_proj", nn.Linear(intermediate, width)),
                ]
            )
        )
        self.ln_2 = nn.LayerNorm(width)
        self.attn_mask = attn_mask  # a plain tensor attribute, as in OpenAI's text blocks: not in the state dict

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=self.attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, width: int, intermediate: int, layers: int, attn_mask: torch.Tensor | None = None) -> None:
        super().__init__()
        self.resblocks = nn.Sequential(*[_ResidualBlock(width, intermediate, attn_mask) for _ in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resblocks(x)


class _VisualTransformer(nn.Module):
    def __init__(self, width: int, intermediate: int, layers: int, patch: int, grid: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = _Transformer(width, intermediate, layers)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).permute(2, 0, 1)  # [N, B, C], as nn.MultiheadAttention wants
        x = self.transformer(self.ln_pre(x + self.positional_embedding[1:, None]))
        return self.ln_post(x[0]) @ self.proj


class _OpenAICLIP(nn.Module):
    """The layout of OpenAI's CLIP: ``visual.*``, a text transformer with a causal mask, a logit scale."""

    def __init__(self, width: int, intermediate: int, layers: int, patch: int = 14, grid: int = 16) -> None:
        super().__init__()
        self.visual = _VisualTransformer(width, intermediate, layers, patch, grid)
        mask = torch.full((4, 4), float("-inf")).triu(1)
        self.transformer = _Transformer(width, intermediate, 1, attn_mask=mask)
        self.logit_scale = nn.Parameter(torch.ones([]))

    def forward(self, image: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.visual(image) * self.logit_scale + self.transformer(text).sum()


def _openai_torchscript(state: dict[str, torch.Tensor], path, half: bool = False):
    """Save Hugging Face vision weights as an OpenAI-style TorchScript archive (what ViT-L-14.pt is)."""
    width = state["pre_layrnorm.weight"].shape[0]
    layers = len({k.split(".")[2] for k in state if k.startswith("encoder.layers.")})
    model = _OpenAICLIP(width, state["encoder.layers.0.mlp.fc1.weight"].shape[0], layers)
    missing, _ = model.load_state_dict(_as_openai(state), strict=False)
    assert not [k for k in missing if k.startswith("visual.")]
    model = model.half() if half else model
    torch.jit.save(torch.jit.script(model.eval()), str(path))
    return path


# Building the TorchScript archives (and the reference state dicts) needs torch.jit, deprecated in torch 2.
_JIT_WARNINGS = (
    pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning"),
)


@pytest.mark.parametrize("layout_kind", ["state_dict", "torchscript"])
@_JIT_WARNINGS[0]
def test_openai_archive_loads_and_converts_to_the_same_tower(tmp_path, monkeypatch, layout_kind):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    # OpenAI's archive does not store the head count: it is width / 64, so this CLIP keeps 64-wide heads.
    config = CLIPVisionConfig(
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        patch_size=14,
        image_size=224,
        hidden_act="quick_gelu",
    )
    torch.manual_seed(0)
    CLIPVisionModel(config).save_pretrained(tmp_path / "hf")
    hf = CLIPVisionModel.from_pretrained(tmp_path / "hf").eval()
    state = {k.removeprefix("vision_model."): v for k, v in hf.state_dict().items()}
    archive = tmp_path / "ViT-L-14.pt"
    if layout_kind == "torchscript":
        _openai_torchscript(state, archive)
    else:
        torch.save(_as_openai(state), archive)

    def no_jit(*args, **kwargs):
        raise AssertionError("torch.jit.load must not be used to read model files")

    monkeypatch.setattr(torch.jit, "load", no_jit)
    pixels = torch.randn(1, 3, 98, 140)  # a non-native grid: interpolation on
    square = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = load_vision_tower(tmp_path / "hf")(pixels)
        direct = load_vision_tower(archive)(pixels)
        converted = load_vision_tower(convert_openai_clip(archive, tmp_path / "converted"))(pixels)
        hf_out = CLIPVisionModel.from_pretrained(tmp_path / "converted")(pixel_values=square).last_hidden_state
        ours = load_vision_tower(archive)(square)
    torch.testing.assert_close(direct, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(converted, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours, hf_out[:, 1:], atol=1e-5, rtol=1e-4)  # the converted folder is valid HF


class _SharedStorage(nn.Module):
    """Nested modules, a ModuleList, non-parameter attributes and tensors that view one storage."""

    def __init__(self) -> None:
        super().__init__()
        base = torch.arange(24.0)
        self.register_buffer("window", base[2:14].view(3, 4).t())  # non-contiguous, at an offset
        self.register_buffer("tail", base[13:20])  # overlaps `window` in the same storage
        self.register_buffer("steps", torch.arange(5))
        self.register_buffer("empty", torch.zeros(0))
        self.scale = nn.Parameter(torch.randn(3).half())
        self.heads = nn.ModuleList([nn.Linear(4, 3), nn.Linear(4, 3, bias=False)])
        self.deep = nn.Sequential(nn.Sequential(nn.LayerNorm(4)), _ResidualBlock(8, 16))
        self.sizes = [1, 2]
        self.plain = torch.ones(2)  # a tensor attribute that is neither parameter nor buffer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for head in self.heads:
            x = x + head(x).sum()
        return self.deep[0](x) * self.plain.sum() + self.sizes[0] + self.tail.sum() + self.window.sum()


def _assert_same_state(ours: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert list(ours) == list(reference)  # names and order
    for name, ref in reference.items():
        got = ours[name]
        assert (got.dtype, got.shape, got.stride(), got.storage_offset()) == (
            ref.dtype,
            ref.shape,
            ref.stride(),
            ref.storage_offset(),
        ), name
        assert got.device.type == "cpu"
        torch.testing.assert_close(got, ref, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("kind", ["openai-fp32", "openai-fp16", "openai-traced", "shared-storage"])
@_JIT_WARNINGS[0]
@_JIT_WARNINGS[1]
def test_torchscript_reader_matches_torch_jit(tmp_path, kind):
    path = tmp_path / f"{kind}.pt"
    torch.manual_seed(1)
    if kind == "shared-storage":
        torch.jit.save(torch.jit.script(_SharedStorage()), str(path))
    elif kind == "openai-traced":  # OpenAI's released files are traced, not scripted
        model = _OpenAICLIP(64, 128, 2, patch=14, grid=2).eval()
        example = (torch.randn(1, 3, 28, 28), torch.randn(4, 1, 64))
        torch.jit.save(torch.jit.trace(model, example), str(path))
    else:
        model = _OpenAICLIP(64, 128, 3).eval()
        for p in model.parameters():
            p.data.normal_()
        torch.jit.save(torch.jit.script(model.half() if kind == "openai-fp16" else model), str(path))

    reference = torch.jit.load(str(path), map_location="cpu").state_dict()
    ours = read_torchscript_state(path)
    _assert_same_state(ours, reference)
    if kind.startswith("openai"):
        assert "visual.transformer.resblocks.1.attn.in_proj_weight" in ours
        assert not any("attn_mask" in k for k in ours)  # plain attributes stay out, as in torch.jit
    if kind == "openai-fp16":
        assert ours["visual.conv1.weight"].dtype == torch.float16
    if kind == "shared-storage":
        # Views of one storage still share it, as after torch.jit.load.
        assert ours["window"].untyped_storage().data_ptr() == ours["tail"].untyped_storage().data_ptr()
        ours["window"][0, 0] = -1.0
        assert ours["tail"][-1].item() != -1.0 and ours["window"][0, 0] == -1.0
        assert ours["tail"][0].item() == ours["window"][3, 2].item() == 13.0
        assert set(ours) >= {"heads.0.bias", "heads.1.weight", "deep.0.0.weight", "deep.1.attn.in_proj_weight"}
        assert "heads.1.bias" not in ours and "plain" not in ours


def _pickled_call(module: str, name: str, argument: str) -> bytes:
    """A pickle that calls ``module.name(argument)`` when loaded by an ordinary unpickler."""
    arg = argument.encode()
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X" + struct.pack("<I", len(arg)) + arg + b"\x85R."


@pytest.mark.parametrize(
    ("module", "name", "code"),
    [
        ("os", "system", "touch {marker}"),
        ("builtins", "eval", "__import__('pathlib').Path({marker!r}).touch()"),
        ("builtins", "exec", "open({marker!r}, 'w').close()"),
    ],
)
def test_a_torchscript_archive_with_code_in_its_pickle_is_refused(tmp_path, module, name, code):
    marker = tmp_path / "ran"
    payload = _pickled_call(module, name, code.format(marker=str(marker)))
    # The payload is live: an ordinary unpickler runs it (on another marker, so the check below stays sharp).
    armed = tmp_path / "armed"
    pickle.loads(_pickled_call(module, name, code.format(marker=str(armed))))
    assert armed.exists()

    # The payload as the module tree of a TorchScript archive, and nested inside an otherwise valid tree.
    nested = b"\x80\x02c__torch__\nM\n)\x81}(X\x08\x00\x00\x00training\x88X\x01\x00\x00\x00x" + payload[2:-1] + b"ub."
    for i, data in enumerate((payload, nested)):
        archive = tmp_path / f"evil{i}.pt"
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("evil/data.pkl", data)
            zf.writestr("evil/code/__torch__.py", "class M(Module):\n  __parameters__ = []\n  __buffers__ = []\n")
            zf.writestr("evil/constants.pkl", pickle.dumps(()))
            zf.writestr("evil/version", "3\n")
        with pytest.raises(ModelFilesError, match=rf"refers to {module}\.{name}\b"):
            read_openai_archive(archive)
        with pytest.raises(ModelFilesError):
            load_vision_tower(archive)
        assert not marker.exists()


class _StorageRef:
    """Pickled as a reference to the storage ``data/0``, like torch's own pickler does."""


class _CraftedTensor:
    def __init__(self, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.args = (_StorageRef(), offset, size, stride, False, OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class _TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return ("storage", torch.FloatStorage, "0", "cpu", 4) if isinstance(obj, _StorageRef) else None


@pytest.mark.parametrize(
    ("offset", "size", "stride"),
    [(0, (5,), (1,)), (1, (4,), (1,)), (0, (2, 2), (3, 1)), (0, (2,), (-1,)), (0, (3,), (2,)), (0, (2,), (1.5,))],
)
def test_a_torchscript_tensor_reaching_past_its_storage_is_refused(tmp_path, offset, size, stride):
    buffer = io.BytesIO()
    _TorchPickler(buffer, protocol=2).dump({"w": _CraftedTensor(offset, size, stride)})
    archive = tmp_path / "crafted.pt"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("crafted/data.pkl", buffer.getvalue())
        zf.writestr("crafted/data/0", bytes(16))  # four float32
        zf.writestr("crafted/code/__torch__.py", "")
    with pytest.raises(ModelFilesError, match=r"past its storage|invalid layout"):
        read_torchscript_state(archive)


@_JIT_WARNINGS[0]
def test_a_damaged_torchscript_archive_is_a_model_files_error(tmp_path):
    good = tmp_path / "good.pt"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(good))
    damaged = tmp_path / "damaged.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(damaged, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info, data[: len(data) // 2] if info.filename.endswith(("data.pkl", "data/0")) else data)
    with pytest.raises(ModelFilesError, match=r"damaged\.pt"):
        read_torchscript_state(damaged)


# ---------------------------------------------------------------------------------------------- assembly


def test_checkpoint_weights_are_in_place(layout, unmerged):
    model, _ = unmerged
    cfg = model.llm.config
    weights = checkpoint.read_checkpoint(
        layout.depictqa / "ckpt.pt",
        num_layers=cfg.num_hidden_layers,
        hidden=cfg.hidden_size,
        vision_width=model.cfg.vision.width,
    )
    torch.testing.assert_close(model.vision_proj.weight, weights.vision_proj_weight.float())
    wrapped = model.llm.model.layers[0].self_attn.q_proj
    assert isinstance(wrapped, LoRALinear) and wrapped.scale == weights.lora_scale
    torch.testing.assert_close(wrapped.lora_b, weights.lora[(0, "q_proj")][1].float())
    assert model.abstractor is None


def test_lora_merged_matches_unmerged(layout, unmerged):
    model, _ = unmerged
    merged, _ = load_depictqa(layout, merge_lora=True)
    assert not any(isinstance(m, LoRALinear) for m in merged.modules())
    embeds = torch.randn(2, 7, model.cfg.llm_hidden)
    with torch.no_grad():
        a = model.llm(inputs_embeds=embeds).logits
        b = merged.llm(inputs_embeds=embeds).logits
        base = model.llm.model.layers[0].self_attn.q_proj.base(embeds)
        lora = model.llm.model.layers[0].self_attn.q_proj(embeds)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert (lora - base).abs().max() > 1e-3  # the fixture's LoRA really changes the model


def test_embed_prompt_refuses_a_wrong_image_count(unmerged):
    model, _tok = unmerged
    hidden = model.cfg.llm_hidden
    with pytest.raises(ValueError, match=r"2 image place\(s\) but 1 image embedding"):
        model.embed_prompt([[1], None, [5], None], [torch.zeros(3, hidden)])
    with pytest.raises(ValueError, match=r"1 image place\(s\) but 2"):
        model.embed_prompt([[1], None], [torch.zeros(3, hidden)] * 2)
    out = model.embed_prompt([[1, 5], None, [6]], [torch.ones(4, hidden)])
    assert out.shape == (7, hidden) and torch.all(out[2:6] == 1)


def test_prompt_tokenizer_splits_like_the_slow_llama_tokenizer(layout):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(layout.llm / "tokenizer.model"))  # dummy prefix on
    before, after = "</Img>\n\n ", "USER: What is it?\n   ASSISTANT: "
    text = before + "</s> " + after
    # Non-legacy (Vicuna v1.5's setting): one "▁" for the text start, none added after </s>, whose
    # following space becomes the next word's "▁" -- the dummy prefix of `after` stands for it.
    nonlegacy = PromptTokenizer(layout.llm / "tokenizer.model", legacy=False)
    assert nonlegacy.encode(text) == [*sp.encode(before), 2, *sp.encode(after)]
    # Legacy: every piece gets its own prefix, so the space after </s> becomes an extra "▁".
    legacy = PromptTokenizer(layout.llm / "tokenizer.model", legacy=True)
    assert legacy.encode(text) == [*sp.encode(before), 2, *sp.encode(" " + after)]
    assert PromptTokenizer.from_folder(layout.llm).legacy is False  # read from tokenizer_config.json
    ids = nonlegacy.encode("Blur and noise")
    assert nonlegacy.decode([*ids, nonlegacy.eos_token_id]) == "Blur and noise"


def test_prompt_tokenizer_matches_transformers_where_it_can_load(layout):
    from transformers import AutoTokenizer

    ours = PromptTokenizer.from_folder(layout.llm)
    try:
        theirs = AutoTokenizer.from_pretrained(layout.llm, local_files_only=True)
    except Exception as exc:  # transformers 5 needs protobuf to convert a SentencePiece model
        pytest.skip(f"transformers cannot load the tiny tokenizer here: {str(exc)[:80]}")
    for task in ("quality_single_A_noref", "quality_compare"):
        for chunk in build_chunks(task, "What is the ONE distortion? Answer the question using a single word."):
            if isinstance(chunk, str):
                assert ours.encode(chunk) == theirs(chunk, add_special_tokens=False).input_ids, chunk


# ---------------------------------------------------------------------------------------------- decoding


def _prompts(model, tok, sizes):
    rng = np.random.default_rng(7)
    images = [torch.from_numpy(pad_and_normalize(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))) for h, w in sizes]
    with torch.no_grad():
        embeds = model.encode_images(images)
    prompts = []
    for i, e in enumerate(embeds):
        question = "What distortion is there?" + (" Be brief." if i % 2 else "")  # text lengths differ too
        chunks = build_chunks("quality_single_A_noref", question)
        segments = [[tok.bos_token_id]] + [None if isinstance(c, ImageSlot) else tok.encode(c) for c in chunks]
        prompts.append(model.embed_prompt(segments, [e]))
    return prompts


def test_pad_left_masks_and_counts_positions_per_row():
    batch = pad_left([torch.ones(3, 4), torch.ones(5, 4)])
    assert batch.attention_mask.tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert batch.position_ids.tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
    assert torch.all(batch.inputs_embeds[0, :2] == 0)


def test_batched_greedy_answers_equal_one_at_a_time(unmerged):
    model, tok = unmerged
    prompts = _prompts(model, tok, [(224, 336), (100, 71), (224, 224), (50, 300)])
    assert len({p.shape[0] for p in prompts}) > 1  # mixed lengths: padding is exercised
    together = greedy_generate(model.llm, pad_left(prompts), max_new_tokens=12, eos_id=tok.eos_token_id)
    alone = [greedy_generate(model.llm, pad_left([p]), max_new_tokens=12, eos_id=tok.eos_token_id)[0] for p in prompts]
    for a, b in zip(together, alone, strict=True):
        assert a.ids == b.ids
        # Same tokens; probabilities equal up to float32 summation order in the padded matmuls.
        np.testing.assert_allclose(a.probs, b.probs, rtol=0, atol=1e-6)
        assert len(a.ids) == 12 or a.ids[-1] == tok.eos_token_id


def test_generation_matches_a_full_recompute_without_cache(unmerged):
    model, tok = unmerged
    prompt = _prompts(model, tok, [(100, 71)])[0]
    got = greedy_generate(model.llm, pad_left([prompt]), max_new_tokens=5, eos_id=-1)[0]
    assert len(got.ids) == 5 and not got.stopped
    ids: list[int] = []
    with torch.no_grad():
        for _ in range(5):
            extra = model.llm.get_input_embeddings()(torch.tensor(ids, dtype=torch.long))
            logits = model.llm(inputs_embeds=torch.cat([prompt, extra])[None]).logits[0, -1]
            ids.append(int(logits.argmax()))
    assert got.ids == ids
