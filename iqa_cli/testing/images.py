"""Image files for tests that need one byte layout exactly (decoders are not asked to make them)."""

from __future__ import annotations

import struct
import zlib


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming any size, with one tiny IDAT: 60 bytes, huge if decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = png_chunk(b"IDAT", zlib.compress(b"\0"))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + idat + png_chunk(b"IEND", b"")


def tiff_entry(tag: int, kind: int, count: int, value: bytes) -> bytes:
    return struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\x00")


def tiff_ifd(entries: list[bytes]) -> bytes:
    return struct.pack("<H", len(entries)) + b"".join(entries) + b"\x00\x00\x00\x00"


def gps_fan_out_tiff(pointers: int, text: int = 1300) -> bytes:
    """A ~4 MB TIFF (for 3,000 pointers) that kept exifread busy for a minute: IFD0 holds the camera fields, an
    EXIF pointer and `pointers` GPSInfo entries, all pointing at one GPS IFD of `pointers` text entries of `text`
    bytes each. exifread parses the GPS IFD again for every pointer: pointers x pointers tag reads."""
    camera = b"Canon\x00EOS R5\x002021:07:04 12:30:59\x00"
    ifd0_at = 8
    ifd0_size = 2 + 12 * (4 + pointers) + 4
    camera_at = ifd0_at + ifd0_size
    exif_at = camera_at + len(camera)
    exif = tiff_ifd([tiff_entry(0x8827, 3, 1, struct.pack("<H", 400))])
    gps_at = exif_at + len(exif)
    text_at = gps_at + 2 + 12 * pointers + 4
    ifd0 = tiff_ifd(
        [
            tiff_entry(0x010F, 2, 6, struct.pack("<I", camera_at)),
            tiff_entry(0x0110, 2, 7, struct.pack("<I", camera_at + 6)),
            tiff_entry(0x0132, 2, 20, struct.pack("<I", camera_at + 13)),
            tiff_entry(0x8769, 4, 1, struct.pack("<I", exif_at)),
            *[tiff_entry(0x8825, 4, 1, struct.pack("<I", gps_at)) for _ in range(pointers)],
        ]
    )
    gps = tiff_ifd([tiff_entry(0x001B, 2, text, struct.pack("<I", text_at + i * text)) for i in range(pointers)])
    texts = b"".join((b"text %05d " % i * (text // 10 + 1))[: text - 1] + b"\x00" for i in range(pointers))
    return b"II*\x00" + struct.pack("<I", ifd0_at) + ifd0 + camera + exif + gps + texts


def bomb_png(width: int, height: int, exif_after_pixels: bytes) -> bytes:
    """A 1-bit PNG of zero rows, with an eXIf chunk after its pixel data: ~200 KB on disk for 40000 x 40000, and
    1.6 GB once Pillow decodes it (one byte per pixel)."""
    row = bytes(1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row * 1000) for _ in range(height // 1000)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", pixels)
        + png_chunk(b"eXIf", exif_after_pixels)
        + png_chunk(b"IEND", b"")
    )
