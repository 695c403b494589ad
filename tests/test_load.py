"""Tests for the loader and EXIF reader, on images generated in tmp_path."""

from __future__ import annotations

import io
import os
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps, JpegImagePlugin
from PIL.TiffImagePlugin import IFDRational

from iqa_cli.audit.exif import ExifInfo, parse_datetime, read_exif
from iqa_cli.audit.load import DEFAULT_MAX_PIXELS, load_image
from iqa_cli.files import open_regular
from iqa_cli.images import DecodePlan, LoadedImage, LoadFailure, fit_size
from iqa_cli.testing.images import png_header_only

FULL = DecodePlan(draft=False)


def loaded(path: Path, plan: DecodePlan = FULL, **kwargs) -> LoadedImage:
    result = load_image(str(path), plan, **kwargs)
    assert isinstance(result, LoadedImage), result
    assert result.pixels.dtype == np.uint8 and result.pixels.ndim == 3 and result.pixels.shape[2] == 3
    assert result.pixels.flags.c_contiguous
    return result


def failed(path: Path, code: str, plan: DecodePlan = FULL, **kwargs) -> LoadFailure:
    result = load_image(str(path), plan, **kwargs)
    assert isinstance(result, LoadFailure), result
    assert result.code == code, (result.code, result.message)
    assert result.message
    return result


def asymmetric(width: int = 6, height: int = 4) -> np.ndarray:
    """Every pixel distinct, so any flip or rotation shows."""
    values = np.arange(width * height * 3, dtype=np.uint16).reshape(height, width, 3)
    return (values * 7 % 256).astype(np.uint8)


# --- orientation --------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    original = Image.fromarray(asymmetric())
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"  # lossless, so pixels compare exactly
    original.save(path, exif=exif)

    result = loaded(path)
    tagged = Image.open(path)
    expected = np.asarray(ImageOps.exif_transpose(tagged).convert("RGB"))
    np.testing.assert_array_equal(result.pixels, expected)
    assert (result.facts.width, result.facts.height) == ((4, 6) if orientation >= 5 else (6, 4))
    assert result.pixels.shape[:2] == (result.facts.height, result.facts.width)
    assert result.facts.exif.orientation == orientation


def test_orientation_with_resize_and_draft_keeps_the_oriented_shape(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(np.full((600, 800, 3), 90, np.uint8)).save(path, exif=exif, quality=95)
    plan = DecodePlan(long_side=100)
    result = loaded(path, plan)
    assert (result.facts.width, result.facts.height) == (600, 800)
    assert result.pixels.shape == (100, 75, 3)
    assert fit_size(600, 800, plan) == (75, 100)


# --- pixel modes --------------------------------------------------------------------------------


def save_and_load(tmp_path: Path, image: Image.Image, name: str, **save) -> LoadedImage:
    path = tmp_path / name
    image.save(path, **save)
    return loaded(path)


def test_rgba_is_composited_over_white(tmp_path: Path) -> None:
    data = np.zeros((2, 2, 4), np.uint8)
    data[0, 0] = (255, 0, 0, 255)  # opaque red
    data[0, 1] = (255, 0, 0, 0)  # fully transparent -> white
    data[1, 0] = (0, 0, 0, 128)  # half black -> mid grey
    data[1, 1] = (0, 0, 255, 255)
    result = save_and_load(tmp_path, Image.fromarray(data), "rgba.png")
    px = result.pixels.astype(int)
    assert tuple(px[0, 0]) == (255, 0, 0)
    assert tuple(px[0, 1]) == (255, 255, 255)
    assert np.all(np.abs(px[1, 0] - 127) <= 1)
    assert tuple(px[1, 1]) == (0, 0, 255)
    assert "transparency composited over white" in result.facts.notes


def test_opaque_alpha_has_no_note(tmp_path: Path) -> None:
    data = np.full((2, 2, 4), 255, np.uint8)
    result = save_and_load(tmp_path, Image.fromarray(data), "opaque.png")
    assert result.facts.notes == []


def test_palette_with_transparency(tmp_path: Path) -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    result = save_and_load(tmp_path, image, "p.png", transparency=0)
    assert tuple(result.pixels[0, 0]) == (255, 255, 255)
    assert tuple(result.pixels[0, 1]) == (200, 100, 50)
    assert result.facts.format == "PNG"


def test_palette_without_transparency(tmp_path: Path) -> None:
    image = Image.new("P", (1, 1))
    image.putpalette([1, 2, 3] + [0] * 765)
    assert tuple(save_and_load(tmp_path, image, "p.gif").pixels[0, 0]) == (1, 2, 3)


def test_la_and_pa_and_premultiplied(tmp_path: Path) -> None:
    la = Image.frombytes("LA", (2, 1), bytes([0, 0, 50, 255]))
    result = save_and_load(tmp_path, la, "la.png")
    assert tuple(result.pixels[0, 0]) == (255, 255, 255)
    assert tuple(result.pixels[0, 1]) == (50, 50, 50)
    # Modes no file format stores but Pillow can hand us: convert them through the same function.
    from iqa_cli.audit.load import _to_rgb

    pa = Image.new("PA", (1, 1))
    pa.putpalette([9, 8, 7] * 256)
    pa.putpixel((0, 0), (0, 255))
    assert np.asarray(_to_rgb(pa)[0])[0, 0].tolist() == [9, 8, 7]
    la_pre = Image.new("La", (1, 1), (40, 255))
    assert np.asarray(_to_rgb(la_pre)[0])[0, 0].tolist() == [40, 40, 40]
    rgba_pre = Image.new("RGBa", (1, 1), (10, 20, 30, 255))
    assert np.asarray(_to_rgb(rgba_pre)[0])[0, 0].tolist() == [10, 20, 30]


def test_cmyk_known_colours(tmp_path: Path) -> None:
    data = np.array([[[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255]]], np.uint8)
    result = save_and_load(tmp_path, Image.frombytes("CMYK", (3, 1), data.tobytes()), "cmyk.tif")
    assert result.pixels[0].tolist() == [[255, 255, 255], [0, 255, 255], [0, 0, 0]]
    assert "converted from CMYK" in result.facts.notes


def test_cmyk_jpeg(tmp_path: Path) -> None:
    image = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red ink
    result = save_and_load(tmp_path, image, "cmyk.jpg", quality=100)
    red, green, blue = result.pixels[8, 8].astype(int)
    assert red > 240 and green < 15 and blue < 15


def test_sixteen_bit_grey_scales_not_clips(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32768, 65535]], np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    result = save_and_load(tmp_path, image, "g16.png")
    assert result.pixels[0, :, 0].tolist() == [0, 1, 128, 255]
    assert "16-bit image scaled to 8 bits" in result.facts.notes


@pytest.mark.parametrize("mode", ["I;16B", "I;16L", "I;16N"])
def test_sixteen_bit_variants(mode: str) -> None:
    from iqa_cli.audit.load import _to_rgb

    image = Image.new(mode, (2, 1))
    image.putpixel((0, 0), 65535)
    image.putpixel((1, 0), 257 * 100)
    assert np.asarray(_to_rgb(image)[0])[0, :, 0].tolist() == [255, 100]


def test_int32_and_float(tmp_path: Path) -> None:
    from iqa_cli.audit.load import _to_rgb

    sixteen_in_i = Image.fromarray(np.array([[0, 65535]], np.int32))
    assert np.asarray(_to_rgb(sixteen_in_i)[0])[0, :, 0].tolist() == [0, 255]
    wide = Image.fromarray(np.array([[-1000, 0, 1000]], np.int32))
    assert np.asarray(_to_rgb(wide)[0])[0, :, 0].tolist() == [0, 128, 255]
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert np.asarray(_to_rgb(unit)[0])[0, :, 0].tolist() == [0, 128, 255]
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[10.0, 20.0, np.nan]], np.float32)).save(path)
    result = loaded(path)
    assert result.pixels[0, :2, 0].tolist() == [128, 255]  # stretched over 0..20 (NaN counted as 0)


def test_bilevel_grey_ycbcr_lab(tmp_path: Path) -> None:
    from iqa_cli.audit.load import _to_rgb

    bilevel = Image.new("1", (2, 1))
    bilevel.putpixel((1, 0), 1)
    assert save_and_load(tmp_path, bilevel, "b.png").pixels[0].tolist() == [[0, 0, 0], [255, 255, 255]]
    assert save_and_load(tmp_path, Image.new("L", (1, 1), 77), "l.png").pixels[0, 0].tolist() == [77] * 3
    ycbcr = Image.new("YCbCr", (1, 1), (128, 128, 128))
    assert np.abs(np.asarray(_to_rgb(ycbcr)[0]).astype(int) - 128).max() <= 1
    lab_white = Image.new("LAB", (1, 1), (255, 128, 128))
    assert np.asarray(_to_rgb(lab_white)[0]).min() >= 250


# --- broken and hostile files -------------------------------------------------------------------


def jpeg_bytes(width: int = 256, height: int = 192) -> bytes:
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = jpeg_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    failure = failed(path, "truncated")
    assert failure.facts.file_size == len(data) // 2 and failure.facts.content_hash


def test_truncated_png(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)).save(buffer, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    failed(path, "truncated")


def test_damaged_header_of_a_jpeg_is_not_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / "head.jpg"
    path.write_bytes(jpeg_bytes()[:40])
    failed(path, "truncated")
    path.write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 4)
    assert "JPEG" in failed(path, "corrupt").message


def test_empty_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "zero.jpg").write_bytes(b"")
    failure = failed(tmp_path / "zero.jpg", "empty_file")
    assert failure.facts.file_size == 0
    failed(tmp_path / "missing.jpg", "not_found")
    failed(tmp_path, "not_a_file")


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "secret.jpg"
    path.write_bytes(jpeg_bytes())

    real_open = os.open

    def refuse(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)  # the loader opens with os.open (iqa_cli/files.py)
    failed(path, "permission_denied")


@pytest.mark.parametrize("text", [b"just some text\n", b"<!DOCTYPE html><html><body>404</body></html>"])
def test_text_and_html_named_jpg(tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "fake.jpg"
    path.write_bytes(text)
    failed(path, "not_an_image")


def test_heic_without_plugin_is_unsupported(tmp_path: Path) -> None:
    from iqa_cli.audit.load import HEIF_SUPPORTED

    if HEIF_SUPPORTED:
        pytest.skip("pillow-heif is installed")
    path = tmp_path / "phone.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
    assert "pillow-heif" in failed(path, "unsupported").message


def test_decompression_bomb_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header_only(100_000, 100_000))  # 10 GP, 10 GB as RGB
    failure = failed(path, "too_many_pixels")
    assert failure.facts.format == "PNG"
    assert DEFAULT_MAX_PIXELS < 100_000 * 100_000


def test_small_max_pixels(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    Image.new("RGB", (100, 100)).save(path)
    failed(path, "too_many_pixels", max_pixels=9_999)
    loaded(path, max_pixels=10_000)


def test_palette_bomb_header_is_cheap(tmp_path: Path) -> None:
    # A real 20000 x 20000 palette PNG is only a few kB; with the default limit it loads nothing.
    path = tmp_path / "big.png"
    path.write_bytes(png_header_only(20_000, 20_000))
    failed(path, "too_many_pixels", max_pixels=100_000_000)


def test_zero_width_is_refused_as_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "zero.png"
    path.write_bytes(png_header_only(0, 10))
    result = load_image(str(path), FULL)  # Pillow refuses the header before any size check of ours
    assert isinstance(result, LoadFailure) and result.code == "corrupt" and "header" in result.message


def test_absurd_side_is_bad_dimensions(tmp_path: Path) -> None:
    path = tmp_path / "line.png"
    path.write_bytes(png_header_only(1, 5_000_000))
    failed(path, "bad_dimensions")


def test_file_too_large(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big.jpg"
    path.write_bytes(jpeg_bytes())
    monkeypatch.setattr("iqa_cli.audit.load.MAX_FILE_BYTES", 100)
    failed(path, "file_too_large")


def test_animated_gif_first_frame_and_note(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    result = loaded(path)
    assert result.pixels[4, 4].tolist() == [255, 0, 0]
    assert "animated: first of 3 frames" in result.facts.notes
    assert result.facts.format == "GIF"


# --- facts, EXIF ------------------------------------------------------------------------------------


def exif_for_camera() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "  FUJIFILM "  # Make, with the padding some cameras write
    exif[0x0110] = "X-T4"  # Model
    exif[0x0112] = 1
    exif[0x0132] = "2022:01:01 00:00:00"  # DateTime (file change), not the capture time
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = "2021:07:04 12:30:59"  # DateTimeOriginal
    sub[0x829A] = IFDRational(1, 250)  # ExposureTime
    sub[0x8827] = 400  # ISOSpeedRatings
    sub[0x829D] = IFDRational(28, 10)  # FNumber
    sub[0x920A] = IFDRational(35, 1)  # FocalLength
    return exif


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_exif_fields_read_back(fmt: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, fmt, exif=exif_for_camera())
    info = read_exif(buffer.getvalue())
    assert info.camera_make == "FUJIFILM" and info.camera_model == "X-T4"
    assert info.captured_at == datetime(2021, 7, 4, 12, 30, 59)
    assert info.exposure_time == pytest.approx(1 / 250)
    assert info.iso == 400
    assert info.f_number == pytest.approx(2.8)
    assert info.focal_length == pytest.approx(35.0)
    assert info.orientation == 1
    assert read_exif(io.BytesIO(buffer.getvalue())) == info


def test_loaded_facts(tmp_path: Path) -> None:
    path = tmp_path / "camera.jpg"
    data = jpeg_bytes(64, 48)
    Image.open(io.BytesIO(data)).save(path, exif=exif_for_camera())
    result = loaded(path)
    import hashlib

    assert result.facts.content_hash == hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    assert result.facts.file_size == path.stat().st_size
    assert (result.facts.width, result.facts.height, result.facts.format) == (64, 48, "JPEG")
    assert result.facts.exif.iso == 400


def test_broken_exif_does_not_fail_the_load(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(buffer, "JPEG", exif=exif_for_camera())
    data = bytearray(buffer.getvalue())
    start = data.find(b"Exif\x00\x00") + 6
    for offset in range(8, 120, 7):  # scribble over the IFD entries and pointers
        broken = bytes(data)
        broken = broken[: start + offset] + b"\xff\xee\xdd\xcc" + broken[start + offset + 4 :]
        path = tmp_path / f"broken{offset}.jpg"
        path.write_bytes(broken)
        result = loaded(path)
        assert result.pixels.shape == (32, 32, 3)
    assert read_exif(b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff") == ExifInfo()  # a cut IFD: no fields
    assert read_exif(b"") == read_exif(b"not an image")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021:07:04 12:30:59", datetime(2021, 7, 4, 12, 30, 59)),
        ("2021-07-04T12:30:59.123+02:00", datetime(2021, 7, 4, 12, 30, 59)),
        ("2021:07:04  12:30", datetime(2021, 7, 4, 12, 30)),
        ("2021:07:04", datetime(2021, 7, 4)),
        ("0000:00:00 00:00:00", None),
        ("2021:13:40 25:61:61", None),
        ("    :  :     :  :  ", None),
        (b"2021:07:04 12:30:59\x00", datetime(2021, 7, 4, 12, 30, 59)),
        (None, None),
    ],
)
def test_parse_datetime(text: str | bytes | None, expected: datetime | None) -> None:
    assert parse_datetime(text) == expected


# --- draft mode -------------------------------------------------------------------------------------


def photo_like(width: int, height: int) -> Image.Image:
    """Smooth gradients with some texture: closer to a photo than noise, cheap to make."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 128 + 100 * np.sin(x / 37.0) * np.cos(y / 53.0)
    g = 128 + 100 * np.sin((x + y) / 71.0)
    b = 128 + 60 * np.cos(x / 13.0) + 20 * np.sin(y / 7.0)
    return Image.fromarray(np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.mark.parametrize(
    "plan", [DecodePlan(long_side=256), DecodePlan(short_side=224, long_side=672), DecodePlan(short_side=100)]
)
def test_draft_matches_full_size_and_is_close(tmp_path: Path, plan: DecodePlan) -> None:
    path = tmp_path / "photo.jpg"
    photo_like(1600, 1200).save(path, quality=90)
    draft = loaded(path, plan)
    full = loaded(path, DecodePlan(plan.short_side, plan.long_side, draft=False))
    assert draft.pixels.shape == full.pixels.shape
    assert draft.pixels.shape[1::-1] == fit_size(1600, 1200, plan)
    assert psnr(draft.pixels, full.pixels) > 30
    assert draft.facts.notes == [] and (draft.facts.width, draft.facts.height) == (1600, 1200)


def test_draft_request_uses_stored_orientation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 1600 x 400, shown 400 x 1600
    path = tmp_path / "tall.jpg"
    photo_like(1600, 400).save(path, exif=exif, quality=90)
    requests = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        requests.append(size)
        return real_draft(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    plan = DecodePlan(short_side=100)  # shown 400 x 1600 -> 100 x 400
    result = loaded(path, plan)
    assert requests == [(400, 100)]  # the stored-orientation size of 100 x 400
    assert result.pixels.shape == (400, 100, 3)


def test_no_draft_when_not_downscaling(tmp_path: Path) -> None:
    path = tmp_path / "small.jpg"
    photo_like(64, 48).save(path)
    assert loaded(path, DecodePlan(long_side=1024)).pixels.shape == (48, 64, 3)


@pytest.mark.parametrize("quality", [1, 5, 20, 50, 75, 90, 100])
def test_jpeg_quality_is_read_from_the_quantization_tables(tmp_path: Path, quality: int) -> None:
    path = tmp_path / "q.jpg"
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, quality=quality)
    got = loaded(path).facts.jpeg_quality
    assert got is not None and abs(got - quality) <= max(3, quality * 0.3), got


def test_jpeg_quality_is_none_for_other_formats(tmp_path: Path) -> None:
    path = tmp_path / "q.png"
    Image.new("RGB", (8, 8)).save(path)
    assert loaded(path).facts.jpeg_quality is None


def test_native_crop_is_full_resolution_centre_and_upright(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(600, 900, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    result = loaded(tmp_path / "a.png", DecodePlan(long_side=300, native_crop=256))
    assert result.pixels.shape == (200, 300, 3)
    assert result.native_scale == 1.0
    # Centre corner snapped down to a multiple of 8: (900-256)//2 = 322 -> 320, (600-256)//2 = 172 -> 168.
    assert np.array_equal(result.native, pixels[168:424, 320:576])
    # EXIF-rotated: the crop is shown upright like the resized image.
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(tmp_path / "r.jpg", quality=95, exif=exif)
    rotated = loaded(tmp_path / "r.jpg", DecodePlan(long_side=300, native_crop=128))
    assert rotated.pixels.shape == (300, 200, 3) and rotated.native.shape == (128, 128, 3)
    stored = np.asarray(Image.open(tmp_path / "r.jpg").convert("RGB"))
    left, top = ((900 - 128) // 2) // 8 * 8, ((600 - 128) // 2) // 8 * 8  # in the stored orientation
    upright = Image.fromarray(stored[top : top + 128, left : left + 128]).transpose(Image.Transpose.ROTATE_270)
    assert np.array_equal(rotated.native, np.asarray(upright))
    # No crop asked for: none made.
    assert loaded(tmp_path / "a.png", DecodePlan(long_side=300)).native is None


def test_native_crop_skips_draft_up_to_the_limit_and_keeps_it_beyond(tmp_path: Path) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, size=(1200, 1600, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "big.jpg", quality=90)
    exact = loaded(tmp_path / "big.jpg", DecodePlan(long_side=400, native_crop=64))
    assert exact.native_scale == 1.0
    reference = np.asarray(Image.open(tmp_path / "big.jpg").convert("RGB"))
    assert np.array_equal(exact.native, reference[568:632, 768:832])
    drafted = loaded(tmp_path / "big.jpg", DecodePlan(long_side=400, native_crop=64, native_max_side=1000))
    assert drafted.native_scale == 0.25  # 1600 -> 400 by the draft decoder, as without a crop
    assert drafted.native.shape == (64, 64, 3)


def test_a_ctrl_c_inside_opening_a_file_stays_a_ctrl_c(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # fdopen closes the descriptor itself when it is interrupted; a second close would raise EBADF over the
    # KeyboardInterrupt, and the stop would become a "could not read" row while the run went on.
    path = tmp_path / "a.jpg"
    path.write_bytes(b"x")
    real_fdopen = os.fdopen

    def interrupted_fdopen(fd: int, *args: object, **kwargs: object) -> object:
        real_fdopen(fd, *args, **kwargs).close()
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fdopen", interrupted_fdopen)
    with pytest.raises(KeyboardInterrupt):
        open_regular(str(path))
