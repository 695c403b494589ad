"""Issue 14 without a browser: links, duplicate groups and their bounds, transparent and table thumbnails."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urljoin, urlsplit

import numpy as np
import pytest

pytest.importorskip("iqa_html", reason="the iqa-html plugin is not installed: pip install -e plugins/iqa-html")
from iqa_cli.audit.run import AuditSettings, run_audit
from iqa_cli.testing.engines import ScriptedEngine
from pagetools import Node, content_hash, ok_row, parse_page, save_image
from PIL import Image

import iqa_html.dupes as dupes
import iqa_html.writer as writer_module
from iqa_html.dupes import Duplicates
from iqa_html.links import relative_href
from iqa_html.thumbs import make_thumbnail, make_thumbnails
from iqa_html.writer import HtmlWriter


def _write(out: Path, rows: list[dict[str, Any]], **kw: Any) -> Node:
    out.mkdir(parents=True, exist_ok=True)
    writer = HtmlWriter(out, **kw)
    writer.write(rows)
    return parse_page(writer.close().read_text(encoding="utf-8"))


def _resolves_to(href: str, page_dir: Path) -> Path:
    """The file a browser opens for `href` on a page in `page_dir`."""
    url = urljoin(page_dir.as_uri() + "/report.html", href)
    assert urlsplit(url).scheme == "file" and not urlsplit(url).netloc, url
    return Path(os.fsdecode(unquote_to_bytes(urlsplit(url).path)))


def _near(path: str | Path, like: str | Path, distance: int = 2) -> list[str]:
    return [f"near-duplicate/near_copy: looks like {like} (hash distance {distance})"]


# --- links ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["plain.png", "javascript:alert(1).png", "#frag.png", "?q=1&x=2.png", "a b%20c.png", "back\\slash.png"]
)
def test_a_link_is_relative_percent_encoded_and_finds_its_file(tmp_path: Path, name: str) -> None:
    image = save_image(tmp_path / "photos" / name)
    beside = relative_href(str(image), tmp_path / "photos")
    assert beside is not None and "/" not in beside and ":" not in beside  # no scheme, however it is named
    assert _resolves_to(beside, tmp_path / "photos") == image
    below = relative_href(str(image), tmp_path / "reports" / "audit")  # need not exist yet
    assert below is not None and below.startswith("../../photos/")
    assert _resolves_to(below, tmp_path / "reports" / "audit") == image


def test_a_name_that_is_not_utf8_links_by_its_bytes(tmp_path: Path) -> None:
    raw = os.fsencode(tmp_path) + b"/bad\xff.png"
    save_image(Path(os.fsdecode(raw)))
    href = relative_href(os.fsdecode(raw), tmp_path)
    assert href == "bad%FF.png"


def test_a_relative_path_links_from_the_report_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    save_image(tmp_path / "photos" / "a.png")
    assert relative_href("photos/a.png", tmp_path / "out") == "../photos/a.png"


@pytest.mark.parametrize("kind", ["missing", "folder", "fifo", "device"])
def test_only_regular_files_get_a_link(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "thing.png"
    if kind == "folder":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "device":
        if not os.path.exists("/dev/null"):
            pytest.skip("no /dev/null here")
        target.symlink_to("/dev/null")
    assert relative_href(str(target), tmp_path) is None
    assert relative_href("with\0nul.png", tmp_path) is None  # a name no file can have


def test_the_page_links_files_that_exist_and_only_those(tmp_path: Path) -> None:
    real = save_image(tmp_path / "photos" / "real.png")
    rows = [ok_row(str(real), verdict="bad", score=0.1), ok_row(str(tmp_path / "photos" / "gone.png"), score=0.2)]
    page = _write(tmp_path / "out", rows)
    links = {a.attrs["href"] for a in page.iter() if "href" in a.attrs}
    assert links == {"../photos/real.png"}


# --- duplicate groups ----------------------------------------------------------------------------------


def test_exact_groups_are_bounded_like_the_terminal_summary() -> None:
    found = Duplicates()
    for group in range(dupes.GROUPS_LISTED + 5):
        for copy in range(3):
            found.add(f"g{group}/copy{copy}", None, f"g{group}/first", [])
    for copy in range(dupes.COPIES_LISTED + 7):
        found.add(f"g0/more{copy}", None, "g0/first", [])
    assert found.exact_copies == (dupes.GROUPS_LISTED + 5) * 3 + dupes.COPIES_LISTED + 7
    assert len(found.exact) == dupes.GROUPS_LISTED and found.exact_unlisted == 5 * 3
    first = found.exact["g0/first"]
    assert len(first.copies) == dupes.COPIES_LISTED and first.more == 3 + 7  # 3 + 20 + 7 copies in all
    assert first.size == 1 + 3 + dupes.COPIES_LISTED + 7


def test_near_copies_of_near_copies_join_their_group(monkeypatch: pytest.MonkeyPatch) -> None:
    found = Duplicates()
    found.add("b", None, None, _near("b", "a", 1))
    found.add("c", None, None, _near("c", "b", 3))  # like b, which is like a: one group
    found.add("x", None, None, ["other-check/code: looks like a (hash distance 1)", *_near("x", "w")])
    found.add("y", None, None, ["near-duplicate/check_failed: ValueError: boom"])  # not a near copy
    assert found.near_copies == 3
    assert [[m.path for m in (g.first, *g.copies)] for g in found.near] == [["a", "b", "c"], ["w", "x"]]
    assert [m.note for m in found.near[0].copies] == ["hash distance 1", "hash distance 3 to b"]

    monkeypatch.setattr(dupes, "NEAR_TRACKED", 0)  # nothing remembered: each finding starts a group
    bounded = Duplicates()
    for n in range(dupes.GROUPS_LISTED + 4):
        bounded.add(f"p{n + 1}", None, None, _near(f"p{n + 1}", f"p{n}"))
    assert len(bounded.near) == dupes.GROUPS_LISTED and bounded.near_unlisted == 4


def test_a_near_copy_path_is_read_whole(tmp_path: Path) -> None:
    found = Duplicates()
    like = "odd (hash distance 1) name\n.png"
    found.add("copy.png", None, None, _near("copy.png", like, 4))
    assert found.near[0].first.path == like and found.near[0].copies[0].note == "hash distance 4"


def test_duplicates_section_escapes_and_links(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    first = save_image(photos / "<b>first.png")
    copy = photos / "copy.png"
    shutil.copyfile(first, copy)
    rows = [ok_row(str(first)), ok_row(str(copy))]
    rows[1]["duplicate_of"] = str(first)
    rows.append(ok_row(str(photos / "near.png")))
    rows[2]["findings"] = _near(photos / "near.png", "<script>alert(1)</script>.png")
    page = _write(tmp_path / "out", rows)
    section = page.by_id("duplicates")
    assert not section.find_all("b") and not section.find_all("script")
    assert [a.attrs["href"] for a in page.by_id("exact-groups").find_all("a")] == [
        "../photos/%3Cb%3Efirst.png",
        "../photos/copy.png",
    ]
    assert "<script>alert(1)</script>.png (first)" in page.by_id("near-groups").text
    assert not page.by_id("near-groups").find_all("a")  # neither file exists


def test_no_duplicates_says_so(tmp_path: Path) -> None:
    page = _write(tmp_path / "out", [ok_row("photos/a.png")])
    section = page.by_id("duplicates")
    assert "0 files repeat the bytes" in section.text and not section.find_all("ol")


def test_a_real_audit_with_the_near_duplicate_check(tmp_path: Path) -> None:
    pytest.importorskip("iqa_dupes", reason="the iqa-dupes plugin is not installed: pip install -e plugins/iqa-dupes")
    from iqa_dupes.check import NearDuplicateCheck

    photos = tmp_path / "photos"
    photos.mkdir()
    y, x = np.mgrid[0:240, 0:320]
    scene = np.stack([x * 255 // 320, y * 255 // 240, (x + y) * 255 // 560], axis=-1).astype(np.uint8)
    scene[60:140, 90:200] = (250, 30, 30)
    original = Image.fromarray(scene)
    original.save(photos / "a.png")
    shutil.copyfile(photos / "a.png", photos / "b-copy.png")
    original.resize((160, 120)).save(photos / "c-small.jpg", quality=85)
    out = tmp_path / "out"
    out.mkdir()
    engine = ScriptedEngine({}, default=([], 0.9, 0.9))
    run_audit(AuditSettings(paths=[str(photos)], workers=0), engine, [HtmlWriter(out)], checks=[NearDuplicateCheck()])
    page = parse_page((out / "report.html").read_text(encoding="utf-8"))
    exact = [Path(a.text).name for a in page.by_id("exact-groups").find_all("a")]
    near = [Path(a.text).name for a in page.by_id("near-groups").find_all("a")]
    assert exact == ["a.png", "b-copy.png"] and near == ["a.png", "c-small.jpg"]


# --- thumbnails ----------------------------------------------------------------------------------------


def _rgba(path: Path, alpha: int | None) -> Path:
    pixels = np.random.default_rng(0).integers(0, 255, (90, 120, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    if alpha is not None:
        pixels[:30, :, 3] = alpha
    Image.fromarray(pixels, "RGBA").save(path)
    return path


def test_transparency_is_kept_and_opaque_alpha_is_a_jpeg(tmp_path: Path) -> None:
    clear = make_thumbnail(str(_rgba(tmp_path / "clear.png", 0)))
    half = make_thumbnail(str(_rgba(tmp_path / "half.png", 128)))
    opaque = make_thumbnail(str(_rgba(tmp_path / "opaque.png", None)))  # an alpha channel nobody uses
    for thumb in (clear, half):
        assert thumb.uri is not None and thumb.uri.startswith(("data:image/webp;", "data:image/png;"))
    assert opaque.uri is not None and opaque.uri.startswith("data:image/jpeg;")
    gif = tmp_path / "sprite.gif"
    frame = Image.new("P", (40, 40), 1)
    frame.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    frame.paste(0, (0, 0, 20, 40))
    frame.save(gif, transparency=0)
    assert (make_thumbnail(str(gif)).uri or "").startswith(("data:image/webp;", "data:image/png;"))
    grey = tmp_path / "grey.png"
    Image.merge("LA", [Image.new("L", (40, 40), 90), Image.new("L", (40, 40), 0)]).save(grey)
    assert (make_thumbnail(str(grey)).uri or "").startswith(("data:image/webp;", "data:image/png;"))


def test_both_sizes_come_from_one_decode(tmp_path: Path) -> None:
    image = save_image(tmp_path / "a.jpg", size=(400, 300), format="JPEG")
    big, small = make_thumbnails(str(image), [160, 48], content_hash=content_hash(image))
    assert (big.width, big.height, small.width, small.height) == (160, 120, 48, 36)
    missing = make_thumbnails(str(tmp_path / "gone.jpg"), [160, 48])
    assert [t.uri for t in missing] == [None, None] and missing[0].problem == missing[1].problem


def test_table_thumbnails_are_bounded_to_the_worst_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decodes: list[tuple[str, tuple[int, ...]]] = []

    def counting(path: str, sizes: list[int], **kw: Any) -> Any:
        decodes.append((Path(path).name, tuple(sizes)))
        return make_thumbnails(path, sizes, **kw)

    monkeypatch.setattr(writer_module, "make_thumbnails", counting)
    rows = [
        ok_row(str(save_image(tmp_path / "photos" / f"{n}.png", seed=n)), verdict="ok", score=0.5 + n / 100)
        for n in range(12)
    ]
    page = _write(tmp_path / "out", rows, table_thumbs=3, gallery_size=2)
    table = page.by_id("images").find_all("tbody")[0].find_all("tr")
    with_thumbs = [row.find_all("td")[1].text for row in table if row.find_all("img", class_="mini")]
    assert [Path(p).name for p in with_thumbs] == ["0.png", "1.png", "2.png"]  # the lowest scores
    assert sorted(decodes) == [("0.png", (48,)), ("1.png", (48,)), ("2.png", (48,))]  # no gallery: all ok

    decodes.clear()
    _write(tmp_path / "none", rows, table_thumbs=0)
    assert decodes == []


def test_a_gallery_image_is_decoded_once_for_both_sizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decodes: list[tuple[int, ...]] = []

    def counting(path: str, sizes: list[int], **kw: Any) -> Any:
        decodes.append(tuple(sizes))
        return make_thumbnails(path, sizes, **kw)

    monkeypatch.setattr(writer_module, "make_thumbnails", counting)
    row = ok_row(str(save_image(tmp_path / "p" / "a.png")), verdict="bad", score=0.1, needs_review=True)
    page = _write(tmp_path / "out", [row])
    assert decodes == [(160, 48)]
    assert len(page.find_all("img", class_="card-thumb")) == 2 and len(page.find_all("img", class_="mini")) == 1


# --- page --------------------------------------------------------------------------------------------


def test_verdict_classes_come_from_a_fixed_set_and_the_filter_waits_for_its_script(tmp_path: Path) -> None:
    rows = [ok_row("p/a.png", verdict='x" onmouseover="alert(1)'), ok_row("p/b.png", verdict="bad", score=0.1)]
    page = _write(tmp_path / "out", rows)
    table = page.by_id("images").find_all("tbody")[0].find_all("tr")
    assert [row.attrs["data-verdict"] for row in table] == ["unknown", "bad"]
    assert [row.attrs["class"] for row in table] == ["verdict-unknown", "verdict-bad"]
    badge = table[0].find_all("span", class_="badge")[0]
    assert badge.text == 'x" onmouseover="alert(1)' and "onmouseover" not in badge.attrs
    tools = page.by_id("table-tools")
    assert "hidden" in tools.attrs and tools.find_all("input", id="filter")
    options = [option.attrs["value"] for option in page.by_id("verdict-filter").find_all("option")]
    assert options == ["", "ok", "degraded", "bad", "error"]
