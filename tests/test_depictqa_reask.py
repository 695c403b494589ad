"""Short detailed answers get the re-ask rule, as brief ones do: checked against DepictQAModel.answer.

The tiny release answers with noise that never names an image, so the comparison rule would always give 0.
The engine here is steered (two directions added to the token embeddings and the LM head) so that every
answer is "Image A ..." or "Image B ...", with the letter's probability near 0.5 and still depending on the
prompt: the detailed and the re-asked prompts then give measurably different confidences.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")

import torch

from iqa_cli.engines.base import AssessRequest, EngineOptions, Prepared
from iqa_cli.engines.depictqa import confidence as conf
from iqa_cli.engines.depictqa import questions
from iqa_cli.engines.depictqa.engine import Ask, DepictQAEngine
from iqa_cli.engines.depictqa.preprocess import pad_and_normalize
from iqa_cli.engines.depictqa.prompts import ImageSlot, task_type
from iqa_cli.testing import tiny_depictqa

MAX_NEW_TOKENS = 6  # every answer has at most 6 tokens, so every detailed answer is short (< 22 words)


# A batched float32 forward sums in another order than one prompt alone: probabilities differ by about 1e-6
# (1.1e-6 seen with torch 2.13 and transformers 5.24), so "the same" means within this.
BATCHED = 1e-5


def _steer(engine: DepictQAEngine) -> None:
    """Make the tiny LLaMA say "Image" after any other token and "A" or "B" after "Image"."""
    ids = engine.special_ids
    llm = engine.model.llm
    table, head = llm.get_input_embeddings().weight, llm.lm_head.weight
    generator = torch.Generator().manual_seed(0)
    directions, _ = torch.linalg.qr(torch.randn(table.shape[1], 2, generator=generator))
    other, image = directions[:, 0], directions[:, 1]
    scale = 1.5 * float(table.norm(dim=1).mean())
    with torch.no_grad():
        table += scale * other
        table[ids.image] = scale * image
        head[ids.image] += 6.0 * other
        head[ids.a] += 6.0 * image
        head[ids.b] += 6.0 * image


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("dq-reask")
    tiny_depictqa.build_tiny_models(root, variant="dq495k")
    options = EngineOptions(model_dir=str(root), device="cpu", dtype="float32", max_new_tokens=MAX_NEW_TOKENS)
    engine = DepictQAEngine.create(options)
    _steer(engine)
    return engine


def _items(n: int, seed: int = 0) -> list[Prepared]:
    rng = np.random.default_rng(seed)
    sizes = [(224, 336), (100, 71), (224, 224)]
    return [
        Prepared(i, pad_and_normalize(rng.integers(0, 256, (*sizes[i % 3], 3), dtype=np.uint8)), 0, 0) for i in range(n)
    ]


def _alone(engine: DepictQAEngine, task: str, question: str, slots: dict[ImageSlot, Prepared]) -> tuple[str, object]:
    """One prompt through the reference forward pass: the decoded answer and its tokens."""
    pixels = {slot: torch.from_numpy(np.asarray(item.payload, dtype=np.float32)) for slot, item in slots.items()}
    segments, images = engine._prompt(Ask(task, question, pixels))
    one = engine.model.answer(segments, images, max_new_tokens=MAX_NEW_TOKENS, eos_id=engine.tokenizer.eos_token_id)
    return engine.tokenizer.decode(one.ids, skip_special_tokens=True), conf.AnswerTokens(one.ids, one.probs)


def _reference(engine, task, question, slots, *, compare):
    """The detailed answer alone, the confidence of its re-asked answer, and what scoring it directly gives."""
    text, tokens = _alone(engine, task, question, slots)
    assert conf.is_brief(text) and conf.needs_reask(question, text)  # the case under test: a short detail
    again, again_tokens = _alone(engine, task, conf.reask_question(question), slots)
    assert conf.is_brief(again)
    expected = conf.answer_confidence(again, again_tokens, engine.special_ids, compare=compare)
    direct = conf.answer_confidence(text, tokens, engine.special_ids, compare=compare)
    return text, expected, direct


@pytest.fixture
def asked(engine, monkeypatch):
    """The questions the engine generates answers to, in order."""
    seen: list[str] = []
    ask = engine._ask
    monkeypatch.setattr(engine, "_ask", lambda asks, limit: seen.extend(a.question for a in asks) or ask(asks, limit))
    return seen


def test_short_detailed_answer_of_one_image_is_scored_by_the_reask(engine, asked):
    items = _items(3)
    results = engine.assess(items, AssessRequest(detail=True))
    question = questions.default_question(questions.ASSESSMENT_REASONING, reference=False)
    assert asked.count(conf.reask_question(question)) == len(items)  # re-asked in one batch with the others
    differs = []
    for item, result in zip(items, results, strict=True):
        text, expected, direct = _reference(engine, task_type(compare=False, reference=False), question,
                                            {ImageSlot.A: item}, compare=False)  # fmt: skip
        assert result.detail == questions.clean_answer(text)  # the detailed answer is kept as it came
        assert result.detail_confidence == pytest.approx(expected, abs=BATCHED)
        differs.append(abs(direct - expected) > 10 * BATCHED)
    assert any(differs)  # scoring the detailed answer itself would have failed this test


@pytest.mark.parametrize("reference", [False, True], ids=["noref", "ref"])
def test_short_comparison_reasoning_is_scored_by_the_reask(engine, asked, reference):
    a, b, ref, c = _items(4, seed=1)
    pairs = [(a, b, ref if reference else None), (c, a, ref if reference else None)]
    results = engine.compare(pairs, AssessRequest(detail=True))
    question = questions.default_question(questions.COMPARISON_REASONING, reference=reference)
    assert asked.count(conf.reask_question(question)) == len(pairs)
    differs = []
    for (first, second, given), result in zip(pairs, results, strict=True):
        slots = {ImageSlot.A: first, ImageSlot.B: second} | ({ImageSlot.REFERENCE: given} if given else {})
        text, expected, direct = _reference(engine, task_type(compare=True, reference=reference), question, slots,
                                            compare=True)  # fmt: skip
        assert result.detail == questions.clean_answer(text)
        assert 0.0 < expected < 1.0  # the re-asked answer names an image: the letter's probability
        assert result.detail_confidence == pytest.approx(expected, abs=BATCHED)
        differs.append(abs(direct - expected) > 10 * BATCHED)
    assert any(differs)


def test_long_detailed_answers_are_not_reasked(engine, asked, monkeypatch):
    """22 words or more: the detail rule on the answer itself, no second question."""
    monkeypatch.setattr(engine, "max_new_tokens", 48)
    monkeypatch.setattr(engine, "ignore_eos", True)  # 48 tokens: "Image A" 24 times, 48 words
    (result,) = engine.assess(_items(1), AssessRequest(detail=True))
    question = questions.default_question(questions.ASSESSMENT_REASONING, reference=False)
    assert not conf.is_brief(result.detail + "\n ")
    assert conf.reask_question(question) not in asked
    assert result.detail_confidence is not None and 0.0 < result.detail_confidence <= 1.0
