"""Thumbnails: small upright images as data URIs (JPEG, or WebP/PNG keeping transparency), or why none; never raises."""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from iqa_cli.files import NotRegularFile, open_regular
from PIL import Image, ImageOps, features

THUMB_SIZE = 160  # longest side, CSS pixels: the galleries'
TABLE_THUMB_SIZE = 48  # the table's, beside the file name
# Images with transparent pixels keep them (the page draws a checkerboard behind thumbnails): WebP where
# Pillow can write it (an eighth of PNG's size for a 160 px photo), PNG otherwise. Opaque images: JPEG.
_ALPHA_FORMAT = ("WEBP", "image/webp") if features.check("webp") else ("PNG", "image/png")
# Pixels the decoder may produce for one preview, checked from the header before anything is decoded
# (a decompression bomb declares a huge size in a small file). JPEGs count at their draft size: they
# decode at 1/2 .. 1/8 scale, so a camera file costs a fraction of its full size.
MAX_PREVIEW_PIXELS = 150_000_000
# Files larger than this are not read for a preview: iqa's loader refuses them too (file_too_large).
MAX_PREVIEW_BYTES = 1 << 30
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Thumbnail:
    """A data URI of the image (JPEG, or WebP/PNG with alpha) with its size, or `problem` saying why there is none."""

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
    """The image at `path` fitted into size x size, EXIF orientation applied, transparency kept.

    Only a regular file is read, and opening it never blocks (a file replaced by a FIFO, a device or a
    socket after it was assessed gets a placeholder). With `content_hash` (the row's BLAKE2b-128) a file
    whose bytes are no longer those that were assessed gets a placeholder too, never another picture.
    """
    return make_thumbnails(path, (size,), content_hash=content_hash)[0]


def make_thumbnails(path: str, sizes: Sequence[int], *, content_hash: str | None = None) -> list[Thumbnail]:
    """`make_thumbnail` at each of `sizes` from one read and one decode (a gallery's and the table's)."""
    try:
        with _open_assessed(path, content_hash) as file:
            largest = _preview(file, max(sizes))
        return [_encode(_fitted(largest, size)) for size in sizes]
    except _NoPreview as reason:
        problem = str(reason)
    except Image.DecompressionBombError:  # Pillow's own guard, where iqa's loader has not replaced it
        problem = "too large to preview"
    except Exception as exc:  # any decoder failure only costs this image its preview, never the report
        problem = f"no preview ({type(exc).__name__})"
    return [Thumbnail(problem=problem) for _ in sizes]


def _fitted(image: Image.Image, size: int) -> Image.Image:
    if max(image.size) <= size:
        return image
    small = image.copy()
    small.thumbnail((size, size), Image.Resampling.LANCZOS)
    return small


def _encode(image: Image.Image) -> Thumbnail:
    """A data URI: WebP or PNG when some pixel is (partly) transparent, else JPEG."""
    buffer = io.BytesIO()
    if image.mode == "RGBA" and image.getchannel("A").getextrema()[0] < 255:
        kind, mime = _ALPHA_FORMAT
        image.save(buffer, kind, **({"quality": 80} if kind == "WEBP" else {"optimize": True}))
    else:
        mime = "image/jpeg"
        image.convert("RGB").save(buffer, "JPEG", quality=80, optimize=True)
    uri = f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return Thumbnail(uri=uri, width=image.width, height=image.height)


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
    """`path` opened for reading as iqa's loader opens it (a regular file, never waiting on a FIFO or device, the
    same file that was looked at), of acceptable size; `_NoPreview` if not."""
    try:
        file, info = open_regular(path)
    except NotRegularFile as exc:
        raise _NoPreview(
            "no preview (the file changed while it was opened)" if exc.swapped else "no preview (not a regular file)"
        ) from None
    if info.st_size > MAX_PREVIEW_BYTES:
        file.close()
        raise _NoPreview(f"no preview (over {MAX_PREVIEW_BYTES >> 30} GiB)")
    return file


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
    """The opened image file as RGB, or RGBA where it has alpha, fitted into size x size; its size checked
    before any decode."""
    with Image.open(file) as image:
        width, height = image.size
        # JPEGs decode at 1/2 .. 1/8 scale, never below the requested size: far faster for camera files.
        # draft() only chooses the scale (image.size becomes the size the decoder will produce).
        image.draft("RGB", (size, size))
        if image.width * image.height > MAX_PREVIEW_PIXELS:
            raise _NoPreview(f"too large to preview ({width} x {height})")
        small = _resizable(ImageOps.exif_transpose(image))
        small.thumbnail((size, size), Image.Resampling.LANCZOS)
        return _with_alpha_or_rgb(small)


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


def _with_alpha_or_rgb(image: Image.Image) -> Image.Image:
    """RGBA when the image has an alpha channel (whether any pixel uses it is decided per size), else RGB."""
    if image.mode in ("RGBA", "LA", "PA"):
        return image.convert("RGBA")
    return image.convert("RGB")
