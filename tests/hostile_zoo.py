"""A generated zoo of hostile files, each with the row an audit must give it (error code, or ok)."""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image

from iqa_cli.testing.images import png_header_only

EXPLICIT = ("fifo.jpg",)
"""Zoo paths to pass explicitly beside the zoo folder: a FIFO inside a folder is skipped silently."""

NOTES = {
    "animated.gif": ["animated: first of 3 frames"],
    "sixteen_bit.png": ["16-bit image scaled to 8 bits"],
    "cmyk.jpg": ["converted from CMYK"],
}
"""The notes the ok rows carry; rows not named here have none."""

UNDECODABLE_NAME = os.fsdecode(b"bad-\xff\xfe-name.png")
"""A name that is not UTF-8 (as Python sees it: lone surrogates); see `build_undecodable_name`."""


def _noise(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _encode(image: Image.Image, fmt: str, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


def _jpeg_with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """`jpeg` with the size in its SOF0 header replaced (nothing else changes: a cheap 'bomb')."""
    sof = jpeg.find(b"\xff\xc0")
    return jpeg[: sof + 5] + struct.pack(">HH", height, width) + jpeg[sof + 9 :]


def _with_garbage_app1(jpeg: bytes) -> bytes:
    """`jpeg` with an extra APP1 'Exif' segment of random bytes right after SOI."""
    junk = np.random.default_rng(7).integers(0, 256, 64, dtype=np.uint8).tobytes()
    body = b"Exif\x00\x00" + b"MM\x00*" + junk
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def build_zoo(root: Path) -> dict[str, str]:
    """Create every hostile case under `root`; return {path relative to root: expected code or "ok"}.

    Audit ``[root, *(root / p for p in EXPLICIT)]``. Paths are relative with "/" separators; the
    symlink loop's row is the link's path. Every expected code was checked against load.py and
    discover.py.
    """
    root.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}

    def put(name: str, data: bytes, code: str) -> None:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        expected[name] = code

    jpeg = _encode(Image.fromarray(_noise(48, 64, 1)), "JPEG", quality=90)
    png = _encode(Image.fromarray(_noise(64, 64, 2)), "PNG")
    sos = jpeg.find(b"\xff\xda")
    idat = png.find(b"IDAT")
    garbage = _noise(64, 64, 3).tobytes()

    # Broken files.
    put("empty.jpg", b"", "empty_file")
    put("truncated.jpg", jpeg[: len(jpeg) // 2], "truncated")
    put("truncated.png", png[: len(png) // 2], "truncated")
    put("header_only.jpg", jpeg[:40], "truncated")
    put("corrupt.jpg", jpeg[: sos + 14] + garbage[: len(jpeg) - sos - 16] + b"\xff\xd9", "corrupt")
    put("corrupt.png", png[: idat + 4] + garbage[: len(png) - idat - 4], "corrupt")
    put("corrupt.tif", b"II*\x00" + b"\xff" * 60, "corrupt")
    put("truncated.webp", _encode(Image.new("RGB", (64, 64), (1, 2, 3)), "WEBP")[:40], "corrupt")
    # Misnamed: text and HTML saved as .jpg are not images; a PNG saved as .jpg is fine.
    put("html.jpg", b"<!DOCTYPE html><html><body><h1>404 Not Found</h1></body></html>\n", "not_an_image")
    put("text.jpg", b"Access denied.\n", "not_an_image")
    put("png_named.jpg", png, "ok")
    # Sizes: decompression bombs refused from the header, impossible sides, a file over 1 GiB.
    put("bomb.png", png_header_only(50_000, 50_000), "too_many_pixels")
    put("bomb.jpg", _jpeg_with_size(jpeg, 65_500, 65_500), "too_many_pixels")
    put("absurd_side.png", png_header_only(1, 5_000_000), "bad_dimensions")
    put("zero_width.png", png_header_only(0, 10), "corrupt")  # Pillow refuses the header itself
    with open(root / "huge.jpg", "wb") as fh:
        fh.truncate((1 << 30) + 1)  # sparse: costs no disk, and is never read
    expected["huge.jpg"] = "file_too_large"
    # Odd but valid images.
    put("broken_exif.jpg", _with_garbage_app1(jpeg), "ok")
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    put("animated.gif", _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100), "ok")
    grey16 = Image.fromarray((np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 64).astype(np.uint16))
    put("sixteen_bit.png", _encode(grey16, "PNG"), "ok")
    put("cmyk.jpg", _encode(Image.new("CMYK", (16, 16), (0, 200, 30, 10)), "JPEG"), "ok")
    put("dup_a.png", png, "ok")  # the same bytes under two names (and as png_named.jpg)
    put("dup_b.png", png, "ok")
    # Names and links.
    put("café 日本 📷.png", png, "ok")
    put("new\nline.png", png, "ok")
    put("folder.jpg/inside.png", png, "ok")  # a folder named like an image is walked
    put("loop/inside.png", png, "ok")
    os.symlink("..", root / "loop" / "back")
    expected["loop/back"] = "symlink_loop"
    os.symlink("missing-target.jpg", root / "dangling.jpg")
    expected["dangling.jpg"] = "broken_link"
    os.mkfifo(root / "fifo.jpg")  # opening it would block forever: it must be refused from its stat
    expected["fifo.jpg"] = "not_a_file"
    return expected


def build_undecodable_name(root: Path) -> str:
    """Create a valid PNG whose name is not UTF-8 (common in scraped archives); returns its name."""
    root.mkdir(parents=True, exist_ok=True)
    with open(os.fsencode(root) + b"/" + os.fsencode(UNDECODABLE_NAME), "wb") as fh:
        fh.write(_encode(Image.fromarray(_noise(16, 16, 4)), "PNG"))
    return UNDECODABLE_NAME
