"""Links from the report to the original files: relative URLs, percent-encoded, for regular files only."""

from __future__ import annotations

import os
import stat
from urllib.parse import quote


def relative_href(name: str, page_dir: str | os.PathLike[str]) -> str | None:
    """The URL of the file `name` relative to a page in `page_dir`, or None where it is not a regular file.

    Relative, so the report folder and the photos can move together and the links still work. Every byte
    of every path segment but letters, digits and `_.-~` is percent-encoded (from the name's exact bytes,
    so a name that is not UTF-8 still links): a name such as `javascript:x` or `//host` cannot become a
    scheme, a host, a query or a fragment, nor leave the attribute it is written in.
    """
    try:
        if not stat.S_ISREG(os.stat(name).st_mode):
            return None
        # Lexical, not resolved: a browser resolves `..` in a URL the same way, whatever the symlinks.
        relative = os.path.relpath(os.path.abspath(name), os.path.abspath(page_dir))
    except (OSError, ValueError):  # gone, unreadable folder, an invalid name, another drive (Windows)
        return None
    return "/".join(quote(os.fsencode(segment), safe="") for segment in relative.replace(os.sep, "/").split("/"))
