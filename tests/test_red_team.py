"""Names and bytes chosen by strangers: what the reports, the terminal and the output folder must withstand."""

from __future__ import annotations

import csv
import errno
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from PIL import Image

from iqa_cli.report.writers import CsvWriter
from iqa_cli.testing.cli import invoke_iqa

FORMULA_NAMES = ("=HYPERLINK(1).png", "+sum.png", "-minus.png", "@at.png", "'=quoted.png", "\tTab.png", "plain.png")


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    folder = tmp_path / "scraped"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0110] = "=cmd|' /C calc'!A0"  # camera model
    for i, name in enumerate(FORMULA_NAMES):
        Image.new("RGB", (64, 48), (30 * i, 120, 200)).save(folder / name)
    Image.new("RGB", (64, 48), (10, 20, 30)).save(folder / "exif.jpg", exif=exif.tobytes())
    return folder


def _audit(folder: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return invoke_iqa("audit", str(folder), "--out", str(out), "--workers", "0", "--engine", "signal", *extra)


def test_csv_cells_cannot_start_a_formula_and_the_other_formats_stay_exact(hostile: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _, err = _audit(hostile, out, "--format", "parquet,csv,jsonl", "--quiet")
    assert code == 0, err
    with open(out / "report.csv", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value
    names = {Path(row["path"]).name for row in rows}
    assert "'=HYPERLINK(1).png" not in names  # the path cell starts with the folder, not the name
    model = next(row["camera_model"] for row in rows if row["path"].endswith("exif.jpg"))
    assert model == "'=cmd|' /C calc'!A0"
    exact = pq.read_table(out / "report.parquet").to_pylist()
    assert next(r["camera_model"] for r in exact if r["path"].endswith("exif.jpg")) == "=cmd|' /C calc'!A0"
    lines = [json.loads(line) for line in (out / "report.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {Path(r["path"]).name for r in lines} == {*FORMULA_NAMES, "exif.jpg"}


def test_a_csv_cell_reads_back_as_it_was() -> None:
    from iqa_cli.report.reread import _from_text
    from iqa_cli.report.writers import _flat

    for text in ("=1+1", "'=1+1", "''@x", "'plain", "-", "plain", "\tx"):
        assert _from_text("answer", _flat(text)) == text


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(hostile: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (out / "iqa-store.lock").symlink_to(victim)
    code, _, err = _audit(hostile, out)
    assert code == 1 and "symbolic link" in err and "Traceback" not in err
    assert victim.read_text() == "precious\n"


def test_a_full_disk_is_one_line_and_keeps_the_previous_reports(
    hostile: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    assert _audit(hostile, out, "--quiet")[0] == 0
    before = {p.name: p.read_bytes() for p in out.glob("report.*")}

    def full(self: CsvWriter, rows: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(self._tmp))

    calls = {"n": 0}
    real = CsvWriter.write

    def full_later(self: CsvWriter, rows: object) -> None:
        calls["n"] += 1
        if calls["n"] > 1:
            full(self, rows)
        real(self, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(CsvWriter, "write", full_later)  # the disk fills after the first batch was written
    code, _, err = _audit(hostile, out, "--rerun", "--batch-size", "2")
    assert code == 1 and "No space left on device" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.glob("report.*")} == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


ESCAPE_NAME = "evil\x1b]8;;http:x\x07link\x1b[31m\u202egnp.png"


@pytest.fixture
def escapes(tmp_path: Path) -> Path:
    folder = tmp_path / "escapes"
    folder.mkdir()
    (folder / ESCAPE_NAME).write_bytes(b"not an image at all")  # an error row: its name is printed
    (folder / "two\nlines.png").write_bytes(b"neither")
    Image.new("RGB", (64, 48), (90, 120, 200)).save(folder / "good.png")
    return folder


def test_terminal_output_and_the_log_show_control_bytes_escaped(escapes: Path, tmp_path: Path) -> None:
    log = tmp_path / "iqa.log"
    code, out, err = _audit(escapes, tmp_path / "out", "--log-file", str(log))
    assert code == 0, err
    for text in (out, err, log.read_text(encoding="utf-8")):
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
    assert "evil\\x1b]8;;http:x\\x07link\\x1b[31m\\u202egnp.png" in " ".join(err.split())
    assert len(log.read_text(encoding="utf-8").splitlines()) == 2  # one line per skipped file, newline or not
    rows = pq.read_table(tmp_path / "out" / "report.parquet").to_pylist()
    assert {Path(r["path"]).name for r in rows} == {ESCAPE_NAME, "two\nlines.png", "good.png"}  # exact


def test_export_leaves_out_split_names_and_export0_lists_every_path(escapes: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _audit(escapes, out, "--quiet")[0] == 0
    code, listed, err = invoke_iqa("report", str(out), "--errors", "--export", "-")
    assert code == 0 and "left out" in err and "--export0" in err
    assert [Path(p).name for p in listed.splitlines()] == [ESCAPE_NAME]
    target = tmp_path / "list0"
    code, _, err = invoke_iqa("report", str(out), "--errors", "--export", str(target), "-0")
    assert code == 0, err
    names = sorted(Path(p).name for p in target.read_text(encoding="utf-8").split("\0") if p)
    assert names == sorted([ESCAPE_NAME, "two\nlines.png"])
    code, _, err = invoke_iqa("report", str(out), "--export", str(tmp_path / "no" / "such" / "list"))
    assert code == 1 and "Traceback" not in err and "No such file or directory" in err


def test_workers_are_capped_at_the_cores_and_the_run_says_so(hostile: Path, tmp_path: Path) -> None:
    from iqa_cli.audit.queue import default_workers

    code, _, err = invoke_iqa("audit", str(hostile), "--out", str(tmp_path / "out"), "--workers", "1000", "-q")
    assert code == 0, err
    assert f"--workers 1000 capped at {default_workers()}" in " ".join(err.split())


def test_a_small_file_is_read_without_a_buffer_of_the_size_limit(tmp_path: Path) -> None:
    import subprocess
    import sys

    # Under a 1.5 GiB address-space limit a read that reserved the 1 GiB file limit would fail.
    Image.new("RGB", (64, 48), (90, 120, 200)).save(tmp_path / "small.jpg", quality=90)
    probe = (
        "import resource, sys\n"
        "from iqa_cli.audit.load import load_image\n"
        "from iqa_cli.images import DecodePlan, LoadedImage\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1536 * 2**20, resource.RLIM_INFINITY))\n"
        f"result = load_image({str(tmp_path / 'small.jpg')!r}, DecodePlan(long_side=64))\n"
        "print(type(result).__name__, getattr(result, 'code', ''))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=600)
    assert done.stdout.split() == ["LoadedImage"], done.stdout + done.stderr


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_decode_workers_exit_when_the_main_process_is_killed(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(400):
        Image.new("RGB", (640, 480), (i % 255, 90, 160)).save(folder / f"{i:03d}.png")
    out = tmp_path / "out"
    main = subprocess.Popen(
        [sys.executable, "-m", "iqa_cli", "audit", str(folder), "--out", str(out), "--workers", "2", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )

    def children() -> list[int]:
        found = []
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == main.pid:
                        found.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
        return found

    deadline = time.monotonic() + 120
    while len(workers := children()) < 2:  # a condition, not a clock: the workers are up
        assert main.poll() is None and time.monotonic() < deadline, "the audit ended before its workers were seen"
        time.sleep(0.05)
    main.kill()
    main.wait()
    deadline = time.monotonic() + 60
    while alive := [pid for pid in workers if os.path.exists(f"/proc/{pid}") and _not_zombie(pid)]:
        assert time.monotonic() < deadline, f"workers {alive} outlived their killed parent"
        time.sleep(0.05)


def _not_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_running_out_of_memory_is_its_own_code_and_never_remembered(
    hostile: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import iqa_cli.audit.load as load

    out = tmp_path / "out"
    real = load._decode

    def starved(*args: object, **kwargs: object) -> object:
        raise MemoryError

    monkeypatch.setattr(load, "_decode", starved)
    code, summary, _ = _audit(hostile, out, "--json")
    assert code == 0 and json.loads(summary)["error_codes"] == {"out_of_memory": len(FORMULA_NAMES) + 1}
    monkeypatch.setattr(load, "_decode", real)  # the next, healthy run assesses them: nothing was cached
    code, summary, _ = _audit(hostile, out, "--json")
    assert code == 0 and json.loads(summary)["assessed"] == len(FORMULA_NAMES) + 1


def test_rows_that_need_no_engine_are_written_as_they_come(tmp_path: Path) -> None:
    from iqa_cli.audit.run import HELD_ROWS, AuditSettings, run_audit
    from iqa_cli.report.writers import JsonlWriter
    from iqa_cli.testing.engines import BrightnessEngine

    folder = tmp_path / "empty-files"
    folder.mkdir()
    for i in range(3 * HELD_ROWS):
        (folder / f"{i:04d}.jpg").write_bytes(b"")  # empty_file rows: nothing for the engine
    Image.new("RGB", (32, 24), (200, 200, 200)).save(folder / "zzzz.png")  # one readable image, at the end
    writes: list[int] = []

    class Counting(JsonlWriter):
        def write(self, rows):  # type: ignore[no-untyped-def]
            writes.append(len(rows))
            super().write(rows)

    out = tmp_path / "out"
    out.mkdir()
    settings = AuditSettings(paths=[str(folder)], workers=0, batch_size=16)
    summary = run_audit(settings, BrightnessEngine(), [Counting(out)])
    assert summary.files == 3 * HELD_ROWS + 1 and sum(writes) == summary.files
    assert max(writes) <= HELD_ROWS + 1 and len(writes) >= 3  # streamed in bounded pieces, not held to the end


def _tiny_photos(folder: Path, count: int) -> Path:
    import os
    import time

    import numpy as np

    folder.mkdir()
    rng = np.random.default_rng(3)
    past = time.time() - 3600  # older than the store's racy window
    for i in range(count):
        path = folder / f"{i:04d}.png"
        Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(path)
        os.utime(path, (past, past))
    return folder


def _wrap_store_connection(monkeypatch: pytest.MonkeyPatch, wrap: Callable[[Any], Any]) -> None:
    """Every store the run opens gets `wrap(connection)` as its connection: a disk or a file failing on cue."""
    from iqa_cli.audit.store import ResultStore

    real_open = ResultStore.open.__func__  # type: ignore[attr-defined]

    def open_wrapped(cls: type[ResultStore], *args: object, **kwargs: object) -> ResultStore:
        store = real_open(cls, *args, **kwargs)
        store._db = wrap(store._db)
        return store

    monkeypatch.setattr(ResultStore, "open", classmethod(open_wrapped))


@pytest.mark.parametrize("rerun", [False, True])
def test_a_store_damaged_past_its_first_page_is_set_aside_and_rebuilt(tmp_path: Path, rerun: bool) -> None:
    import pandas as pd

    from iqa_cli.audit.store import STORE_NAME

    photos, out = _tiny_photos(tmp_path / "photos", 300), tmp_path / "out"
    assert _audit(photos, out, "--quiet")[0] == 0
    complete = pd.read_parquet(out / "report.parquet")
    store = out / STORE_NAME
    pages = store.stat().st_size // 4096
    assert pages > 8
    with open(store, "r+b") as fh:  # the header page is intact; pages further on are garbage
        fh.seek(4096 * (pages // 2))
        fh.write(b"\xa5" * 4096 * 3)
    code, _, err = _audit(photos, out, *(["--rerun"] if rerun else []))
    assert code == 0 and "Traceback" not in err, err
    assert "damaged" in err and len(err.strip().splitlines()) == 1
    assert len(list(out.glob(f"{STORE_NAME}.damaged-*"))) == 1
    again = pd.read_parquet(out / "report.parquet")
    assert again.drop(columns=["elapsed_ms"]).equals(complete.drop(columns=["elapsed_ms"]))
    assert _audit(photos, out, "--quiet")[0] == 0  # the rebuilt store serves the next run


def test_a_store_failing_during_a_run_is_one_line_and_keeps_the_earlier_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    photos, out = _tiny_photos(tmp_path / "photos", 20), tmp_path / "out"
    assert _audit(photos, out, "--quiet")[0] == 0
    before = {p.name: p.read_bytes() for p in out.glob("report.*")}

    class DamagedLater:
        """The store's connection, failing its lookups after a few: the file was damaged after the check at open."""

        def __init__(self, db: sqlite3.Connection) -> None:
            self.db, self.lookups = db, 0

        def execute(self, query: str, *args: object) -> object:
            if query.startswith("SELECT r.row"):
                self.lookups += 1
                if self.lookups > 5:
                    raise sqlite3.DatabaseError("database disk image is malformed")
            return self.db.execute(query, *args)

        def __getattr__(self, name: str) -> object:
            return getattr(self.db, name)

    _wrap_store_connection(monkeypatch, DamagedLater)
    code, _, err = _audit(photos, out)
    assert code == 1 and "damaged during this run" in err and "Traceback" not in err, err
    assert {p.name: p.read_bytes() for p in out.glob("report.*")} == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def _on_a_pty(args: list[str], env: dict[str, str]) -> tuple[int, bytes]:
    """Run `python -m iqa_cli ARGS` with stdout and stderr on a pseudo-terminal; its exit code and output."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "iqa_cli", *args], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True
    )
    os.close(slave)
    output = b""
    while True:  # until the child closes the terminal (EIO on Linux once it is gone)
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    return process.wait(timeout=600), output


@pytest.mark.parametrize("no_color", ["1", ""])
def test_no_color_on_a_terminal_means_plain_text_and_no_redraws(tmp_path: Path, no_color: str) -> None:
    import os

    photos = _tiny_photos(tmp_path / "photos", 40)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really")  # a problem line on stderr too
    env = {**os.environ, "NO_COLOR": no_color, "TERM": "xterm-256color", "COLUMNS": "100"}
    code, output = _on_a_pty(["audit", str(photos), "--out", str(tmp_path / "out"), "--workers", "0"], env)
    assert code == 0, output
    assert b"iqa audit" in output and b"broken.jpg" in output
    if no_color:
        assert b"\x1b" not in output and b"\r" not in output.replace(b"\r\n", b"\n")
    else:
        assert b"\x1b[" in output  # the same run on a terminal without NO_COLOR is styled: the check can fail


def test_links_out_of_the_folder_are_not_followed_for_lists_or_when_asked(tmp_path: Path) -> None:
    import os

    secret = tmp_path / "secret"
    secret.mkdir()
    Image.new("RGB", (32, 24), (1, 2, 3)).save(secret / "private.png")
    scraped = _tiny_photos(tmp_path / "scraped", 2)
    os.symlink(secret / "private.png", scraped / "link.png")
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{scraped / name}\n" for name in ("0000.png", "0001.png", "link.png")))

    def codes(*args: str) -> dict[str, str | None]:
        out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
        code, _, err = invoke_iqa("audit", *args, "--out", str(out), "--workers", "0", "--engine", "signal", "-q")
        assert code == 0, err
        return {Path(r["path"]).name: r["error_code"] for r in pq.read_table(out / "report.parquet").to_pylist()}

    assert codes(str(scraped))["link.png"] is None  # your own folder: links followed, as before
    assert codes(str(scraped), "--no-follow-outside")["link.png"] == "outside_folder"
    assert codes("--from-file", str(listing))["link.png"] == "outside_folder"  # a list: not followed by default
    assert codes("--from-file", str(listing), "--follow-outside")["link.png"] is None


def test_a_file_swapped_for_a_fifo_as_it_is_opened_is_refused_not_waited_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import threading

    from iqa_cli.audit.load import load_image
    from iqa_cli.images import DecodePlan

    image = tmp_path / "a.png"
    Image.new("RGB", (16, 12), (9, 9, 9)).save(image)
    real_open = os.open

    def swap_then_open(path: str, flags: int, *args: int) -> int:
        if str(path) == str(image):
            os.unlink(path)
            os.mkfifo(path)  # between the stat and the open: a reader opening it plainly waits for a writer
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", swap_then_open)
    result: list[object] = []
    reader = threading.Thread(target=lambda: result.append(load_image(str(image), DecodePlan(long_side=16))))
    reader.start()
    reader.join(timeout=600)  # a bound on a hang, not a wait for something to happen
    if reader.is_alive():  # let the thread end, then fail
        with open(image, "wb"):
            pass
        reader.join()
        pytest.fail("opening the swapped file waited for a writer")
    assert getattr(result[0], "code", None) == "not_a_file"


def test_a_full_disk_under_the_store_is_one_line_and_keeps_the_previous_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    photos, out = _tiny_photos(tmp_path / "photos", 12), tmp_path / "out"
    assert _audit(photos, out, "--quiet")[0] == 0
    before = {p.name: p.read_bytes() for p in out.glob("report.*")}

    class FillsUp:
        """The store's connection on a disk that fills after the first commit, as SQLite reports it."""

        def __init__(self, db: sqlite3.Connection) -> None:
            self.db, self.commits = db, 0

        def executemany(self, query: str, rows: object) -> object:
            self.commits += query.startswith("INSERT OR REPLACE INTO results")
            if self.commits > 1:
                raise sqlite3.OperationalError("database or disk is full")
            return self.db.executemany(query, rows)

        def __getattr__(self, name: str) -> object:
            return getattr(self.db, name)

    _wrap_store_connection(monkeypatch, FillsUp)
    code, _, err = _audit(photos, out, "--rerun", "--batch-size", "2")
    assert code == 1 and "disk is full" in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.glob("report.*")} == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
