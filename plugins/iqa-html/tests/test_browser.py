"""The report in a real headless Chromium: what the page shows, that thumbnails load, that sorting works."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("iqa_html", reason="the iqa-html plugin is not installed: pip install -e plugins/iqa-html")
from pagetools import EVIL_ANSWER, Node, failed_row, ok_row, parse_page, save_image

from iqa_html.writer import HtmlWriter

pytestmark = pytest.mark.browser

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# The file name runs script if it ever becomes markup; no "/" in it, so POSIX filesystems accept it.
EVIL_FILE = "<img src=x onerror=\"document.title='pwned'\">.png"
TITLE = "iqa report: 7 images"


def _browser() -> str:
    found = os.environ.get("IQA_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if not found:
        pytest.skip("chromium not installed: apt-get install chromium")
    return found


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    photos = root / "photos"
    try:
        evil = str(save_image(photos / EVIL_FILE, seed=9))
    except OSError:  # a filesystem that refuses the name: the row still carries it, with a placeholder
        evil = str(photos / EVIL_FILE)
    rows = [
        ok_row(str(save_image(photos / "img10.png", seed=1)), score=0.8, confidence=0.9),
        ok_row(
            str(save_image(photos / "img2.jpg", seed=2, format="JPEG")),
            verdict="bad",
            score=0.15,
            rating="bad",
            answer="Blur",
            distortions=["blur"],
            confidence=0.9,
        ),
        ok_row(
            str(save_image(photos / "img1.png", seed=3)),
            verdict="degraded",
            score=0.5,
            rating="fair",
            answer="Noise",
            distortions=["noise"],
            confidence=0.4,
            needs_review=True,
        ),
        ok_row(
            evil,
            verdict="bad",
            score=0.3,
            rating="poor",
            answer=EVIL_ANSWER,
            distortions=["blur", "noise"],
            confidence=0.2,
            needs_review=True,
        ),
        ok_row(str(save_image(photos / "img3.png", seed=4)), score=None, rating=None, confidence=0.95),
        ok_row(
            str(save_image(photos / "img20.png", seed=5)),
            verdict="degraded",
            score=0.65,
            rating="good",
            answer="Noise",
            distortions=["noise"],
            confidence=0.7,
        ),
        failed_row(str(photos / "broken.jpg")),
    ]
    out = root / "out"
    out.mkdir()
    writer = HtmlWriter(out)
    writer.write(rows)
    return writer.close()


def _dump_dom(url: str, profile: Path) -> Node:
    """The DOM after the page loaded and its scripts (load handlers included) ran."""
    command = [
        _browser(),
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "<html" in done.stdout, done.stderr[-3000:]
    return parse_page(done.stdout)


def _column(page: Node, index: int) -> list[str]:
    return [row.find_all("td")[index].text for row in page.by_id("images").find_all("tbody")[0].find_all("tr")]


def test_page_shows_summary_galleries_and_no_injected_markup(report: Path, tmp_path: Path) -> None:
    page = _dump_dom(report.as_uri(), tmp_path / "profile")
    counts = {
        key: page.by_id(f"stat-{key}").find_all("dd")[0].text
        for key in ("files", "assessed", "errors", "ok", "degraded", "bad", "review")
    }
    assert counts == {
        "files": "7",
        "assessed": "6",
        "errors": "1",
        "ok": "2",
        "degraded": "2",
        "bad": "2",
        "review": "2",
    }
    assert page.find_all("title")[0].text == TITLE  # neither the file name nor the answer ran script
    worst = page.by_id("worst")
    assert [Path(p.text).name for p in worst.find_all("div", class_="path")] == [
        "img2.jpg",
        EVIL_FILE,
        "img1.png",
        "img20.png",
    ]
    assert EVIL_ANSWER in worst.text
    images = page.find_all("img")
    assert len(images) == 6 and all(i.attrs["src"].startswith("data:image/jpeg;base64,") for i in images)
    assert len(page.find_all("script")) == 1 and not page.find_all("b")
    assert "broken.jpg" in page.by_id("errors").text


def _with_probe(report: Path, probe: str) -> Path:
    """A copy of the report with a test script that records what the browser did into <pre id="probe">.

    The page's Content-Security-Policy runs only scripts whose hash it lists, so the probe's is added.
    """
    digest = base64.b64encode(hashlib.sha256(probe.encode("utf-8")).digest()).decode("ascii")
    text = report.read_text(encoding="utf-8")
    source = html.escape(f"'sha256-{digest}'")  # the CSP sits in an attribute, so its quotes are escaped
    text = text.replace("script-src ", f"script-src {source} ", 1)
    text = text.replace("</body>", f"<script>{probe}</script>\n</body>", 1)
    copy = report.with_name("probe.html")
    copy.write_text(text, encoding="utf-8")
    return copy


PROBE = """window.addEventListener("load", () => {
  const column = (i) => Array.from(document.querySelectorAll("#images tbody tr"), (r) => r.cells[i].textContent);
  const result = {
    images: Array.from(document.querySelectorAll("figure img"), (i) => [i.complete, i.naturalWidth]),
    statsDisplay: getComputedStyle(document.querySelector(".stats")).display,
    title: document.title,
  };
  const score = document.querySelector('th[data-key="score"] button');
  score.click();
  result.ascending = column(6);
  result.ariaSort = score.parentElement.getAttribute("aria-sort");
  score.click();
  result.descending = column(6);
  document.querySelector('th[data-key="file"] button').click();
  result.files = column(1);
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
});"""


def test_thumbnails_load_and_clicking_headers_sorts(report: Path, tmp_path: Path) -> None:
    page = _dump_dom(_with_probe(report, PROBE).as_uri(), tmp_path / "profile")
    probe: dict[str, Any] = json.loads(page.by_id("probe").text)
    # Every gallery thumbnail decoded (a data URI that failed would have naturalWidth 0).
    assert len(probe["images"]) == 6 and all(done and width > 0 for done, width in probe["images"])
    assert probe["statsDisplay"] == "flex"  # the stylesheet applied under the page's CSP
    assert probe["title"] == TITLE
    # Numbers sort as numbers, blanks last in either direction.
    assert probe["ascending"] == ["0.15", "0.30", "0.50", "0.65", "0.80", "", ""]
    assert probe["ariaSort"] == "ascending"
    assert probe["descending"] == ["0.80", "0.65", "0.50", "0.30", "0.15", "", ""]
    # Names sort numeric-aware: img2 before img10.
    names = [Path(name).name for name in probe["files"]]
    assert (
        names.index("img1.png")
        < names.index("img2.jpg")
        < names.index("img3.png")
        < names.index("img10.png")
        < names.index("img20.png")
    )


@pytest.mark.parametrize(
    ("fragment", "column", "expected"),
    [
        ("#sort=score", 6, ["0.15", "0.30", "0.50", "0.65", "0.80", "", ""]),
        ("#sort=-n", 0, ["7", "6", "5", "4", "3", "2", "1"]),
        ("#sort=verdict", 2, ["error", "bad", "bad", "degraded", "degraded", "ok", "ok"]),
    ],
)
def test_page_opens_sorted_from_the_address(
    report: Path, tmp_path: Path, fragment: str, column: int, expected: list[str]
) -> None:
    page = _dump_dom(report.as_uri() + fragment, tmp_path / "profile")
    assert _column(page, column) == expected
    key = fragment.removeprefix("#sort=").lstrip("-")
    sorted_header = [th for th in page.by_id("images").find_all("th") if th.attrs.get("aria-sort")]
    assert [th.attrs["data-key"] for th in sorted_header] == [key]
