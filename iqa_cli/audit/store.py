"""The results store: what each unchanged file and each (content, engine settings) pair produced before.

One SQLite file, ``OUT/iqa-store.sqlite``, in WAL mode, beside the reports. SQLite rather than
append-only Parquet parts because the re-audit is a stream of point lookups by path (100k of them
must take seconds): an indexed B-tree answers each in microseconds from one file, updates a path in
place instead of leaving superseded rows for a compaction step, and commits a batch atomically; WAL
with ``synchronous=NORMAL`` keeps every committed batch through a SIGKILL (only an OS crash or power
loss can drop the last commits, and even that never corrupts the file). Parquet parts would need a
full scan or a side index to answer "is this path unchanged?", and a part being written when the
process dies is a torn file to detect and skip. It is a cache: deleting the file only costs time.

Two tables:

- ``files``: path (bytes, so undecodable names work) -> size, mtime_ns, ctime_ns, inode and the
  content key. A file whose four stat values all match is unchanged and is not read at all. ctime
  (which no program can set) catches a rewrite that restored the mtime (``cp -p``, ``rsync -t``);
  the inode catches a file replaced by rename. A file modified within `racy_seconds` of being
  recorded is stored untrusted (it may change again within the clock tick, unseen by stat), so the
  next run looks at it again.
- ``results``: (content key, cache key) -> the row without its path columns. The content key is the
  file's content hash; rows without one (``empty_file``, ``file_too_large``, ``worker_crashed``) use
  ``!`` + a hash of the row itself, which is identical for every file that produces it. The cache
  key hashes what changes answers: engine name, version and settings, and the question asked.

Errors are remembered like results, so a broken file is not decoded again every night; the codes in
`RETRIED_CODES` are not remembered, because they describe the moment (a permission, an I/O error,
a file gone, an engine failure such as running out of GPU memory) rather than the content.

Crash safety: `record` buffers rows and commits every `commit_rows` rows or `commit_seconds`
seconds, and `flush`/`close` commit at once, so a killed run loses only the images in flight and the
uncommitted tail. Concurrency: `open` takes an exclusive `flock` on ``OUT/iqa-store.lock`` and
raises `StoreLocked` (exit code 1) naming the holder's pid when another run has it; the kernel
drops the lock when its holder dies, however it dies. The lock needs a local file system.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import sqlite3
import stat
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, cast

import pyarrow as pa

from iqa_cli.errors import IqaError
from iqa_cli.report.schema import COLUMNS, EngineStamp, ReportRow, path_columns

STORE_NAME = "iqa-store.sqlite"
LOCK_NAME = "iqa-store.lock"

RETRIED_CODES = frozenset(
    {
        "not_found",
        "permission_denied",
        "read_error",
        "not_a_file",
        "engine_failed",
        "prepare_failed",
        "out_of_memory",
        "timeout",
    }
)
"""Error codes not remembered: they say something about this run, not about the file's content."""


class Stat(Protocol):
    """What the store compares to know a file unchanged: `os.stat_result`, or a remote file's version
    (`remote.RemoteStat`: its size, modification time and a number from its ETag)."""

    @property
    def st_size(self) -> int: ...
    @property
    def st_mtime_ns(self) -> int: ...
    @property
    def st_ctime_ns(self) -> int: ...
    @property
    def st_ino(self) -> int: ...


# Bump when the table layout changes; the row layout is covered by the schema fingerprint.
_FORMAT = 2
# A row is stored per content, for every path with those bytes: the columns of the path come from the path.
# A container member's sample_key and source_meta describe the sample, not its bytes: stored with its path too.
_PATH_COLUMNS = ("path", "path_bytes", "root", "sample_key", "source_meta")
_STORED = [name for name, _, _ in COLUMNS if name not in _PATH_COLUMNS]
_TIMESTAMPS = frozenset(name for name, dtype, _ in COLUMNS if pa.types.is_timestamp(dtype))
_SCHEMA_FINGERPRINT = hashlib.blake2b(
    json.dumps([(name, str(dtype)) for name, dtype, _ in COLUMNS]).encode(), digest_size=8
).hexdigest()

_CREATE = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS files (path BLOB PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER,"
    " ctime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, content_key TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS results (content_key TEXT NOT NULL, cache_key TEXT NOT NULL,"
    " error_code TEXT, row TEXT NOT NULL, PRIMARY KEY (content_key, cache_key)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS containers (path BLOB PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER,"
    " ctime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, members INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS members (container BLOB NOT NULL, seq INTEGER NOT NULL, path BLOB NOT NULL,"
    " sample_key TEXT, source_meta TEXT, content_key TEXT NOT NULL, PRIMARY KEY (container, seq)) WITHOUT ROWID",
)
# Unchanged path -> its row under this cache key, in one query over two primary keys.
_REPLAY = (
    "SELECT r.row FROM files f JOIN results r ON r.content_key = f.content_key AND r.cache_key = ?"
    " WHERE f.path = ? AND f.size = ? AND f.mtime_ns = ? AND f.ctime_ns = ? AND f.inode = ?"
)
_KNOWN = "SELECT content_key FROM files WHERE path = ? AND size = ? AND mtime_ns = ? AND ctime_ns = ? AND inode = ?"
_LOOKUP = "SELECT row FROM results WHERE content_key = ? AND cache_key = ?"
_PUT_FILE = "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)"
_CONTAINER = (
    "SELECT members FROM containers WHERE path = ? AND size = ? AND mtime_ns = ? AND ctime_ns = ? AND inode = ?"
)
_MEMBERS_KNOWN = (
    "SELECT count(*) FROM members m JOIN results r ON r.content_key = m.content_key AND r.cache_key = ?"
    " WHERE m.container = ? AND m.seq < ?"
)
_MEMBERS = (
    "SELECT m.seq, m.path, m.sample_key, m.source_meta, r.row FROM members m JOIN results r"
    " ON r.content_key = m.content_key AND r.cache_key = ? WHERE m.container = ? AND m.seq >= ? AND m.seq < ?"
    " ORDER BY m.seq LIMIT ?"
)
_PUT_MEMBER = "INSERT OR REPLACE INTO members VALUES (?, ?, ?, ?, ?, ?)"
_PUT_CONTAINER = "INSERT OR REPLACE INTO containers VALUES (?, ?, ?, ?, ?, ?)"
_DROP_MEMBERS = "DELETE FROM members WHERE container = ? AND seq >= ?"
_PAGE = 256  # member rows read per query when a container is replayed
_PUT_RESULT = "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)"


class StoreLocked(IqaError):
    """Another run holds this output folder's store."""


class StoreUnwritable(IqaError):
    """The store refuses a commit or a lookup: the disk is full, the folder became read-only, the file damaged."""


def cache_key(
    stamp: EngineStamp, *, detail: bool, question: str | None = None, extra: Mapping[str, Any] | None = None
) -> str:
    """A short hash of everything besides the file's bytes that changes a row.

    `detail` picks the task (and so the question); `question` is for a custom question; `extra`
    holds run settings that change rows, such as ``{"max_pixels": ...}`` (it decides which images
    are ``too_many_pixels``).
    """
    parts = [stamp.name, stamp.version, stamp.settings_json(), bool(detail), question, dict(extra or {})]
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class ResultStore:
    """The store of one output folder; open with `ResultStore.open` and use as a context manager."""

    def __init__(
        self,
        db: sqlite3.Connection,
        lock_fd: int | None,
        *,
        commit_rows: int,
        commit_seconds: float,
        racy_seconds: float,
        notes: list[str],
    ) -> None:
        self._db = db
        self._lock_fd = lock_fd
        self.commit_rows = commit_rows
        self.commit_seconds = commit_seconds
        self.racy_ns = int(racy_seconds * 1e9)
        self.notes = notes
        """Things the caller may want to log (a damaged store set aside)."""
        self._files: list[tuple[Any, ...]] = []
        self._results: list[tuple[Any, ...]] = []
        self._members: list[tuple[Any, ...]] = []
        self._containers: list[tuple[Any, ...]] = []
        self._last_commit = time.monotonic()

    @classmethod
    def open(
        cls,
        out_dir: str | Path,
        *,
        lock: bool = True,
        commit_rows: int = 256,
        commit_seconds: float = 1.0,
        racy_seconds: float = 2.0,
    ) -> ResultStore:
        """Open (creating) the store in `out_dir`; with `lock`, hold the folder's lock or raise StoreLocked.

        Without `lock` the store may still be read and written, but only one locked writer should
        exist: use it for read-only inspection.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        lock_fd = _acquire_lock(out / LOCK_NAME) if lock else None
        try:
            notes: list[str] = []
            db = _connect(out / STORE_NAME, notes, may_reset=lock)
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        return cls(
            db, lock_fd, commit_rows=commit_rows, commit_seconds=commit_seconds, racy_seconds=racy_seconds, notes=notes
        )

    # --- reading ---------------------------------------------------------------------------------

    def known(self, path: str, st: Stat) -> str | None:
        """The content key recorded for `path` if its stat shows it unchanged since, else None."""
        hit = self._one(_KNOWN, (os.fsencode(path), *_signature(st)))
        return hit[0] if hit else None

    def lookup(self, content_key: str, cache_key: str) -> dict[str, Any] | None:
        """The row recorded for this content under this cache key (its `path` None), else None."""
        hit = self._one(_LOOKUP, (content_key, cache_key))
        return _decode(hit[0], None) if hit else None

    def replay(self, path: str, st: Stat, cache_key: str) -> ReportRow | None:
        """`known` and `lookup` in one query: the complete row for an unchanged `path`, else None."""
        hit = self._one(_REPLAY, (cache_key, os.fsencode(path), *_signature(st)))
        return _decode(hit[0], path) if hit else None

    def replay_container(self, path: str, st: Stat, cache_key: str) -> Iterator[tuple[int, ReportRow]] | None:
        """Every remembered row of an unchanged container whose every member has a row under `cache_key`, as
        (member number, row) in the container's order, read a page at a time; else None (read it again)."""
        name = os.fsencode(path)
        hit = self._one(_CONTAINER, (name, *_signature(st)))
        if hit is None:
            return None
        count = hit[0]
        known = self._one(_MEMBERS_KNOWN, (cache_key, name, count))
        if known is None or known[0] != count:
            return None
        return self._member_rows(name, count, cache_key)

    def _member_rows(self, name: bytes, count: int, cache_key: str) -> Iterator[tuple[int, ReportRow]]:
        seq = 0
        while seq < count:
            try:
                page = self._db.execute(_MEMBERS, (cache_key, name, seq, count, _PAGE)).fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreUnwritable(f"the results store was damaged during this run ({exc})") from None
            if not page:
                return
            for number, member, key, meta, text in page:
                row = _decode(text, os.fsdecode(member))
                row["sample_key"], row["source_meta"] = key, meta
                yield number, row
            seq = page[-1][0] + 1

    def _one(self, query: str, parameters: tuple[Any, ...]) -> tuple[Any, ...] | None:
        try:
            return cast("tuple[Any, ...] | None", self._db.execute(query, parameters).fetchone())
        except sqlite3.DatabaseError as exc:  # damaged while this run had it open: the check at open passed
            raise StoreUnwritable(
                f"the results store ({STORE_NAME} in the output folder) was damaged during this run ({exc}); the"
                " earlier reports are kept, and the next run sets the store aside and rebuilds it"
            ) from None

    # --- writing ---------------------------------------------------------------------------------

    def record(self, path: str, st: Stat | None, row: Mapping[str, Any], cache_key: str) -> bool:
        """Remember `row` for its content, and `path` as having that content at `st`.

        `st` must be the stat taken *before* the file was read, so a change during the read shows
        as a different stat next time. Returns False when nothing was remembered: an error code in
        `RETRIED_CODES`, or no `st` (a discovery problem has no file to stat).
        """
        code = row.get("error_code")
        if st is None or code in RETRIED_CODES:
            return False
        text = _encode(row)
        content_key = row.get("content_hash") or "!" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
        size, mtime_ns, ctime_ns, inode = _signature(st)
        if time.time_ns() - mtime_ns < self.racy_ns:
            mtime_ns = None  # NULL equals nothing: the next run looks at the file again
        self._files.append((os.fsencode(path), size, mtime_ns, ctime_ns, inode, content_key))
        self._results.append((content_key, cache_key, code, text))
        if len(self._files) >= self.commit_rows or time.monotonic() - self._last_commit >= self.commit_seconds:
            self.flush()
        return True

    def record_member(self, container: str, number: int, row: Mapping[str, Any], cache_key: str) -> bool:
        """Remember `row` of the container's `number`th member (its path, sample_key and source_meta with it);
        False when nothing was remembered (an error code in `RETRIED_CODES`). Replayed once `record_container`
        says the container is complete."""
        code = row.get("error_code")
        if code in RETRIED_CODES:
            return False
        text = _encode(row)
        content_key = row.get("content_hash") or "!" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
        self._members.append(
            (os.fsencode(container), number, os.fsencode(row["path"]), row.get("sample_key"), row.get("source_meta"),
             content_key)
        )  # fmt: skip
        self._results.append((content_key, cache_key, code, text))
        return True

    def record_container(self, path: str, st: Stat, count: int) -> None:
        """The container at `path`, as it was at `st`, has `count` members, every one recorded: replay it next time.
        Committed with the next flush, after its members."""
        size, mtime_ns, ctime_ns, inode = _signature(st)
        if time.time_ns() - mtime_ns < self.racy_ns:
            mtime_ns = None  # as for a file: looked at again next time
        self._containers.append((os.fsencode(path), size, mtime_ns, ctime_ns, inode, count))

    def flush(self) -> None:
        """Commit what `record`, `record_member` and `record_container` buffered, in one transaction."""
        if self._files or self._members or self._containers:
            try:
                with _transaction(self._db):
                    self._db.executemany(_PUT_RESULT, self._results)
                    self._db.executemany(_PUT_FILE, self._files)
                    self._db.executemany(_PUT_MEMBER, self._members)
                    self._db.executemany(_DROP_MEMBERS, [(c[0], c[5]) for c in self._containers])
                    self._db.executemany(_PUT_CONTAINER, self._containers)
            except sqlite3.DatabaseError as exc:  # "database or disk is full", a read-only folder, damage, ...
                raise StoreUnwritable(
                    f"the results store ({STORE_NAME} in the output folder) cannot be written: {exc}. Free space or fix"
                    " the folder and run again; the store keeps what it committed before"
                ) from None
            self._files.clear()
            self._results.clear()
            self._members.clear()
            self._containers.clear()
        self._last_commit = time.monotonic()

    def counts(self) -> tuple[int, int]:
        """(files, results) held, committed ones only."""
        files = self._db.execute("SELECT count(*) FROM files").fetchone()[0]
        results = self._db.execute("SELECT count(*) FROM results").fetchone()[0]
        return files, results

    def close(self) -> None:
        """Commit, close the database, release the lock. Safe to call twice."""
        if self._db is not None:
            try:
                self.flush()
            finally:
                self._db.close()
                self._db = None  # type: ignore[assignment]
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One explicit transaction (the connection is in autocommit mode, so nothing is implicit)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:  # SQLite may already have rolled back (a full disk, say)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _signature(st: Stat) -> tuple[int, int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


def _encode(row: Mapping[str, Any]) -> str:
    """The row without its path columns as a JSON list in schema order (JSON: nothing stored is ever executed)."""
    values = []
    for name in _STORED:
        value = row.get(name)
        values.append(value.isoformat() if isinstance(value, datetime) else value)
    # ensure_ascii escapes lone surrogates (undecodable names in messages) instead of failing.
    return json.dumps(values, separators=(",", ":"))


def _decode(text: str, path: str | None) -> ReportRow:
    row: dict[str, Any] = dict.fromkeys(_PATH_COLUMNS)  # the path's own columns: as a fresh row has them
    if path is not None:
        row.update(path_columns(path))
    row.update(zip(_STORED, json.loads(text), strict=True))
    for name in _TIMESTAMPS:
        if row[name] is not None:
            row[name] = datetime.fromisoformat(row[name])
    return cast(ReportRow, row)


def _acquire_lock(lock_path: Path) -> int:
    """Hold an exclusive flock on `lock_path` and write our pid into it, or raise StoreLocked."""
    try:
        # O_NOFOLLOW: a lock file planted as a symlink would have us write our pid into its target.
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StoreLocked(
                f"{lock_path} is a symbolic link; iqa refuses to write through it. Remove it, or give another --out"
            ) from None
        raise StoreLocked(f"cannot create the lock file {lock_path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise StoreLocked(f"{lock_path} is not a regular file; remove it, or give another --out")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
            raise StoreLocked(
                f"cannot lock {lock_path}: {exc.strerror}; use an output folder on a local disk"
            ) from None
        who = f"process {holder}" if holder.isdigit() else "another process"
        raise StoreLocked(
            f"another iqa run ({who}) is using the output folder {lock_path.parent}; wait for it to finish, "
            f"or give this run another --out"
        ) from None
    # The lock file is never deleted: removing it would let a third run lock a fresh file while the
    # second still holds the old one.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _connect(db_path: Path, notes: list[str], *, may_reset: bool) -> sqlite3.Connection:
    """Open the database, creating or (for another format) resetting it; a damaged file is set aside."""
    try:
        return _prepare(sqlite3.connect(db_path, isolation_level=None), check=may_reset)
    except sqlite3.DatabaseError as exc:
        if not may_reset:
            raise IqaError(f"the results store {db_path} cannot be read ({exc})") from None
    aside = db_path.with_name(f"{db_path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(str(db_path) + suffix)
        if source.exists():
            os.replace(source, Path(str(aside) + suffix))
    notes.append(f"the results store was damaged and was moved to {aside.name}; every image is assessed afresh")
    return _prepare(sqlite3.connect(db_path, isolation_level=None))


def _prepare(db: sqlite3.Connection, *, check: bool = False) -> sqlite3.Connection:
    """Set the store up; with `check`, read every page first (`quick_check`), so damage past the first page is
    found now, not as a failed lookup halfway through a run."""
    try:
        db.execute("PRAGMA busy_timeout = 5000")  # an unlocked reader may meet a checkpoint
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable through process death
        if check:
            problems = [row[0] for row in db.execute("PRAGMA quick_check(1)")]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError(f"quick_check: {problems[0] if problems else 'no answer'}")
        with _transaction(db):
            db.execute(_CREATE[0])
            stamp = f"{_FORMAT}:{_SCHEMA_FINGERPRINT}"
            found = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
            if found is None or found[0] != stamp:
                # Another layout or report schema: the remembered rows no longer fit, start empty.
                db.execute("DROP TABLE IF EXISTS files")
                db.execute("DROP TABLE IF EXISTS results")
                db.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (stamp,))
            for statement in _CREATE[1:]:
                db.execute(statement)
    except BaseException:
        db.close()
        raise
    return db
