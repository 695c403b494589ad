"""Browser test helpers: headless Chromium's DOM of a page, and a probe script the page's CSP lets run."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pagetools import Node, parse_page

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def browser() -> str:
    """The browser to run, or the test is skipped saying how to get one."""
    found = os.environ.get("IQA_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if not found:
        pytest.skip("chromium not installed: apt-get install chromium")
    return found


def dump_dom(url: str, profile: Path) -> Node:
    """The DOM after the page loaded and its scripts (load handlers included) ran."""
    command = [
        browser(),
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "<html" in done.stdout, done.stderr[-3000:]
    return parse_page(done.stdout)


def with_probe(report: Path, probe: str) -> Path:
    """A copy of the report with a test script that records what the browser did into <pre id="probe">.

    The page's Content-Security-Policy runs only scripts whose hash it lists, so the probe's is added.
    """
    digest = base64.b64encode(hashlib.sha256(probe.encode("utf-8")).digest()).decode("ascii")
    text = report.read_text(encoding="utf-8")
    source = html.escape(f"'sha256-{digest}'")  # the CSP sits in an attribute, so its quotes are escaped
    text = text.replace("script-src ", f"script-src {source} ", 1)
    text = text.replace("</body>", f"<script>{probe}</script>\n</body>", 1)
    copy = report.with_name("probe.html")
    copy.write_text(text, encoding="utf-8")
    return copy


def probed(report: Path, probe: str, profile: Path) -> tuple[dict[str, Any], Node]:
    """What `probe` recorded (the JSON it put in <pre id="probe">) and the DOM it left."""
    page = dump_dom(with_probe(report, probe).as_uri(), profile)
    return json.loads(page.by_id("probe").text), page
