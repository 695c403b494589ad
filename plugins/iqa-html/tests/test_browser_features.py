"""Issue 14 in headless Chromium: verdict colours, checkerboard thumbnails, duplicate groups, the filter box,
links to the originals and the table's thumbnails."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import numpy as np
import pytest

pytest.importorskip("iqa_html", reason="the iqa-html plugin is not installed: pip install -e plugins/iqa-html")
from browsertools import probed
from pagetools import Node, content_hash, failed_row, ok_row, save_image
from PIL import Image

from iqa_html.writer import HtmlWriter

pytestmark = pytest.mark.browser

NAMES = ["fine.png", "fine-copy.png", "clear.jpg", "clear-small.jpg", "clear-edit.jpg", "logo.png", "gone.png"]


def _transparent(path: Path) -> Path:
    """An RGBA picture whose left half is fully transparent: white on white in the old report."""
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 255, (60, 80, 4), dtype=np.uint8)
    pixels[:, :40, 3] = 0
    pixels[:, 40:, 3] = 255
    Image.fromarray(pixels, "RGBA").save(path)
    return path


def _row(path: Path, **kw: Any) -> dict[str, Any]:
    return ok_row(str(path), content_hash=content_hash(path) if path.exists() else None, **kw)


@pytest.fixture(scope="module")
def moved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A report in site/reports/audit about files in site/photos, then `site` moved elsewhere: the report
    and the photos as they are after the move."""
    root = tmp_path_factory.mktemp("features")
    photos = root / "site" / "photos"
    fine = save_image(photos / "fine.png", seed=1)
    copy = photos / "fine-copy.png"
    shutil.copyfile(fine, copy)
    clear = save_image(photos / "clear.jpg", seed=2, format="JPEG")
    small = save_image(photos / "clear-small.jpg", size=(32, 24), seed=3, format="JPEG")
    edit = save_image(photos / "clear-edit.jpg", seed=4, format="JPEG")
    logo = _transparent(photos / "logo.png")
    broken = photos / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really")
    rows = [
        _row(fine, score=0.9),
        _row(copy, score=0.9),
        _row(clear, verdict="degraded", score=0.5, rating="fair", answer="Noise", distortions=["noise"]),
        _row(small, verdict="bad", score=0.2, rating="poor", answer="Blur and noise", distortions=["blur", "noise"]),
        _row(edit, score=0.8),
        _row(logo, verdict="bad", score=0.1, rating="bad", answer="Blur", distortions=["blur"]),
        _row(photos / "gone.png", verdict="degraded", score=0.6, answer="Noise", distortions=["noise"]),
        failed_row(str(broken)),
    ]
    rows[1]["duplicate_of"] = str(fine)  # as iqa's audit writes it: the first path with the same bytes
    rows[3]["findings"] = [f"near-duplicate/near_copy: looks like {clear} (hash distance 2)"]
    rows[4]["findings"] = [f"near-duplicate/near_copy: looks like {small} (hash distance 3)"]
    out = root / "site" / "reports" / "audit"
    out.mkdir(parents=True)
    writer = HtmlWriter(out)
    writer.write(rows)
    report = writer.close()
    (root / "site").rename(root / "moved")  # photos and report folder moved together
    return root / "moved" / report.relative_to(root / "site"), root / "moved" / "photos"


PROBE = r"""window.addEventListener("load", () => {
  const rows = () => Array.from(document.querySelectorAll("#images tbody tr"));
  const visible = () => rows().filter((row) => row.getClientRects().length > 0).map((row) => row.cells[1].textContent);
  const colours = (element) => {
    const style = getComputedStyle(element);
    return { color: style.color, background: style.backgroundColor, border: style.borderTopColor };
  };
  const result = {
    badges: Array.from(document.querySelectorAll(".badge"), (b) => ({ word: b.textContent, cls: b.className,
      ...colours(b) })),
    cards: Array.from(document.querySelectorAll("figure.card"), (f) => ({ cls: f.className, ...colours(f) })),
    toolsShown: document.getElementById("table-tools").getClientRects().length > 0,
    all: visible(),
  };
  result.thumbs = Array.from(document.querySelectorAll("img.thumb"), (img) => {
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const context = canvas.getContext("2d");
    context.drawImage(img, 0, 0);
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
    let minAlpha = 255;
    for (let i = 3; i < pixels.length; i += 4) minAlpha = Math.min(minAlpha, pixels[i]);
    const style = getComputedStyle(img);
    return {
      cls: img.className, row: img.closest("tr, figure").textContent, src: img.getAttribute("src"),
      loaded: img.complete && img.naturalWidth > 0, minAlpha, image: style.backgroundImage,
      backgroundColor: style.backgroundColor,
    };
  });
  const filter = document.getElementById("filter");
  const verdict = document.getElementById("verdict-filter");
  const type = (text) => {  // as a person types: focus, select what is there, insert (input events follow)
    filter.focus();
    filter.select();
    if (text) document.execCommand("insertText", false, text);
    else document.execCommand("delete");
  };
  const choose = (value) => {
    verdict.value = value;
    verdict.dispatchEvent(new Event("change"));
  };
  type("noise");
  result.typed = filter.value;
  result.noise = visible();
  result.noiseCount = document.getElementById("filter-count").textContent;
  choose("bad");
  result.noiseBad = visible();
  type("");
  result.bad = visible();
  type("CLEAR blur");
  choose("");
  result.words = visible();
  document.querySelector('th[data-key="score"] button').click();  // sorting keeps the filter
  result.sortedWords = visible();
  type("fine");
  result.fine = visible();
  type("");
  result.cleared = visible();
  result.clearedCount = document.getElementById("filter-count").textContent;
  result.links = Array.from(document.querySelectorAll("[href]"), (a) => ({
    written: a.getAttribute("href"), resolved: a.href, protocol: a.protocol, section: a.closest("section").id,
    text: a.textContent,
  }));
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
});"""


@pytest.fixture(scope="module")
def probe(moved: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Node]:
    report, _ = moved
    return probed(report, PROBE, tmp_path_factory.mktemp("profile"))


def _rgb(css: str) -> tuple[float, ...]:
    match = re.fullmatch(r"rgba?\((\d+), (\d+), (\d+)(?:, ([\d.]+))?\)", css)
    assert match, css
    return tuple(float(part) for part in match.groups() if part is not None)


def _contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two opaque CSS colours."""

    def luminance(css: str) -> float:
        channels = [c / 255 for c in _rgb(css)[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _names(paths: list[str]) -> list[str]:
    return [Path(path).name for path in paths]


def test_verdicts_are_coloured_readably_and_keep_their_word(probe: tuple[dict[str, Any], Node]) -> None:
    result, _ = probe
    by_verdict: dict[str, set[tuple[str, str]]] = {}
    for badge in result["badges"]:
        [verdict] = [c.removeprefix("verdict-") for c in badge["cls"].split() if c.startswith("verdict-")]
        assert badge["word"] == verdict  # the word is always there: colour is never the only cue
        assert _contrast(badge["color"], badge["background"]) >= 4.5, badge  # WCAG AA for text
        by_verdict.setdefault(verdict, set()).add((badge["color"], badge["background"]))
    assert set(by_verdict) == {"ok", "degraded", "bad", "error"}
    assert all(len(colours) == 1 for colours in by_verdict.values())  # one colour per verdict, everywhere
    assert len({colours.pop() for colours in by_verdict.values()}) == 4  # and four different ones
    cards = {card["cls"]: card["border"] for card in result["cards"]}
    assert cards["card verdict-bad"] != cards["card verdict-degraded"]


def test_transparent_thumbnails_keep_alpha_over_a_checkerboard(probe: tuple[dict[str, Any], Node]) -> None:
    result, _ = probe
    thumbs = result["thumbs"]
    assert thumbs and all(thumb["loaded"] for thumb in thumbs)
    # Every thumbnail, gallery or table, has the checkerboard behind it, drawn by the stylesheet.
    assert all("conic-gradient" in thumb["image"] for thumb in thumbs), thumbs
    logo = [thumb for thumb in thumbs if "logo.png" in thumb["row"]]
    assert sorted(thumb["cls"] for thumb in logo) == ["thumb card-thumb", "thumb mini"]
    for thumb in logo:
        assert thumb["src"].startswith(("data:image/webp;base64,", "data:image/png;base64,"))
        assert thumb["minAlpha"] == 0  # the browser decoded transparent pixels: the checkerboard shows there
        image = Image.open(io.BytesIO(base64.b64decode(thumb["src"].split(",", 1)[1])))
        assert image.mode == "RGBA" and image.getchannel("A").getextrema() == (0, 255)
    opaque = [thumb for thumb in thumbs if "logo.png" not in thumb["row"]]
    assert opaque and all(thumb["src"].startswith("data:image/jpeg;base64,") for thumb in opaque)
    assert all(thumb["minAlpha"] == 255 for thumb in opaque)


def test_duplicates_section_lists_exact_and_near_groups(probe: tuple[dict[str, Any], Node]) -> None:
    _, page = probe
    section = page.by_id("duplicates")
    assert (page.by_id("exact-count").text, page.by_id("near-count").text) == ("1", "2")

    def groups(key: str) -> list[list[str]]:
        return [[li.text for li in group.find_all("li")] for group in page.by_id(f"{key}-groups").find_all("ul")]

    [exact] = groups("exact")
    assert [Path(line.split(" (")[0]).name for line in exact] == ["fine.png", "fine-copy.png"]
    assert exact[0].endswith("(first)")
    [near] = groups("near")  # a copy of a copy joins its group, saying which one it resembles
    assert [Path(line.split(" (")[0]).name for line in near] == ["clear.jpg", "clear-small.jpg", "clear-edit.jpg"]
    assert near[1].endswith("(hash distance 2)")
    assert re.search(r"\(hash distance 3 to .*clear-small\.jpg\)$", near[2])
    assert [group.text.split(" files")[0] for group in section.find_all("li", class_="group")] == ["2", "3"]


def test_filter_box_hides_rows_that_do_not_match(probe: tuple[dict[str, Any], Node]) -> None:
    result, _ = probe
    assert result["toolsShown"]  # hidden in the file, shown by the script that makes it work
    everyone = ["fine.png", "fine-copy.png", "clear.jpg", "clear-small.jpg", "clear-edit.jpg", "logo.png"]
    assert _names(result["all"]) == [*everyone, "gone.png", "broken.jpg"]
    assert result["typed"] == "noise"
    assert _names(result["noise"]) == ["clear.jpg", "clear-small.jpg", "gone.png"]  # answers and distortions
    assert result["noiseCount"] == "3 of 8 rows shown"
    assert _names(result["noiseBad"]) == ["clear-small.jpg"]  # and the verdict
    assert _names(result["bad"]) == ["clear-small.jpg", "logo.png"]
    assert _names(result["words"]) == ["clear-small.jpg"]  # every word, any case, path or answer
    assert result["sortedWords"] == result["words"]
    assert _names(result["fine"]) == ["fine.png", "fine-copy.png"]  # file names
    assert len(result["cleared"]) == 8 and result["clearedCount"] == ""


def test_links_are_relative_and_resolve_to_the_moved_files(
    moved: tuple[Path, Path], probe: tuple[dict[str, Any], Node]
) -> None:
    report, photos = moved
    result, page = probe
    links = result["links"]
    for link in links:
        assert link["written"].startswith("../../photos/") and link["protocol"] == "file:", link
        target = Path(os.fsdecode(unquote_to_bytes(urlsplit(link["resolved"]).path)))
        assert target.parent == photos and target.is_file(), link  # where the files are now, not were
    in_table = {Path(link["text"]).name for link in links if link["section"] == "all"}
    assert in_table == {*NAMES, "broken.jpg"} - {"gone.png"}  # only files that exist get a link
    sections = {link["section"] for link in links}
    assert sections == {"worst", "errors", "duplicates", "all"}
    assert not page.by_id("images").find_all("a", href="../../photos/gone.png")
    assert not (photos.parent.parent / "site").exists() and report.is_relative_to(photos.parent)


def test_table_rows_have_thumbnails(probe: tuple[dict[str, Any], Node]) -> None:
    _, page = probe  # as the probe left it: sorted by score
    rows = page.by_id("images").find_all("tbody")[0].find_all("tr")
    with_thumbs = {Path(row.find_all("td")[1].text).name for row in rows if row.find_all("img", class_="mini")}
    assert with_thumbs == set(NAMES) - {"gone.png"}  # every assessed row (fewer than TABLE_THUMBS) that has a file
    gone = next(row for row in rows if row.find_all("td")[1].text.endswith("gone.png"))
    assert gone.find_all("span", class_="placeholder")[0].attrs["title"].startswith("no preview")


HOSTILE_HERE = ["javascript:alert(1).png", "#top.png", "?q=1.png", "x\\..\\..\\etc.png", "%2e%2e.png", "data:,x.png"]


def test_links_beside_the_report_never_become_a_scheme_or_leave_the_folder(tmp_path: Path) -> None:
    """The report written into the photos folder itself, so a name is the whole relative link."""
    folder = tmp_path / "photos"
    rows = [
        ok_row(str(save_image(folder / name, seed=i)), verdict="bad", score=0.1) for i, name in enumerate(HOSTILE_HERE)
    ]
    writer = HtmlWriter(folder)
    writer.write(rows)
    result, _ = probed(writer.close(), PROBE, tmp_path / "profile")
    table = [link for link in result["links"] if link["section"] == "all"]
    assert len(table) == len(HOSTILE_HERE)
    for link, name in zip(table, HOSTILE_HERE, strict=True):
        assert link["protocol"] == "file:" and "/" not in link["written"], link
        assert Path(os.fsdecode(unquote_to_bytes(urlsplit(link["resolved"]).path))) == folder / name
