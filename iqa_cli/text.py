"""Text that strangers chose (file names, EXIF strings, messages quoting them), made safe to show a person.

A file name may hold terminal escape sequences (ESC [ ... to recolour or retitle a terminal, OSC 8 links),
other control bytes, or Unicode direction overrides that make a name read differently from what it is. Every
human-facing output (the Rich summary, stderr, --log-file, `iqa report`'s lines) shows them as visible escapes
instead; the reports (Parquet, JSONL, CSV) keep the exact text.
"""

from __future__ import annotations

import re

# C0 controls (newline and tab included: a name must stay on its line), DEL, C1 controls, and the bidi
# embedding, override and isolate marks.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` with every control character and direction override shown as an escape (\\x1b, \\u202e)."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


def shown(text: object) -> str:
    """`text` for Rich: printable, and its square brackets escaped so that it is never read as markup."""
    from rich.markup import escape

    return escape(printable(str(text)))
