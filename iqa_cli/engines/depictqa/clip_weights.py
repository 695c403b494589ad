"""CLIP vision weights: from a Hugging Face folder (CLIPModel or CLIPVisionModel) or OpenAI's ``ViT-L-14.pt``.

Names are mapped to the tower's (`hf_to_tower_names`); OpenAI's layout is converted to Hugging Face's first
(`openai_to_hf`), and `convert_openai_clip` can write that conversion out as a folder once. OpenAI's file is
TorchScript, read as data by `torchscript.py`, so no file's code is ever run.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from iqa_cli.engines.depictqa.checkpoint import shapes, state_mismatch
from iqa_cli.engines.depictqa.torchscript import read_torchscript_state
from iqa_cli.engines.depictqa.vision import CLIPVisionTower, VisionConfig
from iqa_cli.errors import ModelFilesError

_HF_PREFIX = "vision_model."
# Present in the checkpoints but not used for DepictQA's features.
_HF_UNUSED = ("post_layernorm.weight", "post_layernorm.bias", "embeddings.position_ids")


def hf_to_tower_names(name: str) -> str | None:
    """A Hugging Face ``vision_model.*`` key (prefix removed) -> our parameter name; None if unused."""
    if name in _HF_UNUSED:
        return None
    if name == "embeddings.position_embedding.weight":
        return "position_embedding"
    if name.startswith("embeddings."):
        return name.removeprefix("embeddings.")
    if name.startswith("encoder.layers."):
        return name.removeprefix("encoder.")
    return name


def load_tower_weights(tower: CLIPVisionTower, hf_state: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy Hugging Face-named weights into `tower`, checking that every key and shape matches."""
    got: dict[str, torch.Tensor] = {}
    for key, value in hf_state.items():
        name = hf_to_tower_names(key)
        if name is not None:
            got[name] = value
    mismatch = state_mismatch(shapes(tower.state_dict()), shapes(got))
    if mismatch:
        raise ModelFilesError(
            f"the CLIP weights in {source} do not fit ViT config {tower.cfg}: {mismatch}. "
            "Re-download them with `iqa model download`."
        )
    tower.load_state_dict(got)
    tower.clear_position_cache()


def _config_from_hf(folder: Path) -> VisionConfig:
    try:
        raw = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelFilesError(f"cannot read the CLIP config {folder / 'config.json'}: {exc}") from exc
    from transformers import CLIPVisionConfig  # fills in the defaults a saved config may omit

    vc = (
        CLIPVisionConfig(**raw.get("vision_config", raw))
        if raw.get("model_type") == "clip"
        else (CLIPVisionConfig(**{k: v for k, v in raw.items() if k not in ("architectures", "model_type")}))
    )
    return VisionConfig(
        width=vc.hidden_size,
        layers=vc.num_hidden_layers,
        heads=vc.num_attention_heads,
        intermediate=vc.intermediate_size,
        patch_size=vc.patch_size,
        image_size=vc.image_size,
        layer_norm_eps=vc.layer_norm_eps,
        activation=vc.hidden_act,
    )


def _vision_key(key: str) -> str | None:
    """A checkpoint key's name inside the vision model, or None for other parts (the text tower).

    CLIPModel files and older CLIPVisionModel files prefix ``vision_model.``; transformers 5 saves a
    CLIPVisionModel without it.
    """
    if key.startswith(_HF_PREFIX):
        return key.removeprefix(_HF_PREFIX)
    if key.startswith(("embeddings.", "encoder.layers.", "pre_layrnorm.", "post_layernorm.")):
        return key
    return None


def _read_hf_vision_state(folder: Path) -> dict[str, torch.Tensor]:
    """Only the ``vision_model.*`` tensors (a CLIPModel file also holds the text tower), prefix removed."""
    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else []
    if not files and (folder / "model.safetensors").exists():
        files = ["model.safetensors"]
    state: dict[str, torch.Tensor] = {}
    if files:
        from safetensors import safe_open

        for name in files:
            with safe_open(str(folder / name), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 - safe_open handles are not mappings
                    name = _vision_key(key)
                    if name is not None:
                        state[name] = f.get_tensor(key)
    elif (folder / "pytorch_model.bin").exists():
        full = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
        state = {name: v for k, v in full.items() if (name := _vision_key(k)) is not None}
    else:
        raise ModelFilesError(f"no model.safetensors or pytorch_model.bin in the CLIP folder {folder}")
    if not state:
        raise ModelFilesError(f"the CLIP folder {folder} holds no vision_model.* weights")
    return state


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder; plain torch.save files have none."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def read_openai_archive(path: Path) -> dict[str, torch.Tensor]:
    """The ``visual.*`` tensors of OpenAI's CLIP file (a TorchScript archive, or a plain state dict).

    Neither way runs code from the file: a plain state dict goes through ``torch.load(weights_only=True)``,
    and the TorchScript archive OpenAI released through `read_torchscript_state`, never torch.jit.load.
    """
    if _is_torchscript(path):
        state = read_torchscript_state(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelFilesError(f"cannot read the CLIP archive {path}: {exc}") from exc
    visual = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    if not visual:
        raise ModelFilesError(f"{path} holds no visual.* weights: is it OpenAI's CLIP ViT-L-14.pt?")
    return visual


def openai_to_hf(visual: Mapping[str, torch.Tensor]) -> tuple[VisionConfig, dict[str, torch.Tensor]]:
    """OpenAI ``visual.*`` weights -> (config, Hugging Face ``vision_model.*`` weights); prefixes removed.

    OpenAI keeps q, k and v in one ``in_proj`` matrix [3C, C] (nn.MultiheadAttention); Hugging Face splits
    it in that order. Linear weights are [out, in] in both, so nothing is transposed.
    """
    conv = visual["conv1.weight"]
    width, patch = conv.shape[0], conv.shape[-1]
    layers = len({k.split(".")[2] for k in visual if k.startswith("transformer.resblocks.")})
    grid = math.isqrt(visual["positional_embedding"].shape[0] - 1)
    cfg = VisionConfig(
        width=width,
        layers=layers,
        heads=width // 64,  # OpenAI's rule: 64-wide heads
        intermediate=visual["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        patch_size=patch,
        image_size=patch * grid,
    )
    hf = {
        "embeddings.patch_embedding.weight": conv,
        "embeddings.class_embedding": visual["class_embedding"],
        "embeddings.position_embedding.weight": visual["positional_embedding"],
        "pre_layrnorm.weight": visual["ln_pre.weight"],
        "pre_layrnorm.bias": visual["ln_pre.bias"],
        "post_layernorm.weight": visual["ln_post.weight"],
        "post_layernorm.bias": visual["ln_post.bias"],
    }
    for i in range(layers):
        src, dst = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        q, k, v = visual[src + "attn.in_proj_weight"].chunk(3, dim=0)
        qb, kb, vb = visual[src + "attn.in_proj_bias"].chunk(3, dim=0)
        for name, weight, bias in (("q_proj", q, qb), ("k_proj", k, kb), ("v_proj", v, vb)):
            hf[f"{dst}self_attn.{name}.weight"] = weight.contiguous()
            hf[f"{dst}self_attn.{name}.bias"] = bias.contiguous()
        pairs = (
            ("attn.out_proj", "self_attn.out_proj"),
            ("ln_1", "layer_norm1"),
            ("ln_2", "layer_norm2"),
            ("mlp.c_fc", "mlp.fc1"),
            ("mlp.c_proj", "mlp.fc2"),
        )
        for a, b in pairs:
            hf[f"{dst}{b}.weight"] = visual[f"{src}{a}.weight"]
            hf[f"{dst}{b}.bias"] = visual[f"{src}{a}.bias"]
    return cfg, hf


def convert_openai_clip(src: Path, dst: Path) -> Path:
    """Write OpenAI's ``ViT-L-14.pt`` as a Hugging Face CLIPVisionModel folder (config + safetensors)."""
    from safetensors.torch import save_file

    cfg, hf = openai_to_hf(read_openai_archive(src))
    dst.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["CLIPVisionModel"],
        "model_type": "clip_vision_model",
        "hidden_size": cfg.width,
        "intermediate_size": cfg.intermediate,
        "num_hidden_layers": cfg.layers,
        "num_attention_heads": cfg.heads,
        "patch_size": cfg.patch_size,
        "image_size": cfg.image_size,
        "layer_norm_eps": cfg.layer_norm_eps,
        "hidden_act": cfg.activation,
        "num_channels": 3,
    }
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    save_file({_HF_PREFIX + k: v.contiguous() for k, v in hf.items()}, str(dst / "model.safetensors"))
    return dst


def read_vision_weights(path: Path) -> tuple[VisionConfig, dict[str, torch.Tensor]]:
    """(config, Hugging Face-named weights) from a Hugging Face folder or an OpenAI ``.pt`` file."""
    if path.is_dir():
        return _config_from_hf(path), _read_hf_vision_state(path)
    if path.is_file():
        return openai_to_hf(read_openai_archive(path))
    raise ModelFilesError(f"CLIP weights not found at {path}; fetch them with `iqa model download`")


def load_vision_tower(path: Path) -> CLIPVisionTower:
    """A float32 CLIPVisionTower with its weights from `path` (folder or OpenAI archive), in eval mode."""
    cfg, state = read_vision_weights(path)
    tower = CLIPVisionTower(cfg)
    load_tower_weights(tower, state, str(path))
    return tower.eval()
