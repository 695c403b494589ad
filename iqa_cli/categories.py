"""The 12 DQ-495K distortion categories: key -> the name DepictQA answers with; no heavy imports."""

from __future__ import annotations

# Category key -> the name DepictQA answers with (DQ-495K's vocabulary).
CATEGORIES: dict[str, str] = {
    "blur": "blur",
    "noise": "noise",
    "compression": "compression",
    "brighten": "overly high brightness",
    "darken": "insufficient brightness",
    "contrast_strengthen": "overly high contrast",
    "contrast_weaken": "insufficient contrast",
    "saturate_strengthen": "overly high saturation",
    "saturate_weaken": "insufficient saturation",
    "oversharpen": "oversharpening",
    "pixelate": "pixelation",
    "quantization": "color quantization",
}

# DQ-495K name -> category key, for reading engines' answers back.
KEYS_BY_NAME: dict[str, str] = {name: key for key, name in CATEGORIES.items()}
