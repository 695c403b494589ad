"""The records that travel through the pipeline: a decoded image with its file facts, and how large to decode."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

PIXEL_MODES = ("iqa", "authors")
"""The values of `DecodePlan.pixels`: iqa's conversion to RGB, or DepictQA's authors' loader."""


@dataclass(frozen=True)
class DecodePlan:
    """How large an engine wants its pixels.

    The image is scaled by ``min(1, short_side / min(w, h), long_side / max(w, h))`` (never up), rounded
    like Python's ``round``, with PIL bicubic: the rule DepictQA uses (``resize``, ``max_size``).
    ``None`` for a side means no limit from that side. ``draft`` lets JPEGs decode at a reduced scale
    first (1/2, 1/4, 1/8, never below the target size), which is much faster and slightly different.

    ``native_crop`` asks, besides the resized image, for a central square of that side at the file's own
    resolution (`LoadedImage.native`): pixel-level defects (repeated pixels, empty levels, the 8x8 JPEG
    grid, fine noise) are erased by downscaling. A JPEG whose long side is at most ``native_max_side`` is
    then decoded at full size; a larger one keeps its draft scale and the crop comes from that scale
    (`LoadedImage.native_scale` says which), so a 12 MP photo costs no more to decode than before.

    ``pixels`` says whose conversion to RGB: ``"iqa"`` (EXIF orientation applied, transparency composited over
    white, 16-bit and wider values scaled, CMYK through its ICC profile) or ``"authors"``: DepictQA's own
    loader, ``Image.open(path).convert("RGB")`` and then the resize above, none of those (no draft decoding
    either; a native crop then comes from the same unrotated pixels). ``authors_notes`` (DepictQA's engine sets
    it) adds a note, starting "pixels:", to every image whose pixels differ between the two for those reasons.
    """

    short_side: int | None = None
    long_side: int | None = None
    draft: bool = True
    native_crop: int | None = None
    native_max_side: int = 2048
    pixels: str = "iqa"
    authors_notes: bool = False

    def __post_init__(self) -> None:
        if self.pixels not in PIXEL_MODES:
            raise ValueError(f"unknown pixels mode {self.pixels!r}; choose from {', '.join(PIXEL_MODES)}")


def fit_size(width: int, height: int, plan: DecodePlan) -> tuple[int, int]:
    """The (width, height) an image of this size is resized to under `plan`."""
    ratio = 1.0
    if plan.short_side is not None:
        ratio = min(ratio, plan.short_side / min(width, height))
    if plan.long_side is not None:
        ratio = min(ratio, plan.long_side / max(width, height))
    if ratio >= 1.0:
        return width, height
    return max(1, round(width * ratio)), max(1, round(height * ratio))


@dataclass
class ExifInfo:
    """The EXIF fields the report carries; every one may be missing."""

    camera_make: str | None = None
    camera_model: str | None = None
    captured_at: datetime | None = None
    exposure_time: float | None = None
    iso: int | None = None
    f_number: float | None = None
    focal_length: float | None = None
    orientation: int | None = None


@dataclass
class FileFacts:
    """What is known about a file before and apart from its pixels."""

    path: str
    file_size: int | None = None
    content_hash: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    jpeg_quality: int | None = None
    exif: ExifInfo = field(default_factory=ExifInfo)
    notes: list[str] = field(default_factory=list)


@dataclass
class LoadedImage:
    """A decoded image: RGB uint8 pixels (H x W x 3) at the engine's decode size, with the file's facts.

    `facts.width` / `facts.height` are the image's own size after EXIF orientation, not the decoded size.
    `native` is the central crop the plan's ``native_crop`` asked for (None otherwise), decoded at
    `native_scale` of the file's resolution (1.0 unless a large JPEG was draft-decoded).
    """

    facts: FileFacts
    pixels: np.ndarray
    native: np.ndarray | None = None
    native_scale: float = 1.0


@dataclass
class LoadFailure:
    """A file that could not be loaded: a short machine-readable code and a message for people."""

    facts: FileFacts
    code: str
    message: str
