"""The HTML writer without a browser: registration, content, escaping, bounds, thumbnails, atomic output."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("iqa_html", reason="the iqa-html plugin is not installed: pip install -e plugins/iqa-html")
from iqa_cli.audit.run import AuditSettings, run_audit
from iqa_cli.plugins import writers
from iqa_cli.testing.engines import ScriptedEngine
from pagetools import EVIL_ANSWER, EVIL_NAME, Node, failed_row, ok_row, parse_page, save_image
from PIL import Image

import iqa_html.writer as writer_module
from iqa_html.data import TABLE_THUMBS
from iqa_html.thumbs import THUMB_SIZE, make_thumbnail, make_thumbnails
from iqa_html.writer import HtmlWriter


def _write(out: Path, rows: list[dict[str, Any]], **kw: Any) -> tuple[Path, Node]:
    out.mkdir(parents=True, exist_ok=True)
    writer = HtmlWriter(out, **kw)
    writer.write(rows)
    path = writer.close()
    return path, parse_page(path.read_text(encoding="utf-8"))


def _stat(page: Node, key: str) -> int:
    return int(page.by_id(f"stat-{key}").find_all("dd")[0].text.replace(",", ""))


def _gallery_paths(page: Node, section: str) -> list[str]:
    return [node.text for node in page.by_id(section).find_all("div", class_="path")]


def _table_column(page: Node, index: int) -> list[str]:
    rows = page.by_id("images").find_all("tbody")[0].find_all("tr")
    return [row.find_all("td")[index].text for row in rows]


def _mixed_rows(photo: Callable[..., str]) -> list[dict[str, Any]]:
    return [
        ok_row(photo("fine.png"), score=0.9, confidence=0.95),
        ok_row(
            photo("blurry.jpg", seed=1),
            verdict="bad",
            score=0.1,
            rating="bad",
            answer="Blur",
            distortions=["blur"],
            confidence=0.9,
        ),
        ok_row(
            photo("noisy.png", seed=2),
            verdict="degraded",
            score=0.45,
            rating="fair",
            answer="Noise",
            distortions=["noise"],
            confidence=0.4,
            needs_review=True,
        ),
        ok_row(
            photo("both.png", seed=3),
            verdict="bad",
            score=0.2,
            rating="poor",
            answer="Blur and noise",
            distortions=["blur", "noise"],
            confidence=0.5,
            needs_review=True,
        ),
        failed_row("photos/broken.jpg"),
    ]


def test_registered_as_the_html_format() -> None:
    assert writers()["html"] is HtmlWriter


def test_summary_histogram_galleries_errors_and_table(tmp_path: Path, photo: Callable[..., str]) -> None:
    path, page = _write(tmp_path / "out", _mixed_rows(photo))
    assert path == tmp_path / "out" / "report.html"
    expected = {"files": 5, "assessed": 4, "errors": 1, "ok": 1, "degraded": 1, "bad": 2, "review": 2}
    assert {key: _stat(page, key) for key in expected} == expected

    histogram = {
        row.find_all("th")[0].text: int(row.find_all("td")[0].text)
        for row in page.by_id("distortions").find_all("tbody")[0].find_all("tr")
    }
    assert histogram == {"blur": 2, "noise": 2}

    # Worst: bad before degraded, lower score first; the ok image is not listed. Review: least confident first.
    assert [Path(p).name for p in _gallery_paths(page, "worst")] == ["blurry.jpg", "both.png", "noisy.png"]
    assert [Path(p).name for p in _gallery_paths(page, "review")] == ["noisy.png", "both.png"]
    for image in page.by_id("worst").find_all("img") + page.by_id("review").find_all("img"):
        assert image.attrs["src"].startswith("data:image/jpeg;base64,")
    captions = page.by_id("worst").find_all("figcaption")
    assert "Blur" in captions[0].text and "0.10" in captions[0].text and "bad" in captions[0].text

    assert "broken.jpg" in page.by_id("errors").text and "truncated" in page.by_id("errors").text
    assert _table_column(page, 0) == ["1", "2", "3", "4", "5"]  # run order until someone sorts
    assert _table_column(page, 2) == ["ok", "bad", "degraded", "bad", "error"]
    assert not page.find_all(id="table-note")


def test_page_needs_no_network_and_runs_only_its_own_script(tmp_path: Path, photo: Callable[..., str]) -> None:
    path, page = _write(tmp_path / "out", _mixed_rows(photo))
    text = path.read_text(encoding="utf-8")
    for node in page.iter():
        for name in ("src", "href"):
            assert not node.attrs.get(name, "data:").startswith(("http:", "https:", "//")), node
    assert "<link" not in text and "@import" not in text and "url(" not in text
    csp = page.find_all("meta", **{"http-equiv": "Content-Security-Policy"})[0].attrs["content"]
    assert "default-src 'none'" in csp and "img-src data:" in csp and "unsafe-inline" not in csp


def test_strings_from_the_data_are_escaped(tmp_path: Path, photo: Callable[..., str]) -> None:
    evil = photo(EVIL_NAME)
    rows = [
        ok_row(
            evil,
            verdict="bad",
            score=0.1,
            rating="bad",
            answer=EVIL_ANSWER,
            confidence=0.2,
            needs_review=True,
            distortions=["<i>blur</i>"],
        ),
        failed_row('photos/"><script>alert(2)</script>.jpg', code="<b>code</b>", message="<img src=y onerror=z>"),
    ]
    path, page = _write(tmp_path / "out", rows)
    text = path.read_text(encoding="utf-8")
    for raw in (EVIL_NAME, "<script>document.title", "<script>alert(2)", "<i>blur</i>", "<b>code</b>", "<img src=y"):
        assert raw not in text
    # Nothing from the data became an element: one script (ours), one image per gallery card and the
    # table's small one (its alt empty: the name is beside it).
    assert len(page.find_all("script")) == 1
    cards = [image for figure in page.find_all("figure") for image in figure.find_all("img")]
    assert len(cards) == 2 and not page.find_all("i") and not page.find_all("b")
    assert [image.attrs["alt"] for image in page.find_all("img", class_="mini")] == [""]
    assert len(page.find_all("img")) == 3
    assert [Path(p).name for p in _gallery_paths(page, "worst")] == [EVIL_NAME]  # shown as text, literally
    assert EVIL_ANSWER in page.by_id("worst").text and "<i>blur</i>" in page.by_id("images").text
    assert all(image.attrs["alt"] == evil for image in cards)


def test_file_appears_only_on_close_and_replaces_the_old_one_atomically(
    tmp_path: Path, photo: Callable[..., str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("previous report")
    writer = HtmlWriter(out)
    writer.write(_mixed_rows(photo)[:2])
    writer.write(_mixed_rows(photo)[2:])
    assert (out / "report.html").read_text() == "previous report"  # intact until the new one is complete
    assert writer.rows_written == 5
    writer.close()
    assert (out / "report.html").read_text(encoding="utf-8").startswith("<!doctype html>")
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]  # no temporary file left behind


def test_galleries_are_bounded_and_only_their_images_are_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[str] = []
    at_gallery_size: list[str] = []

    def counting(path: str, sizes: list[int], **kw: Any) -> Any:
        decoded.append(path)
        if THUMB_SIZE in sizes:
            at_gallery_size.append(path)
        return make_thumbnails(path, sizes, **kw)

    monkeypatch.setattr(writer_module, "make_thumbnails", counting)
    rng = np.random.default_rng(0)
    scores, confidences = rng.permutation(500) / 500, rng.permutation(500) / 500
    rows = [
        ok_row(
            f"photos/{i}.jpg",
            verdict="bad" if i % 2 else "degraded",
            score=float(scores[i]),
            confidence=float(confidences[i]),
            needs_review=bool(confidences[i] < 0.6),
        )
        for i in range(500)
    ]
    _, page = _write(tmp_path / "out", rows, gallery_size=5)

    bad = sorted((r for r in rows if r["verdict"] == "bad"), key=lambda r: r["score"])
    assert _gallery_paths(page, "worst") == [r["path"] for r in bad[:5]]
    unsure = sorted((r for r in rows if r["needs_review"]), key=lambda r: r["confidence"])
    assert _gallery_paths(page, "review") == [r["path"] for r in unsure[:5]]
    assert len(at_gallery_size) == len(set(at_gallery_size)) <= 10
    # Besides them only the table's worst rows get (small) thumbnails: each image decoded once, for both.
    assert len(decoded) == len(set(decoded)) <= 10 + TABLE_THUMBS
    # The files do not exist: each card gets a placeholder saying so, and the report is still written.
    assert len(page.find_all("div", class_="placeholder")) == 10 and not page.find_all("img")
    assert len(page.by_id("images").find_all("span", class_="placeholder")) == TABLE_THUMBS


def test_table_keeps_the_worst_rows_when_capped(tmp_path: Path) -> None:
    rows = [ok_row(f"photos/{i:03}.jpg", score=0.5 + i / 1000) for i in range(50)]
    rows[30] = failed_row("photos/030.jpg")
    _, page = _write(tmp_path / "out", rows, table_limit=10)
    assert "10 worst of 50" in page.by_id("table-note").text
    # The error and the nine lowest scores, shown in run order.
    assert _table_column(page, 0) == [str(n) for n in (*range(1, 10), 31)]
    assert _stat(page, "files") == 50  # the counts still cover every row


def test_errors_list_is_capped_but_counted(tmp_path: Path) -> None:
    rows = [failed_row(f"photos/{i}.jpg", code="not_an_image" if i % 3 else "truncated") for i in range(30)]
    _, page = _write(tmp_path / "out", rows, errors_listed=4)
    errors = page.by_id("errors")
    assert len(errors.find_all("tbody")[0].find_all("tr")) == 4
    assert "not_an_image: 20" in errors.text and "truncated: 10" in errors.text and "first 4" in errors.text


def test_many_rows_stay_bounded(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    writer = HtmlWriter(out, table_limit=1000, gallery_size=6)
    for start in range(0, 30_000, 1000):
        writer.write(
            [
                ok_row(
                    f"p/{i}.jpg", verdict="bad", score=(i * 7919 % 30_000) / 30_000, confidence=0.1, needs_review=True
                )
                for i in range(start, start + 1000)
            ]
        )
    assert len(writer._table) == 1000 and len(writer._worst) == 6 and len(writer._review) == 6
    page = parse_page(writer.close().read_text(encoding="utf-8"))
    assert _stat(page, "files") == 30_000 and len(_table_column(page, 0)) == 1000
    assert (out / "report.html").stat().st_size < 1_000_000


@pytest.mark.parametrize("make", ["jpeg", "png_alpha", "png16", "palette", "cmyk"])
def test_thumbnails_of_common_kinds(tmp_path: Path, make: str) -> None:
    path = tmp_path / f"{make}.img"
    if make == "jpeg":
        save_image(path, size=(400, 300), format="JPEG")
    elif make == "png_alpha":
        save_image(path, size=(300, 400), mode="RGBA", format="PNG")
    elif make == "png16":
        Image.fromarray(np.arange(300 * 200, dtype=np.uint16).reshape(200, 300)).save(path, format="PNG")
    elif make == "palette":
        Image.new("P", (320, 100), 3).save(path, format="GIF")
    else:
        Image.new("CMYK", (200, 200), (0, 255, 0, 0)).save(path, format="JPEG")
    thumb = make_thumbnail(str(path), 160)
    assert thumb.uri is not None, thumb.problem
    # Transparency is kept (WebP, or PNG where Pillow has no WebP); everything else is a JPEG.
    kinds = (
        ("data:image/webp;base64,", "data:image/png;base64,") if make == "png_alpha" else ("data:image/jpeg;base64,",)
    )
    assert thumb.uri.startswith(kinds)
    assert max(thumb.width, thumb.height) == 160 or make == "cmyk"


def test_thumbnail_follows_exif_orientation(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees clockwise: portrait
    save_image(path, size=(400, 200), format="JPEG", exif=exif)
    thumb = make_thumbnail(str(path), 160)
    assert (thumb.width, thumb.height) == (80, 160)


@pytest.mark.parametrize("content", [None, b"", b"\xff\xd8\xff\xe0 truncated", b"<html>not an image</html>"])
def test_unreadable_files_get_a_placeholder_not_an_exception(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "bad.jpg"
    if content is not None:
        path.write_bytes(content)
    thumb = make_thumbnail(str(path))
    assert thumb.uri is None and thumb.problem and thumb.problem.startswith("no preview")


def test_sorting_hooks_are_on_every_column(tmp_path: Path, photo: Callable[..., str]) -> None:
    _, page = _write(tmp_path / "out", _mixed_rows(photo))
    headers = page.by_id("images").find_all("th")
    assert [h.attrs["data-key"] for h in headers] == [
        "n",
        "file",
        "verdict",
        "answer",
        "distortions",
        "rating",
        "score",
        "confidence",
        "review",
    ]
    assert all(h.find_all("button") for h in headers)
    # Numeric columns carry exact values to sort on, whatever the shown rounding.
    scores = [row.find_all("td")[6].attrs["data-v"] for row in page.by_id("images").find_all("tr")[1:]]
    assert scores == ["0.9", "0.1", "0.45", "0.2", ""]


def test_through_a_real_audit_run(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    for name in ("a.png", "bad-b.jpg", "c.png"):
        save_image(photos / name, size=(120, 90))
    (photos / "notes.jpg").write_text("not an image")
    out = tmp_path / "out"
    out.mkdir()
    engine = ScriptedEngine({"bad-b.jpg": (["blur"], 0.3, 0.1)}, default=([], 0.9, 0.9))  # bad and unsure
    summary = run_audit(AuditSettings(paths=[str(photos)], workers=0), engine, [HtmlWriter(out)])
    assert summary.reports == [str(out / "report.html")]
    page = parse_page((out / "report.html").read_text(encoding="utf-8"))
    assert (_stat(page, "files"), _stat(page, "bad"), _stat(page, "errors")) == (4, 1, 1)
    assert [Path(p).name for p in _gallery_paths(page, "worst")] == ["bad-b.jpg"]
    assert page.by_id("worst").find_all("img")[0].attrs["src"].startswith("data:image/jpeg;base64,")
    assert "scripted 1" in page.find_all("header")[0].text
