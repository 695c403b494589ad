"""CLIP ViT-L/14 as DepictQA uses it: any resolution, last-block patch features, no CLS and no post-norm.

The tower is our own small module rather than transformers' CLIPVisionModel because DepictQA needs two
things that model does differently: the position embeddings resized with bicubic ``align_corners=True``
(transformers' ``interpolate_pos_encoding`` uses another algorithm), and the raw last-block output.
Weights come from a Hugging Face folder (CLIPModel or CLIPVisionModel) or from the OpenAI ``ViT-L-14.pt``
archive, which `convert_openai_clip` can also turn into a Hugging Face folder once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from iqa_cli.errors import ModelFilesError


@dataclass(frozen=True)
class VisionConfig:
    """The shape of a CLIP vision transformer; the defaults are ViT-L/14 at 224 px."""

    width: int = 1024
    layers: int = 24
    heads: int = 16
    intermediate: int = 4096
    patch_size: int = 14
    image_size: int = 224  # pre-training resolution: a 16 x 16 grid of position embeddings
    layer_norm_eps: float = 1e-5
    activation: str = "quick_gelu"

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


def interpolate_position_embedding(embedding: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """Resize CLIP position embeddings [1 + G*G, C] to an image grid -> [1 + grid_h*grid_w, C].

    The CLS position is kept as is; the G x G patch positions are resized with bicubic interpolation,
    ``align_corners=True``, as the authors do. Computed in float32 whatever the weights' dtype.
    """
    cls_pos, patch_pos = embedding[:1], embedding[1:]
    n, channels = patch_pos.shape
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"position embeddings of {n} patches do not form a square grid")
    if (grid_h, grid_w) == (side, side):
        return embedding
    grid = patch_pos.float().T.reshape(1, channels, side, side)
    resized = F.interpolate(grid, size=(grid_h, grid_w), mode="bicubic", align_corners=True)
    resized = resized.reshape(channels, grid_h * grid_w).T.to(embedding.dtype)
    return torch.cat([cls_pos, resized], dim=0)


class VisionAttention(nn.Module):
    """Multi-head self-attention of one CLIP block (separate q/k/v projections, as in Hugging Face)."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.q_proj = nn.Linear(cfg.width, cfg.width)
        self.k_proj = nn.Linear(cfg.width, cfg.width)
        self.v_proj = nn.Linear(cfg.width, cfg.width)
        self.out_proj = nn.Linear(cfg.width, cfg.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, C] -> [B, L, C]; every token sees every token (no mask: images are never padded here)."""
        b, length, width = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, length, self.heads, width // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        return self.out_proj(out.transpose(1, 2).reshape(b, length, width))


class VisionMLP(nn.Module):
    """The block's feed-forward part: fc1, QuickGELU (OpenAI's activation), fc2."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        if cfg.activation not in ("quick_gelu", "gelu"):
            raise ModelFilesError(f"unsupported CLIP activation {cfg.activation!r} (expected quick_gelu)")
        self.quick = cfg.activation == "quick_gelu"
        self.fc1 = nn.Linear(cfg.width, cfg.intermediate)
        self.fc2 = nn.Linear(cfg.intermediate, cfg.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        h = h * torch.sigmoid(1.702 * h) if self.quick else F.gelu(h)
        return self.fc2(h)


class VisionBlock(nn.Module):
    """A pre-norm transformer block."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.self_attn = VisionAttention(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.mlp = VisionMLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class CLIPVisionTower(nn.Module):
    """CLIP's vision transformer, returning one feature per 14 x 14 patch.

    Parameter names follow Hugging Face's ``vision_model.*`` without that prefix, the ``embeddings.``
    level and ``.weight`` of the position embedding (see `hf_to_tower_names`).
    """

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embedding = nn.Conv2d(3, cfg.width, cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(cfg.width))
        self.position_embedding = nn.Parameter(torch.zeros(cfg.grid * cfg.grid + 1, cfg.width))
        self.pre_layrnorm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(VisionBlock(cfg) for _ in range(cfg.layers))
        # Resized position embeddings per grid; cleared whenever weights may have changed.
        self._positions: dict[tuple[int, int, torch.dtype, torch.device], torch.Tensor] = {}

    def clear_position_cache(self) -> None:
        """Forget resized position embeddings (after the weights changed)."""
        self._positions = {}

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def] - .to()/.half() change the weights
        self.clear_position_cache()
        return super()._apply(fn, recurse)

    def positions(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Position embeddings for a grid_h x grid_w image, CLS first: [1 + grid_h*grid_w, C] (cached)."""
        weight = self.position_embedding
        key = (grid_h, grid_w, weight.dtype, weight.device)
        if key not in self._positions:
            if len(self._positions) >= 64:  # a few distinct aspect ratios in practice; stay bounded
                self._positions.clear()
            self._positions[key] = interpolate_position_embedding(weight.detach(), grid_h, grid_w)
        return self._positions[key]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, 3, H, W] (H, W multiples of 14, CLIP-normalised) -> features [B, H/14 * W/14, C].

        The output of the last block with the CLS token dropped: no post-layernorm, no projection.
        """
        b, _, h, w = pixels.shape
        p = self.cfg.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {p}")
        x = self.patch_embedding(pixels.to(self.patch_embedding.weight.dtype))  # [B, C, h/p, w/p]
        x = x.flatten(2).transpose(1, 2)  # [B, N, C]
        cls = self.class_embedding.to(x.dtype).expand(b, 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positions(h // p, w // p).to(x.dtype)
        x = self.pre_layrnorm(x)
        for layer in self.layers:
            x = layer(x)
        return x[:, 1:]


# ---------------------------------------------------------------------------------------------- loading

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
    expected = dict(tower.state_dict())
    got: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, value in hf_state.items():
        name = hf_to_tower_names(key)
        if name is None:
            continue
        if name not in expected:
            unexpected.append(key)
            continue
        got[name] = value
    missing = sorted(set(expected) - set(got))
    wrong = [
        f"{k} (expected {tuple(expected[k].shape)}, got {tuple(v.shape)})"
        for k, v in got.items()
        if v.shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        parts = [
            f"missing: {', '.join(missing[:5])}" if missing else "",
            f"unexpected: {', '.join(unexpected[:5])}" if unexpected else "",
            f"wrong shape: {', '.join(wrong[:5])}" if wrong else "",
        ]
        raise ModelFilesError(
            f"the CLIP weights in {source} do not fit ViT config {tower.cfg}: "
            + "; ".join(p for p in parts if p)
            + ". Re-download them with `iqa model download`."
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
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def read_openai_archive(path: Path) -> dict[str, torch.Tensor]:
    """The ``visual.*`` tensors of OpenAI's CLIP file (a TorchScript archive, or a plain state dict)."""
    if _is_torchscript(path):
        # The released ViT-L-14.pt is TorchScript: loading deserialises TorchScript code and tensors and runs
        # nothing; it is the only way to read that file without OpenAI's package.
        state = torch.jit.load(str(path), map_location="cpu").state_dict()
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


def config_dict(cfg: VisionConfig) -> dict[str, object]:
    """The config as plain data (for reports and benchmarks)."""
    return asdict(cfg)
