"""Inputs named by URL, read through fsspec: a local HTTP server (a stand-in for object storage) and memory://."""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pandas as pd
import pytest

import iqa_cli
from iqa_cli.audit import remote
from iqa_cli.audit.remote import MissingBackend
from iqa_cli.testing.cli import invoke_iqa
from tests.test_containers import PAST, _count_loads, _image, _parquet, _shard


class _Handler(http.server.SimpleHTTPRequestHandler):
    """http.server's files and folder listings, plus what object stores answer and http.server does not: byte
    ranges (206). `dated` False drops Last-Modified: a server that says nothing of a file's version."""

    dated = True
    requests: list[str]

    def log_message(self, *args: object) -> None:
        pass

    def send_header(self, keyword: str, value: str) -> None:
        if self.dated or keyword != "Last-Modified":
            super().send_header(keyword, value)

    def send_head(self) -> io.BytesIO | object | None:
        self.requests.append(self.path)
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        path = self.translate_path(self.path)
        if wanted is None or not os.path.isfile(path):
            return super().send_head()
        data = Path(path).read_bytes()
        start = int(wanted.group(1))
        end = min(int(wanted.group(2) or len(data) - 1), len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end + 1 - start))
        self.end_headers()
        return io.BytesIO(data[start : end + 1])


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Path, type[_Handler]]]:
    """(base URL, the folder it serves, its handler class): photos/ (a sub-folder, a hidden file, a non-image),
    a WebDataset shard and a Parquet file, all dated an hour ago; served on 127.0.0.1 on a free port."""
    root = tmp_path / "site"
    (root / "photos" / "sub").mkdir(parents=True)
    (root / "photos" / "a.jpg").write_bytes(_image("JPEG", 1))
    (root / "photos" / "bad.jpg").write_bytes(b"<html>not an image</html>")
    (root / "photos" / "notes.txt").write_text("not listed: not an image's name")
    (root / "photos" / ".hidden.png").write_bytes(_image("PNG", 9))
    (root / "photos" / "sub" / "b.png").write_bytes(_image("PNG", 2))
    _shard(root / "00000.tar")
    _parquet(root / "part.parquet")
    for path in root.rglob("*"):
        os.utime(path, (PAST, PAST))
    handler = type("Handler", (_Handler,), {"requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()  # the socket listens from the constructor on: nothing to wait for
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root, handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _audit(out: Path, *urls: str, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    code, _, stderr = invoke_iqa("audit", *urls, "--engine", "signal", "--out", str(out), "--quiet", *extra)
    assert code == 0, stderr
    return pd.read_parquet(out / "report.parquet")


@pytest.mark.parametrize("workers", ["0", "1"])
def test_a_folder_a_shard_and_a_parquet_file_by_url_give_one_row_per_image(
    site: tuple[str, Path, type[_Handler]], tmp_path: Path, workers: str
) -> None:
    base, _, _ = site
    secret = base.replace("http://", "http://reader:s3cr3t@")
    report = _audit(
        tmp_path / "out",
        f"{secret}/photos/",
        f"{base}/00000.tar",
        f"{base}/part.parquet?X-Amz-Signature=s3cr3t&v=2",
        f"{base}/photos/gone.jpg",
        extra=("--workers", workers),
    )
    shard = f"{base}/00000.tar#00000/"
    table = f"{base}/part.parquet?v=2"
    assert list(report["path"]) == [
        f"{base}/photos/a.jpg",
        f"{base}/photos/bad.jpg",
        f"{base}/photos/sub/b.png",
        *(f"{shard}00000000{i}.{ext}" for i, ext in enumerate(("jpg", "png", "jpg", "jpg"))),
        *(f"{table}#{row}" for row in range(4)),
        f"{base}/photos/gone.jpg",
    ]
    assert list(report["error_code"].fillna("")) == [
        *("", "not_an_image", ""),
        *("", "", "truncated", "not_an_image"),
        *("", "empty_file", "not_an_image", ""),
        "not_found",
    ]
    assert list(report["root"].iloc[:3]) == [f"{base}/photos/"] * 3
    assert report["format"].iloc[0] == "JPEG" and report["status"].iloc[2] == "ok"
    assert json.loads(report["source_meta"].iloc[3])["url"] == "https://example.com/0.jpg"
    everything = (tmp_path / "out" / "report.csv").read_text() + report.to_csv()
    assert "s3cr3t" not in everything and "reader" not in everything


def test_a_remote_shard_cut_short_keeps_its_first_members(
    site: tuple[str, Path, type[_Handler]], tmp_path: Path
) -> None:
    base, root, _ = site
    (root / "cut.tar").write_bytes((root / "00000.tar").read_bytes()[:6000])  # inside the second image
    report = _audit(tmp_path / "out", f"{base}/cut.tar", extra=("--workers", "0"))
    assert list(report["path"]) == [f"{base}/cut.tar#00000/000000000.jpg", f"{base}/cut.tar#00000/000000001.png"]
    assert list(report["error_code"].fillna("")) == ["", "truncated"]


def test_an_unchanged_remote_file_is_replayed_and_a_changed_one_read_again(
    site: tuple[str, Path, type[_Handler]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, root, _ = site
    urls = (f"{base}/photos/", f"{base}/00000.tar", f"{base}/part.parquet")
    first = _audit(tmp_path / "out", *urls, extra=("--workers", "0"))
    loaded = _count_loads(monkeypatch)
    second = _audit(tmp_path / "out", *urls, extra=("--workers", "0"))
    assert loaded == []
    pd.testing.assert_frame_equal(first.drop(columns="elapsed_ms"), second.drop(columns="elapsed_ms"))
    (root / "photos" / "a.jpg").write_bytes(_image("JPEG", 7))  # a new Last-Modified (and size)
    os.utime(root / "photos" / "a.jpg", (PAST + 60, PAST + 60))
    third = _audit(tmp_path / "out", *urls, extra=("--workers", "0"))
    assert loaded == [f"{base}/photos/a.jpg"]
    assert (
        third.set_index("path").loc[f"{base}/photos/a.jpg", "content_hash"]
        != (first.set_index("path").loc[f"{base}/photos/a.jpg", "content_hash"])
    )


def test_a_remote_file_without_a_version_is_read_again_and_the_run_says_so(
    site: tuple[str, Path, type[_Handler]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, _, handler = site
    handler.dated = False
    url = f"{base}/photos/a.jpg"
    first = iqa_cli.audit(url, engine="signal", workers=0, out=tmp_path / "out")
    assert [row["status"] for row in first] == ["ok"]
    assert any("read again on every run" in note for note in first.summary.notes)
    loaded = _count_loads(monkeypatch)
    iqa_cli.audit(url, engine="signal", workers=0, out=tmp_path / "out")
    assert loaded == [url]


@pytest.fixture
def memory_photos() -> Iterator[str]:
    """memory://photos/: two images in a subfolder and a shard at the top, removed afterwards (the memory
    filesystem is one per process: audited with workers=0)."""
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/photos/2021/a.jpg", _image("JPEG", 3))
    fs.pipe_file("/photos/2021/b.png", _image("PNG", 4))
    fs.pipe_file("/photos/c.jpg", _image("JPEG", 5))
    fs.pipe_file("/photos/skip.txt", b"not an image's name")
    try:
        yield "memory://photos"
    finally:
        fs.rm("/photos", recursive=True)


def test_a_memory_folder_is_listed_files_first_then_subfolders(memory_photos: str) -> None:
    result = iqa_cli.audit(memory_photos, engine="signal", workers=0)
    assert [row["path"] for row in result] == [
        f"{memory_photos}/c.jpg",
        f"{memory_photos}/2021/a.jpg",
        f"{memory_photos}/2021/b.png",
    ]
    assert [row["status"] for row in result] == ["ok"] * 3
    assert [row["root"] for row in result] == [memory_photos] * 3
    limited = iqa_cli.audit(f"{memory_photos}/", engine="signal", workers=0, exclude=["2021"])
    assert [row["path"] for row in limited] == [f"{memory_photos}/c.jpg"]


def test_brace_patterns_in_urls_are_expanded(memory_photos: str) -> None:
    result = iqa_cli.audit(f"{memory_photos}/2021/{{a.jpg,b.png,c.jpg}}", engine="signal", workers=0)
    assert [(row["path"].rsplit("/", 1)[1], row["error_code"]) for row in result] == [
        ("a.jpg", None),
        ("b.png", None),
        ("c.jpg", "not_found"),
    ]


def test_a_url_whose_backend_is_missing_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, stderr = invoke_iqa("audit", "nosuch://x/y.jpg", "--out", str(tmp_path / "out"))
    assert code == 2 and "fsspec has no backend" in stderr and "Traceback" not in stderr

    def not_installed(protocol: str) -> None:
        raise ImportError(f"Install s3fs to access {protocol}")

    monkeypatch.setattr(fsspec, "get_filesystem_class", not_installed)  # as where s3fs is not installed
    code, stdout, stderr = invoke_iqa("audit", "s3://bucket/shards/00000.tar", "--out", str(tmp_path / "out"))
    assert code == 2 and stdout == ""
    assert stderr.strip().splitlines() == ["error: reading s3:// URLs needs the s3fs package: pip install s3fs"]
    assert not (tmp_path / "out").exists()
    with pytest.raises(MissingBackend, match="s3fs"):
        iqa_cli.audit(["s3://bucket/a.jpg"], engine="signal", workers=0)


def test_in_a_list_a_url_whose_backend_is_missing_is_an_error_row(tmp_path: Path) -> None:
    listed = tmp_path / "list.txt"
    good = tmp_path / "a.png"
    good.write_bytes(_image("PNG", 1))
    listed.write_text(f"nosuch://bucket/a.jpg\n{good}\n")
    code, _, stderr = invoke_iqa(
        "audit", "--from-file", str(listed), "--engine", "signal", "--out", str(tmp_path / "out"), "--quiet"
    )
    assert code == 0, stderr
    report = pd.read_parquet(tmp_path / "out" / "report.parquet")
    assert list(report["error_code"].fillna("")) == ["missing_backend", ""]
    assert "fsspec has no backend" in report["error"].iloc[0]


def test_shown_urls_and_messages_carry_no_credentials() -> None:
    assert remote.shown("https://user:pw@host.example/a/b.jpg?x=1") == "https://host.example/a/b.jpg?x=1"
    assert remote.shown("s3://bucket/k.tar?X-Amz-Credential=AK&X-Amz-Signature=ff&part=2") == "s3://bucket/k.tar?part=2"
    assert remote.shown("/local/a@b.jpg") == "/local/a@b.jpg"
    scrubbed = remote.scrub("403 for https://user:pw@host/x?sig=abc&token=t1 (AccessDenied)")
    assert "pw" not in scrubbed and "abc" not in scrubbed and "t1" not in scrubbed and "AccessDenied" in scrubbed


def test_the_core_imports_and_audits_local_files_without_fsspec(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(_image("PNG", 1))
    script = f"""
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name == "fsspec" or name.startswith("fsspec."):
            raise ImportError("fsspec is blocked in this test")
sys.meta_path.insert(0, Blocked())
import iqa_cli
from iqa_cli.audit.remote import MissingBackend
result = iqa_cli.audit({str(tmp_path)!r}, engine="signal", workers=0)
assert [row["status"] for row in result] == ["ok"], result.rows
try:
    iqa_cli.audit("https://example.com/a.jpg", engine="signal", workers=0)
except MissingBackend as exc:
    print(exc)
assert "fsspec" not in sys.modules
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("reading https:// URLs needs fsspec and aiohttp: pip install")
