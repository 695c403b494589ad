"""The work queue keeps an engine fed: while the engine holds one batch, the workers decode the next."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("transformers")

from iqa_cli.audit.run import AuditSettings, run_audit
from iqa_cli.engines.base import EngineOptions
from iqa_cli.engines.depictqa.engine import DepictQAEngine
from iqa_cli.testing.engines import MarkingPreparer, PipelineProbe

BATCH = 8
BATCHES = 4
WORKERS = 15  # a 16-core GPU host's decode pool, whatever this machine has
STALLED = 120.0  # seconds without a new marker: only a pipeline that stopped decoding gets here


def _wait_for(folder: Path, count: int) -> None:
    """Until `count` images are prepared; fails only when no new one appears for STALLED seconds."""
    seen, since = -1, time.monotonic()
    while (now := len(list(folder.iterdir()))) < count:
        if now != seen:
            seen, since = now, time.monotonic()
        assert time.monotonic() - since < STALLED, f"decoding stopped at {now} of {count} while the engine waited"
        time.sleep(0.01)


@pytest.mark.parametrize("workers", [WORKERS, 2])
def test_the_next_batch_is_decoded_while_the_engine_holds_this_one(
    tiny_root: Path, tmp_path: Path, workers: int
) -> None:
    photos, marks = tmp_path / "photos", tmp_path / "prepared"
    photos.mkdir()
    marks.mkdir()
    for i in range(BATCH * BATCHES):
        Image.new("RGB", (480 + 8 * i, 320), (i * 7 % 255, 90, 160)).save(photos / f"img_{i:03d}.jpg", quality=90)
    model = DepictQAEngine.create(EngineOptions(model_dir=str(tiny_root), device="cpu", dtype="float32"))
    held_with: list[int] = []

    def hold(index: int) -> None:
        # The engine is busy with batch `index`: the whole of the next batch must get decoded and
        # prepared meanwhile (the queue keeps two batches in flight), else a GPU would wait for it.
        _wait_for(marks, min(BATCH * BATCHES, BATCH * (index + 2)))
        held_with.append(len(list(marks.iterdir())))

    probe = PipelineProbe(model.decode_plan, MarkingPreparer(model.preparer(), str(marks)), hold, BATCH)
    try:
        summary = run_audit(AuditSettings(paths=[str(photos)], workers=workers), probe, [])
    finally:
        model.close()
    assert summary.assessed == BATCH * BATCHES and probe.batches == [BATCH] * BATCHES
    assert held_with[0] >= 2 * BATCH  # before the first batch was done, the second was prepared too
