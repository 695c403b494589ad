"""Image files whose pixels iqa's loader and DepictQA's authors' loader (`Image.open(p).convert("RGB")`) differ on.

Each kind is one way the two differ: EXIF orientation (iqa turns the image upright, the authors do not),
transparency (iqa composites over white, the authors drop alpha and show the colours under it), 16-bit grey
(iqa scales to 8 bits, the authors clip at 255), plus CMYK (the same pixels without an ICC profile) and a
plain RGB JPEG, which must not differ. Deterministic for a seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

KINDS = ("exif", "rgba", "la", "palette", "cmyk", "16-bit", "plain")
"""The kinds of `write_pixel_cases`, in the order written."""


def _picture(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """An uint8 RGB picture [height, width, 3] that is not symmetric: gradients, a few boxes, some noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([x / width, y / height, (x + 2 * y) / (width + 2 * height)], axis=-1) * 200 + 20
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 40))
        base[y0 : y0 + int(rng.integers(20, 120)), x0 : x0 + int(rng.integers(20, 160))] = rng.integers(0, 256, 3)
    noisy = base + rng.normal(0.0, 6.0, base.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _alpha(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """An alpha plane: opaque left, fading to transparent on the right, with a fully transparent hole."""
    alpha = np.tile(np.linspace(255, 0, width), (height, 1))
    y0, x0 = int(rng.integers(0, height // 2)), int(rng.integers(0, width // 2))
    alpha[y0 : y0 + height // 3, x0 : x0 + width // 4] = 0
    return np.rint(alpha).astype(np.uint8)


def write_pixel_cases(folder: Path, *, width: int = 640, height: int = 480, seed: int = 0) -> dict[str, str]:
    """Write the files into `folder` (created); returns {file name: kind}, kinds from `KINDS`.

    17 files: the 7 EXIF orientations that turn or flip (JPEG), 2 RGBA and 2 LA PNGs with partly transparent
    pixels (one hiding black under the transparency, one hiding the picture), a palette PNG and a palette GIF
    with a transparent index, a CMYK JPEG, 2 16-bit grey PNGs (full range, and a 12-bit range) and a
    plain RGB JPEG.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}

    def save(name: str, kind: str, image: Image.Image, **options: object) -> None:
        image.save(folder / name, **options)
        out[name] = kind

    for orientation in range(2, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        picture = Image.fromarray(_picture(width, height, rng))
        save(f"exif-{orientation}.jpg", "exif", picture, quality=92, exif=exif.tobytes())
    for i, hidden in enumerate(("black", "picture")):
        rgb = _picture(width, height, rng)
        alpha = _alpha(width, height, rng)
        if hidden == "black":
            rgb[alpha == 0] = 0  # what many editors store under fully transparent pixels
        save(f"rgba-{i}.png", "rgba", Image.fromarray(np.dstack([rgb, alpha])))
        grey = np.asarray(Image.fromarray(rgb).convert("L"))
        save(f"la-{i}.png", "la", Image.fromarray(np.dstack([grey, alpha])))
    picture = Image.fromarray(_picture(width, height, rng)).quantize(colors=64, dither=Image.Dither.NONE)
    palette = picture.copy()
    palette.paste(63, (width // 4, height // 4, width // 2, height // 2))  # index 63 is the transparent one
    save("palette.png", "palette", palette, transparency=63)
    save("palette.gif", "palette", palette, transparency=63)
    save("cmyk.jpg", "cmyk", Image.fromarray(_picture(width, height, rng)).convert("CMYK"), quality=92)
    grey = _picture(width, height, rng)[..., 1].astype(np.uint16)
    save("grey16-full.png", "16-bit", Image.fromarray(grey * 257))  # 0-65535: the authors clip most to 255
    save("grey16-12bit.png", "16-bit", Image.fromarray(grey * 16))  # a 12-bit sensor's range: authors clip at 255
    save("plain.jpg", "plain", Image.fromarray(_picture(width, height, rng)), quality=92)
    return out
