"""The report in a real headless Chromium: what the page shows, that thumbnails load, that sorting works."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

import pytest

pytest.importorskip("iqa_html", reason="the iqa-html plugin is not installed: pip install -e plugins/iqa-html")
from browsertools import dump_dom, with_probe
from pagetools import EVIL_ANSWER, Node, content_hash, failed_row, ok_row, save_image

from iqa_html.writer import HtmlWriter

pytestmark = pytest.mark.browser

# The file name runs script if it ever becomes markup; no "/" in it, so POSIX filesystems accept it.
EVIL_FILE = "<img src=x onerror=\"document.title='pwned'\">.png"
TITLE = "iqa report: 7 images"


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


def _column(page: Node, index: int) -> list[str]:
    return [row.find_all("td")[index].text for row in page.by_id("images").find_all("tbody")[0].find_all("tr")]


def test_page_shows_summary_galleries_and_no_injected_markup(report: Path, tmp_path: Path) -> None:
    page = dump_dom(report.as_uri(), tmp_path / "profile")
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
    cards = [image for figure in page.find_all("figure") for image in figure.find_all("img")]
    assert len(cards) == 6 and all(i.attrs["src"].startswith("data:image/jpeg;base64,") for i in cards)
    minis = page.by_id("images").find_all("img", class_="mini")  # every assessed row's, under TABLE_THUMBS
    assert len(minis) == 6 and len(page.find_all("img")) == 12
    assert len(page.find_all("script")) == 1 and not page.find_all("b")
    assert "broken.jpg" in page.by_id("errors").text


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
    page = dump_dom(with_probe(report, PROBE).as_uri(), tmp_path / "profile")
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
    page = dump_dom(report.as_uri() + fragment, tmp_path / "profile")
    assert _column(page, column) == expected
    key = fragment.removeprefix("#sort=").lstrip("-")
    sorted_header = [th for th in page.by_id("images").find_all("th") if th.attrs.get("aria-sort")]
    assert [th.attrs["data-key"] for th in sorted_header] == [key]


# Names and text from strangers, each with how the page must show it: as text, control characters and
# direction overrides as visible escapes, the bytes of a non-UTF-8 name as \xNN. Nothing in them may run.
# File names hold no "/"; the <script> one is a path through folders named by its pieces.
HOSTILE_NAMES = [
    ("\"'><svg onload=alert('svg')>.png", "\"'><svg onload=alert('svg')>.png"),
    ("javascript:alert('js').png", "javascript:alert('js').png"),
    ("new\nline<b>bold</b>.png", "new\\x0aline<b>bold</b>.png"),
    ("esc\x1b[31mred\x1b]0;pwned\x07.png", "esc\\x1b[31mred\\x1b]0;pwned\\x07.png"),
    ("invoice\u202egnp.exe.png", "invoice\\u202egnp.exe.png"),
]
SCRIPT_PATH = ("x</", "script><script>alert('script')</", "script>.png")  # x</script><script>...</script>.png
BAD_UTF8 = b"bad\xff<i>.png"
HOSTILE_ANSWER = "</script><script>alert('answer')</script><svg onload=alert('answer2')>"
HOSTILE_DISTORTION = "<img src=x onerror=alert('distortion')>"
HOSTILE_EXIF = ("<script>alert('make')</script>", "\"><img src=x onerror=alert('model')>")
HOSTILE_ENGINE = ("<svg onload=alert('engine')>", "1</title><script>alert('version')</script>")
HOSTILE_ERROR = ("<b>code</b>", "</td></tr></table><script>alert('error')</script>\x1b[2J")
HOSTILE_TITLE = "iqa report: 8 images"
# The elements a report is made of (and the probe's <pre>); anything else came from the data.
REPORT_TAGS = {
    *("html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "p", "section", "dl", "dt", "dd"),
    *("div", "span", "strong", "code", "table", "thead", "tbody", "tr", "th", "td", "button", "svg", "rect"),
    *("figure", "figcaption", "img", "script", "pre", "a", "label", "input", "select", "option", "h3"),
    *("ol", "ul", "li"),
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], list[str]]:
    """A report of files with hostile names, answers, EXIF, engine and errors; the paths as shown, and as
    Python holds them."""
    from iqa_cli.images import ExifInfo
    from iqa_cli.report.schema import EngineStamp

    root = tmp_path_factory.mktemp("hostile")
    photos = root / "photos"
    stamp = EngineStamp(*HOSTILE_ENGINE, {"x": "</script>"})
    exif = ExifInfo(camera_make=HOSTILE_EXIF[0], camera_model=HOSTILE_EXIF[1])
    paths = [(str(photos / name), str(photos) + "/" + shown) for name, shown in HOSTILE_NAMES]
    script = str(photos.joinpath(*SCRIPT_PATH))
    paths.append((script, script))
    bad = os.fsdecode(os.fsencode(photos) + b"/" + BAD_UTF8)  # lone surrogate, as os.listdir gives it
    paths.append((bad, str(photos) + "/bad\\xff<i>.png"))
    rows = []
    for seed, (path, _) in enumerate(paths):
        save_image(Path(path), seed=seed)
        row = ok_row(
            path,
            verdict="bad",
            score=0.1 + seed / 100,
            rating="bad",
            answer=HOSTILE_ANSWER,
            distortions=[HOSTILE_DISTORTION],
            confidence=0.2,
            needs_review=seed % 2 == 0,
            stamp=stamp,
            exif=exif,
            content_hash=content_hash(path),
            notes=["<script>alert('note')</script>"],
        )
        row["path"] = path  # the schema writes a surrogate as \xff; a row from elsewhere may still hold it
        rows.append(row)
    rows.append(failed_row(str(photos / "err\u202e.jpg"), code=HOSTILE_ERROR[0], message=HOSTILE_ERROR[1]))
    out = root / "out"
    out.mkdir()
    writer = HtmlWriter(out)
    writer.write(rows)
    return writer.close(), [shown for _, shown in paths], [path for path, _ in paths]


# Runs first (from <head>): records any dialog an injected handler opens, then what the page became.
HEAD_PROBE = """window.__dialogs = [];
for (const name of ["alert", "confirm", "prompt", "print", "open"]) {
  window[name] = (message) => { window.__dialogs.push(name + ":" + String(message)); };
}
window.addEventListener("load", () => {
  const pre = document.createElement("pre");
  pre.id = "probe";
  const links = Array.from(document.querySelectorAll("[href]"), (a) => [a.getAttribute("href"), a.href, a.protocol]);
  pre.textContent = JSON.stringify({ dialogs: window.__dialogs, title: document.title, links });
  document.body.appendChild(pre);
});"""
# Proves the probe sees what runs: inline markup of the test's own that opens a dialog when allowed to.
CANARY = '<img id="canary" src="missing.png" onerror="alert(\'canary\')">'


def _hostile_copy(report: Path, keep_csp: bool) -> Path:
    """The report with HEAD_PROBE first in <head> and CANARY in <body>; with its CSP (plus the probe's hash),
    or without any, so that only the escaping stands between the data and the browser."""
    text = report.read_text(encoding="utf-8")
    head, rest = text.split("<meta http-equiv", 1)
    csp, rest = rest.split(">\n", 1)
    if keep_csp:
        digest = base64.b64encode(hashlib.sha256(HEAD_PROBE.encode("utf-8")).digest()).decode("ascii")
        head += "<meta http-equiv" + csp.replace("script-src ", f"script-src &#x27;sha256-{digest}&#x27; ", 1) + ">\n"
    assert "Content-Security-Policy" in csp
    text = head + f"<script>{HEAD_PROBE}</script>\n" + rest
    text = text.replace("<body>\n", f"<body>\n{CANARY}\n", 1)
    copy = report.with_name(f"hostile-{'csp' if keep_csp else 'bare'}.html")
    copy.write_text(text, encoding="utf-8")
    return copy


@pytest.mark.parametrize("keep_csp", [True, False], ids=["with-csp", "without-csp"])
def test_hostile_names_answers_exif_and_errors_are_inert_and_shown_literally(
    hostile: tuple[Path, list[str], list[str]], tmp_path: Path, keep_csp: bool
) -> None:
    report, shown_paths, files = hostile
    page = dump_dom(_hostile_copy(report, keep_csp).as_uri(), tmp_path / "profile")
    probe: dict[str, Any] = json.loads(page.by_id("probe").text)
    # Nothing from the data ran: no dialog (the canary's shows the probe would see one, where the page's
    # policy does not forbid inline handlers), the title as written.
    assert probe["dialogs"] == ([] if keep_csp else ["alert:canary"])
    assert probe["title"] == HOSTILE_TITLE and page.find_all("title")[0].text == HOSTILE_TITLE

    # Nothing from the data became an element or an attribute: only the report's own tags, no handlers,
    # no links, scripts ours (and the probe), images the thumbnails (and the canary), SVG the histogram's.
    nodes = [node for node in page.iter() if node.tag != "#document"]
    assert {node.tag for node in nodes} <= REPORT_TAGS
    handlers = [(n.tag, a) for n in nodes for a in n.attrs if a.startswith("on") and n.attrs.get("id") != "canary"]
    assert handlers == []
    for node in nodes:
        for name in ("href", "src", "action", "formaction", "xlink:href"):
            assert not node.attrs.get(name, "").strip().lower().startswith("javascript:"), node
    assert len(page.find_all("script")) == 2
    histogram_rows = page.by_id("distortions").find_all("tbody")[0].find_all("tr")
    assert len(page.find_all("svg")) == len(histogram_rows) == 1
    worst, review = page.by_id("worst"), page.by_id("review")
    thumbnails = worst.find_all("img")  # every file has its thumbnail, found under its name as the row holds it
    assert len(thumbnails) == len(shown_paths) and len(review.find_all("img")) == (len(shown_paths) + 1) // 2
    minis = page.by_id("images").find_all("img", class_="mini")
    assert len(minis) == len(shown_paths) and all(i.attrs["alt"] == "" for i in minis)
    assert len(page.find_all("img")) == len(thumbnails) + len(review.find_all("img")) + len(minis) + 1  # canary
    everyone = thumbnails + review.find_all("img") + minis
    assert all(i.attrs["src"].startswith("data:image/jpeg;base64,") for i in everyone)

    # Every string shown as its text, literally: names in the gallery (worst first: run order here), the alt
    # text and the table; no control character or direction override left raw anywhere.
    assert [node.text for node in worst.find_all("div", class_="path")] == shown_paths
    assert [image.attrs["alt"] for image in thumbnails] == shown_paths
    table_files = [row.find_all("td")[1].text for row in page.by_id("images").find_all("tbody")[0].find_all("tr")]
    assert table_files == [*shown_paths, str(Path(shown_paths[0]).parent / "err\\u202e.jpg")]
    assert not any(raw in node.text for node in page.iter() for raw in ("\x1b", "\x07", "\u202e"))
    assert all("\n" not in node.text for node in page.find_all(class_="path"))
    assert HOSTILE_ANSWER in worst.text and HOSTILE_DISTORTION in page.by_id("images").text
    assert histogram_rows[0].find_all("th")[0].text == HOSTILE_DISTORTION
    assert f"Engine {HOSTILE_ENGINE[0]} {HOSTILE_ENGINE[1]}, test-engine 1.0." in page.find_all("header")[0].text
    errors = page.by_id("errors").find_all("tbody")[0].find_all("td")
    assert [cell.text for cell in errors[1:]] == [HOSTILE_ERROR[0], HOSTILE_ERROR[1].replace("\x1b", "\\x1b")]
    # Links to the originals stay links to them: each href relative (no scheme, host or absolute path:
    # `javascript:alert('js').png` is `..%3A..`), and each, as the browser resolves it, names one of the files,
    # by its exact bytes; every file is linked from the table, the error row's missing file from nowhere.
    assert probe["links"], "no links to the originals"
    linked = set()
    for written, resolved, protocol in probe["links"]:
        assert not re.match(r"[A-Za-z][A-Za-z0-9+.-]*:|[/\\]", written) and protocol == "file:", written
        assert re.fullmatch(r"[A-Za-z0-9_.~%/-]+", written), written  # nothing but percent-encoded segments
        linked.add(unquote_to_bytes(urlsplit(resolved).path))
    assert linked == {os.fsencode(os.path.abspath(path)) for path in files}
    table_links = [a.attrs["href"] for a in page.by_id("images").find_all("a")]
    assert len(table_links) == len(files)
    # The EXIF strings are not on the page at all (it shows no EXIF column), so they cannot act there.
    text = report.read_text(encoding="utf-8")
    assert all(html.escape(value) not in text and value not in text for value in HOSTILE_EXIF)
