"""Load one image file into RGB pixels at an engine's decode size, or say in a short code why not.

`load_image` never raises: every failure is a `LoadFailure` whose `code` is one of

- ``not_found``: the file does not exist (any more).
- ``permission_denied``: the file cannot be opened for reading.
- ``not_a_file``: the path is a folder, a pipe or a device, not a regular file.
- ``read_error``: the operating system failed to read the file (I/O error, name too long, ...).
- ``empty_file``: the file has zero bytes.
- ``file_too_large``: the file is larger than `MAX_FILE_BYTES`; it is not read.
- ``not_an_image``: Pillow cannot identify the file (text, HTML saved as .jpg, ...).
- ``unsupported``: a format Pillow recognises but cannot decode here (a missing codec or plugin,
  an exotic pixel mode); the message says what is missing.
- ``bad_dimensions``: the header declares a zero or absurd size (a side over `MAX_SIDE`).
- ``too_many_pixels``: width x height from the header exceeds `max_pixels` (a decompression bomb
  or simply too big); checked before any pixel is decoded.
- ``truncated``: the pixel data ends early (a partial download or copy).
- ``corrupt``: any other decoding error, including a damaged header of a recognisable format.

Pixels come back as C-contiguous ``uint8`` H x W x 3 RGB, EXIF orientation applied, scaled to
`fit_size` of the oriented size. Transparency is composited over white. 16-bit and 32-bit images
are scaled (not clipped) to 8 bits. JPEGs that will be downscaled are decoded in draft mode when
the plan allows it (see docs/decoding.md for the speed/fidelity trade-off). A plan with
``pixels="authors"`` gets DepictQA's authors' loader instead: ``convert("RGB")`` and the resize only.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from PIL import Image, ImageCms, UnidentifiedImageError

from iqa_cli.audit import remote
from iqa_cli.audit.exif import read_exif
from iqa_cli.audit.remote import is_url
from iqa_cli.defaults import DEFAULT_MAX_PIXELS
from iqa_cli.files import NotRegularFile, open_regular
from iqa_cli.images import DecodePlan, FileFacts, LoadedImage, LoadFailure, fit_size
from iqa_cli.install import install_hint

MAX_FILE_BYTES = 1 << 30
"""Files larger than this (1 GiB) are refused as ``file_too_large`` without being read."""

MAX_SIDE = 1 << 20
"""A side longer than this (1,048,576 px) is ``bad_dimensions``: no camera or scanner makes one."""

# Our own per-call `max_pixels` check replaces Pillow's process-wide one (which would also refuse
# images between 2x89 MP and our limit, and warn from 89 MP). Pillow checks the header size in
# Image.open, exactly where we check, so nothing is decoded before the check either way.
Image.MAX_IMAGE_PIXELS = None

# EXIF orientation -> the transpose that shows the image upright (as ImageOps.exif_transpose).
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# File signatures of formats we expect to load: when Pillow cannot identify such a file, it is a
# damaged (or unsupported) image rather than "not an image".
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _register_heif() -> bool:
    """Let Pillow open HEIC/HEIF when pillow-heif is installed (the `heif` extra)."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


HEIF_SUPPORTED = _register_heif()


class _Failure(Exception):
    """Internal: carries a failure code and message to the one place that builds a LoadFailure."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def load_image(path: str, plan: DecodePlan, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage | LoadFailure:
    """Read, identify and decode the image at `path` for `plan`; never raises.

    The file is read once; `FileFacts.content_hash` is the BLAKE2b-128 hex digest of the file's
    bytes (not of the pixels), and EXIF is parsed from the same bytes.
    """
    facts = FileFacts(path=str(path))
    # Pillow warns (UserWarning, DecompressionBombWarning, ...) about damaged EXIF and odd files; in a
    # run over thousands of files that is noise on stderr, and the outcome is in the result anyway.
    # catch_warnings is process-wide: fine in the decode worker processes this runs in.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _load(path, plan, max_pixels, facts)


def decode_pixels(data: bytes, plan: DecodePlan, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Only the pixels of an image file's bytes under `plan`, decoded exactly as `load_image` decodes them (no
    hash, no EXIF, no failure classification): the decode-only baseline the audit benchmark compares with."""
    return _decode(data, plan, max_pixels, FileFacts(path=""), draft_oversample=1)[0]


def load_member(
    path: str,
    plan: DecodePlan,
    *,
    container: str,
    offset: int,
    size: int | None,
    data: bytes | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> LoadedImage | LoadFailure:
    """`load_image` for an image inside a container (`containers.Member`), named `path`: its `data`, or the `size`
    bytes at `offset` in the file `container` (a tar shard's member, read in place), or with `size` None the whole
    of `container` (a remote file); `container` may be a URL, read through fsspec. Never raises."""
    facts = FileFacts(path=str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if data is not None:
            return _load(lambda: _checked(data, facts), plan, max_pixels, facts)
        if is_url(container):
            return _load(lambda: _read_remote(container, offset, size, facts), plan, max_pixels, facts)
        assert size is not None  # a local file is read by load_image; a local Member is a tar member
        return _load(lambda: _read_range(container, offset, size, facts), plan, max_pixels, facts)


def content_hash(
    path: str, *, container: str | None = None, offset: int = 0, size: int | None = None, data: bytes | None = None
) -> str | None:
    """`FileFacts.content_hash` of the image `load_image` (or, with `container`, `load_member`) would load, from its
    bytes alone (nothing decoded), or None when they cannot be read: the loader then says why."""
    facts = FileFacts(path=str(path))
    try:
        if data is not None:
            read = data
        elif container is None:
            read = _read(path, facts)
        elif is_url(container):
            read = _read_remote(container, offset, size, facts)
        else:
            assert size is not None
            read = _read_range(container, offset, size, facts)
    except (_Failure, OSError):
        return None
    return hashlib.blake2b(read, digest_size=16).hexdigest()


def _load(
    path: str | Callable[[], bytes], plan: DecodePlan, max_pixels: int, facts: FileFacts
) -> LoadedImage | LoadFailure:
    """Read (a path, or a callable giving the bytes), hash, EXIF, decode: the one path every image takes."""
    try:
        data = path() if callable(path) else _read(str(path), facts)
        facts.content_hash = hashlib.blake2b(data, digest_size=16).hexdigest()
        facts.exif = read_exif(data)  # decodes nothing: the pixel limit is checked only below, in _open_header
        pixels, native, native_scale = _decode(data, plan, max_pixels, facts, draft_oversample=1)
        return LoadedImage(facts=facts, pixels=pixels, native=native, native_scale=native_scale)
    except _Failure as failure:
        return LoadFailure(facts=facts, code=failure.code, message=failure.message)
    except Exception as exc:  # the promise is "never raises": anything unforeseen is a corrupt file
        code, message = _classify(exc)
        return LoadFailure(facts=facts, code=code, message=message)


def _read(path: str, facts: FileFacts) -> bytes:
    """The file's bytes, after checking it is a regular, non-empty file of acceptable size."""
    with _read_failures(path, "the file", "; give image files or folders of them"):
        fh, info = open_regular(path)
        with fh:
            facts.file_size = info.st_size
            if info.st_size > MAX_FILE_BYTES:
                raise _Failure(
                    "file_too_large",
                    f"the file is {info.st_size / 2**30:.1f} GiB, over the {MAX_FILE_BYTES / 2**30:.0f} GiB limit",
                )
            # The size fstat gave, plus one byte to see growth: never a buffer of the limit's size, which
            # would fail small files under an address-space limit.
            data = fh.read(min(info.st_size, MAX_FILE_BYTES) + 1)
    return _checked(data, facts)


@contextmanager
def _read_failures(path: str, what: str, hint: str = "") -> Iterator[None]:
    """OS errors of opening and reading `path` (`what`: "the file", "the shard") as the loader's error codes."""
    try:
        yield
    except NotRegularFile as exc:
        raise _Failure("not_a_file", f"{path} is {exc.kind}{hint}") from None
    except PermissionError:
        raise _Failure("permission_denied", f"no permission to read {what}") from None
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOENT:
            raise _Failure("not_found", f"{what} does not exist (moved or deleted?)") from None
        raise _Failure("read_error", f"could not read {what}: {exc.strerror or exc}") from None


def _checked(data: bytes, facts: FileFacts) -> bytes:
    """`data` once its size is in `facts` and acceptable."""
    facts.file_size = len(data)
    if not data:
        raise _Failure("empty_file", "the file is empty (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise _Failure("file_too_large", f"the file is over the {MAX_FILE_BYTES / 2**30:.0f} GiB limit")
    return data


def _read_range(container: str, offset: int, size: int, facts: FileFacts) -> bytes:
    """`size` bytes at `offset` of the file `container` (a member of a tar shard), read with one pread."""
    if size > MAX_FILE_BYTES:
        facts.file_size = size
        raise _Failure("file_too_large", f"the member is over the {MAX_FILE_BYTES / 2**30:.0f} GiB limit")
    with _read_failures(container, "the shard"):
        fh, _ = open_regular(container)
        with fh:
            data = os.pread(fh.fileno(), size, offset)
    if len(data) < size:
        facts.file_size = len(data)
        raise _Failure("truncated", "the shard ends inside this member (changed while it was read?)")
    return _checked(data, facts)


def _read_remote(url: str, offset: int, size: int | None, facts: FileFacts) -> bytes:
    """A remote file's bytes (`size` None), or the `size` bytes of a remote shard's member at `offset`."""
    if size is not None and size > MAX_FILE_BYTES:
        facts.file_size = size
        raise _Failure("file_too_large", f"the member is over the {MAX_FILE_BYTES / 2**30:.0f} GiB limit")
    with _read_failures(remote.shown(url), "the remote file" if size is None else "the shard"):
        data = remote.read(url, offset, size, limit=MAX_FILE_BYTES)
    if size is not None and len(data) < size:
        facts.file_size = len(data)
        raise _Failure("truncated", "the shard ends inside this member (changed while it was read?)")
    return _checked(data, facts)


# The IJG (libjpeg) luminance table at quality 50, in zig-zag order as Pillow reports tables.
_IJG_LUMINANCE = (
    16, 11, 12, 14, 12, 10, 16, 14, 13, 14, 18, 17, 16, 19, 24, 40, 26, 24, 22, 22, 24, 49, 35, 37,
    29, 40, 58, 51, 61, 60, 57, 51, 56, 55, 64, 72, 92, 78, 64, 68, 87, 69, 55, 56, 80, 109, 81, 87,
    95, 98, 103, 104, 103, 62, 77, 113, 121, 112, 100, 120, 92, 101, 103, 99,
)  # fmt: skip


def jpeg_quality(quantization: dict[int, Any] | None) -> int | None:
    """The libjpeg quality (1-100) whose luminance table is closest to the file's, or None.

    Nearly every encoder scales the IJG tables, so the ratio of the file's table to the quality-50
    table recovers the quality setting: a free, decode-free measure of how hard a JPEG was compressed.
    """
    if not quantization or 0 not in quantization or len(quantization[0]) != 64:
        return None
    # Entries clipped to 1 or 255 by the encoder carry no scale; the median ratio of the rest does.
    ratios = sorted(q / std for q, std in zip(quantization[0], _IJG_LUMINANCE, strict=True) if 1 < q < 255)
    if not ratios:  # every entry clipped: the extremes of the scale
        return 100 if max(quantization[0]) <= 1 else 1
    scale = 100.0 * ratios[len(ratios) // 2]  # libjpeg's percentage scaling factor
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return int(min(100, max(1, round(quality))))


def _decode(
    data: bytes, plan: DecodePlan, max_pixels: int, facts: FileFacts, *, draft_oversample: float
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """Decode `data` to RGB uint8 at `fit_size` of the oriented size, filling in `facts`.

    Returns the pixels, the plan's native-resolution central crop (or None) and that crop's scale.

    `draft_oversample` asks the JPEG draft decoder for that many times the final size (>= 1), so the
    final bicubic resize has more to work from; the benchmark measures its effect.
    """
    image = _open_header(data, max_pixels, facts)
    if plan.pixels == "authors":
        return _decode_as_authors(image, plan, facts)
    width, height = image.size
    if image.format not in ("JPEG", "MPO"):
        # Decode now, where errors are caught: _orientation's getexif() decodes some formats (PNG) itself
        # and would swallow a damaged stream, leaving a blank image. JPEG waits for its draft request.
        image.load()
    orientation = _orientation(image)
    swapped = orientation in (5, 6, 7, 8)
    oriented = (height, width) if swapped else (width, height)
    facts.width, facts.height = oriented
    target = fit_size(oriented[0], oriented[1], plan)
    # Resize in the stored orientation and transpose the small result: transposing a full-size
    # image costs more than the resize saves. fit_size is symmetric in its two sides.
    stored_target = (target[1], target[0]) if swapped else target

    wants_native = plan.native_crop is not None and max(width, height) <= plan.native_max_side
    if plan.draft and not wants_native and image.format in ("JPEG", "MPO") and stored_target != (width, height):
        request = (
            min(width, round(stored_target[0] * draft_oversample)),
            min(height, round(stored_target[1] * draft_oversample)),
        )
        # The request is in the stored orientation: the decoder knows nothing of EXIF. It picks the
        # largest 1/2, 1/4 or 1/8 scale that stays at or above the request on both sides.
        image.draft("RGB", request)

    image.load()
    if plan.authors_notes and orientation in _ORIENTATION_TRANSPOSE:
        facts.notes.append("pixels: EXIF orientation applied (the authors' loader ignores it)")
    image, note, differs = _to_rgb(image)
    note = differs if plan.authors_notes and differs else note
    if note:
        facts.notes.append(note)
    native, native_scale = None, 1.0
    if plan.native_crop is not None:
        native_scale = image.size[0] / width
        native = _central_crop(image, plan.native_crop, orientation)
    if image.size != stored_target:
        image = image.resize(stored_target, Image.Resampling.BICUBIC)
    if orientation in _ORIENTATION_TRANSPOSE:
        image = image.transpose(_ORIENTATION_TRANSPOSE[orientation])
    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.shape != (target[1], target[0], 3):
        raise _Failure("corrupt", f"decoded to an unexpected shape {pixels.shape}")
    # np.asarray of a Pillow image is read-only; engines may want to write in place.
    return np.array(pixels, dtype=np.uint8, order="C", copy=True), native, native_scale


def _decode_as_authors(
    image: Image.Image, plan: DecodePlan, facts: FileFacts
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """DepictQA's authors' loader: ``Image.open(path).convert("RGB")``, then the plan's resize (PIL bicubic).

    Nothing else: EXIF orientation ignored, alpha dropped (the colours under it shown), 16-bit and wider grey
    clipped to 0-255, CMYK by Pillow's formula whatever its profile, no draft decoding. `facts` still carry
    the file's upright size, and a note, starting "pixels:", for each of these that changed what is shown.
    """
    width, height = image.size
    image.load()
    orientation = _orientation(image)
    facts.width, facts.height = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    if orientation in _ORIENTATION_TRANSPOSE:
        facts.notes.append("pixels: EXIF orientation ignored, as the authors' loader does")
    mode = image.mode
    if mode == "CMYK":
        profiled = bool(image.info.get("icc_profile"))
        facts.notes.append(
            "pixels: CMYK converted without its ICC profile, as the authors' loader does"
            if profiled
            else "converted from CMYK"
        )
    elif mode.startswith("I;16") or mode in ("I", "F"):
        facts.notes.append("pixels: values clipped to 0-255, as the authors' loader does")
    else:
        rgba = _as_rgba(image)
        if rgba is not None and rgba.getchannel("A").getextrema()[0] < 255:
            facts.notes.append("pixels: transparency dropped (the colours under it shown), as the authors' loader does")
    rgb = image.convert("RGB")
    native = _central_crop(rgb, plan.native_crop, None) if plan.native_crop is not None else None
    target = fit_size(width, height, plan)
    if rgb.size != target:
        rgb = rgb.resize(target, Image.Resampling.BICUBIC)
    return np.array(rgb, dtype=np.uint8, order="C", copy=True), native, 1.0


def _open_header(data: bytes, max_pixels: int, facts: FileFacts) -> Image.Image:
    """The image opened from its header only (nothing decoded yet), with its format, JPEG quality and frame
    count in `facts`; _Failure for a file that is not an image or declares a size it must not be decoded at."""
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise _unidentified(data) from None
    facts.format = image.format
    width, height = image.size
    if width <= 0 or height <= 0 or width > MAX_SIDE or height > MAX_SIDE:
        raise _Failure("bad_dimensions", f"the header declares an impossible size of {width} x {height}")
    if width * height > max_pixels:
        raise _Failure(
            "too_many_pixels",
            f"{width} x {height} is {width * height / 1e6:.0f} MP, over the limit of {max_pixels / 1e6:g} MP",
        )
    if image.format in ("JPEG", "MPO"):
        facts.jpeg_quality = jpeg_quality(getattr(image, "quantization", None))
    frames = _frame_count(image)
    if frames > 1 and image.format != "MPO":  # MPO's extra frames are previews or depth maps
        facts.notes.append(f"animated: first of {frames} frames")
    return image


def _central_crop(image: Image.Image, side: int, orientation: int | None) -> np.ndarray:
    """The central side x side square of `image` (the whole of a shorter side), upright, as uint8 RGB.

    The corner sits on a multiple of 8 so that a JPEG's 8x8 grid keeps its phase in the crop.
    """
    w, h = image.size
    cw, ch = min(side, w), min(side, h)
    left, top = ((w - cw) // 2) // 8 * 8, ((h - ch) // 2) // 8 * 8
    crop = image.crop((left, top, left + cw, top + ch))
    if orientation in _ORIENTATION_TRANSPOSE:
        crop = crop.transpose(_ORIENTATION_TRANSPOSE[orientation])
    return np.array(crop, dtype=np.uint8, order="C", copy=True)


def _frame_count(image: Image.Image) -> int:
    """The number of frames, or 1 when counting them fails (the first frame may still be fine)."""
    try:
        if not getattr(image, "is_animated", False):
            return 1
        count = int(getattr(image, "n_frames", 1))
        image.seek(0)  # counting may leave the file at another frame
        return count
    except Exception:
        return 1


def _orientation(image: Image.Image) -> int | None:
    """The EXIF orientation Pillow sees (the one exif_transpose would apply); broken EXIF is None."""
    try:
        value = image.getexif().get(0x0112)
        return int(value) if value is not None else None
    except Exception:
        return None


def _to_rgb(image: Image.Image) -> tuple[Image.Image, str | None, str | None]:
    """`image` as mode RGB, a note for the user when the conversion changed what they see, and another (starting
    "pixels:") when the result differs from the authors' plain ``convert("RGB")`` (DepictQA's loader)."""
    mode = image.mode
    if mode == "RGB":
        return image, None, None
    if mode in ("L", "1", "YCbCr", "LAB", "HSV", "RGBX"):
        return image.convert("RGB"), None, None
    if mode == "CMYK":
        rgb, profiled = _cmyk_to_rgb(image)
        differs = "pixels: CMYK converted through its ICC profile (the authors' loader ignores it)"
        return rgb, "converted from CMYK", differs if profiled else None
    rgba = _as_rgba(image)
    if rgba is not None:
        rgb, note = _over_white(rgba)
        return rgb, note, f"pixels: {note} (the authors' loader drops alpha)" if note else None
    if mode == "P":
        return image.convert("RGB"), None, None
    if mode.startswith("I;16") or mode in ("I", "F"):
        rgb, note = _high_depth_to_rgb(image)
        return rgb, note, f"pixels: {note} (the authors' loader clips the values to 0-255)"
    try:
        return image.convert("RGB"), f"converted from pixel mode {mode}", None
    except (ValueError, OSError) as exc:
        raise _Failure("unsupported", f"pixel mode {mode} cannot be converted to RGB ({exc})") from None


def _as_rgba(image: Image.Image) -> Image.Image | None:
    """The image as RGBA when its mode can hold transparency (an alpha channel, a transparent palette), else None."""
    mode = image.mode
    if mode == "P":
        palette = image.palette
        if "transparency" in image.info or (palette is not None and palette.mode == "RGBA"):
            return image.convert("RGBA")
        return None
    if mode in ("RGBA", "RGBa", "LA", "PA"):
        return image.convert("RGBA")
    if mode == "La":
        return image.convert("LA").convert("RGBA")
    return None


def _over_white(rgba: Image.Image) -> tuple[Image.Image, str | None]:
    """Composite an RGBA image over white; note it only when some pixel is actually transparent."""
    alpha = rgba.getchannel("A")
    if alpha.getextrema()[0] == 255:
        return rgba.convert("RGB"), None
    background = Image.new("RGB", rgba.size, (255, 255, 255))
    background.paste(rgba.convert("RGB"), mask=alpha)
    return background, "transparency composited over white"


def _high_depth_to_rgb(image: Image.Image) -> tuple[Image.Image, str]:
    """Scale a 16-bit, 32-bit integer or float grey image to 8 bits without clipping.

    16-bit maps 0..65535 to 0..255. Mode I holds 16-bit PNG/TIFF data in older Pillows, so values
    within 0..65535 are scaled the same way; anything else (and F outside 0..1) is stretched from
    its own minimum to maximum.
    """
    values = np.asarray(image)
    if image.mode.startswith("I;16"):
        scaled = (values.astype(np.uint32) * 255 + 32767) // 65535
        return _grey(scaled), "16-bit image scaled to 8 bits"
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    values = np.where(finite, values, 0.0)
    low, high = (float(values.min()), float(values.max())) if finite.any() else (0.0, 0.0)
    if image.mode == "I" and low >= 0 and high <= 65535:
        return _grey(np.rint(values * (255 / 65535))), "16-bit image scaled to 8 bits"
    if image.mode == "F" and low >= 0 and high <= 1:
        return _grey(np.rint(values * 255)), "floating-point image scaled to 8 bits"
    span = high - low if high > low else 1.0
    note = f"{'32-bit' if image.mode == 'I' else 'floating-point'} image stretched to 8 bits"
    return _grey(np.rint((values - low) * (255 / span))), note


def _grey(values: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8)).convert("RGB")


_SRGB_PROFILE: ImageCms.ImageCmsProfile | None = None


def _cmyk_to_rgb(image: Image.Image) -> tuple[Image.Image, bool]:
    """CMYK to RGB through the embedded ICC profile when there is one, else Pillow's formula; and whether the
    profile was used."""
    global _SRGB_PROFILE
    icc = image.info.get("icc_profile")
    if icc:
        try:
            if _SRGB_PROFILE is None:
                _SRGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(image, source, _SRGB_PROFILE, outputMode="RGB")
            if converted is not None:
                return converted, True
        except Exception:
            pass  # a broken or mismatched profile: the plain formula is still a fair picture
    return image.convert("RGB"), False


def _unidentified(data: bytes) -> _Failure:
    """Why Pillow could not identify `data`: a damaged image of a known kind, or not an image."""
    head = data[:32]
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis"):
        if not HEIF_SUPPORTED:
            return _Failure("unsupported", f"HEIC/HEIF needs pillow-heif: {install_hint('heif')}")
        return _Failure("corrupt", "a HEIF file whose header cannot be read")
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"):
        return _Failure("unsupported", "this Pillow cannot decode AVIF; upgrade Pillow (11.3 or later)")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _Failure("corrupt", "a WebP file whose header cannot be read (damaged or truncated)")
    for signature, name in _SIGNATURES:
        if head.startswith(signature):
            return _Failure("corrupt", f"a {name} file whose header cannot be read (damaged or truncated)")
    return _Failure("not_an_image", "not an image file Pillow can identify (text, HTML or another format?)")


def _classify(exc: BaseException) -> tuple[str, str]:
    """Map an exception from decoding to a failure code and a message."""
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if isinstance(exc, EOFError) or "truncated" in lowered or "incomplete" in lowered:
        return "truncated", f"the image data ends early ({text})"
    if isinstance(exc, NotImplementedError) or ("decoder" in lowered and "not available" in lowered):
        return "unsupported", f"cannot decode this image here ({text})"
    if isinstance(exc, MemoryError):
        # The moment's state (a memory limit, other work), not the file's: a code of its own, never remembered.
        return "out_of_memory", "not enough memory to decode the image now; it is tried again on the next run"
    if isinstance(exc, zlib.error):
        return "corrupt", f"the compressed pixel data is damaged ({text})"
    return "corrupt", f"the image could not be decoded ({type(exc).__name__}: {text})"
