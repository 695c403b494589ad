"""Gallery thumbnails: a small upright JPEG as a data URI, or the reason there is none; never raises."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

THUMB_SIZE = 160  # longest side, CSS pixels
# A preview is not worth decoding a gigapixel scan for; JPEGs are exempt as draft mode decodes them small.
MAX_PREVIEW_PIXELS = 150_000_000


@dataclass(frozen=True)
class Thumbnail:
    """A data URI of a JPEG with its size, or `problem` saying why the image has no preview."""

    uri: str | None = None
    width: int = 0
    height: int = 0
    problem: str | None = None


def _register_heif() -> None:
    """Let Pillow open HEIC/HEIF when pillow-heif (iqa's `heif` extra) is installed, as iqa's loader does."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return
    register_heif_opener()


_register_heif()


def make_thumbnail(path: str, size: int = THUMB_SIZE) -> Thumbnail:
    """The image at `path` fitted into size x size, EXIF orientation applied, alpha flattened onto white."""
    try:
        with Image.open(path) as image:
            if image.format != "JPEG" and image.width * image.height > MAX_PREVIEW_PIXELS:
                return Thumbnail(problem=f"too large to preview ({image.width} x {image.height})")
            # JPEGs decode at 1/2 .. 1/8 scale, never below the requested size: far faster for camera files.
            image.draft("RGB", (size, size))
            small = _resizable(ImageOps.exif_transpose(image))
            small.thumbnail((size, size), Image.Resampling.LANCZOS)
            rgb = _flatten(small)
        buffer = io.BytesIO()
        rgb.save(buffer, "JPEG", quality=80, optimize=True)
    except Exception as exc:  # any decoder failure only costs this image its preview, never the report
        return Thumbnail(problem=f"no preview ({type(exc).__name__})")
    uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return Thumbnail(uri=uri, width=rgb.width, height=rgb.height)


def _resizable(image: Image.Image) -> Image.Image:
    """A mode that resizes well: palettes expanded (they resize by nearest neighbour), high depth to 8 bits."""
    if image.mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode == "1":
        return image.convert("L")
    if image.mode.startswith("I") or image.mode == "F":
        # Scaled, not clipped, the way iqa's loader does: 16-bit range to 8 bits, anything else stretched.
        values = np.asarray(image, dtype=np.float64)
        values = np.where(np.isfinite(values), values, 0.0)
        low, high = float(values.min()), float(values.max())
        if image.mode.startswith("I") and low >= 0 and high <= 65535:
            low, high = 0.0, 65535.0
        scaled = (values - low) * (255.0 / (high - low if high > low else 1.0))
        return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")
    return image


def _flatten(image: Image.Image) -> Image.Image:
    """RGB for JPEG: transparent parts become white, as most viewers show them."""
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
