"""benchmarks/gpu_check.sh --tiny runs end to end offline, as on the GPU machine: no exifread, no platformdirs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"

# Loaded by every Python the script starts (the parts and their spawned decode workers inherit PYTHONPATH):
# the two packages the GPU machine lacks then fail to import, as there.
BLOCKER = '''
import sys


class _Missing:
    """Makes `import exifread` and `import platformdirs` fail as on a machine without them."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("exifread", "platformdirs"):
            raise ImportError(f"No module named {name!r} (blocked by tests/test_gpu_check.py)")
        return None


sys.meta_path.insert(0, _Missing())
'''


@pytest.mark.skipif(shutil.which("timeout") is None or shutil.which("bash") is None, reason="needs bash, timeout")
def test_gpu_check_tiny_writes_every_figure_without_exifread_or_platformdirs(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the DepictQA benchmark needs torch (pip install '.[depictqa]')")
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(blocker), "TMPDIR": str(tmp_path)}
    done = subprocess.run(["bash", str(SCRIPT), str(out), "--tiny"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    log = (out / "gpu_check.log").read_text() if (out / "gpu_check.log").exists() else done.stdout
    assert done.returncode == 0, log[-4000:] + done.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.log", "gpu_check.md"]
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["ok"] is True and result["failed"] == [] and result["notes"] == [], result["failed"]
    assert result["mode"] == "tiny"
    assert list(result["parts"]) == ["install", "machine", "smoke", "bench", "e2e", "static"]
    assert all(part["rc"] == 0 and not part["timed_out"] for part in result["parts"].values())

    # The blocker held, and iqa ran from the --no-deps install, not from the checkout or the venv.
    packages = result["machine"]["packages"]
    assert packages["exifread"] is None and packages["platformdirs"] is None
    assert packages["torch"] and packages["transformers"]
    assert Path(packages["iqa-cli"]["from"]).parent.name == "site"

    smoke = result["smoke"]
    assert smoke["ok"] and smoke["reference"] == "float32"
    for dtype in ("float16", "bfloat16"):
        agreement = smoke["dtypes"][dtype]["agreement"]
        assert agreement["inputs"] == 8
        for key in ("identical_rows", "mean_common_prefix", "first_token"):
            assert 0.0 <= agreement[key] <= 1.0

    bench = result["bench"]
    assert bench["errors"] == []
    rates = bench["rates"]
    for key in ("authors", "hf16", "hf64", "engine", "engine_static"):
        assert rates[key]["brief"] > 0 and rates[key]["detail"] > 0, key
    assert rates["engine_both"] > 0
    assert set(rates["e2e"]) == {"brief", "brief_draft", "both_draft"}
    assert all(rate > 0 for rate in rates["e2e"].values())
    assert bench["e2e_rows"] == bench["e2e_images"]  # every JPEG got its report row, exifread or not
    assert bench["decode_only"]["exact"] > 0 and bench["decode_only"]["draft"] > 0
    assert all(t["total"] > 0 for t in bench["e2e_timings"].values())
    steps = bench["step_costs"]
    assert steps["ms_per_prefill"] > 0 and steps["ms_per_decode_step"] > 0
    # Varied lengths: rows joined a running batch (refills after the first), and every answer kept its length.
    varied = bench["varied"]
    assert varied["continuous"]["refills"] > 1 and varied["limits"]["min"] < varied["limits"]["max"]
    assert varied["continuous"]["img_per_s"] > 0 and varied["static"]["img_per_s"] > 0
    assert bench["engine_token_budget_chosen"]["brief"] == [8192]  # the CPU's fixed budget
    assert bench["agreement"]["identical_rows"] == 1.0  # float32: batched equals one at a time

    report = (out / "gpu_check.md").read_text()
    assert "| iqa engine, model only (token budget + continuous batching) |" in report
    assert "Varied lengths" in report and "Decode only" in report and "tokens against float32" in report
    assert "Failed: nothing." in report
