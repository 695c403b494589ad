"""Read the handful of EXIF fields the report carries, tolerating broken or missing EXIF, at a bounded cost."""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Callable
from datetime import datetime
from fractions import Fraction
from typing import Any, BinaryIO, TypeVar

from iqa_cli.images import ExifInfo

_T = TypeVar("_T")

# "2021:07:04 12:30:59", also with "-" or "/" between date parts, "T" or several spaces before the
# time, and trailing sub-seconds or time zone, which we drop (captured_at is naive, like EXIF).
_DATETIME_RE = re.compile(r"^\s*(\d{4})[:\-/](\d{1,2})[:\-/](\d{1,2})(?:[ T]+(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?)?")


def read_exif(data: bytes | bytearray | memoryview | BinaryIO) -> ExifInfo:
    """The EXIF fields of an image given as its bytes or a binary file object (read whole); never raises.

    Fields that are missing or hold nonsense are None; a broken EXIF block gives the fields that could
    be read. The cost is bounded whatever the file holds (see `MAX_IFD_ENTRIES`, `MAX_TEXT_BYTES`,
    `LOCATE_READS`): only IFD0 and the EXIF sub-IFD are looked at, and only our fields' values are read.
    Nothing is decoded, so a decompression bomb costs no more here than any other file.
    """
    if isinstance(data, (bytes, bytearray, memoryview)):
        buffer = bytes(data)
    else:
        data.seek(0)
        buffer = data.read()
    info = exif_from_tags(_tiff_fields(buffer, _locate(buffer)))
    if info == ExifInfo() and buffer[:4] not in _TIFF_MAGIC:
        # exifread's container walk misses some layouts (HEIF variants, EXIF in a PNG text chunk); Pillow's
        # header parser is a second opinion on where the block is. A TIFF is its own block: nothing to add.
        info = exif_from_tags(_tiff_fields(*_pillow_block(buffer)))
    return info


def exif_from_tags(tags: dict[str, Any]) -> ExifInfo:
    """Build an ExifInfo from tags by exifread's names ("Image Make", "EXIF FNumber"); a value may be an
    exifread IfdTag (its `values` are read), or a number, a ratio or text as such."""
    return ExifInfo(
        camera_make=_field(tags, ("Image Make",), _text),
        camera_model=_field(tags, ("Image Model",), _text),
        captured_at=_field(tags, ("EXIF DateTimeOriginal", "EXIF DateTimeDigitized", "Image DateTime"), parse_datetime),
        exposure_time=_field(tags, ("EXIF ExposureTime",), _positive_float),
        iso=_field(tags, ("EXIF ISOSpeedRatings",), _positive_int),
        f_number=_field(tags, ("EXIF FNumber",), _positive_float),
        focal_length=_field(tags, ("EXIF FocalLength",), _positive_float),
        orientation=_field(tags, ("Image Orientation",), _orientation),
    )


def parse_datetime(value: Any) -> datetime | None:
    """A naive datetime from an EXIF date string ("YYYY:MM:DD HH:MM:SS", tolerant), else None."""
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if not isinstance(value, str):
        return None
    match = _DATETIME_RE.match(value.replace("\x00", ""))
    if match is None:
        return None
    parts = [int(p) if p else 0 for p in match.groups()]
    try:
        # Cameras with an unset clock write "0000:00:00 00:00:00"; datetime rejects it, as it should.
        return datetime(*parts)
    except ValueError:
        return None


def _field(tags: dict[str, Any], names: tuple[str, ...], convert: Callable[[Any], _T | None]) -> _T | None:
    """The first of `names` whose value converts to something, else None."""
    for name in names:
        tag = tags.get(name)
        if tag is None:
            continue
        try:
            value = convert(getattr(tag, "values", tag))
        except Exception:
            value = None
        if value is not None:
            return value
    return None


def _first(values: Any) -> Any:
    """exifread gives most numeric values as a list; the fields we read hold one value."""
    if isinstance(values, (list, tuple)):
        return values[0] if values else None
    return values


def _text(values: Any) -> str | None:
    if isinstance(values, bytes):
        values = values.decode("utf-8", "replace")
    if not isinstance(values, str):
        return None
    text = values.replace("\x00", " ").strip()
    return text or None


def _number(values: Any) -> float | None:
    value = _first(values)
    if value is None or isinstance(value, (str, bytes)):
        return None
    # exifread's Ratio is a Fraction; a zero denominator means "unknown" in practice.
    if isinstance(value, Fraction) or hasattr(value, "denominator"):
        if value.denominator == 0:
            return None
        return float(Fraction(value.numerator, value.denominator))
    return float(value)


def _positive_float(values: Any) -> float | None:
    value = _number(values)
    if value is None or not value > 0 or value == float("inf"):
        return None
    return value


def _positive_int(values: Any) -> int | None:
    value = _number(values)
    if value is None or not value > 0 or value == float("inf"):
        return None
    return round(value)


def _orientation(values: Any) -> int | None:
    value = _number(values)
    if value is None or value != int(value) or not 1 <= value <= 8:
        return None
    return int(value)


# Our fields: tag number -> name (exifread's names, kept as the keys `exif_from_tags` reads).
_IFD0_FIELDS = {
    0x010F: "Image Make",
    0x0110: "Image Model",
    0x0112: "Image Orientation",
    0x0132: "Image DateTime",
    0x8769: "Image ExifOffset",  # where the EXIF sub-IFD starts
}
_EXIF_FIELDS = {
    0x829A: "EXIF ExposureTime",
    0x829D: "EXIF FNumber",
    0x8827: "EXIF ISOSpeedRatings",
    0x9003: "EXIF DateTimeOriginal",
    0x9004: "EXIF DateTimeDigitized",
    0x920A: "EXIF FocalLength",
}
MAX_IFD_ENTRIES = 4096
"""Entries looked at in IFD0 and in the EXIF sub-IFD (the format allows 65,535; cameras write under 100)."""

MAX_TEXT_BYTES = 256
"""Bytes read of a text field (make, model, a date); the rest of a longer value is not looked at."""

LOCATE_READS = 100_000
"""Reads exifread's container walk may make to find the EXIF block: each of its loops reads, so this bounds a
PNG of a million tiny chunks or a HEIF box claiming a huge count (a PNG of 8 KiB chunks fits 800 MB)."""

LOCATE_BYTES = 4 << 20
"""Bytes that walk may read (a HEIF Exif item may claim a 4 GiB header: refused before it is read)."""

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")

# Numeric field type -> (struct format of one value, its size).
_NUMBER_TYPES = {
    1: ("B", 1),
    3: ("H", 2),
    4: ("I", 4),
    5: ("II", 8),
    6: ("b", 1),
    8: ("h", 2),
    9: ("i", 4),
    10: ("ii", 8),
    11: ("f", 4),
    12: ("d", 8),
    13: ("I", 4),
}
_TEXT_TYPES = (2, 129)  # ASCII, and EXIF 3.0's UTF-8


class _WalkBudgetSpent(Exception):
    """Raised by `_BoundedReader` when exifread's container walk has read its share."""


class _BoundedReader(io.BytesIO):
    """A file object that refuses a read past `LOCATE_READS` calls or `LOCATE_BYTES` bytes, checked before
    reading: every loop of exifread's walk (PNG chunks, JPEG segments, HEIF boxes and items) reads, so the walk
    ends within the budget whatever the file claims."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self._size = len(data)
        self._reads = 0
        self._bytes = 0

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = max(0, self._size - self.tell())
        self._reads += 1
        self._bytes += size
        if self._reads > LOCATE_READS or self._bytes > LOCATE_BYTES:
            raise _WalkBudgetSpent
        return super().read(size)


def _locate(buffer: bytes) -> int | None:
    """Where the TIFF header of the file's EXIF block starts in `buffer`, found by exifread's container walk
    (JPEG, PNG, WebP, HEIF, JPEG XL, TIFF); None when there is none or the walk fails or runs out of budget."""
    try:
        from exifread.core.find_exif import determine_type

        offset, _, _ = determine_type(_BoundedReader(buffer))
    except Exception:  # no EXIF, a damaged container, an exifread that moved the function: no fields
        return None
    # exifread assumes WebP's EXIF chunk starts with "Exif\0\0", which Pillow (and the WebP spec) leave out: the
    # header is then 6 bytes before where it points.
    for start in (offset, offset - 6):
        if start >= 0 and buffer[start : start + 4] in _TIFF_MAGIC:
            return start
    return None


def _pillow_block(buffer: bytes) -> tuple[bytes, int | None]:
    """The EXIF block Pillow's header parser found (and where its TIFF header starts), or (b"", None).

    Only `Image.open` runs, which reads headers and decodes no pixel: this runs before the loader checks the
    pixel limit. (`getexif()` is not called: for a PNG whose eXIf is not before the pixel data it decodes the
    whole image, a decompression bomb included.) The block is parsed by our bounded parser, not by Pillow's,
    which reads every value of every tag.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(buffer)) as image:
            block = image.info.get("exif")
            raw_profile = image.info.get("Raw profile type exif")  # ImageMagick's hex text chunk in PNGs
        if block is None and isinstance(raw_profile, str):
            block = bytes.fromhex("".join(raw_profile.split("\n")[3:]))
    except Exception:
        return b"", None
    if not isinstance(block, bytes):
        return b"", None
    start = 6 if block.startswith(b"Exif\x00\x00") else 0
    return block, start if block[start : start + 4] in _TIFF_MAGIC else None


def _tiff_fields(buffer: bytes, start: int | None) -> dict[str, Any]:
    """Our fields from the TIFF structure at `buffer[start:]` (IFD0, then the EXIF sub-IFD), by name; what a
    damaged block still gives, or {}."""
    if start is None:
        return {}
    endian = "<" if buffer[start : start + 2] == b"II" else ">"
    fields: dict[str, Any] = {}
    try:
        (ifd0,) = struct.unpack_from(endian + "I", buffer, start + 4)
    except struct.error:
        return fields
    _read_ifd(buffer, start, ifd0, endian, _IFD0_FIELDS, fields)
    exif_offset = fields.pop("Image ExifOffset", None)
    # IFD0's "next IFD" chain is thumbnails and pages, and GPS and interoperability IFDs hold none of our fields:
    # they are never followed. exifread re-parses a sub-IFD for every entry pointing at it, so 3,000 GPS pointers
    # to one IFD of 3,000 entries cost it 9 million tag reads (a minute for a 4 MB file).
    if isinstance(exif_offset, int) and exif_offset not in (0, ifd0):
        _read_ifd(buffer, start, exif_offset, endian, _EXIF_FIELDS, fields)
    return fields


def _read_ifd(
    buffer: bytes, start: int, offset: int, endian: str, wanted: dict[int, str], fields: dict[str, Any]
) -> None:
    """Add the `wanted` tags of the IFD at `offset` (from `start`) to `fields`, by name. At most
    `MAX_IFD_ENTRIES` entries are looked at; an entry that cannot be read is skipped, and the IFD ends where the
    buffer does."""
    try:
        (count,) = struct.unpack_from(endian + "H", buffer, start + offset)
    except struct.error:
        return
    first = start + offset + 2
    count = min(count, MAX_IFD_ENTRIES, max(0, (len(buffer) - first) // 12))
    for tag, kind, n, inline in struct.iter_unpack(endian + "HHI4s", buffer[first : first + 12 * count]):
        name = wanted.get(tag)
        if name is None or name in fields:
            continue  # a repeated tag: its first readable entry counts
        try:
            value = _value(buffer, start, endian, kind, n, inline)
        except struct.error:  # an offset past the end of the block
            continue
        if value is not None:
            fields[name] = value


def _value(buffer: bytes, start: int, endian: str, kind: int, n: int, inline: bytes) -> Any:
    """The first value of an entry (its whole text for a text type, up to `MAX_TEXT_BYTES`), or None for a type
    we do not read. Values of more than 4 bytes live at an offset from the TIFF header; shorter ones inline."""
    if n == 0:
        return None
    if kind in _TEXT_TYPES:
        if n <= 4:
            raw = inline[:n]
        else:
            at = start + struct.unpack(endian + "I", inline)[0]
            raw = buffer[at : at + min(n, MAX_TEXT_BYTES)]
        return raw.split(b"\x00", 1)[0]
    if kind not in _NUMBER_TYPES:
        return None
    fmt, size = _NUMBER_TYPES[kind]
    if size * n <= 4:
        values = struct.unpack_from(endian + fmt, inline)
    else:
        values = struct.unpack_from(endian + fmt, buffer, start + struct.unpack(endian + "I", inline)[0])
    if len(values) == 2:  # a rational; a zero denominator means "unknown"
        return Fraction(values[0], values[1]) if values[1] else None
    return values[0]
