"""Plugins installed from a test distribution in a temporary folder are listed by `iqa plugins` and used by audit."""

from __future__ import annotations

import csv
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from iqa_cli import plugins
from iqa_cli.cli.app import app
from iqa_cli.testing.cli import invoke_iqa

runner = CliRunner()

# A third-party plugin in one module: an engine, a report writer and a check, registered through the hooks.
TESTPLUGIN = '''
"""iqa_testplugin: a constant engine, a TSV report writer and a size check, for iqa's plugin tests."""

from __future__ import annotations

import os
from pathlib import Path

from iqa_cli.checks import Check, Finding
from iqa_cli.engines.base import Assessment, Engine
from iqa_cli.hookspecs import hookimpl
from iqa_cli.images import DecodePlan
from iqa_cli.report.writers import ReportWriter


def decoded_size(image):
    # Module level, so the spawned decode workers unpickle it by importing this module.
    return image.pixels.shape[:2]


class ConstantEngine(Engine):
    name = "constant"
    version = "1.0"

    @classmethod
    def create(cls, options):
        return cls()

    @property
    def decode_plan(self):
        return DecodePlan(long_side=32)

    def settings(self):
        return {}

    def preparer(self):
        return decoded_size

    def assess(self, batch, request):
        return [
            Assessment("distortion_identification", "What distortions?", "None", rating="good", score=0.8,
                       confidence=0.9)
            for _ in batch
        ]


class TsvWriter(ReportWriter):
    format = "tsv"
    suffix = ".tsv"

    def __init__(self, out_dir: Path, stem: str = "report") -> None:
        super().__init__(out_dir, stem)
        self._file = open(self._tmp, "w", encoding="utf-8")
        self._file.write("path\\tengine\\tfindings\\n")

    def write(self, rows):
        for row in rows:
            self._file.write(f"{row['path']}\\t{row['engine']}\\t{'; '.join(row['findings'])}\\n")
        self.rows_written += len(rows)

    def _finish(self):
        self._file.close()


class SizeCheck(Check):
    name = "size-check"

    def measure(self, image):
        return (*image.pixels.shape[:2], os.getpid())

    def review(self, path, payload):
        height, width, measured_in = payload
        found = [Finding(self.name, "size", f"decoded at {width}x{height}")]
        if measured_in != os.getpid():  # proves the plugin's code ran in a spawned decode worker
            found.append(Finding(self.name, "worker", "measured in a worker process"))
        return found


@hookimpl
def iqa_engines():
    return [ConstantEngine]


@hookimpl
def iqa_writers():
    return [TsvWriter]


@hookimpl
def iqa_checks():
    return [SizeCheck]
'''

# A second plugin with an engine of the same name.
OTHERPLUGIN = '''
"""iqa_otherplugin: another engine called "constant"."""

from iqa_cli.hookspecs import hookimpl
from iqa_testplugin import ConstantEngine


class AnotherConstantEngine(ConstantEngine):
    pass


@hookimpl
def iqa_engines():
    return [AnotherConstantEngine]
'''

BROKEN = '''
"""iqa_brokenplugin: needs a library that is not installed."""

import iqa_no_such_library  # noqa: F401
'''


def install(site: Path, module: str, source: str, entry_points: str, version: str = "1.0") -> None:
    """A module plus the `.dist-info` folder that pip would write for it: enough for importlib.metadata."""
    (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = site / f"{module}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: {version}\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path (and PYTHONPATH, for spawned workers) where tests install distributions."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    # spawn already hands sys.path to its children; PYTHONPATH also reaches any other kind of subprocess.
    monkeypatch.setenv("PYTHONPATH", str(folder))
    plugins.plugin_manager.cache_clear()  # functools.cache'd: it would keep the plugins it found first
    yield folder
    plugins.plugin_manager.cache_clear()
    for module in ("iqa_testplugin", "iqa_otherplugin", "iqa_brokenplugin"):
        sys.modules.pop(module, None)


@pytest.fixture
def testplugin(site: Path) -> Path:
    install(site, "iqa_testplugin", TESTPLUGIN, "[iqa]\nconstant = iqa_testplugin\n")
    return site


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, size in enumerate([(64, 48), (40, 80), (20, 20)]):
        Image.new("RGB", size, (40 * i, 100, 200)).save(folder / f"img{i}.png")
    return folder


def invoke(*args: str) -> tuple[int, str, str]:
    return invoke_iqa(*args)


def line_with(output: str, word: str) -> str:
    [line] = [line for line in output.splitlines() if f" {word} " in f" {line} "]
    return line


def test_plugins_lists_kind_name_class_and_distribution(testplugin: Path) -> None:
    code, out, err = invoke("plugins")
    assert code == 0, err
    for kind, name, cls in (
        ("engine", "constant", "ConstantEngine"),
        ("format", "tsv", "TsvWriter"),
        ("check", "size-check", "SizeCheck"),
    ):
        line = line_with(out, name)
        assert kind in line and f"iqa_testplugin.{cls}" in line and "iqa_testplugin 1.0" in line, line
    signal = line_with(out, "signal")
    assert "engine" in signal and "iqa_cli.engines.signal.engine.SignalEngine" in signal and "built in" in signal


def test_without_the_distribution_nothing_is_listed(site: Path) -> None:
    code, out, _ = invoke("plugins")
    assert code == 0 and "constant" not in out and "iqa_testplugin" not in out


@pytest.mark.parametrize("workers", [0, 1])
def test_audit_uses_the_plugins_engine_writer_and_check(
    testplugin: Path, photos: Path, tmp_path: Path, workers: int
) -> None:
    out_dir = tmp_path / "out"
    code, out, err = invoke(
        "audit", str(photos), "--out", str(out_dir), "--engine", "constant", "--format", "tsv,parquet",
        "--checks", "size-check", "--workers", str(workers), "--json",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    assert summary["engine"] == "constant"
    in_worker = {"size-check/worker": 3} if workers else {}
    assert summary["findings"] == {"size-check/size": 3, **in_worker}
    with open(out_dir / "report.tsv", encoding="utf-8", newline="") as f:
        tsv = list(csv.DictReader(f, delimiter="\t"))
    assert [Path(row["path"]).name for row in tsv] == ["img0.png", "img1.png", "img2.png"]
    assert {row["engine"] for row in tsv} == {"constant"}
    assert tsv[0]["findings"].startswith("size-check/size: decoded at 32x24")  # the engine's plan: long side 32
    rows = pd.read_parquet(out_dir / "report.parquet")
    assert list(rows["engine"]) == ["constant"] * 3 and list(rows["status"]) == ["ok"] * 3
    worker = ["size-check/worker: measured in a worker process"] if workers else []
    assert [list(f) for f in rows["findings"]] == [
        ["size-check/size: decoded at 32x24", *worker],
        ["size-check/size: decoded at 16x32", *worker],
        ["size-check/size: decoded at 20x20", *worker],
    ]


def test_two_plugins_with_one_engine_name_is_an_error(testplugin: Path, photos: Path, tmp_path: Path) -> None:
    install(testplugin, "iqa_otherplugin", OTHERPLUGIN, "[iqa]\nother = iqa_otherplugin\n")
    for args in (["plugins"], ["audit", str(photos), "--out", str(tmp_path / "out"), "--engine", "signal"]):
        code, _, err = invoke(*args)
        assert code == 2, err
        assert "two plugins provide the engine 'constant'" in err
        assert "iqa_testplugin" in err and "iqa_otherplugin" in err


def test_a_plugin_that_fails_to_import_is_a_clear_error(site: Path) -> None:
    install(site, "iqa_brokenplugin", BROKEN, "[iqa]\nbroken = iqa_brokenplugin\n", version="2.3")
    result = runner.invoke(app, ["plugins"], env={"COLUMNS": "200"})
    assert result.exit_code == 2 and not isinstance(result.exception, ImportError), result.exception
    for part in ("'broken'", "iqa_brokenplugin 2.3", "ModuleNotFoundError", "iqa_no_such_library", "uninstall"):
        assert part in result.stderr


FAILING_HOOK = '''
"""iqa_brokenplugin: imports, but its hook raises (or returns nonsense)."""

from iqa_cli.hookspecs import hookimpl


@hookimpl
def iqa_writers():
    MODE
'''


@pytest.mark.parametrize(
    ("body", "said"),
    [("raise RuntimeError('config missing')", "RuntimeError: config missing"), ("return 'tsv'", "list of classes")],
)
def test_a_plugin_hook_that_fails_is_one_line_naming_the_plugin(
    site: Path, photos: Path, tmp_path: Path, body: str, said: str
) -> None:
    install(site, "iqa_brokenplugin", FAILING_HOOK.replace("MODE", body), "[iqa]\nbroken = iqa_brokenplugin\n")
    for args in (["plugins"], ["audit", str(photos), "--out", str(tmp_path / "out"), "--workers", "0"]):
        code, _, err = invoke(*args)
        message = " ".join(err.split())
        assert code == 2 and "Traceback" not in err, err
        assert "'broken'" in message and "iqa_writers" in message and said in message and "uninstall" in message


FAILING_WRITER = '''
"""iqa_brokenplugin: a report writer with a bug that shows on its second batch."""

from iqa_cli.hookspecs import hookimpl
from iqa_cli.report.writers import JsonlWriter


class FlakyWriter(JsonlWriter):
    format = "flaky"
    suffix = ".flaky"

    def write(self, rows):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls > 1:
            raise KeyError("a bug in the plugin")
        super().write(rows)


@hookimpl
def iqa_writers():
    return [FlakyWriter]
'''


def test_a_plugin_writer_that_fails_during_a_run_is_dropped_and_the_audit_goes_on(
    site: Path, photos: Path, tmp_path: Path
) -> None:
    install(site, "iqa_brokenplugin", FAILING_WRITER, "[iqa]\nbroken = iqa_brokenplugin\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.flaky").write_text("the previous report\n")
    code, _, err = invoke(
        "audit", str(photos), "--out", str(out), "--format", "flaky,parquet", "--batch-size", "1", "--workers", "0"
    )
    assert code == 0 and "Traceback" not in err, err
    message = " ".join(err.split())
    assert "the flaky report writer" in message and "KeyError" in message and "disabled for this run" in message
    assert len(pd.read_parquet(out / "report.parquet")) == 3  # the built-in writer got every row
    assert (out / "report.flaky").read_text() == "the previous report\n"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_two_distributions_with_one_entry_point_name_is_an_error(testplugin: Path) -> None:
    install(testplugin, "iqa_otherplugin", OTHERPLUGIN, "[iqa]\nconstant = iqa_otherplugin\n")
    code, _, err = invoke("plugins")
    assert code == 2
    assert "'constant'" in err and "iqa_testplugin" in err and "iqa_otherplugin" in err


# One test per hook (tests/test_meta.py holds every hook in hookspecs.py to having one).


def test_hook_iqa_engines(testplugin: Path) -> None:
    found = plugins.engines()
    assert found["constant"].__module__ == "iqa_testplugin"
    assert {"signal", "depictqa"} <= set(found) and plugins.origin(found["signal"]) == "built in"


def test_hook_iqa_writers(testplugin: Path, tmp_path: Path) -> None:
    found = plugins.writers()
    assert {"parquet", "csv", "jsonl", "tsv"} <= set(found)
    writer = found["tsv"](tmp_path)
    writer.write([{"path": "a.png", "engine": "constant", "findings": []}])
    assert writer.close().read_text(encoding="utf-8").splitlines()[1] == "a.png\tconstant\t"


def test_hook_iqa_checks(testplugin: Path) -> None:
    found = plugins.checks()
    assert found["size-check"].__module__ == "iqa_testplugin"
    assert plugins.origin(found["size-check"]) == "iqa_testplugin 1.0"
