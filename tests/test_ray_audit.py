"""`iqa audit --ray`: the audit as a Ray Data pipeline on a local Ray, against a single-machine run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from iqa_cli.audit.ray_audit import FILES_PER_TASK, RayOptions, run_ray_audit
from iqa_cli.audit.run import AuditSettings
from iqa_cli.engines.base import EngineOptions
from iqa_cli.engines.signal.engine import SignalEngine
from iqa_cli.plugins import chosen_checks
from iqa_cli.report.dataset import DATASET_DIR, dataset_files, dataset_rows
from iqa_cli.testing.cli import invoke_iqa
from iqa_cli.testing.engines import ControlledEngine, GpuSignalEngine
from tests.test_containers import PAST, _image, _parquet, _shard
from tests.test_remote_inputs import site  # noqa: F401 - the fixture

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")

PHOTOS = Path(__file__).resolve().parent.parent / "examples" / "photos"


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray of 2 CPUs for the in-process tests (starting one costs seconds), declaring one GPU that
    GpuSignalEngine's actor takes (nothing uses it)."""
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """Loose photos (one copied: a duplicate), a damaged file and two WebDataset shards in a folder, and beside it a
    Parquet file (a folder walk does not take Parquet files: they are given, as `_paths` does)."""
    root = tmp_path / "inputs"
    (root / "shards").mkdir(parents=True)
    for name in ("coffee.jpg", "chelsea.jpg", "rocket.jpg"):
        shutil.copy(PHOTOS / name, root / name)
    shutil.copy(PHOTOS / "coffee.jpg", root / "copy-of-coffee.jpg")
    (root / "broken.jpg").write_bytes(_image("JPEG", 9)[:200])
    _shard(root / "shards" / "00000.tar")
    _shard(root / "shards" / "00001.tar")
    _parquet(tmp_path / "rows.parquet")
    for path in root.rglob("*"):
        os.utime(path, (PAST, PAST))
    return root


def _by_path(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows in path order (a path re-assessed later has its row in a later file), elapsed time aside."""
    return rows.drop(columns="elapsed_ms").sort_values("path").reset_index(drop=True)


def _paths(inputs: Path) -> list[str]:
    return [str(inputs), str(inputs.parent / "rows.parquet")]


def _ray_rows(out: Path) -> pd.DataFrame:
    return pd.DataFrame(list(dataset_rows(out / DATASET_DIR)))


def _comparable(rows: list[dict]) -> list[dict]:
    return [{name: value for name, value in row.items() if name != "elapsed_ms"} for row in rows]


# The CPU engines' pipeline (load and engine fused, 2 actors) and the GPU engines' (load tasks feeding the one
# actor of the one GPU), in batches of the engine's size and of 5 (fewer than a block's 16 loose files).
@pytest.mark.parametrize(
    ("engine", "actors", "batch_size"),
    [(SignalEngine, 2, None), (GpuSignalEngine, None, None), (GpuSignalEngine, None, 5)],
)
def test_a_ray_run_gives_the_rows_of_a_single_machine_run(
    local_ray, inputs: Path, tmp_path: Path, engine: type[SignalEngine], actors: int | None, batch_size: int | None
) -> None:
    code, _, err = invoke_iqa("audit", *_paths(inputs), "--engine", "signal", "--out", str(tmp_path / "one"), "--quiet")
    assert code == 0, err
    single = pq.read_table(tmp_path / "one" / "report.parquet").to_pylist()
    summary = run_ray_audit(
        AuditSettings(paths=_paths(inputs), batch_size=batch_size),
        engine,
        EngineOptions(),
        tmp_path / "ray",
        ray_options=RayOptions(actors=actors),
        checks=chosen_checks("all"),  # as the command line's default: iqa-dupes compares images across actors
    )
    rows = list(dataset_rows(tmp_path / "ray" / DATASET_DIR))
    # The same rows in the same order: paths, keys, errors, answers, duplicates, side-car columns.
    assert len(rows) == len(single) == summary.files
    assert _comparable(rows) == _comparable(single)
    paths = [row["path"] for row in rows]
    assert sum(".tar#" in p for p in paths) == 8 and sum(".parquet#" in p for p in paths) == 4
    by_path = {row["path"]: row for row in rows}
    assert by_path[str(inputs / "copy-of-coffee.jpg")]["duplicate_of"] == str(inputs / "coffee.jpg")
    assert not list((tmp_path / "ray" / DATASET_DIR).glob(".*"))  # no temporary left


def test_the_tiny_depictqa_release_on_ray_gives_the_rows_of_a_single_machine_run(
    local_ray, tiny_root: Path, inputs: Path, tmp_path: Path
) -> None:
    # DepictQA claims a GPU: its actor takes the Ray's declared one (and runs on the CPU), fed by the load tasks.
    from iqa_cli.engines.depictqa.engine import DepictQAEngine

    model = ["--model", str(tiny_root), "--device", "cpu", "--dtype", "float32", "--max-new-tokens", "6"]
    code, _, err = invoke_iqa("audit", *_paths(inputs), "--engine", "depictqa", *model, "--checks", "none",
                              "--batch-size", "2", "--out", str(tmp_path / "one"), "--quiet")  # fmt: skip
    assert code == 0, err
    single = pq.read_table(tmp_path / "one" / "report.parquet").to_pylist()
    options = EngineOptions(model_dir=str(tiny_root), device="cpu", dtype="float32", max_new_tokens=6)
    settings = AuditSettings(paths=_paths(inputs), batch_size=2)
    summary = run_ray_audit(settings, DepictQAEngine, options, tmp_path / "ray")
    rows = list(dataset_rows(tmp_path / "ray" / DATASET_DIR))
    assert len(rows) == len(single) == summary.files == 17
    assert {row["engine"] for row in rows if row["status"] == "ok"} == {"depictqa"}
    # The same answers; the confidences to float32 rounding: Ray's blocks pair other images into batches
    # (another padding), as any change of batch does on one machine.
    probabilities = ("confidence", "detail_confidence")
    exact = [{k: v for k, v in row.items() if k not in probabilities} for row in _comparable(rows)]
    assert exact == [{k: v for k, v in row.items() if k not in probabilities} for row in _comparable(single)]
    for ray_row, one_row in zip(rows, single, strict=True):
        for name in probabilities:  # None on error rows, and without --detail
            expected = one_row[name] if one_row[name] is None else pytest.approx(one_row[name], rel=1e-5)
            assert ray_row[name] == expected, (ray_row["path"], name)


def test_a_second_run_skips_what_is_reported_and_redoes_a_changed_file(local_ray, inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    settings = AuditSettings(paths=_paths(inputs))
    first = run_ray_audit(settings, SignalEngine, EngineOptions(), out)
    complete = _ray_rows(out)
    assert first.files == len(complete) == 17

    again = run_ray_audit(settings, SignalEngine, EngineOptions(), out)
    # Only the error rows are made again (a file may have been fixed); every ok row is skipped by its bytes.
    assert again.files == again.errors == int((complete["status"] == "error").sum())
    assert any(f"{first.assessed} images already reported" in note for note in again.notes)
    assert _by_path(_ray_rows(out)).equals(_by_path(complete))

    shutil.copy(PHOTOS / "flower.jpg", inputs / "rocket.jpg")  # same path, other bytes
    changed = run_ray_audit(settings, SignalEngine, EngineOptions(), out)
    assert changed.assessed == 1
    rows = _ray_rows(out).set_index("path")
    assert len(rows) == 17 and rows.index.is_unique
    assert (
        rows.loc[str(inputs / "rocket.jpg"), "content_hash"]
        != complete.set_index("path").loc[str(inputs / "rocket.jpg"), "content_hash"]
    )
    code, printed, _ = invoke_iqa("report", str(out))
    assert code == 0 and "17 of 17 files match" in printed


def test_urls_on_ray_give_the_rows_of_a_single_machine_run(local_ray, site, tmp_path: Path) -> None:  # noqa: F811
    base, _, _ = site
    urls = [f"{base}/photos/", f"{base}/00000.tar", f"{base}/part.parquet"]
    code, _, err = invoke_iqa("audit", *urls, "--engine", "signal", "--out", str(tmp_path / "one"), "--quiet")
    assert code == 0, err
    single = pq.read_table(tmp_path / "one" / "report.parquet").to_pylist()
    run_ray_audit(
        AuditSettings(paths=urls), SignalEngine, EngineOptions(), tmp_path / "ray", checks=chosen_checks("all")
    )
    rows = list(dataset_rows(tmp_path / "ray" / DATASET_DIR))
    assert len(rows) == 11 and _comparable(rows) == _comparable(single)


def test_an_actor_that_dies_is_retried_and_no_image_is_lost_or_reported_twice(
    local_ray, inputs: Path, tmp_path: Path
) -> None:
    control = tmp_path / "control"
    control.mkdir()
    (control / "die-once").touch()
    out = tmp_path / "out"
    summary = run_ray_audit(
        AuditSettings(paths=_paths(inputs), batch_size=2),
        ControlledEngine,
        EngineOptions(model_dir=str(control)),
        out,
        ray_options=RayOptions(actors=1),
    )
    assert (control / "died").exists()  # the first batch killed its actor
    written = [path for file in dataset_files(out / DATASET_DIR) for path in pq.read_table(file)["path"].to_pylist()]
    assert len(written) == len(set(written)) == summary.files == 17


def test_limit_stops_after_that_many_images(
    local_ray, inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = run_ray_audit(AuditSettings(paths=[str(inputs / "shards")], limit=3), SignalEngine, EngineOptions(),
                            tmp_path / "out")  # fmt: skip
    assert "INFO" not in capsys.readouterr().err  # Ray Data's plan and progress lines stay in its log file
    rows = _ray_rows(tmp_path / "out")
    assert summary.files == len(rows) == 3
    assert rows["path"].tolist() == sorted(rows["path"])[:3]  # the first three in discovery order
    # A Ray this process had started already: no start or stop of one in the timings, the run's stages are.
    assert set(summary.timings) == {"engine_plan", "first_block", "pipeline", "writing", "total"}
    assert 0 < summary.timings["first_block"] <= summary.timings["pipeline"] <= summary.timings["total"]


@pytest.mark.parametrize("batch_size", [None, 5])
def test_each_load_block_is_assessed_and_written_on_its_own(local_ray, tmp_path: Path, batch_size: int | None) -> None:
    # Whatever the engine's batch size (the signal engine's is 64), the loose files' blocks are separate tasks,
    # each written when it is done: not one task for the whole run.
    folder = tmp_path / "many"
    folder.mkdir()
    for number in range(2 * FILES_PER_TASK + 3):
        (folder / f"{number:03d}.jpg").write_bytes(_image("JPEG", number))
    summary = run_ray_audit(AuditSettings(paths=[str(folder)], batch_size=batch_size), SignalEngine, EngineOptions(),
                            tmp_path / "out", ray_options=RayOptions(actors=2))  # fmt: skip
    files = dataset_files(tmp_path / "out" / DATASET_DIR)
    assert [pq.read_metadata(file).num_rows for file in files] == [FILES_PER_TASK, FILES_PER_TASK, 3]
    assert summary.assessed == 2 * FILES_PER_TASK + 3


def test_a_cpu_engine_starts_no_more_actors_than_there_are_load_tasks(local_ray, inputs: Path, tmp_path: Path) -> None:
    decisions: list[str] = []
    settings = AuditSettings(paths=[str(inputs / "shards")])
    summary = run_ray_audit(settings, SignalEngine, EngineOptions(), tmp_path / "out", ray_options=RayOptions(actors=8),
                            on_decision=decisions.append)  # fmt: skip
    assert summary.files == 8
    assert "2 engine actor(s)" in decisions[0]  # two shards: two tasks


def test_without_ray_the_option_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    code, _, err = invoke_iqa("audit", str(PHOTOS), "--ray", "--out", str(tmp_path))
    assert code != 0 and "--ray needs Ray" in err and "[ray]" in err and "Traceback" not in err


def _plugin_path(folder: Path) -> Path:
    """A folder that, on PYTHONPATH, installs the controlled engine as an iqa plugin (an entry point)."""
    (folder / "iqa_controlled_plugin.py").write_text(
        "from iqa_cli.hookspecs import hookimpl\n\n\n"
        "@hookimpl\ndef iqa_engines():\n"
        "    from iqa_cli.testing.engines import ControlledEngine\n\n    return [ControlledEngine]\n"
    )
    info = folder / "iqa_controlled_plugin-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: iqa-controlled-plugin\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[iqa]\ncontrolled = iqa_controlled_plugin\n")
    return folder


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background job's child inherits SIGINT ignored


def test_ctrl_c_stops_the_job_and_the_next_run_goes_on(inputs: Path, tmp_path: Path) -> None:
    control, out = tmp_path / "control", tmp_path / "out"
    control.mkdir()
    (control / "gate").write_text("0*")  # the shards' members (00000/000000000.jpg...) wait for control/open
    plugin = _plugin_path(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "iqa_cli", "audit", *_paths(inputs), "--engine", "controlled", "--model",
               str(control), "--out", str(out), "--batch-size", "1", "--quiet"]  # fmt: skip
    process = subprocess.Popen(
        [*command, "--ray", "--ray-actors", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        preexec_fn=_default_signals,
    )
    # Polled: an engine call held at the gate. The run cannot end before control/open exists, so the signal always
    # finds it running. Starting a Ray takes seconds on an idle machine and minutes on a loaded one: the limit only
    # keeps a broken run from hanging the suite.
    deadline = time.monotonic() + 1200

    def wait_until(condition) -> None:
        while not condition():
            assert process.poll() is None and time.monotonic() < deadline, "the run never held a shard's block"
            time.sleep(0.1)

    wait_until((control / "waiting").exists)
    # The one actor runs one call at a time: the loose photos were assessed before the held call, or they wait
    # behind it (Ray may start a later block's call first). Assessed, their block reaches the dataset first.
    assessed = set((control / "assessed").read_text().split()) if (control / "assessed").exists() else set()
    loose_done = {"coffee.jpg", "chelsea.jpg", "rocket.jpg", "copy-of-coffee.jpg"} <= assessed
    if loose_done:
        wait_until(lambda: dataset_files(out / DATASET_DIR))
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 130, err.decode()
    assert b"Traceback" not in err
    kept = _ray_rows(out)
    assert len(kept) == (5 if loose_done else 0)  # the finished block's rows (the loose photos), nothing partial
    assert not list((out / DATASET_DIR).glob(".*"))

    (control / "open").touch()
    process = subprocess.run([*command, "--ray"], capture_output=True, env=env, timeout=1200)
    assert process.returncode == 0, process.stderr.decode()
    rows = _ray_rows(out)
    assert len(rows) == 17 and rows["path"].is_unique


def test_a_load_task_given_several_groups_keeps_each_groups_rows_in_blocks_of_its_own(inputs: Path) -> None:
    # Ray bundles small input blocks when it is busy: one task may get the loose files and a shard. The engine
    # returns a block's rows together, so a shared block would hold the loose files' rows behind the shard's.
    import pickle

    from iqa_cli.audit import ray_audit
    from iqa_cli.audit.queue import WorkerSpec

    settings = AuditSettings(paths=[str(inputs)])
    groups = list(ray_audit._groups(ray_audit._units(settings)))
    assert len(groups) == 3  # the loose files, then each shard alone

    class _NothingReported:  # stands for the ObjectRef of the dataset's reported images, already fetched
        def hex(self) -> str:
            return "nothing-reported"

    ray_audit._KNOWN["nothing-reported"] = {}
    engine = SignalEngine.create(EngineOptions())
    try:
        blocks = list(
            ray_audit._load_units(
                {"units": [pickle.dumps(group) for group in groups]},
                spec=WorkerSpec(engine.decode_plan, engine.preparer()),
                known=_NothingReported(),
                settings=settings,
            )
        )
    finally:
        del ray_audit._KNOWN["nothing-reported"]
    group_of = {unit.index: number for number, group in enumerate(groups) for unit in group}
    owners = [
        {group_of[pickle.loads(item).outcome.key >> ray_audit.MEMBER_BITS] for item in block["item"]}
        for block in blocks
    ]
    assert owners == [{0}, {1}, {2}]
