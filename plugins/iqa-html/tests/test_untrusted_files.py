"""Thumbnails of files that changed after they were assessed: pipes, devices, sockets, new bytes, bombs."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("iqa_html", reason="the iqa-html plugin is not installed: pip install -e plugins/iqa-html")
from pagetools import content_hash, ok_row, parse_page, save_image
from PIL import Image, ImageFile

import iqa_html.thumbs as thumbs
from iqa_html.thumbs import Thumbnail, make_thumbnail
from iqa_html.writer import HtmlWriter

# How long a call may take before the test calls it stuck: generous, as the calls take milliseconds.
BOUND_S = 60.0


def _release(fifo: str | Path) -> None:
    """Gives a reader stuck opening `fifo` a writer, then EOF, so that a failed test's thread ends."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def _finishes(call: Callable[[], Any], fifo: str | Path | None = None) -> Any:
    """`call()`'s result, failing the test if it has not returned within BOUND_S (it blocked)."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(BOUND_S)
    if thread.is_alive():
        if fifo is not None:
            _release(fifo)
        pytest.fail(f"still running after {BOUND_S:.0f} s: it blocked")
    assert result, "the call raised; see the thread's exception above"
    return result[0]


def test_writer_finishes_when_an_assessed_file_became_a_fifo(tmp_path: Path) -> None:
    image = save_image(tmp_path / "photos" / "piped.jpg", format="JPEG")
    kept = save_image(tmp_path / "photos" / "kept.png", seed=1)
    rows = [
        ok_row(str(image), verdict="bad", score=0.1, content_hash=content_hash(image)),
        ok_row(str(kept), verdict="bad", score=0.2, content_hash=content_hash(kept)),
    ]
    out = tmp_path / "out"
    out.mkdir()
    writer = HtmlWriter(out)
    writer.write(rows)
    image.unlink()
    os.mkfifo(image)  # no writer will ever appear: opening it for reading the usual way blocks forever

    path = _finishes(writer.close, fifo=image)

    worst = parse_page(path.read_text(encoding="utf-8")).by_id("worst")
    cards = worst.find_all("figure")
    assert [Path(card.find_all("div", class_="path")[0].text).name for card in cards] == ["piped.jpg", "kept.png"]
    placeholder = cards[0].find_all("div", class_="placeholder")
    assert placeholder and placeholder[0].text == "no preview (not a regular file)"
    assert not cards[0].find_all("img") and cards[1].find_all("img")  # the other image still has its thumbnail


@pytest.mark.parametrize("kind", ["fifo", "folder", "device", "socket"])
def test_what_is_not_a_regular_file_gets_a_placeholder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.chdir(tmp_path)  # a short relative name: socket addresses are limited to ~100 bytes
    name = "thing.jpg"
    listener = None
    if kind == "fifo":
        os.mkfifo(name)
    elif kind == "folder":
        os.mkdir(name)
    elif kind == "device":
        if not os.path.exists("/dev/zero"):
            pytest.skip("no /dev/zero here")
        os.symlink("/dev/zero", name)  # endless bytes: reading it as a file would never end
    else:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(name)
    try:
        thumb = _finishes(lambda: make_thumbnail(name), fifo=name if kind == "fifo" else None)
    finally:
        if listener is not None:
            listener.close()
    assert thumb == Thumbnail(problem="no preview (not a regular file)")


def test_a_file_swapped_for_a_fifo_as_it_is_opened_does_not_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = save_image(tmp_path / "swapped.png")
    real_open = os.open

    def swapping_open(path: Any, flags: int, *args: Any, **kw: Any) -> int:
        # The race, made certain: the file was regular when checked and is a pipe when opened.
        if Path(path) == image:
            image.unlink()
            os.mkfifo(image)
        return real_open(path, flags, *args, **kw)

    monkeypatch.setattr(os, "open", swapping_open)
    thumb = _finishes(lambda: make_thumbnail(str(image)), fifo=image)
    assert thumb == Thumbnail(problem="no preview (the file changed while it was opened)")


def test_a_file_with_other_bytes_than_were_assessed_gets_a_placeholder(tmp_path: Path) -> None:
    image = save_image(tmp_path / "a.png", seed=1)
    assessed = content_hash(image)
    assert make_thumbnail(str(image), content_hash=assessed).uri is not None
    save_image(image, seed=2)  # another picture under the same name
    assert make_thumbnail(str(image), content_hash=assessed) == Thumbnail(
        problem="no preview (changed since it was assessed)"
    )
    assert make_thumbnail(str(image)).uri is not None  # a row without a hash: whatever the file holds


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny 1 x 1 PNG whose header claims width x height: what a decompression bomb looks like up front."""
    out = io.BytesIO()
    Image.new("L", (1, 1)).save(out, format="PNG")
    data = bytearray(out.getvalue())
    # IHDR is the first chunk: length (4) type (4) at offset 8, then width and height, then the CRC.
    ihdr = bytes(data[12:16]) + struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(ihdr) & 0xFFFFFFFF)
    return bytes(data)


def test_pixel_limit_is_checked_from_the_header_before_any_decode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decodes: list[object] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decodes.append(self) or real_load(self))
    guard = Image.MAX_IMAGE_PIXELS

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_declaring(30_000, 30_000))  # 900 MP in a 70-byte file
    thumb = make_thumbnail(str(bomb), content_hash=content_hash(bomb))
    assert thumb.uri is None and thumb.problem is not None and thumb.problem.startswith("too large to preview")

    # Under Pillow's own warning size, so only the preview's limit can refuse it.
    monkeypatch.setattr(thumbs, "MAX_PREVIEW_PIXELS", 50_000_000)
    big = tmp_path / "big.png"
    big.write_bytes(_png_declaring(10_000, 8_000))
    assert make_thumbnail(str(big)) == Thumbnail(problem="too large to preview (10000 x 8000)")
    assert decodes == []  # refused from the header: not one pixel decoded
    assert guard == Image.MAX_IMAGE_PIXELS  # and Pillow's own guard left as it was


def test_jpegs_count_at_the_size_they_decode_at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(thumbs, "MAX_PREVIEW_PIXELS", 100_000)
    jpeg = save_image(tmp_path / "camera.jpg", size=(2000, 1600), format="JPEG")  # 3.2 MP, 50k at 1/8 scale
    png = save_image(tmp_path / "scan.png", size=(2000, 1600))
    assert make_thumbnail(str(jpeg)).uri is not None
    assert make_thumbnail(str(png)) == Thumbnail(problem="too large to preview (2000 x 1600)")


def test_a_name_that_is_not_utf8_is_shown_escaped_and_still_previewed(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    raw = os.fsencode(folder) + b"/bad\xff.png"
    save_image(Path(os.fsdecode(raw)))
    name = os.fsdecode(raw)  # lone surrogate: what os.listdir gives for the byte 0xff
    # The schema's row: the name as text, \xff for the byte, and the exact bytes beside it.
    schema_row = ok_row(name, verdict="bad", score=0.1, content_hash=content_hash(name))
    schema_row.update(path=str(folder / "bad\\xff.png"), path_bytes=raw)
    raw_row = ok_row("x", verdict="bad", score=0.2, content_hash=content_hash(name))
    raw_row["path"] = name  # a row from elsewhere may still carry the surrogate itself
    out = tmp_path / "out"
    out.mkdir()
    writer = HtmlWriter(out)
    writer.write([schema_row, raw_row])
    page = parse_page(writer.close().read_text(encoding="utf-8"))
    shown = str(folder / "bad\\xff.png")
    worst = page.by_id("worst")
    assert [node.text for node in worst.find_all("div", class_="path")] == [shown, shown]
    assert [image.attrs["alt"] for image in worst.find_all("img")] == [shown, shown]  # both found the file
    assert [row.find_all("td")[1].text for row in page.by_id("images").find_all("tr")[1:]] == [shown, shown]
