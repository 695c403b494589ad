"""The depictqa engine end to end on the tiny fixture: layout, shapes and determinism (answers are noise)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from iqa_cli.engines.base import AssessRequest, EngineOptions, Prepared
from iqa_cli.engines.depictqa import questions
from iqa_cli.engines.depictqa.engine import Ask, DepictQAEngine
from iqa_cli.engines.depictqa.prompts import ImageSlot
from iqa_cli.images import FileFacts, LoadedImage, fit_size
from iqa_cli.testing import tiny_depictqa


def _engine(root, variant):
    tiny_depictqa.build_tiny_models(root, variant=variant)
    options = EngineOptions(model_dir=str(root), device="cpu", dtype="float32", max_new_tokens=6)
    assert DepictQAEngine.availability(options) is None
    return DepictQAEngine.create(options)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return _engine(tmp_path_factory.mktemp("dq-engine"), "dq495k")


def _prepared(engine, sizes, seed=0):
    rng = np.random.default_rng(seed)
    prep = engine.preparer()
    prep = pickle.loads(pickle.dumps(prep))  # it must survive the trip to a spawned worker
    out = []
    for key, (w, h) in enumerate(sizes):
        w, h = fit_size(w, h, engine.decode_plan)
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        out.append(Prepared(key, prep(LoadedImage(FileFacts(path=f"{key}.png"), pixels)), w, h))
    return out


SIZES = [(336, 224), (71, 100), (224, 224), (300, 50)]


def test_availability_names_missing_models(tmp_path):
    reason = DepictQAEngine.availability(EngineOptions(model_dir=str(tmp_path / "nothing")))
    assert reason is not None and "iqa model download" in reason


def test_settings_plan_and_preparer(engine):
    assert engine.settings()["variant"] == "dq495k" and engine.settings()["dtype"] == "float32"
    assert (engine.decode_plan.short_side, engine.decode_plan.long_side) == (224, 672)
    (item,) = _prepared(engine, [(3000, 2000)])
    assert item.payload.shape == (3, 224, 336) and item.payload.dtype == np.float32


def test_assess_brief(engine):
    batch = _prepared(engine, SIZES)
    results = engine.assess(batch, AssessRequest(detail=False))
    assert len(results) == len(batch)
    for r in results:
        assert r.task == questions.DISTORTION_IDENTIFICATION
        assert r.question.endswith(questions.SINGLE_WORD_TAIL)
        assert isinstance(r.answer, str) and r.detail is None
        assert 0.0 <= r.confidence <= 1.0
        assert set(r.distortions) <= set(questions.DISTORTION_NAMES)
    assert engine.assess(batch, AssessRequest()) == results  # deterministic


def test_batched_answers_match_the_reference_forward_pass(engine):
    """The engine (embedding cache, continuous batching, token budget) against DepictQAModel.answer, one
    image at a time: the same tokens, so the same answer, distortions and confidence inputs."""
    import torch

    from iqa_cli.engines.depictqa.prompts import task_type

    batch = _prepared(engine, SIZES, seed=3)
    results = engine.assess(batch, AssessRequest())
    task = task_type(compare=False, reference=False)
    question = questions.default_question(questions.DISTORTION_IDENTIFICATION, reference=False)
    limit = min(engine.max_new_tokens, engine.brief_max_new_tokens or engine.max_new_tokens)
    for item, result in zip(batch, results, strict=True):
        pixels = torch.from_numpy(np.asarray(item.payload, dtype=np.float32))
        segments, _ = engine._prompt(Ask(task, question, {ImageSlot.A: pixels}))
        one = engine.model.answer(segments, [pixels], max_new_tokens=limit, eos_id=engine.tokenizer.eos_token_id)
        text = engine.tokenizer.decode(one.ids, skip_special_tokens=True)
        assert result.answer == questions.clean_answer(text)
        assert result.distortions == questions.parse_distortions(text)


def test_assess_with_detail(engine):
    results = engine.assess(_prepared(engine, SIZES[:2]), AssessRequest(detail=True))
    assert all(isinstance(r.detail, str) for r in results)
    for r in results:
        assert r.detail_question == "Evaluate the quality of the image and provide a comprehensive explanation."
        assert r.detail_confidence is not None and 0.0 <= r.detail_confidence <= 1.0
        assert r.task == "distortion_identification" and r.question.endswith("single word or phrase.")
    brief = engine.assess(_prepared(engine, SIZES[:2]), AssessRequest())
    assert all(r.detail is None and r.detail_confidence is None for r in brief)


def test_answers_do_not_depend_on_the_batch(engine):
    batch = _prepared(engine, SIZES, seed=3)
    together = engine.assess(batch, AssessRequest())
    alone = [engine.assess([item], AssessRequest())[0] for item in batch]
    for a, b in zip(together, alone, strict=True):
        assert a.answer == b.answer
        assert a.confidence == pytest.approx(b.confidence, abs=1e-6)


def test_small_token_budget_splits_into_sub_batches(engine):
    batch = _prepared(engine, SIZES, seed=4)
    expected = engine.assess(batch, AssessRequest())
    budget, engine.token_budget = engine.token_budget, 1  # one row per generation call
    try:
        got = engine.assess(batch, AssessRequest())
    finally:
        engine.token_budget = budget
    assert [g.answer for g in got] == [e.answer for e in expected]
    assert engine.last_stats.max_rows == 1  # the split happened: never two rows in one step


def test_compare_with_and_without_reference(engine):
    a, b, ref = _prepared(engine, SIZES[:3], seed=5)
    results = engine.compare([(a, b, None), (b, a, ref)], AssessRequest(detail=True))
    assert len(results) == 2
    for r in results:
        assert r.winner in ("A", "B") and 0.0 <= r.confidence <= 1.0 and isinstance(r.detail, str)
    assert results[0].question == questions.default_question(questions.INSTANT_RATING, reference=False)
    assert results[1].question == questions.default_question(questions.INSTANT_RATING, reference=True)
    assert engine.compare([(a, b, None), (b, a, ref)], AssessRequest(detail=True)) == results


def test_compare_prompt_holds_every_image(engine):
    a, b, ref = _prepared(engine, SIZES[:3], seed=6)
    embeds = engine._encode([a.payload, b.payload, ref.payload])
    with pytest.raises(ValueError, match="needs image"):
        engine._ask([Ask("quality_compare", "Which?", {ImageSlot.A: embeds[0], ImageSlot.B: embeds[1]})], 6)
    slots = {ImageSlot.A: embeds[0], ImageSlot.B: embeds[1], ImageSlot.REFERENCE: embeds[2]}
    (one,) = engine._ask([Ask("quality_compare", "Which?", slots)], 6)
    assert 1 <= len(one.ids) <= 6 and len(one.probs) == len(one.ids)


def test_abstractor_variant(tmp_path):
    engine = _engine(tmp_path, "abstractor")
    assert engine.settings()["variant"] == "abstractor"
    assert (engine.decode_plan.short_side, engine.decode_plan.long_side) == (1024, 2048)
    batch = _prepared(engine, [(336, 224), (100, 71)])
    embeds = engine._encode([item.payload for item in batch])
    assert [tuple(e.shape) for e in embeds] == [(64, engine.model.cfg.llm_hidden)] * 2  # 64 tokens at any size
    results = engine.assess(batch, AssessRequest(detail=True))
    assert len(results) == 2 and all(isinstance(r.detail, str) for r in results)
    assert engine.compare([(batch[0], batch[1], None)], AssessRequest())[0].winner in ("A", "B")


def test_draft_decode_is_opt_in(engine):
    assert engine.decode_plan.draft is False  # the authors' exact decode + resize by default
    engine.draft_decode = True
    try:
        assert engine.decode_plan.draft is True and engine.settings()["draft_decode"] is True
    finally:
        engine.draft_decode = False


def test_iqa_audit_with_the_model_end_to_end(tiny_root, tmp_path):
    """`iqa audit --model DIR` picks the model by itself, answers with confidences, writes the reports."""
    import json

    import pandas as pd
    from PIL import Image
    from typer.testing import CliRunner

    from iqa_cli.cli.app import app

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name, size in (("wide.png", (300, 200)), ("tall.jpg", (180, 260)), ("small.png", (60, 50))):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(photos / name)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    args = ["audit", str(photos), "--model", str(tiny_root), "--device", "cpu", "--dtype", "float32",
            "--max-new-tokens", "6", "--workers", "0", "--detail", "--json", "--out", str(tmp_path / "out"),
            "--checks", "none"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["engine"] == "depictqa" and summary["engine_note"].startswith("auto-selected")
    assert summary["files"] == 4 and summary["assessed"] == 3 and summary["error_codes"] == {"truncated": 1}
    rows = pd.read_parquet(tmp_path / "out" / "report.parquet").set_index("path")
    ok = rows[rows["status"] == "ok"]
    assert (ok["engine"] == "depictqa").all() and ok["answer"].notna().all()
    assert ok["confidence"].between(0, 1).all() and ok["detail_confidence"].between(0, 1).all()
    assert ok["detail"].notna().all() and ok["question"].str.endswith("single word or phrase.").all()
    assert json.loads(ok["engine_settings"].iloc[0])["variant"] == "dq495k"
