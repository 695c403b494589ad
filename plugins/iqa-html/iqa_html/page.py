"""The HTML page of a report, as a stream of strings; every value from the data goes through `_e`."""

from __future__ import annotations

import base64
import functools
import hashlib
import html
from collections.abc import Iterable, Iterator
from importlib.resources import files

from iqa_cli.report.schema import safe_text
from iqa_cli.text import printable

from iqa_html.data import Entry, ReportData
from iqa_html.dupes import Group
from iqa_html.thumbs import Thumbnail

_RATING_RANK = {"bad": 1, "poor": 2, "fair": 3, "good": 4, "excellent": 5}
_VERDICT_RANK = {"error": 0, "bad": 1, "degraded": 2, "ok": 3}  # the table sorts verdicts worst first
_VERDICT_KEYS = ("ok", "degraded", "bad", "error")  # the only verdict class names and filter values


def _e(value: object) -> str:
    """Text or attribute value, escaped (quotes too): file names, answers and messages are untrusted.

    Shown as iqa shows such text everywhere a person reads it: the bytes of a non-UTF-8 name (lone
    surrogates, which UTF-8 cannot even write) as \\xNN, control characters (newlines, ESC) and direction
    overrides as visible escapes, so a name cannot break its line or read as something it is not.
    """
    return "" if value is None else html.escape(printable(_utf8(str(value))), quote=True)


def _utf8(text: str) -> str:
    """`text` as the schema writes it (a non-UTF-8 name's bytes as \\xNN); any other lone surrogate, which
    no file name decodes to but a row from elsewhere may hold, as \\udXXX: never a UnicodeEncodeError."""
    try:
        return safe_text(text)
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


@functools.cache
def _asset(name: str) -> str:
    return (files("iqa_html") / "static" / name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _verdict_key(entry: Entry) -> str:
    """The entry's verdict as a class name: one of ours (ok, degraded, bad, error), never the data's text."""
    if entry.status != "ok":
        return "error"
    return entry.verdict if entry.verdict in _VERDICT_KEYS else "unknown"


def _badge(entry: Entry) -> str:
    """The verdict as a word in a coloured badge: the colour helps, the word carries it."""
    key = _verdict_key(entry)
    word = entry.verdict if key == "unknown" else key
    return f'<span class="badge verdict-{key}">{_e(word)}</span>' if word else ""


def _linked(text: str, href: str | None) -> str:
    """`text` as a link to the original when there is one (a relative, percent-encoded URL: see links.py)."""
    return f'<a href="{_e(href)}">{_e(text)}</a>' if href else _e(text)


def _thumb_img(thumb: Thumbnail, alt: str, kind: str) -> str:
    """A thumbnail (data URI) on the checkerboard the stylesheet draws behind transparent pixels."""
    # The URI is ours (thumbs.py's base64 of an image it encoded), so it needs no escaping.
    return f'<img class="thumb {kind}" src="{thumb.uri}" width="{thumb.width}" height="{thumb.height}" alt="{_e(alt)}">'


def render(data: ReportData) -> Iterator[str]:
    """The whole page, in pieces to be written one after another."""
    css, script = _asset("report.css"), _asset("report.js")
    # No network at all, and only our own style and script run: even a string that escaped escaping
    # could not execute or fetch anything.
    csp = f"default-src 'none'; img-src data:; style-src {_csp_hash(css)}; script-src {_csp_hash(script)}"
    title = f"iqa report: {data.files:,} images"
    yield (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="iqa-html">\n<title>{_e(title)}</title>\n'
        f"<style>{css}</style>\n</head>\n<body>\n"
    )
    yield f"<header>\n<h1>{_e(title)}</h1>\n"
    engines = ", ".join(data.engines) or "none"
    yield f'<p class="muted">Engine {_e(engines)}. Generated {_e(data.generated_at)}.</p>\n</header>\n'
    yield from _summary(data)
    yield from _histogram(data)
    yield from _gallery("worst", "Worst images", data.worst, "No image was rated degraded or bad.")
    yield from _gallery(
        "review", "Needs review (least confident first)", data.review, "No answer fell under the confidence threshold."
    )
    yield from _errors(data)
    yield from _duplicates(data)
    yield from _table(data)
    yield f"<script>{script}</script>\n</body>\n</html>\n"


def _summary(data: ReportData) -> Iterator[str]:
    stats = [("files", "files", data.files), ("assessed", "assessed", data.assessed), ("errors", "errors", data.errors)]
    stats += [(name, name, count) for name, count in data.verdicts.items()]
    stats.append(("review", "needs review", data.needs_review))
    yield '<section id="summary">\n<h2>Summary</h2>\n<dl class="stats">\n'
    for key, label, count in stats:
        yield f'<div class="stat" id="stat-{_e(key)}"><dt>{_e(label)}</dt><dd>{count:,}</dd></div>\n'
    yield "</dl>\n</section>\n"


def _histogram(data: ReportData) -> Iterator[str]:
    yield '<section id="distortions">\n<h2>Distortions</h2>\n'
    if not data.distortions:
        yield "<p>No distortion was named.</p>\n</section>\n"
        return
    top = max(data.distortions.values())
    yield (
        '<table class="histogram">\n<thead><tr><th scope="col">distortion</th>'
        '<th scope="col" class="num">images</th><th scope="col" class="num">share</th>'
        '<th scope="col"><span class="sr">bar</span></th></tr></thead>\n<tbody>\n'
    )
    for name, count in data.distortions.most_common():
        share = count / data.assessed if data.assessed else 0.0
        # SVG, not a CSS background: browsers drop backgrounds when printing but keep SVG fills.
        bar = (
            f'<svg viewBox="0 0 100 1" preserveAspectRatio="none" aria-hidden="true">'
            f'<rect width="{100 * count / top:.2f}" height="1" fill="currentColor"/></svg>'
        )
        yield (
            f'<tr><th scope="row">{_e(name)}</th><td class="num">{count:,}</td>'
            f'<td class="num">{share:.0%}</td><td class="bar">{bar}</td></tr>\n'
        )
    yield "</tbody>\n</table>\n"
    yield (
        f'<p class="muted">{data.no_distortion:,} of {data.assessed:,} assessed images had no distortion '
        "named; an image may name several.</p>\n</section>\n"
    )


def _gallery(key: str, title: str, entries: list[Entry], empty: str) -> Iterator[str]:
    yield f'<section id="{key}">\n<h2>{_e(title)}</h2>\n'
    if not entries:
        yield f"<p>{_e(empty)}</p>\n</section>\n"
        return
    yield '<div class="gallery">\n'
    for entry in entries:
        thumb = entry.thumbnail
        if thumb is not None and thumb.uri is not None:
            picture = _thumb_img(thumb, entry.path, "card-thumb")
            if entry.href:  # the path below is the link for keyboards and screen readers; this one is for a click
                picture = f'<a href="{_e(entry.href)}" tabindex="-1" aria-hidden="true">{picture}</a>'
        else:
            problem = thumb.problem if thumb is not None else "no preview"
            picture = f'<div class="placeholder" role="img" aria-label="{_e(problem)}">{_e(problem)}</div>'
        yield (
            f'<figure class="card verdict-{_verdict_key(entry)}">{picture}<figcaption>'
            f'<div class="path">{_linked(entry.path, entry.href)}</div><dl>'
            f"<dt>answer</dt><dd>{_e(entry.answer)}</dd>"
            f"<dt>verdict</dt><dd>{_badge(entry)}</dd>"
            f"<dt>rating</dt><dd>{_e(entry.rating)}</dd>"
            f"<dt>score</dt><dd>{_num(entry.score)}</dd>"
            f"<dt>confidence</dt><dd>{_num(entry.confidence)}</dd>"
            "</dl></figcaption></figure>\n"
        )
    yield "</div>\n</section>\n"


def _errors(data: ReportData) -> Iterator[str]:
    if not data.errors:
        return
    codes = ", ".join(f"{_e(code)}: {count:,}" for code, count in data.error_codes.most_common())
    yield f'<section id="errors">\n<h2>Errors</h2>\n<p>{data.errors:,} files could not be assessed ({codes}).'
    if data.errors > len(data.failed):
        yield f" The first {len(data.failed):,} are listed; the other reports list them all."
    yield '</p>\n<table class="errors">\n<thead><tr><th scope="col">file</th><th scope="col">code</th>'
    yield '<th scope="col">message</th></tr></thead>\n<tbody>\n'
    for entry in data.failed:
        yield (
            f'<tr><td class="path">{_linked(entry.path, entry.href)}</td><td>{_e(entry.error_code)}</td>'
            f"<td>{_e(entry.error)}</td></tr>\n"
        )
    yield "</tbody>\n</table>\n</section>\n"


def _duplicates(data: ReportData) -> Iterator[str]:
    dupes = data.duplicates
    yield '<section id="duplicates">\n<h2>Duplicates</h2>\n'
    yield (
        f'<p><span id="exact-count">{dupes.exact_copies:,}</span> {_files(dupes.exact_copies)} the bytes of an '
        f'earlier one; <span id="near-count">{dupes.near_copies:,}</span> {_files(dupes.near_copies, "look")} '
        "like an earlier one (near copies, found by the iqa-dupes check where it is installed).</p>\n"
    )
    kinds = [
        ("exact", "Exact copies (same bytes)", list(dupes.exact.values()), dupes.exact_unlisted, "duplicate_of"),
        ("near", "Near copies (look alike)", dupes.near, dupes.near_unlisted, "findings"),
    ]
    for key, title, groups, unlisted, column in kinds:
        if not groups:
            continue
        yield f'<h3>{_e(title)}</h3>\n<ol class="groups" id="{key}-groups">\n'
        for group in groups:
            yield from _group(group)
        yield "</ol>\n"
        if unlisted:
            yield (
                f'<p class="muted">The first {len(groups):,} groups are listed; {unlisted:,} more copies are in '
                f"others (every row's <code>{column}</code> is in the Parquet, CSV and JSONL reports).</p>\n"
            )
    yield "</section>\n"


def _files(count: int, verb: str = "repeat") -> str:
    return f"file {verb}s" if count == 1 else f"files {verb}"


def _group(group: Group) -> Iterator[str]:
    yield f'<li class="group"><span class="muted">{group.size:,} files</span><ul>'
    for member in (group.first, *group.copies):
        note = f' <span class="muted">({_e(member.note)})</span>' if member.note else ""
        yield f'<li><span class="path">{_linked(member.path, member.href)}</span>{note}</li>'
    if group.more:
        yield f'<li class="muted">and {group.more:,} more</li>'
    yield "</ul></li>\n"


# (key for #sort=, header, sorts as number). Keys are ours, never data, so the script may use them.
_COLUMNS = [
    ("n", "#", True),
    ("file", "file", False),
    ("verdict", "verdict", True),
    ("answer", "answer", False),
    ("distortions", "distortions", False),
    ("rating", "rating", True),
    ("score", "score", True),
    ("confidence", "confidence", True),
    ("review", "review", False),
]
_RIGHT_ALIGNED = {"n", "score", "confidence"}  # verdict and rating sort by rank but read as words


def _table(data: ReportData) -> Iterator[str]:
    yield '<section id="all">\n<h2>All images</h2>\n<p class="muted">'
    if data.files > len(data.table):
        yield (
            f'<strong id="table-note">Showing the {len(data.table):,} worst of {data.files:,} images '
            "(errors, then bad, degraded and the lowest scores); every image is in the Parquet, CSV and "
            "JSONL reports.</strong> "
        )
    yield (
        '<span class="screen">Click a column header to sort; click again to reverse. Add <code>#sort=score</code> '
        "(or <code>#sort=-score</code>, descending) to the address to open the page sorted.</span></p>\n"
    )
    # Shown by the script (which does the filtering): without it, or on paper, they would do nothing.
    options = "".join(f'<option value="{key}">{key}</option>' for key in _VERDICT_KEYS)
    yield (
        '<div id="table-tools" class="screen" hidden>'
        '<label for="filter">Filter</label> <input type="search" id="filter" autocomplete="off" spellcheck="false" '
        'placeholder="text in file, answer or distortions"> '
        '<label for="verdict-filter">verdict</label> <select id="verdict-filter">'
        f'<option value="">any</option>{options}</select> '
        '<span id="filter-count" role="status"></span></div>\n'
    )
    yield '<table id="images" class="sortable">\n<thead><tr>'
    for key, label, numeric in _COLUMNS:
        kind = ' data-type="number"' if numeric else ""
        align = ' class="num"' if key in _RIGHT_ALIGNED else ""
        yield f'<th scope="col" data-key="{key}"{kind}{align}><button type="button">{label}</button></th>'
    yield "</tr></thead>\n<tbody>\n"
    for chunk in _batched(_row(entry) for entry in data.table):
        yield "".join(chunk)
    yield "</tbody>\n</table>\n</section>\n"


def _row(entry: Entry) -> str:
    answer = f"{entry.error_code or 'error'}: {entry.error or ''}" if entry.status != "ok" else entry.answer
    key = _verdict_key(entry)
    rating_rank = _RATING_RANK.get(entry.rating or "", "")
    score = "" if entry.score is None else repr(float(entry.score))
    confidence = "" if entry.confidence is None else repr(float(entry.confidence))
    thumb = entry.table_thumbnail
    if thumb is not None and thumb.uri is not None:
        picture = _thumb_img(thumb, "", "mini")  # decorative: the name beside it says what it is
    elif thumb is not None:
        picture = f'<span class="mini placeholder" title="{_e(thumb.problem)}">no preview</span>'
    else:
        picture = ""
    return (
        f'<tr class="verdict-{key}" data-verdict="{key}">'
        f'<td class="num" data-v="{entry.order}">{entry.order}</td>'
        f'<td class="path">{picture}{_linked(entry.path, entry.href)}</td>'
        f'<td data-v="{_VERDICT_RANK.get(key, "")}">{_badge(entry)}</td><td>{_e(answer)}</td>'
        f"<td>{_e(', '.join(entry.distortions))}</td>"
        f'<td data-v="{rating_rank}">{_e(entry.rating)}</td>'
        f'<td class="num" data-v="{score}">{_num(entry.score)}</td>'
        f'<td class="num" data-v="{confidence}">{_num(entry.confidence)}</td>'
        f"<td>{'yes' if entry.needs_review else ''}</td></tr>\n"
    )


def _batched(rows: Iterable[str], size: int = 500) -> Iterator[list[str]]:
    """Rows in groups, so the writer does a few hundred writes instead of one per row or one huge string."""
    chunk: list[str] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
