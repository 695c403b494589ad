"""The results store: recognising unchanged files by stat, cache keys, the lock, and surviving SIGKILL."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from iqa_cli.audit.store import LOCK_NAME, STORE_NAME, ResultStore, StoreLocked, cache_key
from iqa_cli.errors import EXIT_FAILURE
from iqa_cli.images import ExifInfo, FileFacts
from iqa_cli.report.schema import COLUMN_NAMES, EngineStamp, ReportRow, error_row, safe_text
from iqa_cli.testing import rows as testing_rows

STAMP = EngineStamp("signal", "1.0", {"long_side": 512})
KEY = cache_key(STAMP, detail=False)
HOUR_NS = 3600 * 10**9


def old_file(path: Path, data: bytes = b"image bytes") -> os.stat_result:
    """Write `path` with an mtime an hour ago (a file written just now is not trusted yet)."""
    path.write_bytes(data)
    then = time.time_ns() - HOUR_NS
    os.utime(path, ns=(then, then))
    return os.stat(path)


def ok_row(path: Path, content_hash: str = "ab" * 16) -> ReportRow:
    """A JPEG's row with EXIF, notes and a named distortion: every kind of column the store keeps."""
    return testing_rows.ok_row(
        str(path),
        stamp=STAMP,
        file_size=11,
        content_hash=content_hash,
        image_format="JPEG",
        exif=ExifInfo(camera_make="Canon", captured_at=datetime(2021, 7, 4, 12, 30, 59), iso=400),
        notes=["converted from CMYK"],
        question="What distortions are present?",
        answer="Blur",
        distortions=["blur"],
        rating="fair",
        score=0.5,
        confidence=0.75,
        verdict="degraded",
        elapsed_ms=12.5,
    )


def test_unchanged_file_is_recognised_without_reading_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = tmp_path / "a.jpg"
    st = old_file(image)
    row = ok_row(image)
    with ResultStore.open(tmp_path / "out") as store:
        assert store.record(str(image), st, row, KEY)
    with ResultStore.open(tmp_path / "out") as store:

        def no_reading(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("the store read a file")

        monkeypatch.setattr("builtins.open", no_reading)
        assert store.known(str(image), os.stat(image)) == row["content_hash"]
        replayed = store.replay(str(image), os.stat(image), KEY)
        monkeypatch.undo()
    assert replayed == row  # every column, types included (timestamp, lists, bool)
    assert list(replayed) == COLUMN_NAMES
    looked_up = store_lookup(tmp_path / "out", row["content_hash"])
    assert looked_up == {**row, "path": None}


def store_lookup(out: Path, content_hash: str) -> dict[str, Any] | None:
    with ResultStore.open(out) as store:
        return store.lookup(content_hash, KEY)


@pytest.mark.parametrize("change", ["mtime", "size", "replaced", "chmod"])
def test_changed_file_is_unknown(tmp_path: Path, change: str) -> None:
    image = tmp_path / "a.jpg"
    st = old_file(image)
    with ResultStore.open(tmp_path / "out") as store:
        store.record(str(image), st, ok_row(image), KEY)
        store.flush()
        if change == "mtime":
            os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
        elif change == "size":
            # Same mtime restored afterwards, as `cp -p` or `rsync -t` would leave it.
            image.write_bytes(b"other bytes, longer")
            os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
        elif change == "replaced":
            # A scraper writing a new file and renaming it over the old one: a new inode.
            (tmp_path / "new.jpg").write_bytes(b"image bytes")
            os.utime(tmp_path / "new.jpg", ns=(st.st_atime_ns, st.st_mtime_ns))
            os.replace(tmp_path / "new.jpg", image)
        else:
            time.sleep(0.01)  # ctime has clock-tick resolution
            os.chmod(image, 0o600)
        now = os.stat(image)
        assert store.known(str(image), now) is None
        assert store.replay(str(image), now, KEY) is None
        assert store.known(str(tmp_path / "other.jpg"), now) is None


def test_recently_modified_file_is_not_trusted(tmp_path: Path) -> None:
    image = tmp_path / "fresh.jpg"
    image.write_bytes(b"just written")
    with ResultStore.open(tmp_path / "out", racy_seconds=60) as store:
        store.record(str(image), os.stat(image), ok_row(image), KEY)
        store.flush()
        # Its content is remembered, but the path is looked at again next time.
        assert store.known(str(image), os.stat(image)) is None
        assert store.lookup("ab" * 16, KEY) is not None


def test_cache_key_changes_with_what_changes_answers() -> None:
    keys = {
        KEY,
        cache_key(EngineStamp("signal", "1.1", {"long_side": 512}), detail=False),
        cache_key(EngineStamp("signal", "1.0", {"long_side": 1024}), detail=False),
        cache_key(EngineStamp("depictqa", "1.0", {"long_side": 512}), detail=False),
        cache_key(STAMP, detail=True),
        cache_key(STAMP, detail=False, question="Is the sky noisy?"),
        cache_key(STAMP, detail=False, extra={"max_pixels": 1000}),
    }
    assert len(keys) == 7
    # Stable across runs and independent of settings' order.
    reordered = EngineStamp("signal", "1.0", {"b": 2, "a": 1})
    assert cache_key(reordered, detail=False) == cache_key(EngineStamp("signal", "1.0", {"a": 1, "b": 2}), detail=False)
    assert len(KEY) == 32


def test_results_are_per_cache_key(tmp_path: Path) -> None:
    image = tmp_path / "a.jpg"
    st = old_file(image)
    other = cache_key(STAMP, detail=True)
    with ResultStore.open(tmp_path / "out") as store:
        store.record(str(image), st, ok_row(image), KEY)
        store.flush()
        assert store.replay(str(image), st, other) is None
        assert store.known(str(image), st) is not None  # the file is known; this question was not asked


def test_errors_remembered_except_retried_codes(tmp_path: Path) -> None:
    files = {name: old_file(tmp_path / name, name.encode()) for name in ("cut.jpg", "empty.jpg", "gone.jpg")}
    truncated = error_row(
        FileFacts(path=str(tmp_path / "cut.jpg"), file_size=7, content_hash="cd" * 16), "truncated", "ends early"
    )
    empty = error_row(FileFacts(path=str(tmp_path / "empty.jpg"), file_size=0), "empty_file", "0 bytes")
    gone = error_row(FileFacts(path=str(tmp_path / "gone.jpg")), "permission_denied", "no permission")
    with ResultStore.open(tmp_path / "out") as store:
        assert store.record(str(tmp_path / "cut.jpg"), files["cut.jpg"], truncated, KEY)
        assert store.record(str(tmp_path / "empty.jpg"), files["empty.jpg"], empty, KEY)
        assert not store.record(str(tmp_path / "gone.jpg"), files["gone.jpg"], gone, KEY)
        assert not store.record("loop", None, error_row(FileFacts(path="loop"), "symlink_loop", "a loop"), KEY)
        store.flush()
        assert store.replay(str(tmp_path / "cut.jpg"), files["cut.jpg"], KEY) == truncated
        # A row without a content hash is stored under a key made from the row itself.
        assert store.replay(str(tmp_path / "empty.jpg"), files["empty.jpg"], KEY) == empty
        assert store.known(str(tmp_path / "empty.jpg"), files["empty.jpg"]).startswith("!")
        assert store.replay(str(tmp_path / "gone.jpg"), files["gone.jpg"], KEY) is None
        assert store.counts() == (2, 2)


def test_awkward_names(tmp_path: Path) -> None:
    names = ["new\nline.jpg", "café 日本.jpg", os.fsdecode(b"bad\xff\xfe.jpg")]
    with ResultStore.open(tmp_path / "out") as store:
        for name in names:
            st = old_file(tmp_path / name)
            row = error_row(
                FileFacts(path=str(tmp_path / name), content_hash=name.encode(errors="surrogateescape").hex()),
                "corrupt",
                f"bad {name}",
            )
            store.record(str(tmp_path / name), st, row, KEY)
        store.flush()
        for name in names:
            row = store.replay(str(tmp_path / name), os.stat(tmp_path / name), KEY)
            assert row is not None and row["path"] == safe_text(str(tmp_path / name))
            assert row["error"] == safe_text(f"bad {name}")


def test_duplicate_content_shares_one_result(tmp_path: Path) -> None:
    with ResultStore.open(tmp_path / "out") as store:
        for name in ("a.jpg", "b.jpg"):
            store.record(str(tmp_path / name), old_file(tmp_path / name), ok_row(tmp_path / name), KEY)
        store.flush()
        assert store.counts() == (2, 1)
        assert store.replay(str(tmp_path / "b.jpg"), os.stat(tmp_path / "b.jpg"), KEY)["path"] == str(
            tmp_path / "b.jpg"
        )


def test_second_run_on_the_same_folder_is_refused_clearly(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with ResultStore.open(out):
        with pytest.raises(StoreLocked) as caught:
            ResultStore.open(out)
        message = str(caught.value)
        assert f"process {os.getpid()}" in message and str(out) in message and "--out" in message
        assert caught.value.exit_code == EXIT_FAILURE
        with ResultStore.open(out, lock=False) as reader:  # inspection needs no lock
            assert reader.counts() == (0, 0)
    with ResultStore.open(out):  # released on close
        pass
    assert (out / LOCK_NAME).exists()


def _write_then_die(out: str, images: list[str]) -> None:
    store = ResultStore.open(out, commit_rows=10_000, commit_seconds=3600)
    for name in images[:3]:
        path = Path(out).parent / name
        store.record(str(path), os.stat(path), ok_row(path, name.encode().hex().ljust(32, "0")), KEY)
    store.flush()
    for name in images[3:]:  # recorded but never committed
        path = Path(out).parent / name
        store.record(str(path), os.stat(path), ok_row(path, name.encode().hex().ljust(32, "0")), KEY)
    os.kill(os.getpid(), signal.SIGKILL)


def test_sigkilled_writer_leaves_a_readable_store_with_its_commits(tmp_path: Path) -> None:
    images = [f"{n}.jpg" for n in range(5)]
    for name in images:
        old_file(tmp_path / name, name.encode())
    out = tmp_path / "out"
    process = multiprocessing.get_context("spawn").Process(target=_write_then_die, args=(str(out), images))
    process.start()
    process.join(60)
    assert process.exitcode == -signal.SIGKILL
    with ResultStore.open(out) as store:  # the dead holder's lock went with it
        found = [store.replay(str(tmp_path / n), os.stat(tmp_path / n), KEY) for n in images]
        assert [row is not None for row in found] == [True, True, True, False, False]
        assert store.counts() == (3, 3)
    db = sqlite3.connect(out / STORE_NAME)
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()


def test_damaged_store_is_set_aside(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / STORE_NAME).write_bytes(b"this is not a database" * 100)
    with ResultStore.open(out) as store:
        assert store.counts() == (0, 0)
        assert store.notes and "damaged" in store.notes[0]
    assert len(list(out.glob(f"{STORE_NAME}.damaged-*"))) == 1


def test_store_from_another_schema_starts_empty(tmp_path: Path) -> None:
    image = tmp_path / "a.jpg"
    st = old_file(image)
    with ResultStore.open(tmp_path / "out") as store:
        store.record(str(image), st, ok_row(image), KEY)
    db = sqlite3.connect(tmp_path / "out" / STORE_NAME)
    db.execute("UPDATE meta SET value = 'old' WHERE key = 'format'")
    db.commit()
    db.close()
    with ResultStore.open(tmp_path / "out") as store:
        assert store.counts() == (0, 0)
