"""Gallery thumbnails: a small upright JPEG as a data URI, or the reason there is none; never raises."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import stat
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

THUMB_SIZE = 160  # longest side, CSS pixels
# Pixels the decoder may produce for one preview, checked from the header before anything is decoded
# (a decompression bomb declares a huge size in a small file). JPEGs count at their draft size: they
# decode at 1/2 .. 1/8 scale, so a camera file costs a fraction of its full size.
MAX_PREVIEW_PIXELS = 150_000_000
# Files larger than this are not read for a preview: iqa's loader refuses them too (file_too_large).
MAX_PREVIEW_BYTES = 1 << 30
_CHUNK = 1 << 20
# Opening must never wait: O_NONBLOCK makes opening a FIFO (a pipe with no writer) return at once
# instead of blocking until a writer appears; O_NOCTTY keeps a terminal from becoming ours.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class Thumbnail:
    """A data URI of a JPEG with its size, or `problem` saying why the image has no preview."""

    uri: str | None = None
    width: int = 0
    height: int = 0
    problem: str | None = None


class _NoPreview(Exception):
    """Internal: why a file gets a placeholder, as the placeholder says it."""


def _register_heif() -> None:
    """Let Pillow open HEIC/HEIF when pillow-heif (iqa's `heif` extra) is installed, as iqa's loader does."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return
    register_heif_opener()


_register_heif()


def make_thumbnail(path: str, size: int = THUMB_SIZE, *, content_hash: str | None = None) -> Thumbnail:
    """The image at `path` fitted into size x size, EXIF orientation applied, alpha flattened onto white.

    Only a regular file is read, and opening it never blocks (a file replaced by a FIFO, a device or a
    socket after it was assessed gets a placeholder). With `content_hash` (the row's BLAKE2b-128) a file
    whose bytes are no longer those that were assessed gets a placeholder too, never another picture.
    """
    try:
        with _open_assessed(path, content_hash) as file:
            rgb = _preview(file, size)
        buffer = io.BytesIO()
        rgb.save(buffer, "JPEG", quality=80, optimize=True)
    except _NoPreview as reason:
        return Thumbnail(problem=str(reason))
    except Image.DecompressionBombError:  # Pillow's own guard, where iqa's loader has not replaced it
        return Thumbnail(problem="too large to preview")
    except Exception as exc:  # any decoder failure only costs this image its preview, never the report
        return Thumbnail(problem=f"no preview ({type(exc).__name__})")
    uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return Thumbnail(uri=uri, width=rgb.width, height=rgb.height)


def _open_assessed(path: str, content_hash: str | None) -> BinaryIO:
    """The file at `path` open for reading at its start, if it is still the regular file that was assessed."""
    file = _open_regular(path)
    try:
        if content_hash is not None and _digest(file) != content_hash:
            raise _NoPreview("no preview (changed since it was assessed)")
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return file


def _open_regular(path: str) -> BinaryIO:
    """`path` opened for reading if it is a regular file of acceptable size; `_NoPreview` if not.

    Checked twice: `stat` first, so a device is never even opened, then `fstat` on what was opened, which
    must be that same file: a path swapped for a FIFO or a link to a device in between is refused.
    """
    before = os.stat(path)
    if not stat.S_ISREG(before.st_mode):
        raise _NoPreview("no preview (not a regular file)")
    fd = os.open(path, _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != (before.st_dev, before.st_ino):
            raise _NoPreview("no preview (the file changed while it was opened)")
        if info.st_size > MAX_PREVIEW_BYTES:
            raise _NoPreview(f"no preview (over {MAX_PREVIEW_BYTES >> 30} GiB)")
        os.set_blocking(fd, True)  # a regular file: blocking reads, as Pillow expects
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _digest(file: BinaryIO) -> str:
    """BLAKE2b-128 of the file's bytes, hex: what iqa's loader records as a row's `content_hash`."""
    digest, left = hashlib.blake2b(digest_size=16), MAX_PREVIEW_BYTES + 1
    while left > 0 and (chunk := file.read(min(_CHUNK, left))):
        digest.update(chunk)
        left -= len(chunk)
    if left <= 0:  # it grew past the limit as it was read: not the file that was assessed
        raise _NoPreview(f"no preview (over {MAX_PREVIEW_BYTES >> 30} GiB)")
    return digest.hexdigest()


def _preview(file: BinaryIO, size: int) -> Image.Image:
    """The opened image file as an RGB image fitted into size x size; its size checked before any decode."""
    with Image.open(file) as image:
        width, height = image.size
        # JPEGs decode at 1/2 .. 1/8 scale, never below the requested size: far faster for camera files.
        # draft() only chooses the scale (image.size becomes the size the decoder will produce).
        image.draft("RGB", (size, size))
        if image.width * image.height > MAX_PREVIEW_PIXELS:
            raise _NoPreview(f"too large to preview ({width} x {height})")
        small = _resizable(ImageOps.exif_transpose(image))
        small.thumbnail((size, size), Image.Resampling.LANCZOS)
        return _flatten(small)


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
