"""The images inside a container file, lazily: a WebDataset `.tar` shard's image members, a Parquet file's rows.

Nothing is extracted. Each image becomes a `Member`, named ``CONTAINER#NAME`` in the report:

- a tar shard: ``SHARD.tar#MEMBER`` (the member's name inside the tar, ``00000/000000012.jpg``). Members whose
  extension is an image's are assessed; the sample key is the member name up to the first dot of its basename
  (WebDataset's rule), and the ``.json`` side-car of the same sample (img2dataset's ``url``, ``caption``,
  ``width``, ``height``, ``key``, ``status``...) is carried as `Member.meta`, with a ``.txt`` side-car as
  ``txt``. Other members (``.cls``, ``.npy``...) are side-cars too and are not assessed. A member is read by
  the workers at its offset in the shard (`Member.offset`, `Member.size`): its bytes never travel between
  processes.
- a Parquet file: ``FILE.parquet#ROW`` (the row's index, from 0). The image column is `image_column`, or the
  first of `IMAGE_COLUMNS` the file has; a struct column holds the bytes in its ``bytes`` field (Hugging Face
  datasets' ``image``). The row's other scalar columns are `Member.meta`; `id_column`'s value is its key.
  Rows are read one batch of `PARQUET_BATCH_ROWS` at a time (memory bounded), and their bytes travel in the
  work item (`Member.data`).

A container named by a URL (a `remote.RemoteFile`) is read the same way through fsspec: its members are named
``URL#NAME`` (the URL without credentials) and a tar member is read by one ranged request.

Problems become `ContainerProblem` (one row): ``unreadable_container`` (not a tar or Parquet file, damaged
beyond the members read so far), ``truncated`` (a shard that ends inside a member, named ``SHARD.tar#MEMBER``,
or between members, named ``SHARD.tar``: the members before it are yielded first), ``no_image_column`` (a
Parquet file without a column of image bytes). A member that is missing its bytes (a null cell) is a `Member`
with `problem` set (``empty_file``), and so is each row of a Parquet row group that cannot be read (``corrupt``):
the rows before it and the row groups after it are still read, so every row of the file has its report row.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import urlsplit

from iqa_cli.audit import remote
from iqa_cli.audit.remote import RemoteFile
from iqa_cli.files import open_regular

TAR_EXTENSIONS = (".tar",)
PARQUET_EXTENSIONS = (".parquet",)
IMAGE_COLUMNS = ("jpg", "jpeg", "image", "img", "png", "webp", "bytes", "image_bytes")
"""The names a Parquet image column is detected by, in order of preference (compared case-insensitively)."""
PARQUET_BATCH_ROWS = 64
MAX_SIDECAR_BYTES = 1 << 20
"""A ``.json`` or ``.txt`` side-car larger than this (1 MiB) is not carried."""

_IMAGE_MEMBER_EXTENSIONS = frozenset(
    (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".avif", ".heic", ".heif")
)


@dataclass(frozen=True)
class Member:
    """One image read other than as a local file by its path: inside a container (where to read it, and what the
    container says about it), or a whole remote file (`container` its URL, `size` None)."""

    path: str  # CONTAINER#NAME (or a remote file's URL), as the report shows it
    container: str = field(repr=False)  # the container's path or URL (credentials included: never shown)
    offset: int = 0  # a tar member's data: its offset and size in the shard
    size: int | None = 0  # None: the whole of `container`
    data: bytes | None = None  # a Parquet cell's bytes (read in the main process, batch by batch)
    sample_key: str | None = None
    meta: str | None = None  # JSON text of the side-car or of the row's other columns
    problem: tuple[str, str] | None = None  # (code, message): nothing to decode


@dataclass(frozen=True)
class ContainerProblem:
    """A container (or its rest) that could not be read: one error row, named `path`."""

    path: str
    code: str
    message: str


def container_kind(path: str) -> str | None:
    """``"tar"``, ``"parquet"`` or None, from the file name's extension (case-insensitive; a URL's path's)."""
    ext = os.path.splitext(urlsplit(path).path if remote.is_url(path) else path)[1].lower()
    if ext in TAR_EXTENSIONS:
        return "tar"
    if ext in PARQUET_EXTENSIONS:
        return "parquet"
    return None


def members(
    source: str | RemoteFile, *, image_column: str | None = None, id_column: str | None = None
) -> Iterator[Member | ContainerProblem]:
    """The images of the container at `source` (a path, or a URL's file), in the container's order, then any
    problem that ended it."""
    container = _Container.of(source)
    if container_kind(container.name) == "tar":
        yield from _tar_members(container)
    else:
        yield from _parquet_rows(container, image_column, id_column)


def sample_key(name: str) -> str:
    """WebDataset's key: the member name up to the first dot of its basename (``a/b.c.jpg`` -> ``a/b``)."""
    folder, _, base = name.rpartition("/")
    stem = base.split(".", 1)[0]
    return f"{folder}/{stem}" if folder else stem


@dataclass(frozen=True)
class _Container:
    """A container to read: `name` as the report shows it, `location` to read it from (a path or a URL)."""

    name: str
    location: str
    url: bool

    @classmethod
    def of(cls, source: str | RemoteFile) -> _Container:
        if isinstance(source, RemoteFile):
            return cls(source.path, source.url, url=True)
        return cls(source, source, url=False)

    def open(self) -> tuple[BinaryIO | io.RawIOBase, int | None]:
        """The container open for reading and seeking, and its size (None: the backend does not say)."""
        if self.url:
            handle = remote.open_file(self.location)
            try:
                size: int | None = handle.seek(0, os.SEEK_END)
                handle.seek(0)
            except OSError:  # a size the backend does not know: members cut short show as their reads come short
                size = None
            return handle, size
        local, info = open_regular(self.location)  # never waits on a FIFO put in a shard's place
        return local, info.st_size


def _tar_members(container: _Container) -> Iterator[Member | ContainerProblem]:
    """Group the members of each sample (consecutive names with one key), then yield its images with its side-car."""
    path = container.name
    try:
        handle, size = container.open()
    except OSError as exc:
        yield ContainerProblem(path, "unreadable_container", f"not a readable tar shard ({_reason(exc)})")
        return
    try:
        archive = tarfile.open(fileobj=handle, mode="r:")  # noqa: SIM115 - closed below; "r:": seekable, uncompressed
    except (OSError, tarfile.TarError) as exc:
        handle.close()
        yield ContainerProblem(path, "unreadable_container", f"not a readable tar shard ({_reason(exc)})")
        return
    with handle, archive:
        key: str | None = None
        group: list[tarfile.TarInfo] = []
        try:
            for info in archive:
                if not info.isfile():
                    continue
                name_key = sample_key(info.name)
                if name_key != key and group:
                    yield from _sample(container, archive, key, group)
                    group = []
                key = name_key
                if size is not None and info.offset_data + info.size > size:  # the shard ends inside this member
                    yield from _sample(container, archive, key, group)
                    yield ContainerProblem(
                        f"{path}#{info.name}", "truncated", "the shard ends inside this member (a partial copy?)"
                    )
                    return
                group.append(info)
        except (OSError, tarfile.TarError) as exc:
            yield from _sample(container, archive, key, group)
            yield ContainerProblem(
                path,
                "truncated",
                f"the shard ends early or is damaged after its last member ({_reason(exc)})",
            )
            return
        yield from _sample(container, archive, key, group)
        wrong = _bad_end(archive, size)
        if wrong is not None:
            yield ContainerProblem(path, "truncated", wrong)


def _bad_end(archive: tarfile.TarFile, size: int | None) -> str | None:
    """What is wrong where the archive stopped, if it is not its end-of-archive block (zeros): tarfile stops
    silently at a header cut short or damaged."""
    end = archive.offset  # where the header after the last member would be
    fileobj = archive.fileobj
    assert fileobj is not None
    fileobj.seek(end)
    block = fileobj.read(tarfile.BLOCKSIZE)
    if len(block) < tarfile.BLOCKSIZE or (size is not None and size - end < tarfile.BLOCKSIZE):
        return "the shard ends without its end-of-archive block (a partial copy?)"
    if block != tarfile.NUL * tarfile.BLOCKSIZE:
        return (
            "the shard is damaged after its last member (a member header that is not one); the members after it"
            " cannot be found"
        )
    return None


def _sample(
    container: _Container, archive: tarfile.TarFile, key: str | None, group: list[tarfile.TarInfo]
) -> Iterator[Member]:
    """One sample's image members, each with the sample's ``.json`` / ``.txt`` side-car."""
    meta: dict[str, Any] = {}
    for info in group:
        ext = os.path.splitext(info.name)[1].lower()
        if ext in (".json", ".txt") and info.size <= MAX_SIDECAR_BYTES:
            handle = archive.extractfile(info)
            text = handle.read().decode("utf-8", "replace") if handle is not None else ""
            if ext == ".txt":
                meta["txt"] = text
                continue
            try:
                loaded = json.loads(text)
            except ValueError:
                continue  # a broken side-car: the image is still assessed
            if isinstance(loaded, dict):
                meta.update(loaded)
    text = json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str) if meta else None
    for info in group:
        if os.path.splitext(info.name)[1].lower() in _IMAGE_MEMBER_EXTENSIONS:
            yield Member(
                f"{container.name}#{info.name}",
                container.location,
                offset=info.offset_data,
                size=info.size,
                sample_key=key,
                meta=text,
            )


def _parquet_rows(
    container: _Container, image_column: str | None, id_column: str | None
) -> Iterator[Member | ContainerProblem]:
    """The rows one row group at a time, a batch at a time: a row group that cannot be read becomes an error row
    for each of its rows not yet yielded (the footer says how many), and the next row group is read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = container.name
    try:
        handle, _ = container.open()
    except OSError as exc:
        yield ContainerProblem(path, "unreadable_container", f"not a readable Parquet file ({_reason(exc)})")
        return
    with handle:
        try:
            parquet = pq.ParquetFile(handle)
        except (OSError, pa.ArrowException) as exc:
            yield ContainerProblem(path, "unreadable_container", f"not a readable Parquet file ({_reason(exc)})")
            return
        with parquet:
            schema = parquet.schema_arrow
            column = _image_column(schema, image_column)
            if column is None:
                wanted = f"no column {image_column!r}" if image_column else "no column of image bytes found"
                yield ContainerProblem(
                    path, "no_image_column", f"{wanted} (columns: {', '.join(schema.names)}); give --image-column"
                )
                return
            # The row's other scalar columns are its side-car; other binary or nested columns are not carried.
            carried = [f.name for f in schema if f.name != column and not _bulky(f.type)]
            row = 0
            for group in range(parquet.num_row_groups):
                end = row + parquet.metadata.row_group(group).num_rows
                try:
                    batches = parquet.iter_batches(
                        batch_size=PARQUET_BATCH_ROWS, row_groups=[group], columns=[column, *carried]
                    )
                    for batch in batches:
                        cells = batch.column(0).to_pylist()
                        others = batch.select(carried).to_pylist() if carried else [{}] * len(cells)
                        for cell, other in zip(cells, others, strict=True):
                            yield _parquet_member(container, row, cell, other, id_column)
                            row += 1
                except (OSError, ValueError, pa.ArrowException) as exc:  # ValueError: a cell Python cannot hold
                    problem = ("corrupt", f"row group {group} of the Parquet file cannot be read ({_reason(exc)})")
                    while row < end:
                        yield Member(f"{path}#{row}", container.location, problem=problem)
                        row += 1
                row = max(row, end)


def _parquet_member(container: _Container, row: int, cell: Any, other: dict[str, Any], id_column: str | None) -> Member:
    data = cell.get("bytes") if isinstance(cell, dict) else cell
    key = other.get(id_column) if id_column else None
    meta = json.dumps(other, ensure_ascii=False, sort_keys=True, default=str) if other else None
    name, where = f"{container.name}#{row}", container.location
    common = {"sample_key": None if key is None else str(key), "meta": meta}
    if not data:
        return Member(name, where, problem=("empty_file", "the row holds no image bytes (null or empty)"), **common)
    return Member(name, where, data=bytes(data), size=len(data), **common)


def _reason(exc: BaseException) -> str:
    """An exception's text for a row: a remote backend's is already scrubbed, a local one's is left as it is."""
    return (exc.strerror if isinstance(exc, OSError) and exc.strerror else None) or str(exc) or type(exc).__name__


def _image_column(schema: Any, wanted: str | None) -> str | None:
    import pyarrow as pa

    def holds_bytes(dtype: Any) -> bool:
        if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
            return True
        return pa.types.is_struct(dtype) and dtype.get_field_index("bytes") >= 0

    if wanted:
        return wanted if wanted in schema.names and holds_bytes(schema.field(wanted).type) else None
    by_name = {name.lower(): name for name in schema.names}
    for candidate in IMAGE_COLUMNS:
        name = by_name.get(candidate)
        if name is not None and holds_bytes(schema.field(name).type):
            return name
    return None


def _bulky(dtype: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or pa.types.is_nested(dtype)
