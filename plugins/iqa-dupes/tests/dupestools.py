"""Test helpers: bundled scikit-image photos and the edits a near copy goes through."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import skimage.data
from PIL import Image, ImageEnhance

# Different scenes: chelsea and cat are the same photo in scikit-image, so only one of them is here.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field")


def photo(name: str = "astronaut") -> Image.Image:
    """A bundled scikit-image photo as an RGB image."""
    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """The image after a round trip through JPEG at this quality."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


# What happens to a photo on its way to becoming a near copy.
EDITS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "half size": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.BICUBIC),
    "quarter size": lambda im: im.resize((im.width // 4, im.height // 4), Image.Resampling.LANCZOS),
    "jpeg quality 30": lambda im: jpeg(im, 30),
    "half size, jpeg 70": lambda im: jpeg(im.resize((im.width // 2, im.height // 2)), 70),
    "10% brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.1),
    "10% darker": lambda im: ImageEnhance.Brightness(im).enhance(0.9),
}


def pixels(image: Image.Image) -> np.ndarray:
    """RGB uint8 pixels (H x W x 3), as the loader decodes them."""
    return np.asarray(image.convert("RGB"))
