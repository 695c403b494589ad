"""Write distorted versions of the example photos to examples/distorted/ (run from anywhere; deterministic).

Usage: python examples/make_distorted.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from iqa_cli.evaluation.distortions import distort

HERE = Path(__file__).resolve().parent

# (photo, category, severity, function): a mild and a severe case for several categories.
CASES: tuple[tuple[str, str, int, str], ...] = (
    ("astronaut", "blur", 2, "blur_gaussian"),
    ("astronaut", "blur", 5, "blur_lens"),
    ("chelsea", "noise", 2, "noise_gaussian_rgb"),
    ("chelsea", "noise", 5, "noise_poisson"),
    ("coffee", "darken", 5, "darken_shift_hsv"),
    ("coffee", "saturate_weaken", 4, "saturate_weaken_ycrcb"),
    ("rocket", "compression", 2, "compression_jpeg"),
    ("rocket", "compression", 5, "compression_jpeg"),
    ("flower", "pixelate", 4, "pixelate"),
    ("flower", "quantization", 4, "quantization_median"),
    ("chelsea", "oversharpen", 4, "oversharpen"),
    ("astronaut", "contrast_weaken", 4, "contrast_weaken_scale"),
)

# Exact-pixel distortions lose what makes them visible in a lossy file: write them as PNG.
LOSSLESS = {"pixelate", "quantization", "noise"}


def main() -> None:
    out = HERE / "distorted"
    out.mkdir(exist_ok=True)
    for seed, (photo, category, severity, function) in enumerate(CASES):
        pixels = np.asarray(Image.open(next((HERE / "photos").glob(f"{photo}.*"))).convert("RGB"))
        distorted = distort(pixels, category, severity, rng=seed, function=function)
        stem = f"{photo}-{category}-{severity}"
        if category in LOSSLESS:
            Image.fromarray(distorted).save(out / f"{stem}.png", optimize=True)
        else:
            Image.fromarray(distorted).save(out / f"{stem}.jpg", quality=95)
        print(f"wrote {stem}")


if __name__ == "__main__":
    main()
