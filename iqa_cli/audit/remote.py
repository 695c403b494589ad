"""URLs read through fsspec (``s3://``, ``gs://``, ``https://``, ``memory://`` ...): what a URL names, a folder's
listing, a file's bytes (all of them, or a range), and the URL as a report may show it.

fsspec is imported only here and only for a URL, so iqa runs without it (the ``remote`` extra adds it with the
HTTP backend; other backends are their own packages, such as ``s3fs`` or ``gcsfs``).
Credentials are the backend's business: its usual environment variables and configuration files (AWS_*,
GOOGLE_APPLICATION_CREDENTIALS, ...). A URL may carry ``user:password@`` (HTTP basic authentication): it is
used to read, never shown (`shown`), and neither are the values of query parameters that hold signatures or
tokens (presigned URLs). Every error message from a backend goes through `scrub` before anyone sees it.

A file's version, for incremental runs, is its size and modification time or its ETag (or content checksum),
as the backend's ``info`` gives them (`RemoteStat`); a backend that gives neither has no version, and its files
are read again on every run.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from iqa_cli.errors import UsageError
from iqa_cli.install import install_hint

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s?#]*@")
# Query parameters of presigned and SAS URLs (S3, GCS, Azure) and of token links: their values are secrets.
_SECRET_PARAMETER = re.compile(r"signature|credential|token|secret|password|passwd|key|^sig$|^auth", re.IGNORECASE)
_SECRET_IN_TEXT = re.compile(
    r"(?P<name>[\w.-]*(?:signature|credential|token|secret|password|passwd|key|sig|auth)[\w.-]*)=[^&\s'\"]+",
    re.IGNORECASE,
)
# The pip package of fsspec's backends that live outside fsspec, by protocol (fsspec's own names).
_BACKEND_PACKAGES = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
    "adl": "adlfs",
    "hf": "huggingface_hub",
    "sftp": "paramiko",
    "ssh": "paramiko",
    "oci": "ocifs",
    "webdav": "webdav4",
}
_HTTP = frozenset(("http", "https"))  # fsspec's HTTP backend needs aiohttp: the `remote` extra installs both
# info keys that hold a modification time (s3fs, gcsfs, adlfs, sftp/local, HTTP's header), and a version tag.
_MTIME_KEYS = ("mtime", "LastModified", "last_modified", "updated", "modified", "Last-Modified")
_TAG_KEYS = ("ETag", "etag", "md5Hash", "Content-MD5", "Digest", "checksum")


class MissingBackend(UsageError):
    """A URL whose fsspec backend is not installed (or that no backend reads)."""


@dataclass(frozen=True)
class RemoteStat:
    """A remote file's version in the fields the results store compares (`os.stat_result`'s names): its size, its
    modification time and a number derived from its ETag; 0 where the backend gives none."""

    st_size: int
    st_mtime_ns: int
    st_ino: int  # a 63-bit hash of the ETag (or checksum), 0 without one
    st_ctime_ns: int = 0


@dataclass(frozen=True)
class RemoteFile:
    """A file named by a URL: `url` to read it (credentials included, so never in a repr), `path` as the report
    shows it."""

    url: str = field(repr=False)
    path: str
    size: int | None = None
    stat: RemoteStat | None = None  # None: not known yet (`examined` looks), or the backend gives none

    @property
    def name(self) -> str:
        """The file's name, the last part of the URL's path (for the extension and the filters)."""
        return urlsplit(self.url).path.rstrip("/").rsplit("/", 1)[-1]


def is_url(text: str) -> bool:
    """Whether `text` is a URL (``scheme://...``) rather than a local path."""
    return _SCHEME.match(text) is not None


def protocol(url: str) -> str:
    """The URL's scheme, lower-case (``s3``, ``https``)."""
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else ""


def shown(url: str) -> str:
    """`url` as it may be shown: without ``user:password@`` and without the values of secret query parameters."""
    if not is_url(url):
        return url
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = parts.query
    if query:
        kept = [(name, value) for name, value in parse_qsl(query, keep_blank_values=True)]
        if any(_SECRET_PARAMETER.search(name) for name, _ in kept):
            query = urlencode([(n, v) for n, v in kept if not _SECRET_PARAMETER.search(n)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub(text: str) -> str:
    """A backend's message with any ``user:password@`` and secret ``name=value`` in it removed."""
    text = _USERINFO.sub(r"\g<scheme>", text)
    return _SECRET_IN_TEXT.sub(r"\g<name>=...", text)


def require_backend(url: str) -> None:
    """Nothing when the backend of `url` can be loaded; else `MissingBackend` saying what to install."""
    name = protocol(url)
    try:
        import fsspec
    except ImportError:
        raise MissingBackend(_needs(name, None)) from None
    try:
        fsspec.get_filesystem_class(name)
    except ImportError as exc:
        raise MissingBackend(_needs(name, str(exc))) from None
    except ValueError:
        raise MissingBackend(
            f"iqa cannot read {name}:// URLs: fsspec has no backend of that name (s3://, gs://, https://, ... work"
            " with their backend installed); give a local path or another URL"
        ) from None


def _needs(name: str, backend_error: str | None) -> str:
    """What to install for `name` URLs: fsspec (`backend_error` None: fsspec itself is missing) or the backend."""
    package = _BACKEND_PACKAGES.get(name)
    if name in _HTTP:
        return f"reading {name}:// URLs needs fsspec and aiohttp: {install_hint('remote')}"
    if backend_error is None:
        then = f", then pip install {package}" if package else ""
        return f"reading {name}:// URLs needs fsspec: {install_hint('remote')}{then}"
    if package:
        return f"reading {name}:// URLs needs the {package} package: pip install {package}"
    return f"reading {name}:// URLs needs fsspec's backend for them: {backend_error}"


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of `url` and the path on it (fsspec caches the filesystem per process)."""
    require_backend(url)
    from fsspec.core import url_to_fs

    return _calling(url_to_fs, url)


def look(url: str) -> RemoteFile | str:
    """What `url` names: a file (with its size and version), or the folder URL (ending with ``/``) to walk.

    A URL ending with ``/`` is a folder (over HTTP, where every URL answers like a file, only such a URL is).
    Raises FileNotFoundError when there is nothing there, OSError (scrubbed) when the backend fails.
    """
    if url.endswith("/"):
        return url
    fs, path = filesystem(url)
    info = _calling(fs.info, path)
    if info.get("type") == "directory":
        return url + "/"
    return _file(url, info)


def listing(folder: str) -> tuple[list[RemoteFile], list[str]]:
    """The files of the folder URL `folder` (ending with ``/``) and its subfolders' URLs, each sorted by name.

    The entries' URLs are `folder` + their name, so they keep the form (and credentials) the folder was given in.
    """
    fs, path = filesystem(folder)
    entries = _calling(fs.ls, path, detail=True)
    base = path.rstrip("/")
    files: dict[str, RemoteFile] = {}
    folders: dict[str, str] = {}
    for entry in entries:
        name = _child_name(str(entry.get("name", "")), base)
        if not name or name in (".", ".."):
            continue
        if entry.get("type") == "directory":
            folders[name] = f"{folder}{name}/"
        else:
            files[name] = _file(folder + name, entry)
    return [files[n] for n in sorted(files)], [folders[n] for n in sorted(folders)]


def examined(file: RemoteFile) -> RemoteFile:
    """`file` with its size and version from the backend's ``info``, when its listing did not give them; as it
    was when ``info`` fails (the read will say why)."""
    if file.stat is not None:
        return file
    try:
        fs, path = filesystem(file.url)
        info = _calling(fs.info, path)
    except OSError:
        return file
    return _file(file.url, info)


def read(url: str, offset: int = 0, size: int | None = None, *, limit: int) -> bytes:
    """`size` bytes of `url` from `offset` (one ranged request), or with `size` None the whole file, at most
    `limit` + 1 bytes of it. OSError (scrubbed) on failure; FileNotFoundError when it is gone."""
    fs, path = filesystem(url)
    if size is None:
        with _calling(fs.open, path, "rb") as handle:
            return bytes(_calling(handle.read, limit + 1))
    data = bytes(_calling(fs.cat_file, path, start=offset, end=offset + size))
    if len(data) > size:  # a server that ignores Range answers with the whole file
        raise OSError(errno.EIO, "the server does not answer range requests, so a member cannot be read in place")
    return data


def open_file(url: str) -> io.RawIOBase:
    """`url` open for reading and seeking (a tar shard, a Parquet file): every failure of the backend is an
    OSError with a scrubbed message, so the readers of containers see one kind of read error."""
    fs, path = filesystem(url)
    return _Checked(_calling(fs.open, path, "rb"))


class _Checked(io.RawIOBase):
    """A backend's file whose exceptions are OSErrors with scrubbed messages."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = _calling(self._handle.read, len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return int(_calling(self._handle.seek, offset, whence))

    def tell(self) -> int:
        return int(_calling(self._handle.tell))

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):  # read-only: nothing is lost when closing fails
                self._handle.close()
        super().close()


def _calling(function: Any, *args: Any, **kwargs: Any) -> Any:
    """`function(...)`, its exceptions as FileNotFoundError, PermissionError or OSError with scrubbed messages:
    backends raise their own kinds (aiohttp's, botocore's, ValueError), and their text may hold a URL's secrets."""
    try:
        return function(*args, **kwargs)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no such file or folder") from None
    except PermissionError as exc:
        raise PermissionError(errno.EACCES, scrub(str(exc)) or "permission denied") from None
    except OSError as exc:
        raise OSError(exc.errno or errno.EIO, scrub(exc.strerror or str(exc)) or type(exc).__name__) from None
    except Exception as exc:  # a backend's own exception (a refused connection, an HTTP 403, bad credentials)
        raise OSError(errno.EIO, scrub(f"{type(exc).__name__}: {exc}")) from None


def _child_name(entry: str, base: str) -> str:
    """An entry's name relative to the folder listed (backends list full paths or URLs)."""
    entry = entry.rstrip("/")
    if is_url(entry):  # HTTP lists URLs: compare paths, the host (and credentials) aside
        entry, base = urlsplit(entry).path.rstrip("/"), urlsplit(base).path.rstrip("/")
    if entry.startswith(base + "/"):
        entry = entry[len(base) + 1 :]
    return entry.rsplit("/", 1)[-1] if "/" in entry else entry


def _file(url: str, info: Mapping[str, Any]) -> RemoteFile:
    size = info.get("size")
    return RemoteFile(url, shown(url), size if isinstance(size, int) else None, _version(url, info))


def _version(url: str, info: Mapping[str, Any]) -> RemoteStat | None:
    """The file's version from its info: size and modification time, or an ETag; None when there is neither."""
    size = info.get("size")
    tag = next((str(info[k]) for k in _TAG_KEYS if info.get(k)), None)
    mtime = next((ns for k in _MTIME_KEYS if (ns := _nanoseconds(info.get(k))) is not None), None)
    if mtime is None and protocol(url) == "memory":
        mtime = _nanoseconds(info.get("created"))  # a memory file is replaced whole on every write
    if tag is None and (mtime is None or not isinstance(size, int)):
        return None
    inode = int.from_bytes(hashlib.blake2b(tag.encode(), digest_size=8).digest(), "big") >> 1 if tag else 0
    return RemoteStat(size if isinstance(size, int) else -1, mtime or 0, inode)


def _nanoseconds(value: Any) -> int | None:
    """A modification time as backends give it (seconds, a datetime, ISO 8601 or HTTP-date text) in ns."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value * 1e9)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            try:
                value = parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(value.timestamp() * 1e9)
    return None
