"""Find the image files under the given paths, lazily and in a stable order, reporting what it cannot read.

Rules, in the order they apply:

- Every path given is used as is. A file named explicitly is always yielded, whatever its name or
  extension (the loader says what it is). A folder is walked; anything else is a problem.
- Walking visits one folder at a time with `os.scandir`: its files (sorted by name, by code point)
  come before its subfolders (also sorted), each subfolder walked completely before the next. So
  the order is deterministic and a folder's own images are listed together. Memory holds the
  entries of the folders on the current branch, never the whole collection.
- Only files whose extension is in `extensions` (default `IMAGE_EXTENSIONS`, and with ``containers=True``
  also `WALKED_CONTAINER_EXTENSIONS`: ``.tar`` shards, whose images `containers.py` lists) are yielded;
  extensions compare case-insensitively (``.JPG`` is ``.jpg``).
- Names starting with a dot (files and folders) are skipped unless `include_hidden`; a path given
  explicitly is used even when hidden.
- `include` / `exclude` are glob patterns (`fnmatch`: ``*``, ``?``, ``[...]``; ``*`` also matches
  ``/``), compared case-insensitively with both the file name and the path relative to the given
  folder, written with ``/`` (``2021/beach/a.jpg``). A file is yielded when no `include` is given or
  one of them matches, and no `exclude` matches. `exclude` also prunes folders whose name or
  relative path matches (``--exclude @eaDir`` skips Synology thumbnail folders whole).
- Symlinked folders are followed. Each real folder (by ``(st_dev, st_ino)``) is walked once: a folder
  reached again through another link is skipped silently, and a link back to a folder on the current
  branch is reported as ``symlink_loop``. A file reached through several links is yielded once, under
  the first path that reached it; the bookkeeping grows with the number of folders and of file
  symlinks, not with the number of files.
- With ``follow_outside=False``, a link whose target lies outside the folder it was found in is not
  followed but reported as ``outside_folder``: for a walked folder, outside the real path of the folder
  given; for a path given directly (or listed), outside its own parent folder. So a scraped folder or
  list cannot pull a file from elsewhere on the machine (its size and hash) into a report.

Problems are yielded as `DiscoveryProblem`, never raised: ``not_found`` (a given path does not
exist), ``unreadable_dir`` (a folder cannot be listed), ``symlink_loop``, ``broken_link`` (a link
with an image name whose target is missing), ``not_a_file`` (a given path is a pipe or device),
``unreadable`` (a file or link cannot be examined), ``outside_folder``, ``missing_backend`` (a URL whose
fsspec backend is not installed).

`discover_with_roots` (the audit's discovery) also takes brace patterns and URLs:

- A path holding a brace pattern (``shards/{00000..00099}.tar``, ``{a,b}``; see `braces.py`) stands for
  each of its expansions in order, as if each had been given, so a missing one is a ``not_found`` of its
  own. A local path that exists as written is used as written, braces and all.
- A URL (``s3://``, ``gs://``, ``https://``, ``memory://`` ...; see `remote.py`) is read through fsspec: a
  file is yielded as a `RemoteFile` whatever its name; a folder (a URL the backend says is one, or any URL
  ending with ``/``) is walked in the order above (files, then subfolders, by name) with the same filters
  and dot-name rule; there are no links to follow. A URL's brace patterns are always expanded.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iqa_cli.audit import remote
from iqa_cli.audit.braces import expand_braces, has_braces
from iqa_cli.audit.remote import MissingBackend, RemoteFile, is_url

_BASE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".avif")
# HEIC/HEIF decode only through pillow-heif (the `heif` extra); load.py registers its opener when it
# is installed, so we list those files only then. find_spec looks without importing the codec.
HEIF_EXTENSIONS = (".heic", ".heif")
HEIF_AVAILABLE = importlib.util.find_spec("pillow_heif") is not None

IMAGE_EXTENSIONS: frozenset[str] = frozenset(_BASE_EXTENSIONS + (HEIF_EXTENSIONS if HEIF_AVAILABLE else ()))
"""The lower-case extensions (with the dot) that folder walking yields by default."""

WALKED_CONTAINER_EXTENSIONS: frozenset[str] = frozenset((".tar",))
"""What a walk also yields with ``containers=True`` (an audit): WebDataset shards. Not ``.parquet``: a report
folder holds Parquet reports, so Parquet files are read only when named (or listed)."""


@dataclass(frozen=True)
class DiscoveryProblem:
    """A path that could not be searched: a short machine-readable code and a message for people."""

    path: str
    code: str
    message: str


@dataclass
class _Options:
    recursive: bool
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    include_hidden: bool
    extensions: frozenset[str]
    follow_outside: bool


@dataclass
class _Seen:
    """What has been yielded or walked, to yield every real file once."""

    # real folder key -> (root, relative path) it was walked as
    dirs: dict[tuple[int, int], tuple[Path, str]] = field(default_factory=dict)
    # keys of files yielded through a link or named explicitly (regular files are covered by `dirs`)
    files: set[tuple[int, int]] = field(default_factory=set)


def discover(
    paths: Iterable[str | Path],
    *,
    recursive: bool = True,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    include_hidden: bool = False,
    extensions: Iterable[str] | None = None,
    follow_outside: bool = True,
) -> Iterator[Path | DiscoveryProblem]:
    """Yield the image files under `paths` (files and folders, mixed), and problems, lazily.

    See the module docstring for the order, filters, links and problem codes. Paths come out as given (a
    relative folder gives relative paths); `discover_with_roots` makes them absolute and says where each came from.
    """
    options = _options(
        recursive=recursive,
        include=include,
        exclude=exclude,
        include_hidden=include_hidden,
        extensions=extensions,
        follow_outside=follow_outside,
    )
    seen = _Seen()
    for given in paths:
        yield from _given(Path(given), options, seen)


def discover_with_roots(
    paths: Iterable[str | Path], **options: Any
) -> Iterator[tuple[str, Path | RemoteFile | DiscoveryProblem]]:
    """`discover`, with every path made absolute (so a report names the same files from any folder) and paired
    with the path it was found under, as given (for display): (root, file or problem). Brace patterns and URLs
    are taken too (see the module docstring)."""
    seen = _Seen()
    settings = _options(**options)
    for given in paths:
        root = str(given)
        if is_url(root):
            shown_root = remote.shown(root)
            for url in expand_braces(root):
                for found in _given_url(url, settings):
                    yield shown_root, found
            continue
        for path in expanded(root):
            for item in _given(Path(os.path.abspath(path)), settings, seen):
                yield root, item


def expanded(given: str) -> Iterator[str]:
    """The paths `given` stands for: its brace pattern's expansions, or itself (a URL's expansions, or a local
    path that exists as written, braces and all)."""
    if not has_braces(given) or (not is_url(given) and os.path.lexists(given)):
        yield given
    else:
        yield from expand_braces(given)


def missing_given(paths: Iterable[str], *, shown_at_most: int = 10) -> str | None:
    """When none of the local `paths` (their patterns expanded) exists: the missing ones, as a message's text
    (``a, b and 97 more``); None when one exists or a URL is given (a URL is looked at only when walked)."""
    missing: list[str] = []
    more = 0
    for given in paths:
        if is_url(given):
            return None
        for path in expanded(given):
            if os.path.lexists(path):
                return None
            if len(missing) < shown_at_most:
                missing.append(path)
            else:
                more += 1
    if not missing:
        return None
    return ", ".join(missing) + (f" and {more} more" if more else "")


def require_backends(paths: Iterable[str]) -> None:
    """`MissingBackend` (exit code 2) for the first URL in `paths` whose fsspec backend is not installed."""
    for given in paths:
        if is_url(given):
            remote.require_backend(given)


def _options(
    *,
    recursive: bool = True,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    include_hidden: bool = False,
    extensions: Iterable[str] | None = None,
    follow_outside: bool = True,
    containers: bool = False,
) -> _Options:
    default = IMAGE_EXTENSIONS | WALKED_CONTAINER_EXTENSIONS if containers else IMAGE_EXTENSIONS
    return _Options(
        recursive=recursive,
        include=tuple(p.lower() for p in include),
        exclude=tuple(p.lower() for p in exclude),
        include_hidden=include_hidden,
        extensions=default if extensions is None else _normalise_extensions(extensions),
        follow_outside=follow_outside,
    )


def _given(path: Path, options: _Options, seen: _Seen) -> Iterator[Path | DiscoveryProblem]:
    """One path given: a file, a folder walked, or a problem."""
    if not options.follow_outside and os.path.islink(path) and not _inside(path, os.path.realpath(path.parent)):
        yield _outside(path)
        return
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            yield DiscoveryProblem(str(path), "broken_link", "the link points to nothing")
        else:
            yield DiscoveryProblem(str(path), "not_found", "no such file or folder; check the path")
        return
    except OSError as exc:
        yield DiscoveryProblem(str(path), "unreadable", f"cannot examine the path: {exc.strerror or exc}")
        return
    if stat.S_ISDIR(info.st_mode):
        yield from _walk(path, (info.st_dev, info.st_ino), options, seen)
    elif stat.S_ISREG(info.st_mode):
        key = (info.st_dev, info.st_ino)
        if key not in seen.files and not _walked_already(Path(os.path.realpath(path)), options, seen):
            seen.files.add(key)
            yield path
    else:
        yield DiscoveryProblem(str(path), "not_a_file", "not a regular file or folder (a pipe or device?)")


def _given_url(url: str, options: _Options) -> Iterator[RemoteFile | DiscoveryProblem]:
    """One URL given: a remote file, a remote folder walked, or a problem."""
    try:
        found = remote.look(url)
    except MissingBackend as exc:
        yield DiscoveryProblem(remote.shown(url), "missing_backend", str(exc))
        return
    except FileNotFoundError:
        yield DiscoveryProblem(remote.shown(url), "not_found", "no such file or folder at this URL; check it")
        return
    except OSError as exc:
        yield DiscoveryProblem(remote.shown(url), "unreadable", f"cannot examine the URL: {exc.strerror or exc}")
        return
    if isinstance(found, RemoteFile):
        yield found
    else:
        yield from _walk_url(found, options)


def _walk_url(root: str, options: _Options) -> Iterator[RemoteFile | DiscoveryProblem]:
    """Walk a remote folder depth-first, files before subfolders, as `_walk` walks a local one."""
    # Each stack entry: the subfolders (URL, relative path) of a folder on the current branch still to visit.
    stack: list[Iterator[tuple[str, str]]] = [iter([(root, "")])]
    while stack:
        nxt = next(stack[-1], None)
        if nxt is None:
            stack.pop()
            continue
        folder, rel = nxt
        try:
            files, subfolders = remote.listing(folder)
        except OSError as exc:
            problem = exc.strerror or str(exc)
            yield DiscoveryProblem(remote.shown(folder), "unreadable_dir", f"cannot list the folder: {problem}")
            continue
        for file in files:
            name = file.name
            entry_rel = f"{rel}/{name}" if rel else name
            if (options.include_hidden or not name.startswith(".")) and _selected(name, entry_rel, options):
                yield file
        children = []
        for sub in subfolders if options.recursive else []:
            name = sub.rstrip("/").rsplit("/", 1)[-1]
            entry_rel = f"{rel}/{name}" if rel else name
            if (options.include_hidden or not name.startswith(".")) and not _matches(options.exclude, name, entry_rel):
                children.append((sub, entry_rel))
        stack.append(iter(children))


def _normalise_extensions(extensions: Iterable[str]) -> frozenset[str]:
    return frozenset(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)


def _inside(path: Path, real_folder: str) -> bool:
    """Whether `path`, its links resolved, lies in the (already resolved) `real_folder`."""
    real = os.path.realpath(path)
    return real == real_folder or real.startswith(real_folder.rstrip(os.sep) + os.sep)


def _outside(path: Path) -> DiscoveryProblem:
    return DiscoveryProblem(
        str(path), "outside_folder", "a link to a place outside the folder it is in; not followed (--follow-outside)"
    )


def _walk(root: Path, root_key: tuple[int, int], options: _Options, seen: _Seen) -> Iterator[Path | DiscoveryProblem]:
    """Walk one given folder depth-first, files before subfolders, without recursion."""
    if root_key in seen.dirs:
        return
    seen.dirs[root_key] = (root, "")
    real_root = os.path.realpath(root)
    subdirs = yield from _scan(root, "", options, seen, real_root)
    # Each stack entry: the folder's key (to leave the branch), and the subfolders still to visit.
    stack = [(root_key, iter(subdirs))]
    branch = {root_key}
    while stack:
        key, pending = stack[-1]
        nxt = next(pending, None)
        if nxt is None:
            stack.pop()
            branch.discard(key)
            continue
        path, rel, sub_key = nxt
        if sub_key in branch:
            yield DiscoveryProblem(str(path), "symlink_loop", "a link back to a folder that contains it; not followed")
            continue
        if sub_key in seen.dirs:
            continue  # the same real folder through another link: already walked
        seen.dirs[sub_key] = (root, rel)
        children = yield from _scan(path, rel, options, seen, real_root)
        branch.add(sub_key)
        stack.append((sub_key, iter(children)))


def _scan(folder: Path, rel: str, options: _Options, seen: _Seen, real_root: str) -> Iterator[Path | DiscoveryProblem]:
    """Yield the selected files of one folder; return its subfolders to walk as (path, rel, key)."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        folder_dev = os.stat(folder).st_dev
    except OSError as exc:
        yield DiscoveryProblem(str(folder), "unreadable_dir", f"cannot list the folder: {exc.strerror or exc}")
        return []
    subdirs: list[tuple[Path, str, tuple[int, int]]] = []
    for entry in entries:
        name = entry.name
        if name.startswith(".") and not options.include_hidden:
            continue
        entry_rel = f"{rel}/{name}" if rel else name
        path = folder / name
        try:
            is_link = entry.is_symlink()
            if entry.is_dir():
                if options.recursive and not _matches(options.exclude, name, entry_rel):
                    if is_link and not options.follow_outside and not _inside(path, real_root):
                        yield _outside(path)
                        continue
                    info = entry.stat()
                    subdirs.append((path, entry_rel, (info.st_dev, info.st_ino)))
                continue
            if not _selected(name, entry_rel, options):
                continue
            if not entry.is_file():
                if is_link and not os.path.exists(path):
                    yield DiscoveryProblem(str(path), "broken_link", "the link points to nothing")
                continue
            if is_link:
                if not options.follow_outside and not _inside(path, real_root):
                    yield _outside(path)
                    continue
                # A link to a file: yield it unless its target was (or will be) yielded directly.
                info = entry.stat()
                key = (info.st_dev, info.st_ino)
                if key in seen.files or _walked_already(Path(os.path.realpath(path)), options, seen):
                    continue
                seen.files.add(key)
            elif seen.files and (folder_dev, entry.inode()) in seen.files:
                continue  # already yielded through a link or as an explicit path
        except OSError as exc:
            yield DiscoveryProblem(str(path), "unreadable", f"cannot examine: {exc.strerror or exc}")
            continue
        yield path
    return subdirs


def _walked_already(real_file: Path, options: _Options, seen: _Seen) -> bool:
    """Whether the walk has already yielded this (non-link) file from a folder it listed."""
    try:
        info = os.stat(real_file.parent)
    except OSError:
        return False
    walked = seen.dirs.get((info.st_dev, info.st_ino))
    if walked is None:
        return False
    _, rel = walked
    name = real_file.name
    entry_rel = f"{rel}/{name}" if rel else name
    hidden_ok = options.include_hidden or not name.startswith(".")
    return hidden_ok and _selected(name, entry_rel, options)


def _selected(name: str, rel: str, options: _Options) -> bool:
    """Whether a file passes the extension and include/exclude filters."""
    if os.path.splitext(name)[1].lower() not in options.extensions:
        return False
    if options.include and not _matches(options.include, name, rel):
        return False
    return not _matches(options.exclude, name, rel)


def _matches(patterns: tuple[str, ...], name: str, rel: str) -> bool:
    """Whether any (lower-cased) pattern matches the name or the relative path, ignoring case."""
    if not patterns:
        return False
    name, rel = name.lower(), rel.lower()
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(rel, p) for p in patterns)
