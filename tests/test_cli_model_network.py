"""`iqa model download` against a hub that does not answer (a closed local port) and one that does (a local
server answering 404): one line and exit 1 at once, no retries, no log lines of huggingface_hub's own."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

huggingface_hub = pytest.importorskip("huggingface_hub")

from huggingface_hub import constants  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from iqa_cli.cli.app import app  # noqa: E402

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


def _closed_port() -> int:
    """A local port nothing listens on: bound, read, closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every request huggingface_hub's client sends ("HEAD http://..."), recorded; no proxy, offline mode off.
    Point the hub somewhere with `_point_hub_at`."""
    if not hasattr(huggingface_hub, "set_client_factory"):
        pytest.skip("this huggingface_hub has no set_client_factory (it predates 1.0)")
    from huggingface_hub.utils import _http

    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name in ("HF_HUB_OFFLINE", "HF_HUB_VERBOSITY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    requests: list[str] = []
    original = _http._GLOBAL_CLIENT_FACTORY

    def counting_client():
        client = original()
        client.event_hooks["request"].insert(0, lambda request: requests.append(f"{request.method} {request.url}"))
        return client

    huggingface_hub.set_client_factory(counting_client)  # also closes a client made before, with other proxies
    try:
        yield requests
    finally:
        huggingface_hub.set_client_factory(original)


def _download(folder: Path) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `iqa model download --dir FOLDER --no-minilm`, on a terminal wide enough
    that the one error line, long paths and all, is not wrapped."""
    result = CliRunner().invoke(
        app, ["model", "download", "--dir", str(folder), "--no-minilm"], env={"COLUMNS": "1000"}
    )
    return result.exit_code, result.stdout, result.stderr


def _point_hub_at(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """HF_ENDPOINT=url, as if set before huggingface_hub was imported: it reads the variable then, into
    constants.ENDPOINT and the endpoint of the HfApi behind huggingface_hub.list_repo_files."""
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", url)


def test_download_stops_at_once_when_the_hub_is_unreachable(
    sent: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _closed_port()
    _point_hub_at(monkeypatch, f"http://127.0.0.1:{port}")
    models = tmp_path / "models"
    code, out, err = _download(models)
    assert code == 1
    assert out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"error: Cannot reach 127.0.0.1:{port} (ConnectError")
    assert "proxy variables" in lines[0] and f"HF_ENDPOINT (http://127.0.0.1:{port})" in lines[0]
    assert f"`iqa model info {models}` lists" in lines[0] and f"`iqa model check {models}`" in lines[0]
    # One request, no retry: huggingface_hub's backoff (1 + 2 + 4 + 8 + 8 s) was never entered.
    assert sent == [f"HEAD http://127.0.0.1:{port}"]
    assert not models.exists()


def test_download_names_the_proxy_variables_that_are_set(
    sent: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _closed_port()
    _point_hub_at(monkeypatch, "https://huggingface.co")
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    # The proxy is the closed port; the first client of the factory reads it (and its password is never shown).
    monkeypatch.setenv("HTTPS_PROXY", f"http://user:secret@127.0.0.1:{port}")
    code, _, err = _download(tmp_path / "m")
    assert code == 1
    line = " ".join(err.split())
    assert (
        "Cannot reach huggingface.co" in line and "(HTTPS_PROXY set)" in line and "set HF_ENDPOINT to a mirror" in line
    )
    assert "secret" not in line
    assert len(sent) == 1


class _NotFound(http.server.BaseHTTPRequestHandler):
    """A hub that answers every request with 404."""

    def do_HEAD(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_hub_that_answers_passes_the_check_and_its_errors_are_reported(
    sent: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        _point_hub_at(monkeypatch, url)
        code, _, err = _download(tmp_path / "m")
    finally:
        server.shutdown()
        server.server_close()
    assert code == 1
    line = " ".join(err.split())
    assert "Cannot reach" not in line
    assert "error: Could not fetch zhiyuanyou/DepictQA2-DQ495K" in line and "Re-run the command" in line
    assert sent[0] == f"HEAD {url}"
    # Every look-up went to the endpoint that answered, and none was retried (404 is not retried).
    assert all(request.split()[1].startswith(url) for request in sent), sent
    assert len(sent) < 10, sent


def test_the_real_command_prints_one_line_and_nothing_of_huggingface_hub(tmp_path: Path) -> None:
    """In a process of its own, so huggingface_hub's log handler writes to the real stderr."""
    port = _closed_port()
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES and not k.startswith(("HF_", "IQA_"))}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HOME=str(tmp_path / "hf"), COLUMNS="1000", NO_COLOR="1")
    done = subprocess.run(
        [sys.executable, "-m", "iqa_cli", "model", "download", "--dir", str(tmp_path / "m"), "--no-minilm"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,  # a hung command fails the test; a working one takes about a second
    )
    assert done.returncode == 1
    assert done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: Cannot reach 127.0.0.1:{port}")
