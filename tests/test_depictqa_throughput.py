"""Continuous batching, token budgets, OOM backoff and the throughput benchmark, on the tiny model in float32."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from iqa_cli.engines.base import AssessRequest, Prepared  # noqa: E402
from iqa_cli.engines.depictqa import engine as engine_module  # noqa: E402
from iqa_cli.engines.depictqa.engine import DepictQAEngine  # noqa: E402
from iqa_cli.engines.depictqa.generate import greedy_generate, pad_left  # noqa: E402
from iqa_cli.engines.depictqa.loading import load_depictqa  # noqa: E402
from iqa_cli.engines.depictqa.preprocess import pad_and_normalize  # noqa: E402
from iqa_cli.engines.depictqa.scheduler import ContinuousBatcher, kv_bytes_per_token  # noqa: E402
from iqa_cli.testing import tiny_depictqa  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_depictqa(tiny_depictqa.build_tiny_models(tmp_path_factory.mktemp("dq-throughput")))


@pytest.fixture(scope="module")
def prompts(loaded):
    """12 prompts of 5..59 embedding rows (lengths differ: padding everywhere) and a token limit for each."""
    model, _ = loaded
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    out = [torch.randn(int(n), model.cfg.llm_hidden, generator=gen) * 0.5 for n in rng.integers(5, 60, 12)]
    limits = [int(x) for x in rng.integers(1, 30, 12)]  # short and long answers mixed
    return out, limits


def _alone(model, prompts, limits, eos_id):
    return [
        greedy_generate(model.llm, pad_left([p]), max_new_tokens=n, eos_id=eos_id)[0]
        for p, n in zip(prompts, limits, strict=True)
    ]


def _assert_same(got, expected):
    for g, e in zip(got, expected, strict=True):
        assert g.ids == e.ids
        assert g.stopped == e.stopped
        np.testing.assert_allclose(g.probs, e.probs, rtol=0, atol=1e-6)  # float32 summation order only


@pytest.mark.parametrize(
    ("budget", "max_rows", "fraction"),
    [(10**6, 64, 0.25), (10**6, 5, 0.0), (200, 5, 0.25), (60, 4, 1.0), (1, 8, 0.25)],
)
def test_continuous_batching_equals_one_at_a_time(loaded, prompts, budget, max_rows, fraction):
    model, _ = loaded
    texts, limits = prompts
    batcher = ContinuousBatcher(
        model.llm, eos_id=-1, token_budget=budget, max_rows=max_rows, prefill_tokens=100, refill_fraction=fraction
    )
    got = batcher.generate(texts, limits)
    _assert_same(got, _alone(model, texts, limits, -1))
    assert [len(g.ids) for g in got] == limits
    assert batcher.stats.max_rows <= max_rows
    if budget == 1:
        assert batcher.stats.max_rows == 1  # a budget below one row still runs every prompt, one at a time
    if max_rows == 5:
        assert batcher.stats.refills > 2  # rows left and joined mid-flight


def test_rows_stop_at_a_planted_eos(loaded, prompts):
    model, _ = loaded
    texts, _ = prompts
    limits = [25] * len(texts)
    free = _alone(model, texts, limits, -1)
    # A token some answers produce early and others late or never: rows then end at different steps.
    counts: dict[int, int] = {}
    for g in free:
        for t in set(g.ids[:20]):
            counts[t] = counts.get(t, 0) + 1
    eos = max(counts, key=lambda t: (0 < counts[t] < len(texts), counts[t]))
    expected = _alone(model, texts, limits, eos)
    assert any(e.stopped for e in expected) and len({len(e.ids) for e in expected}) > 2
    batcher = ContinuousBatcher(model.llm, eos_id=eos, token_budget=10**6, max_rows=4, refill_fraction=0.0)
    _assert_same(batcher.generate(texts, limits), expected)
    forced = ContinuousBatcher(model.llm, eos_id=eos, token_budget=10**6, ignore_eos=True).generate(texts, limits)
    assert [len(g.ids) for g in forced] == limits  # forced length: the eos does not stop anything
    _assert_same(forced, free)


def test_reading_results_one_step_late_changes_nothing(loaded, prompts):
    model, _ = loaded
    texts, limits = prompts
    batcher = ContinuousBatcher(model.llm, eos_id=-1, token_budget=10**6, max_rows=5)
    batcher._lag = 1  # the CUDA setting: the host reads step t while step t+1 runs
    _assert_same(batcher.generate(texts, limits), _alone(model, texts, limits, -1))


def _oom() -> Exception:
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.mark.parametrize("where", ["_decode_step", "_prefill"])
def test_out_of_memory_halves_the_budget_and_loses_nothing(loaded, prompts, monkeypatch, where):
    model, _ = loaded
    texts, limits = prompts
    batcher = ContinuousBatcher(model.llm, eos_id=-1, token_budget=4000, max_rows=8, prefill_tokens=400)
    original = getattr(batcher, where)
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise _oom()
        return original(*args, **kwargs)

    monkeypatch.setattr(batcher, where, flaky)
    got = batcher.generate(texts, limits)
    _assert_same(got, _alone(model, texts, limits, -1))
    assert batcher.stats.oom_retries == 1
    assert batcher.token_budget == 2000 and batcher.prefill_tokens == 200


def test_runtime_error_out_of_memory_is_caught_and_one_row_that_cannot_fit_raises(loaded, prompts, monkeypatch):
    model, _ = loaded
    texts, _ = prompts
    batcher = ContinuousBatcher(model.llm, eos_id=-1, token_budget=1, max_rows=1, prefill_tokens=1)

    def always(*args, **kwargs):
        raise RuntimeError("CUDA error: out of memory")

    monkeypatch.setattr(batcher, "_prefill", always)
    with pytest.raises(RuntimeError, match="out of memory"):
        batcher.generate(texts[:1], 3)
    other = ContinuousBatcher(model.llm, eos_id=-1, token_budget=10)
    monkeypatch.setattr(other, "_decode_step", lambda *a, **k: (_ for _ in ()).throw(ValueError("a bug")))
    with pytest.raises(ValueError, match="a bug"):  # only memory errors are retried
        other.generate(texts[:2], 3)


def test_kv_bytes_per_token(loaded):
    model, _ = loaded
    cfg = model.llm.config
    # float32: 2 (K, V) x layers x heads x head dim x 4 bytes; Vicuna-7B fp16 would be 0.5 MiB.
    assert kv_bytes_per_token(model.llm) == 2 * cfg.num_hidden_layers * cfg.hidden_size * 4


# -------------------------------------------------------------------------------------------------- engine


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from iqa_cli.engines.base import EngineOptions

    root = tmp_path_factory.mktemp("dq-throughput-engine")
    tiny_depictqa.build_tiny_models(root)
    return DepictQAEngine.create(EngineOptions(model_dir=str(root), device="cpu", dtype="float32", max_new_tokens=8))


def _items(n, seed=0):
    rng = np.random.default_rng(seed)
    sizes = [(224, 336), (224, 224), (98, 70), (224, 336), (336, 224)]
    return [
        Prepared(i, pad_and_normalize(rng.integers(0, 256, (*sizes[i % 5], 3), dtype=np.uint8)), 0, 0) for i in range(n)
    ]


def test_engine_answers_do_not_depend_on_rows_or_chunks(engine, monkeypatch):
    items = _items(7)
    expected = [engine.assess([item], AssessRequest(detail=True))[0] for item in items]
    monkeypatch.setattr(engine_module, "_ENCODE_CHUNK", 2)  # same-size images split over several tower calls
    monkeypatch.setattr(engine, "max_rows", 3)
    got = engine.assess(items, AssessRequest(detail=True))
    for g, e in zip(got, expected, strict=True):
        assert (g.answer, g.detail) == (e.answer, e.detail)
        assert g.confidence == pytest.approx(e.confidence, abs=1e-6)
        assert g.detail_confidence == pytest.approx(e.detail_confidence, abs=1e-5)
    assert engine.last_stats.max_rows <= 3


def test_engine_brief_cap_and_forced_length(engine, monkeypatch):
    monkeypatch.setattr(engine, "brief_max_new_tokens", 3)
    monkeypatch.setattr(engine, "ignore_eos", True)
    embeds = engine._encode([item.payload for item in _items(3)])
    from iqa_cli.engines.depictqa import questions
    from iqa_cli.engines.depictqa.engine import Ask
    from iqa_cli.engines.depictqa.prompts import ImageSlot

    asks = [Ask("quality_single_A_noref", "What is it?", {ImageSlot.A: e}) for e in embeds]
    ask = engine._ask
    limits: list[int] = []
    monkeypatch.setattr(engine, "_ask", lambda a, n: limits.append(n) or ask(a, n))
    engine._answer_with_confidence(asks, compare=False)  # brief questions: capped
    assert set(limits) == {3}  # re-asks are brief too
    limits.clear()
    engine._details(asks, questions.ASSESSMENT_REASONING, AssessRequest(detail=True), compare=False)
    # The reasoning question gets the full cap; its 8-token answers are short, so they are re-asked, capped.
    assert limits == [engine.max_new_tokens, 3]
    assert [len(g.ids) for g in ask(asks, 3)] == [3, 3, 3]
    assert [len(g.ids) for g in ask(asks, engine.max_new_tokens)] == [8, 8, 8]


# ----------------------------------------------------------------------------------------------- benchmark


def test_benchmark_runs_in_tiny_mode(tmp_path):
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "bench_depictqa.py"),
        "--tiny",
        "--detail-tokens",
        "16",
        "--scale",
        "0.25",
        "--workers",
        "1",
        "--json",
        str(out),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| authors' style: batch 1, eager, greedy with scores |" in done.stdout
    assert "Token agreement" in done.stdout
    results = json.loads(out.read_text())
    for key in ("authors", "hf16", "hf64", "engine", "e2e"):
        assert all(v > 0 for v in results["rates"][key].values()), key
    assert results["agreement"]["identical_rows"] == 1.0  # float32: batched equals one at a time
    assert results["e2e_rows"] == results["e2e_images"]  # every JPEG got its report row
