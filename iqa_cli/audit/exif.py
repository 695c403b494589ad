"""Read the handful of EXIF fields the report carries, tolerating broken or missing EXIF."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from collections.abc import Callable
from datetime import datetime
from fractions import Fraction
from typing import Any, BinaryIO, TypeVar

import exifread

from iqa_cli.images import ExifInfo

# exifread logs a WARNING for every file without EXIF (most PNGs, all GIFs): in a run over a
# collection that is one line per image on stderr. Broken EXIF is not an error for us either.
logging.getLogger("exifread").setLevel(logging.CRITICAL)

_T = TypeVar("_T")

# "2021:07:04 12:30:59", also with "-" or "/" between date parts, "T" or several spaces before the
# time, and trailing sub-seconds or time zone, which we drop (captured_at is naive, like EXIF).
_DATETIME_RE = re.compile(r"^\s*(\d{4})[:\-/](\d{1,2})[:\-/](\d{1,2})(?:[ T]+(\d{1,2}):(\d{1,2})(?::(\d{1,2}))?)?")


def read_exif(data: bytes | bytearray | memoryview | BinaryIO) -> ExifInfo:
    """The EXIF fields of an image given as its bytes or a binary file object; never raises.

    Fields exifread cannot find, or that hold nonsense, are None; a broken EXIF block gives the
    fields that were parsed before the damage, or an empty ExifInfo.
    """
    try:
        fh = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
        # details=False skips maker notes, the slow and most often broken part; we need none of it.
        tags = exifread.process_file(fh, details=False, extract_thumbnail=False)
    except Exception:
        tags = _partial_tags(data)
    info = exif_from_tags(tags)
    if info == ExifInfo():
        # exifread misreads some containers (WebP as Pillow writes it, for one); Pillow's own parser
        # only reads the header here, so a second opinion is cheap.
        info = exif_from_tags(_pillow_tags(data))
    return info


def exif_from_tags(tags: dict[str, Any]) -> ExifInfo:
    """Build an ExifInfo from exifread's tag dictionary (values are exifread IfdTag objects)."""
    return ExifInfo(
        camera_make=_field(tags, ("Image Make",), _text),
        camera_model=_field(tags, ("Image Model",), _text),
        captured_at=_field(tags, ("EXIF DateTimeOriginal", "EXIF DateTimeDigitized", "Image DateTime"), parse_datetime),
        exposure_time=_field(tags, ("EXIF ExposureTime",), _positive_float),
        iso=_field(tags, ("EXIF ISOSpeedRatings", "EXIF PhotographicSensitivity"), _positive_int),
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


# Pillow's tag numbers for the fields we read, under exifread's names so one converter serves both.
_PILLOW_IFD0 = {
    "Image Make": 0x010F,
    "Image Model": 0x0110,
    "Image Orientation": 0x0112,
    "Image DateTime": 0x0132,
}
_PILLOW_EXIF_IFD = {
    "EXIF ExposureTime": 0x829A,
    "EXIF FNumber": 0x829D,
    "EXIF ISOSpeedRatings": 0x8827,
    "EXIF DateTimeOriginal": 0x9003,
    "EXIF DateTimeDigitized": 0x9004,
    "EXIF FocalLength": 0x920A,
}


def _pillow_tags(data: bytes | bytearray | memoryview | BinaryIO) -> dict[str, Any]:
    """The fields we read, as parsed by Pillow, keyed like exifread's tags; {} on any failure."""
    from PIL import Image

    tags: dict[str, Any] = {}
    try:
        fh = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
        fh.seek(0)
        # Pillow warns about each damaged tag it skips; what survives is all we want.
        with warnings.catch_warnings(), Image.open(fh) as image:
            warnings.simplefilter("ignore")
            exif = image.getexif()
            for name, number in _PILLOW_IFD0.items():
                if number in exif:
                    tags[name] = exif[number]
            sub = exif.get_ifd(0x8769)
            for name, number in _PILLOW_EXIF_IFD.items():
                if number in sub:
                    tags[name] = sub[number]
    except Exception:
        pass
    return tags


def _partial_tags(data: bytes | bytearray | memoryview | BinaryIO) -> dict[str, Any]:
    """What exifread parsed before it failed: walk the IFDs one by one and keep what came through.

    This uses exifread's own building blocks (the same calls `process_file` makes); if a future
    exifread moves them, we fall back to no EXIF rather than failing the load.
    """
    try:
        from exifread.core.exif_header import ExifHeader
        from exifread.core.find_exif import determine_type, get_endian_str

        fh = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
        fh.seek(0)
        offset, endian_bytes, fake_exif = determine_type(fh)
        endian_str, _ = get_endian_str(endian_bytes)
        header = ExifHeader(fh, endian_str, offset, fake_exif, False, False, False, True)
    except Exception:
        return {}
    # Only IFD0 ("Image") and the EXIF sub-IFD matter; the IFD chain after IFD0 is thumbnails, so
    # we do not follow it (a broken "next IFD" pointer is a common way EXIF breaks).
    with contextlib.suppress(Exception):
        header.dump_ifd(ifd=header._first_ifd(), ifd_name="Image")
    with contextlib.suppress(Exception):
        exif_offset = header.tags.get("Image ExifOffset")
        if exif_offset:
            header.dump_ifd(ifd=exif_offset.values[0], ifd_name="EXIF")
    return dict(header.tags)
