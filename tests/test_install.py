"""How iqa installs: the README's commands and CI, the install hints, the wheel's man pages, the core's size."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from iqa_cli import install
from iqa_cli.engines.signal import compare
from iqa_cli.install import CPU_TORCH, install_hint

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def readme_commands() -> list[str]:
    return README.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()


# ------------------------------------------------------------------------------- the README and CI


def test_readme_test_command_installs_no_torch_pin_and_says_how_to_get_cpu_torch() -> None:
    test_command = readme_commands()[1]
    assert "torch" not in test_command and "python -m pytest" in test_command
    below = README.split("```", 2)[2].split("\n## ", 1)[0]  # the paragraph under the commands
    assert "pip install torch --index-url https://download.pytorch.org/whl/cpu" in below
    assert "pip install torch==2.13.0" in below  # what CI does first, and why


def test_ci_installs_the_cpu_pin_then_runs_the_readme_test_command_verbatim() -> None:
    test_command = readme_commands()[1]
    assert [line for line in CI.splitlines() if line.startswith(test_command)], "CI does not run the README's line"
    assert CI.index("pip install --quiet torch==2.13.0") < CI.index(test_command)


def test_torch_stays_in_the_depictqa_extra() -> None:
    core = [_name(r) for r in PYPROJECT["project"]["dependencies"]]
    assert not {"torch", "transformers", "pandas", "scikit-image"} & set(core), core
    assert {"torch", "transformers"} <= {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["depictqa"]}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


# ------------------------------------------------------------------------------- install hints


class FakeDistribution:
    """What install.py reads of an importlib.metadata distribution: direct_url.json and Requires-Dist."""

    def __init__(self, direct_url: Any = None, requires: list[str] | None = None) -> None:
        self.direct_url = direct_url
        self.requires = requires

    def read_text(self, name: str) -> str | None:
        assert name == "direct_url.json"
        if self.direct_url is None or isinstance(self.direct_url, str):
            return self.direct_url
        return json.dumps(self.direct_url)


REQUIRES = [
    "numpy>=1.24",
    "tomli>=1.1; python_version < '3.11'",
    'torch>=2.4; extra == "depictqa"',
    'transformers<6,>=4.46; extra == "depictqa"',
    'pillow-heif>=0.16; extra == "heif"',
    'matplotlib>=3.5; extra == "plot"',
    'backports-x>=1; python_version < "3.11" and extra == "plot"',
]


@pytest.fixture
def distribution(monkeypatch: pytest.MonkeyPatch):
    """Set the distribution install_hint sees: `distribution(FakeDistribution(...))`."""

    def use(dist: Any) -> None:
        install_hint.cache_clear()
        monkeypatch.setattr(install, "_distribution", lambda: dist)

    yield use
    install_hint.cache_clear()


def test_a_checkout_installed_editable_gets_pip_install_e_of_its_folder(distribution, tmp_path: Path) -> None:
    checkout = tmp_path / "my iqa"  # a space: the command must still be one argument
    checkout.mkdir()
    distribution(FakeDistribution({"url": checkout.as_uri(), "dir_info": {"editable": True}}, REQUIRES))
    hint = install_hint("heif")
    assert hint == f"pip install -e '{checkout}[heif]'"
    assert shlex.split(hint) == ["pip", "install", "-e", f"{checkout}[heif]"]


def test_a_checkout_installed_plainly_gets_pip_install_of_its_folder(distribution, tmp_path: Path) -> None:
    distribution(FakeDistribution({"url": tmp_path.as_uri(), "dir_info": {}}, REQUIRES))
    assert install_hint("plot") == f"pip install '{tmp_path}[plot]'"


def test_an_archive_gets_pip_install_of_the_archive(distribution, tmp_path: Path) -> None:
    wheel = tmp_path / "iqa_cli-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    distribution(FakeDistribution({"url": wheel.as_uri(), "archive_info": {"hashes": {}}}, REQUIRES))
    assert install_hint("heif") == f"pip install '{wheel}[heif]'"


def test_the_depictqa_hint_says_how_to_get_cpu_torch(distribution, tmp_path: Path) -> None:
    distribution(FakeDistribution({"url": tmp_path.as_uri(), "dir_info": {"editable": True}}, REQUIRES))
    hint = install_hint("depictqa")
    assert hint.startswith(f"pip install -e '{tmp_path}[depictqa]'") and CPU_TORCH in hint
    assert "https://download.pytorch.org/whl/cpu" in CPU_TORCH


@pytest.mark.parametrize(
    "direct_url",
    [
        None,  # no direct_url.json: installed from an index
        {"url": "https://example.org/iqa_cli-0.1.0-py3-none-any.whl", "archive_info": {}},
        {"url": "git+https://example.org/iqa.git", "vcs_info": {"vcs": "git", "commit_id": "0" * 40}},
        {"url": "file:///nonexistent/iqa-checkout", "dir_info": {}},  # the folder is gone
        {"url": "file:///nonexistent/iqa.whl", "archive_info": {}},
        {"url": 3},
        "not json",
        ["a", "list"],
    ],
)
def test_any_other_origin_gets_the_extras_own_requirements(distribution, direct_url: Any) -> None:
    distribution(FakeDistribution(direct_url, REQUIRES))
    assert install_hint("heif") == "pip install 'pillow-heif>=0.16'"
    assert install_hint("plot") == """pip install 'matplotlib>=3.5' 'backports-x>=1; python_version < "3.11"'"""
    depictqa = install_hint("depictqa")
    assert depictqa.startswith("pip install 'torch>=2.4' 'transformers<6,>=4.46' (") and CPU_TORCH in depictqa


def test_extra_names_compare_as_pep_685_says(distribution) -> None:
    distribution(FakeDistribution(None, ['pillow-heif>=0.16; extra == "Heif_Support"']))
    assert install_hint("heif-support") == "pip install 'pillow-heif>=0.16'"


class Broken:
    def read_text(self, name: str) -> str:
        raise OSError("unreadable metadata")

    @property
    def requires(self) -> list[str]:
        raise OSError("unreadable metadata")


@pytest.mark.parametrize("dist", [None, Broken(), FakeDistribution(None, None), FakeDistribution(None, REQUIRES)])
def test_a_hint_never_raises(distribution, dist: Any) -> None:
    distribution(dist)
    hint = install_hint("nothing-like-it")
    assert hint == "pip install '<the iqa checkout>[nothing-like-it]'"


def test_the_hint_for_this_install_names_no_unpublished_distribution() -> None:
    install_hint.cache_clear()
    try:
        metadata.distribution("iqa-cli")
    except metadata.PackageNotFoundError:
        pytest.skip("iqa is not installed here")
    hint = install_hint("plot")
    assert hint.startswith("pip install ") and "iqa-cli[" not in hint


def test_install_hints_are_cheap_to_import() -> None:
    heavy = "('importlib.metadata', 'json', 'numpy')"
    code = f"import sys, iqa_cli.install; print(sorted(m for m in {heavy} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n"


# A pip install of the distribution by name (any quoting) in anything iqa shows or ships: not iqa's on PyPI.
UNPUBLISHED = re.compile("pip install +-?[-\\w ]*['\"]?" + "iqa-cli" + r"\[")
SHOWN = [
    *("iqa_cli/**/*.py", "iqa_cli/**/*.md", "iqa_cli/**/*.json", "plugins/*/iqa_*/**/*", "plugins/*/*.md"),
    *("docs/**/*.md", "man/**/*", "README.md", "examples/**/*", "tests/*.py", "benchmarks/*.py", "training/*.py"),
]


def _shipped_text(path: Path) -> bool:
    if "__pycache__" in path.parts or any(part.endswith(".egg-info") for part in path.parts):
        return False
    with path.open("rb") as head:
        return b"\0" not in head.read(4096)  # images and archives are not text


def test_no_text_tells_anyone_to_pip_install_iqa_cli_by_name() -> None:
    files = {p for pattern in SHOWN for p in ROOT.glob(pattern) if p.is_file() and _shipped_text(p)}
    assert len(files) > 50
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted(files)
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if UNPUBLISHED.search(line)
    ]
    assert offenders == []
    assert UNPUBLISHED.search("pip install 'iqa-cli" + "[heif]'") and UNPUBLISHED.search(
        "pip install -e iqa-cli" + "[x]"
    )


# ------------------------------------------------------------------------------- the core's dependencies


def _core_names() -> set[str]:
    return {_name(r) for r in PYPROJECT["project"]["dependencies"]}


def test_every_module_level_import_of_iqa_is_a_core_dependency() -> None:
    """What iqa imports when a module loads is installed by `pip install .`; the rest is imported where used."""
    owners = metadata.packages_distributions()
    depictqa = {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["depictqa"]}
    missing = []
    for path in sorted((ROOT / "iqa_cli").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith("iqa_cli/testing/"):  # test support: the test extra
            continue
        allowed = _core_names() | (depictqa if relative.startswith("iqa_cli/engines/depictqa/") else set())
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                tops = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            else:
                continue
            for top in tops:
                if top in sys.stdlib_module_names or top in ("iqa_cli", "__future__"):
                    continue
                if not {_name(d) for d in owners.get(top, [top])} & allowed:
                    missing.append(f"{relative}: {top}")
    assert missing == []


def test_the_signal_engine_and_the_cli_load_without_scikit_image_or_pandas() -> None:
    code = (
        "import sys, iqa_cli.cli.app, iqa_cli.engines.signal.compare, iqa_cli.engines.signal.engine; "
        "print(sorted(m for m in ('skimage', 'pandas', 'torch') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n"


@pytest.mark.parametrize("shape", [(11, 11), (11, 40), (64, 97), (256, 341)])
def test_the_numpy_ssim_agrees_with_skimage(shape: tuple[int, int]) -> None:
    skimage_metrics = pytest.importorskip("skimage.metrics", reason="the test extra's scikit-image")
    rng = np.random.default_rng(sum(shape))
    for noise in (0.0, 5.0, 40.0):
        x = rng.integers(0, 256, shape).astype(np.float64)
        y = np.clip(x + rng.normal(0.0, noise, shape), 0, 255)
        ours = compare._ssim(x, y)
        theirs = skimage_metrics.structural_similarity(
            x, y, data_range=255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert abs(ours - theirs) < 1e-6, (shape, noise, ours, theirs)


def test_fidelity_refuses_images_smaller_than_the_ssim_window() -> None:
    small = compare.ComparePayload(features={}, luma=np.zeros((10, 12), np.uint8), width=12, height=10)
    with pytest.raises(ValueError, match=r"too small \(12x10\) for SSIM \(11x11 window\)"):
        compare.fidelity(small, small)
    # 20 px: measured at one scale only (its half, 10 px, would be under the window)
    edge = compare.ComparePayload(features={}, luma=np.full((20, 24), 128, np.uint8), width=24, height=20)
    assert compare.fidelity(edge, edge).ssim == pytest.approx(1.0)


# ------------------------------------------------------------------------------- the wheel: man pages, completions


def _source_copy(tmp: Path) -> Path:
    """What a build reads, copied, so that building writes no build/ or egg-info into the checkout."""
    source = tmp / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("iqa_cli", "man"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    return source


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The wheel and the editable wheel of this checkout, built offline once (a few seconds)."""
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools installed (no build isolation)")
    tmp = tmp_path_factory.mktemp("wheel")
    source, out = _source_copy(tmp), tmp / "dist"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    subprocess.run([*build, "-w", str(out), str(source)], check=True, capture_output=True, timeout=900)
    code = f"from setuptools import build_meta; print(build_meta.build_editable({str(out)!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    editable = out / done.stdout.strip().splitlines()[-1]
    return {"wheel": next(p for p in out.glob("*.whl") if p != editable), "editable": editable}


EXPECTED_DATA = [
    "share/bash-completion/completions/iqa",
    "share/zsh/site-functions/_iqa",
    "share/fish/vendor_completions.d/iqa.fish",
    *(f"share/man/man1/{page.name}" for page in sorted((ROOT / "man").glob("*.1"))),
]


@pytest.mark.parametrize("kind", ["wheel", "editable"])
def test_the_wheel_installs_the_man_pages_and_completions(wheels: dict[str, Path], kind: str) -> None:
    with zipfile.ZipFile(wheels[kind]) as wheel:
        data = {name.split(".data/data/", 1)[1]: name for name in wheel.namelist() if ".data/data/" in name}
        assert sorted(data) == sorted(EXPECTED_DATA)
        assert "share/man/man1/iqa.1" in data
        assert wheel.read(data["share/zsh/site-functions/_iqa"]) == (ROOT / "man/completion/iqa.zsh").read_bytes()
        assert wheel.read(data["share/man/man1/iqa.1"]) == (ROOT / "man/iqa.1").read_bytes()


def test_the_wheel_requires_no_scikit_image_or_pandas(wheels: dict[str, Path]) -> None:
    with zipfile.ZipFile(wheels["wheel"]) as wheel:
        text = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    core = [
        line.split(": ", 1)[1]
        for line in text.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    assert {_name(r) for r in core} == _core_names()
    assert not {"scikit-image", "pandas", "torch"} & {_name(r) for r in core}


@pytest.mark.skipif(shutil.which("man") is None, reason="no man command on this machine")
def test_man_finds_the_installed_page(wheels: dict[str, Path], tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    with zipfile.ZipFile(wheels["wheel"]) as wheel:
        for name in wheel.namelist():
            if ".data/data/share/man/" in name:
                target = prefix / name.split(".data/data/", 1)[1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(wheel.read(name))
    done = subprocess.run(["man", "-M", str(prefix / "share/man"), "-P", "cat", "iqa"], capture_output=True,
                          text=True, timeout=600, env={"PATH": "/usr/bin:/bin", "MANWIDTH": "100"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "iqa - Audit the quality of photo collections" in " ".join(re.sub(r".\x08", "", done.stdout).split())


# ------------------------------------------------------------------------------- benchmarks/installed_size.py

SIZE_SCRIPT = ROOT / "benchmarks" / "installed_size.py"


def test_installed_size_script_has_help() -> None:
    done = subprocess.run([sys.executable, str(SIZE_SCRIPT), "--help"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "fresh venv" in done.stdout and "--top" in done.stdout


def test_installed_size_counts_each_distribution_by_its_record(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("installed_size", SIZE_SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    site = tmp_path / "site-packages"
    (site / "big").mkdir(parents=True)
    (site / "big" / "data.bin").write_bytes(os.urandom(100_000))  # random: no file system compresses it
    (site / "big-1.0.dist-info").mkdir()
    (site / "big-1.0.dist-info" / "RECORD").write_text("big/data.bin,,100000\nbig-1.0.dist-info/RECORD,,\n")
    (site / "stray.txt").write_bytes(os.urandom(10_000))
    sizes = script.distribution_sizes(site)
    assert set(sizes) == {"big 1.0", "(other)"}
    assert sizes["big 1.0"] >= 100_000 > sizes["(other)"] >= 10_000
    assert script.disk_use(site) >= sizes["big 1.0"] + sizes["(other)"]
