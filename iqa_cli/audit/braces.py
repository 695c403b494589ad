"""Brace patterns in given paths (``shards/{00000..00099}.tar``, ``{train,val}/``), expanded as a shell would.

The rules are bash's, without a shell:

- ``{a,b,c}``: each alternative in turn; alternatives may be empty (``x{,-small}.jpg``) and hold patterns.
- ``{1..10}``, ``{10..1}``, ``{1..10..3}``: a range of integers, rising or falling, with an optional step.
  When either end has a leading zero (``{00000..00099}``), every number is padded with zeros to the longer
  end's width; ``{0..10}`` is not padded.
- ``{a..e}``: a range of single letters.
- Several groups multiply, left to right: ``{a,b}{1,2}`` is ``a1 a2 b1 b2``.
- Anything else is literal: ``{}``, ``{a}``, an unmatched brace.

Expansion is lazy: ``{0..99999999}`` costs nothing until it is walked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_INTEGERS = re.compile(r"(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?")
_LETTERS = re.compile(r"([A-Za-z])\.\.([A-Za-z])(?:\.\.(-?\d+))?")


@dataclass(frozen=True)
class _Range:
    """``{first..last..step}``: numbers (padded to `width`, 0: not) or letters."""

    first: int
    last: int
    step: int
    width: int
    letters: bool

    def __iter__(self) -> Iterator[str]:
        step = self.step if self.first <= self.last else -self.step
        for value in range(self.first, self.last + (1 if step > 0 else -1), step):
            if self.letters:
                yield chr(value)
            elif self.width:
                yield f"-{-value:0{self.width - 1}d}" if value < 0 else f"{value:0{self.width}d}"
            else:
                yield str(value)


_Part = str | _Range | list["list[_Part]"]  # text, a range, or alternatives (each a sequence of parts)


def has_braces(text: str) -> bool:
    """Whether `text` holds a group that expands (a list or a range), not only literal braces."""
    return any(not isinstance(part, str) for part in _parse(text))


def expand_braces(pattern: str) -> Iterator[str]:
    """The paths `pattern` stands for, in order (the pattern itself when it holds no group)."""
    yield from _expand(_parse(pattern))


def _expand(parts: list[_Part]) -> Iterator[str]:
    if not parts:
        yield ""
        return
    head, rest = parts[0], parts[1:]
    if isinstance(head, str):
        choices: Iterator[str] = iter((head,))
    elif isinstance(head, _Range):
        choices = iter(head)
    else:
        choices = (text for alternative in head for text in _expand(alternative))
    for choice in choices:
        for tail in _expand(rest):
            yield choice + tail


def _parse(text: str) -> list[_Part]:
    """`text` as a sequence of parts; literal text is merged so a part list never holds two strings in a row."""
    parts: list[_Part] = []
    literal = ""
    i = 0
    while i < len(text):
        if text[i] == "{":
            close = _closing(text, i)
            group = _group(text[i + 1 : close]) if close is not None else None
            if group is not None and close is not None:
                if literal:
                    parts.append(literal)
                    literal = ""
                parts.append(group)
                i = close + 1
                continue
        literal += text[i]
        i += 1
    if literal:
        parts.append(literal)
    return parts


def _closing(text: str, start: int) -> int | None:
    """The index of the brace closing the one at `start`, nesting counted; None when it is never closed."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def _group(inside: str) -> _Part | None:
    """What ``{inside}`` expands to: alternatives, a range, or None (literal braces)."""
    alternatives = _split_commas(inside)
    if len(alternatives) > 1:
        return [_parse(alternative) for alternative in alternatives]
    if match := _INTEGERS.fullmatch(inside):
        first, last, step = match.groups()
        padded = any(len(end.lstrip("-")) > 1 and end.lstrip("-").startswith("0") for end in (first, last))
        width = max(len(first), len(last)) if padded else 0
        return _Range(int(first), int(last), abs(int(step or 1)) or 1, width, letters=False)
    if match := _LETTERS.fullmatch(inside):
        first, last, step = match.groups()
        return _Range(ord(first), ord(last), abs(int(step or 1)) or 1, 0, letters=True)
    return None


def _split_commas(inside: str) -> list[str]:
    """`inside` split at its commas outside nested braces."""
    pieces, depth, start = [], 0, 0
    for i, char in enumerate(inside):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "," and depth == 0:
            pieces.append(inside[start:i])
            start = i + 1
    pieces.append(inside[start:])
    return pieces
