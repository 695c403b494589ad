"""Test helpers: schema rows, small real images, and a minimal DOM to query written or rendered pages."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
from iqa_cli.images import FileFacts
from iqa_cli.report.schema import error_row
from iqa_cli.testing.rows import STAMP, ok_row  # noqa: F401 (the pages' tests import it from here)
from PIL import Image

EVIL_NAME = "<img src=x onerror=alert(1)>.png"  # no "/" so every POSIX filesystem allows it
EVIL_ANSWER = "<script>document.title='pwned'</script> Blur & <b>noise</b>"


def content_hash(path: str | Path) -> str:
    """What iqa's loader records as a row's content_hash: BLAKE2b-128 of the file's bytes, hex."""
    with open(path, "rb") as file:
        return hashlib.blake2b(file.read(), digest_size=16).hexdigest()


def failed_row(path: str, code: str = "truncated", message: str = "the image data ends early") -> dict[str, Any]:
    """A complete error row."""
    return error_row(FileFacts(path=path), code, message, stamp=STAMP)


def save_image(path: Path, size: tuple[int, int] = (64, 48), seed: int = 0, mode: str = "RGB", **save: Any) -> Path:
    """A small real image with some texture, so JPEG encoding has work to do."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (size[1], size[0], 4 if mode == "RGBA" else 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode).save(path, **save)
    return path


@dataclass
class Node:
    """An element of a parsed page."""

    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text_parts: list[str | Node] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(part if isinstance(part, str) else part.text for part in self.text_parts)

    def iter(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.iter()

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        """Descendants by tag and exact attribute values (`class_` for class, matching one class name)."""
        found = []
        for node in self.iter():
            if tag is not None and node.tag != tag:
                continue
            wanted = dict(attrs)
            if "class_" in wanted and wanted.pop("class_") not in node.attrs.get("class", "").split():
                continue
            if all(node.attrs.get(key) == value for key, value in wanted.items()):
                found.append(node)
        return found

    def by_id(self, element_id: str) -> Node:
        matches = self.find_all(id=element_id)
        assert len(matches) == 1, f"expected one #{element_id}, found {len(matches)}"
        return matches[0]


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {key: value or "" for key, value in attrs})
        parent = self.stack[-1]
        parent.children.append(node)
        parent.text_parts.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {key: value or "" for key, value in attrs})
        self.stack[-1].children.append(node)
        self.stack[-1].text_parts.append(node)

    def handle_endtag(self, tag: str) -> None:
        # Close up to the matching open element; stray end tags are ignored, as browsers do.
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].text_parts.append(data)


def parse_page(text: str) -> Node:
    """The page as a tree of Nodes; what tests query instead of matching strings."""
    builder = _TreeBuilder()
    builder.feed(text)
    builder.close()
    return builder.root
