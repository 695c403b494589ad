"""DepictQA's image preparation: the decode size, then centred black padding to whole patches, CLIP scaling.

Pure numpy on purpose: it runs in the decode worker processes, which must not pay for importing torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from iqa_cli.images import DecodePlan, LoadedImage

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class PreprocessConfig:
    """The authors' ``vision_preprocess`` settings at inference (no random crop)."""

    resize: int = 224  # target short side; images are only ever scaled down
    max_size: int = 672  # cap on the long side
    min_size: int = 70  # smaller sides are padded up to this (5 patches)
    patch_size: int = 14  # CLIP ViT-L/14


PAPER = PreprocessConfig()
"""The DQ495K model (and its QPath / QInst siblings)."""

ABSTRACTOR = PreprocessConfig(resize=1024, max_size=2048, min_size=70)
"""The Abstractor model, trained for large inputs."""


def config_for_variant(variant: str) -> PreprocessConfig:
    """The preprocessing a checkpoint variant was trained with."""
    return ABSTRACTOR if variant == "abstractor" else PAPER


def depictqa_decode_plan(cfg: PreprocessConfig = PAPER) -> DecodePlan:
    """The loader resizes (short side to `resize`, long side at most `max_size`, PIL bicubic, never up).

    `draft=False`: JPEG draft decoding would change pixels relative to the authors' full decode + resize.
    """
    return DecodePlan(short_side=cfg.resize, long_side=cfg.max_size, draft=False)


def padded_size(height: int, width: int, cfg: PreprocessConfig = PAPER) -> tuple[int, int]:
    """(H', W') after raising each side to `min_size` and then to a multiple of the patch size."""
    p = cfg.patch_size
    return tuple(math.ceil(max(cfg.min_size, side) / p) * p for side in (height, width))  # type: ignore[return-value]


def pad_and_normalize(pixels: np.ndarray, cfg: PreprocessConfig = PAPER) -> np.ndarray:
    """RGB uint8 [H, W, 3] (already resized) -> float32 [3, H', W'] ready for the vision tower.

    The image is centred on a black canvas of `padded_size` (the odd pixel of padding goes right /
    bottom, as torchvision's center_crop pads), scaled to [0, 1] and normalised with the CLIP mean and
    std. The arithmetic is float64, as in the authors' code, then stored as float32.
    """
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels of shape [H, W, 3], got {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape[:2]
    out_h, out_w = padded_size(height, width, cfg)
    top, left = (out_h - height) // 2, (out_w - width) // 2
    canvas = np.zeros((out_h, out_w, 3), dtype=np.float64)
    canvas[top : top + height, left : left + width] = pixels
    canvas /= 255.0
    # The authors hold mean/std as float32 tensors that promote to float64: use the same rounded values.
    canvas -= np.asarray(CLIP_MEAN, dtype=np.float32).astype(np.float64)
    canvas /= np.asarray(CLIP_STD, dtype=np.float32).astype(np.float64)
    return np.ascontiguousarray(canvas.transpose(2, 0, 1), dtype=np.float32)


@dataclass(frozen=True)
class DepictQAPreparer:
    """The engine's preparer: picklable, so it can run in the spawn-started decode workers."""

    cfg: PreprocessConfig = PAPER

    def __call__(self, image: LoadedImage) -> np.ndarray:
        return pad_and_normalize(image.pixels, self.cfg)
