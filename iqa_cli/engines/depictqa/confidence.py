"""How sure DepictQA-Wild is of an answer: the authors' confidence rules over generated-token probabilities."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from iqa_cli.engines.depictqa.questions import SINGLE_WORD_TAIL, has_single_word_instruction
from iqa_cli.engines.depictqa.tokenizer import SPACE

# The rules, checked against XPixelGroup/DepictQA src/model/utils/confidence.py (cal_confidence and
# helpers) and src/model/depictqa.py (generate: p_t = softmax(scores_t)[chosen token]):
# - brief = fewer than 22 words, counted as len(text.split(" ")) on the decoded answer;
# - single-image brief: cut at the first (newline, "▁", </s>) triple, drop the FIRST "and" token
#   only, mean of the remaining p_t;
# - comparison brief: p_t of the A/B token after the first "Image" token followed by "A" or "B"
#   (searched over all generated tokens, no cut);
# - detail (22 words or more, MiniLM available): leave-one-out MiniLM weights 1 - cos, the 30
#   largest (stable sort: ties keep the earlier token), normalised to sum 1, dot p_t; no cut, so
#   the trailing newline / "▁" / </s> tokens take part (their removal barely moves the embedding);
#   the text without token i is the decode of the other ids with special tokens skipped, and the
#   embedding is sentence-transformers' all-MiniLM-L6-v2 (stripped text, 256 word pieces, mean
#   pooling over the attention mask, L2 norm; load_minilm matches SentenceTransformer.encode);
# - the authors drop their leading start token and any padding (id 0) first; AnswerTokens has neither;
# - re-ask: a brief answer to a question without a single-word phrase is scored by asking again
#   with SINGLE_WORD_TAIL appended and scoring that second answer; the reasoning (detail) questions
#   have no such phrase, so a short detailed answer is re-asked too.
# Our choices where the authors' code has no usable answer:
# - an empty brief answer scores 0.0 (authors: ZeroDivisionError swallowed, confidence None);
# - a comparison answer without "Image A"/"Image B" gives (None, 0.0) (authors: endless loop);
# - top-30 weights summing to <= 0 fall back to equal weights (authors: division by zero, NaN);
# - every score is clamped to [0, 1] (float rounding can put a mean a hair above 1).

Embedder = Callable[[list[str]], np.ndarray]

BRIEF_MAX_WORDS = 22  # in training brief answers had at most 19 words, detailed ones at least 24
DETAIL_TOP_K = 30
_SPECIAL_PIECES = frozenset({"<s>", "</s>", "<unk>"})
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@dataclass(frozen=True)
class AnswerTokens:
    """Every generated token of one answer, in order, and the probability the model gave it.

    `ids` starts at the first generated token (no BOS, no prompt) and includes the stop token
    </s> when generation ended on it; no padding. `probs[i]` is softmax(logits)[ids[i]] at the
    step that produced ids[i].
    """

    ids: list[int]
    probs: list[float]

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.probs):
            raise ValueError(f"{len(self.ids)} token ids but {len(self.probs)} probabilities")


@dataclass(frozen=True)
class SpecialIds:
    """The token ids the rules look for; Vicuna's are VICUNA_IDS."""

    newline_eos: tuple[int, ...]  # "\n" "▁" "</s>": how every trained answer ends
    and_id: int  # "▁and"
    image: int  # "▁Image"
    a: int  # "▁A"
    b: int  # "▁B"

    @classmethod
    def from_tokenizer(cls, tok: Any) -> SpecialIds:
        """Read the ids from a LLaMA-style SentencePiece tokenizer (byte fallback, "▁" pieces)."""
        # SentencePiece spells "\n" with its own piece when the vocabulary has one (small trained
        # vocabularies do), else with the byte piece <0x0A> (Vicuna's id 13).
        return cls(
            newline_eos=(_piece_id(tok, "\n", "<0x0A>"), _piece_id(tok, SPACE), int(tok.eos_token_id)),
            and_id=_piece_id(tok, SPACE + "and"),
            image=_piece_id(tok, SPACE + "Image"),
            a=_piece_id(tok, SPACE + "A"),
            b=_piece_id(tok, SPACE + "B"),
        )


VICUNA_IDS = SpecialIds(newline_eos=(13, 29871, 2), and_id=322, image=7084, a=319, b=350)


def _piece_id(tok: Any, *pieces: str) -> int:
    """The id of the first of `pieces` the tokenizer has as a single token."""
    for piece in pieces:
        token_id = tok.convert_tokens_to_ids(piece)
        if token_id is not None and token_id != tok.unk_token_id:
            return int(token_id)
    raise ValueError(f"the tokenizer has no single token {pieces[-1]!r}, which the confidence rules need")


def is_brief(text: str) -> bool:
    """Whether an answer is brief: fewer than 22 words split on single spaces, as the authors count.

    Pass the decoded answer as generated (special tokens skipped, not stripped), e.g.
    `decode_pieces(pieces)`: its trailing "\\n " adds one to the count, as it did for the authors.
    """
    return len(text.split(" ")) < BRIEF_MAX_WORDS


def needs_reask(question: str, text: str) -> bool:
    """Whether the confidence of this answer must come from asking again with the single-word tail."""
    return is_brief(text) and not has_single_word_instruction(question)


def reask_question(question: str) -> str:
    """The question asked again for the confidence of a brief answer."""
    return question + SINGLE_WORD_TAIL


def brief_confidence(ans: AnswerTokens, ids: SpecialIds) -> float:
    """Single-image brief answer: mean p_t up to the first "\\n ▁ </s>", without the first "and"."""
    token_ids, probs = list(ans.ids), list(ans.probs)
    end = _find(token_ids, ids.newline_eos)
    if end is not None:
        token_ids, probs = token_ids[:end], probs[:end]
    # Only the first "and": "Blur and noise" scores the two names, not the joining word.
    if ids.and_id in token_ids:
        del probs[token_ids.index(ids.and_id)]
    if not probs:
        return 0.0
    return _clamp(sum(probs) / len(probs))


def comparison_confidence(ans: AnswerTokens, ids: SpecialIds) -> tuple[str | None, float]:
    """Comparison brief answer: the winner of the first "Image A"/"Image B" and p_t of its letter."""
    for i in range(len(ans.ids) - 1):
        if ans.ids[i] == ids.image and ans.ids[i + 1] in (ids.a, ids.b):
            return ("A" if ans.ids[i + 1] == ids.a else "B"), _clamp(ans.probs[i + 1])
    return None, 0.0


def detail_confidence(ans: AnswerTokens, token_texts: Sequence[str], embed: Embedder) -> float:
    """Detailed answer: p_t weighted by how much each token moves the answer's MiniLM embedding.

    `token_texts` are the SentencePiece pieces of `ans.ids` (`tokenizer.convert_ids_to_tokens`),
    so that the text without token i is `decode_pieces` of the other pieces: the authors' "decode
    the ids without token i, special tokens skipped". `embed` maps texts to one row each.
    """
    n = len(ans.ids)
    if len(token_texts) != n:
        raise ValueError(f"{n} token ids but {len(token_texts)} token texts")
    if n == 0:
        return 0.0
    if n > 1 and not any(SPACE in piece for piece in token_texts):
        # Per-token decode() drops the "▁" word marks and would glue every word together.
        raise ValueError("token_texts must be SentencePiece pieces (convert_ids_to_tokens), with '▁' marks")
    pieces = list(token_texts)
    texts = [decode_pieces(pieces)] + [decode_pieces(pieces[:i] + pieces[i + 1 :]) for i in range(n)]
    vectors = np.asarray(embed(texts), dtype=np.float64)
    if vectors.shape[0] != n + 1:
        raise ValueError(f"the embedder returned {vectors.shape[0]} rows for {n + 1} texts")
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    weights = [float(w) for w in 1.0 - unit[1:] @ unit[0]]
    # sorted() is stable, so equal weights keep token order, as in the authors' code.
    top = sorted(range(n), key=lambda i: weights[i], reverse=True)[:DETAIL_TOP_K]
    kept = np.array([weights[i] for i in top])
    probs = np.array([ans.probs[i] for i in top])
    total = kept.sum()
    if total <= 0:
        return _clamp(float(probs.mean()))
    return _clamp(float((kept / total * probs).sum()))


def answer_confidence(
    text: str,
    ans: AnswerTokens,
    ids: SpecialIds,
    *,
    compare: bool,
    token_texts: Sequence[str] | None = None,
    embed: Embedder | None = None,
) -> float | None:
    """The authors' dispatch: brief rule by task when `text` is brief, else the detail rule.

    None for a detailed answer when no embedder (MiniLM) is given, as the authors return None
    without a sentence model. The re-ask rule is the caller's: see `needs_reask`.
    """
    if is_brief(text):
        return comparison_confidence(ans, ids)[1] if compare else brief_confidence(ans, ids)
    if embed is None or token_texts is None:
        return None
    return detail_confidence(ans, token_texts, embed)


def decode_pieces(pieces: Sequence[str]) -> str:
    """SentencePiece pieces to text as the LLaMA tokenizer decodes with special tokens skipped.

    "▁" becomes a space, the first piece loses its leading one, byte pieces (<0x0A>) join into
    UTF-8, and <s>, </s>, <unk> are dropped.
    """
    out = bytearray()
    first = True
    for piece in pieces:
        if piece in _SPECIAL_PIECES:
            continue
        byte = _BYTE_PIECE.fullmatch(piece)
        if byte:
            out.append(int(byte.group(1), 16))
        else:
            if first and piece.startswith(SPACE):
                piece = piece[1:]
            out += piece.replace(SPACE, " ").encode("utf-8")
        first = False
    return _utf8(bytes(out))


def _utf8(data: bytes) -> str:
    """UTF-8 with one U+FFFD per invalid byte, as SentencePiece decodes a broken byte sequence."""
    parts: list[str] = []
    while True:
        try:
            parts.append(data.decode("utf-8"))
            return "".join(parts)
        except UnicodeDecodeError as err:
            parts.append(data[: err.start].decode("utf-8") + "\ufffd" * (err.end - err.start))
            data = data[err.end :]


def _find(seq: list[int], pattern: tuple[int, ...]) -> int | None:
    width = len(pattern)
    for i in range(len(seq) - width + 1):
        if tuple(seq[i : i + width]) == pattern:
            return i
    return None


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))
