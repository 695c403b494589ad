"""The real photos the signal engine is calibrated and tested on (scikit-image, scikit-learn, matplotlib data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

# (name, source, file, crop as (top, bottom, left, right) or None). Crops of the larger photos bring the
# clean set to 14; they are cut at full resolution, never resized.
_PHOTOS: tuple[tuple[str, str, str, tuple[int, int, int, int] | None], ...] = (
    ("astronaut", "skimage", "astronaut.png", None),
    ("chelsea", "skimage", "chelsea.png", None),
    ("coffee", "skimage", "coffee.png", None),
    ("rocket", "skimage", "rocket.jpg", None),
    ("motorcycle", "skimage", "motorcycle_left.png", None),
    ("china", "sklearn", "china.jpg", None),
    ("flower", "sklearn", "flower.jpg", None),  # a sharp flower in front of a strongly blurred background
    ("grace_hopper", "matplotlib", "grace_hopper.jpg", None),
    ("china_crop", "sklearn", "china.jpg", (0, 427, 0, 320)),
    ("motorcycle_crop", "skimage", "motorcycle_right.png", (100, 500, 300, 741)),
    ("astronaut_crop", "skimage", "astronaut.png", (0, 320, 192, 512)),
    ("hopper_crop", "matplotlib", "grace_hopper.jpg", (40, 440, 80, 480)),
    ("rocket_crop", "skimage", "rocket.jpg", (100, 427, 0, 420)),
    ("coffee_crop", "skimage", "coffee.png", (40, 400, 80, 500)),
)

# The first ten carry the synthetic distortions; all fourteen are the clean set.
DISTORTION_PHOTOS = tuple(name for name, *_ in _PHOTOS[:10])
CLEAN_PHOTOS = tuple(name for name, *_ in _PHOTOS)
# Held out from threshold setting: the calibration reports them apart from the eight tuning photos.
HELD_OUT_PHOTOS = ("coffee", "motorcycle_crop")
TUNING_PHOTOS = tuple(name for name in DISTORTION_PHOTOS if name not in HELD_OUT_PHOTOS)
SHALLOW_DOF_PHOTOS = ("flower", "chelsea_dof")


def _directory(source: str) -> Path:
    if source == "skimage":
        import skimage.data

        return Path(skimage.data.__file__).parent
    if source == "sklearn":
        import sklearn.datasets

        return Path(sklearn.datasets.__file__).parent / "images"
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data"


def load_photo(name: str) -> np.ndarray:
    """One photo of the set as uint8 RGB; "chelsea_dof" is chelsea with a synthetic shallow depth of field."""
    if name == "chelsea_dof":
        return _shallow_dof(load_photo("chelsea"))
    for photo, source, file, crop in _PHOTOS:
        if photo == name:
            pixels = np.asarray(Image.open(_directory(source) / file).convert("RGB"))
            if crop is not None:
                top, bottom, left, right = crop
                pixels = pixels[top:bottom, left:right]
            return np.ascontiguousarray(pixels)
    raise KeyError(f"no photo named {name!r}")


def _shallow_dof(pixels: np.ndarray) -> np.ndarray:
    # Keep a sharp central ellipse (the subject) and blur the rest strongly, feathering the boundary.
    h, w = pixels.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((yy - h * 0.5) / (h * 0.3)) ** 2 + ((xx - w * 0.45) / (w * 0.22)) ** 2 <= 1.0
    mask = ndimage.gaussian_filter(inside.astype(np.float32), 3.0)[..., None]
    background = ndimage.gaussian_filter(pixels.astype(np.float32), sigma=(6, 6, 0))
    return np.clip(mask * pixels + (1 - mask) * background + 0.5, 0, 255).astype(np.uint8)


def load_all(names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Several photos by name."""
    return {name: load_photo(name) for name in names}
