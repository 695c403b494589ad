"""CLIP ViT-L/14 as DepictQA uses it: any resolution, last-block patch features, no CLS and no post-norm.

The tower is our own small module rather than transformers' CLIPVisionModel because DepictQA needs two
things that model does differently: the position embeddings resized with bicubic ``align_corners=True``
(transformers' ``interpolate_pos_encoding`` uses another algorithm), and the raw last-block output.
Its weights are read by `clip_weights.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
