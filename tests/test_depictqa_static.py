"""The static-KV-cache decode path (for CUDA graphs on a GPU) gives the tokens of the dynamic path, on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

from iqa_cli.engines.depictqa.generate import greedy_generate, pad_left  # noqa: E402
from iqa_cli.engines.depictqa.loading import load_depictqa  # noqa: E402
from iqa_cli.engines.depictqa.static_decode import StaticDecoder  # noqa: E402
from iqa_cli.testing import tiny_depictqa  # noqa: E402


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    model, _ = load_depictqa(tiny_depictqa.build_tiny_models(tmp_path_factory.mktemp("dq-static")))
    return model.llm


@pytest.fixture(scope="module")
def prompts(llm):
    """10 prompts of 5..59 rows (padding in every block) with mixed token limits."""
    rng = np.random.default_rng(1)
    gen = torch.Generator().manual_seed(1)
    hidden = llm.config.hidden_size
    texts = [torch.randn(int(n), hidden, generator=gen) * 0.5 for n in rng.integers(5, 60, 10)]
    return texts, [int(x) for x in rng.integers(1, 30, 10)]


def _alone(llm, texts, limits, eos_id):
    return [
        greedy_generate(llm, pad_left([t]), max_new_tokens=n, eos_id=eos_id)[0]
        for t, n in zip(texts, limits, strict=True)
    ]


def _assert_same(got, expected):
    for g, e in zip(got, expected, strict=True):
        assert g.ids == e.ids and g.stopped == e.stopped
        np.testing.assert_allclose(g.probs, e.probs, rtol=0, atol=1e-5)  # float32 summation order only


@pytest.mark.parametrize("max_rows", [64, 3, 1])
def test_static_blocks_give_the_tokens_of_one_at_a_time_decoding(llm, prompts, max_rows):
    texts, limits = prompts
    got = StaticDecoder(llm, eos_id=-1, max_rows=max_rows).generate(texts, limits)
    _assert_same(got, _alone(llm, texts, limits, -1))
    assert [len(g.ids) for g in got] == limits


def test_rows_end_at_their_own_stop_token(llm, prompts):
    texts, _ = prompts
    limits = [20] * len(texts)
    free = _alone(llm, texts, limits, -1)
    counts: dict[int, int] = {}
    for g in free:
        for t in set(g.ids[:15]):
            counts[t] = counts.get(t, 0) + 1
    eos = max(counts, key=lambda t: (0 < counts[t] < len(texts), counts[t]))
    expected = _alone(llm, texts, limits, eos)
    assert any(e.stopped for e in expected) and any(not e.stopped for e in expected)
    _assert_same(StaticDecoder(llm, eos_id=eos, max_rows=4).generate(texts, limits), expected)


def test_zero_limits_and_a_limit_list_of_the_wrong_length(llm, prompts):
    texts, _ = prompts
    got = StaticDecoder(llm, eos_id=-1).generate(texts[:3], [0, 4, 0])
    assert [len(g.ids) for g in got] == [0, 4, 0]
    with pytest.raises(ValueError, match="token limits"):
        StaticDecoder(llm, eos_id=-1).generate(texts[:3], [1, 2])
