"""The ranking model: both-orders answers, the pair schedule, Bradley-Terry, per-method aggregation, report rows.

Pure functions on answers; rank/run.py runs engines over files and folders. docs/ranking.md explains the model.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from iqa_cli.defaults import PAIR_LIMIT
from iqa_cli.engines.base import Comparison

PRIOR_GAMES = 1.0  # virtual games, half won, of each candidate against an average one (keeps BT finite)
BOOTSTRAP_SAMPLES = 2000
TIE = 1e-6  # log-strengths closer than this share a rank

# -------------------------------------------------------------------------------------------- records


@dataclass
class PairResult:
    """Candidates `a` and `b` compared in both orders; `p_a` is the combined probability that `a` is better.

    `forward` answered (A=a, B=b), `backward` (A=b, B=a). `agree` is whether both picked the same image.
    A failed pair has `error` set and `p_a` None.
    """

    a: int
    b: int
    p_a: float | None = None
    agree: bool | None = None
    forward: Comparison | None = None
    backward: Comparison | None = None
    error: str | None = None

    @property
    def confidence(self) -> float | None:
        """Certainty in the combined winner, 0.5 (a tie) to 1."""
        return None if self.p_a is None else max(self.p_a, 1.0 - self.p_a)

    @property
    def winner(self) -> int | None:
        """The better candidate, None for an exact tie or a failure."""
        if self.p_a is None or self.p_a == 0.5:
            return None
        return self.a if self.p_a > 0.5 else self.b


@dataclass
class Standing:
    """One candidate's place: `rank` 1 is best (ties share the lower rank); None when it could not be ranked.

    `strength` is the Bradley-Terry log-strength (mean 0 over the ranked candidates); `score` the modelled
    probability of beating an average candidate (0-1); `wins` counts pairs won (a tie is half);
    `confidence` how sure the model is of its place against its neighbours (0.5-1).
    """

    index: int
    path: str
    label: str
    rank: int | None = None
    score: float | None = None
    strength: float | None = None
    wins: float = 0.0
    games: int = 0
    confidence: float | None = None
    error_code: str | None = None
    error: str | None = None


@dataclass
class Ranking:
    """The ranking of one set of candidates (one image in folder mode, named by `group`)."""

    group: str
    reference: str | None
    standings: list[Standing]
    pairs: list[PairResult]


# -------------------------------------------------------------------------------- both-orders answer


def _p_first(comparison: Comparison, first_is: str) -> float:
    """P(the image in slot `first_is` is better) from one answer.

    An answer never counts against the image it picked: a confidence under 0.5 (probability mass on
    other tokens, or 0 for an answer naming neither image) counts as a coin toss.
    """
    picked = max(0.5, min(1.0, comparison.confidence))
    return picked if comparison.winner == first_is else 1.0 - picked


def combine(a: int, b: int, forward: Comparison, backward: Comparison) -> PairResult:
    """One PairResult from the (a, b) and (b, a) answers: their probabilities for `a`, averaged.

    Averaging cancels a position bias: an engine that always says "Image A" at 0.9 gives 0.5 here.
    """
    p_forward = _p_first(forward, "A")
    p_backward = _p_first(backward, "B")
    agree = forward.winner != backward.winner  # the same image sits in the other slot the second time
    return PairResult(a, b, round((p_forward + p_backward) / 2, 6), agree, forward, backward)


# ------------------------------------------------------------------------------------ pair schedule


def all_pairs(n: int) -> list[tuple[int, int]]:
    """Every unordered pair of n candidates: n(n-1)/2."""
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def swiss_rounds(n: int) -> int:
    """Rounds after the opening ring for n > PAIR_LIMIT: ceil(log2 n), so about n + n/2 log2 n pairs in all."""
    return max(1, math.ceil(math.log2(max(2, n))))


def swiss_pairs(strength: np.ndarray, met: set[frozenset[int]]) -> list[tuple[int, int]]:
    """One Swiss round: walk the current order and pair each candidate with the nearest one below it not yet met."""
    order = sorted(range(len(strength)), key=lambda i: (-strength[i], i))
    free = list(order)
    pairs = []
    while len(free) > 1:
        first = free.pop(0)
        partner = next((c for c in free if frozenset((first, c)) not in met), None)
        if partner is not None:
            free.remove(partner)
            pairs.append((first, partner))
    return pairs


Judge = Callable[[list[tuple[int, int]]], list[PairResult]]


def tournament(n: int, judge: Judge, *, pair_limit: int = PAIR_LIMIT) -> list[PairResult]:
    """Ask `judge` about pairs of n candidates: all pairs up to `pair_limit`, else a ring then Swiss rounds.

    The ring (i, i+1 mod n) connects everyone with n pairs; each Swiss round then pairs neighbours in
    the current Bradley-Terry order, where the information is. Each round is one batch for the engine.
    """
    if n < 2:
        return []
    if n <= pair_limit:
        return judge(all_pairs(n))
    results = judge([(i, (i + 1) % n) for i in range(n)] if n > 2 else [(0, 1)])
    met = {frozenset((r.a, r.b)) for r in results}
    for _ in range(swiss_rounds(n)):
        strength, _ = fit_bradley_terry(n, results)
        pairs = swiss_pairs(strength, met)
        if not pairs:
            break
        results += judge(pairs)
        met |= {frozenset(p) for p in pairs}
    return results


# ---------------------------------------------------------------------------------- Bradley-Terry


def fit_bradley_terry(
    n: int, results: Sequence[PairResult], *, prior: float = PRIOR_GAMES
) -> tuple[np.ndarray, np.ndarray]:
    """Log-strengths (mean 0) and their standard errors from soft pairwise outcomes.

    Each PairResult is one game that `a` wins with weight p_a and `b` with 1 - p_a. Hunter's MM
    algorithm maximises the posterior with `prior` virtual games, half won, against a fixed candidate of
    strength 1: it keeps undefeated candidates finite, and cycles and ties come out as equal strengths.
    """
    games = np.zeros((n, n))
    wins = np.zeros(n)
    for r in results:
        if r.p_a is None:
            continue
        games[r.a, r.b] += 1.0
        games[r.b, r.a] += 1.0
        wins[r.a] += r.p_a
        wins[r.b] += 1.0 - r.p_a
    pi = np.ones(n)
    for _ in range(10_000):
        denominator = (games / (pi[:, None] + pi[None, :])).sum(axis=1) + prior / (pi + 1.0)
        updated = (wins + prior / 2) / denominator
        done = np.max(np.abs(np.log(updated) - np.log(pi))) < 1e-10
        pi = updated
        if done:
            break
    pair = pi[:, None] * pi[None, :] / (pi[:, None] + pi[None, :]) ** 2
    information = (games * pair).sum(axis=1) + prior * pi / (pi + 1.0) ** 2
    strength = np.log(pi)
    return strength - strength.mean(), 1.0 / np.sqrt(information)


def standings(paths: Sequence[str], labels: Sequence[str], results: Sequence[PairResult]) -> list[Standing]:
    """Rank candidates from their pair results; candidates with no answered pair are left unranked."""
    n = len(paths)
    rows = [Standing(i, paths[i], labels[i]) for i in range(n)]
    for r in results:
        if r.p_a is None:
            continue
        for me, p in ((r.a, r.p_a), (r.b, 1.0 - r.p_a)):
            rows[me].games += 1
            rows[me].wins += 1.0 if p > 0.5 else 0.5 if p == 0.5 else 0.0
    ranked = [i for i in range(n) if rows[i].games > 0]
    if not ranked:
        return rows
    index = {c: k for k, c in enumerate(ranked)}
    local = [PairResult(index[r.a], index[r.b], r.p_a) for r in results if r.p_a is not None]
    strength, _ = fit_bradley_terry(len(ranked), local)
    direct: dict[tuple[int, int], float] = {}
    for r in results:
        if r.p_a is not None:
            direct[r.a, r.b], direct[r.b, r.a] = r.p_a, 1.0 - r.p_a
    order = sorted(range(len(ranked)), key=lambda k: (-strength[k], ranked[k]))
    for position, k in enumerate(order):
        row = rows[ranked[k]]
        previous = order[position - 1] if position else None
        tied = previous is not None and strength[previous] - strength[k] < TIE
        row.rank = rows[ranked[previous]].rank if tied and previous is not None else position + 1
        row.strength = round(float(strength[k]), 4)
        row.score = round(1.0 / (1.0 + math.exp(-strength[k])), 4)
    for position, k in enumerate(order):
        # How sure its place is: the probability it is ordered right against each neighbour in the ranking,
        # from their own combined answer when they met, else from the model; the weaker of the two.
        checks = []
        for p in (position - 1, position + 1):
            if not 0 <= p < len(order):
                continue
            j = order[p]
            above, below = (k, j) if p > position else (j, k)
            if rows[ranked[above]].rank == rows[ranked[below]].rank:
                checks.append(0.5)
            elif (ranked[above], ranked[below]) in direct:
                checks.append(direct[ranked[above], ranked[below]])
            else:
                checks.append(1.0 / (1.0 + math.exp(strength[below] - strength[above])))
        rows[ranked[k]].confidence = round(min(checks), 4) if checks else None
    return rows


# ------------------------------------------------------------------------------------ aggregation


@dataclass
class MethodSummary:
    """A method across images: mean rank (1 best) and win rate with bootstrap 95% intervals over images."""

    method: str
    images: int
    mean_rank: float | None
    mean_rank_low: float | None
    mean_rank_high: float | None
    win_rate: float | None
    win_rate_low: float | None
    win_rate_high: float | None
    rank: int | None = None


def aggregate(methods: Sequence[str], rankings: Sequence[Ranking], *, seed: int = 0) -> list[MethodSummary]:
    """Per-method mean rank and win rate over images, with percentile bootstrap intervals (images resampled, seeded)."""
    m, g = len(methods), len(rankings)
    ranks = np.full((g, m), np.nan)
    wins, games = np.zeros((g, m)), np.zeros((g, m))
    for gi, ranking in enumerate(rankings):
        for row in ranking.standings:
            if row.rank is not None:
                ranks[gi, row.index], wins[gi, row.index], games[gi, row.index] = row.rank, row.wins, row.games
    rng = np.random.default_rng(seed)
    samples = rng.integers(0, g, size=(BOOTSTRAP_SAMPLES, g)) if g else np.zeros((0, 0), dtype=int)
    out = []
    # A resample may hold no image a method was ranked on: its mean is NaN there and left out of the interval.
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for k, name in enumerate(methods):
            seen = ~np.isnan(ranks[:, k])
            if not seen.any():
                out.append(MethodSummary(name, 0, None, None, None, None, None, None))
                continue
            boot_rank = np.nanmean(np.where(seen[samples], ranks[samples, k], np.nan), axis=1)
            boot_rate = wins[samples, k].sum(axis=1) / games[samples, k].sum(axis=1)
            low_rank, high_rank = np.nanpercentile(boot_rank, [2.5, 97.5])
            low_rate, high_rate = np.nanpercentile(boot_rate, [2.5, 97.5])
            rate = wins[:, k].sum() / games[:, k].sum() if games[:, k].sum() else float("nan")
            out.append(
                MethodSummary(
                    name,
                    int(seen.sum()),
                    *(_r(x) for x in (np.nanmean(ranks[:, k]), low_rank, high_rank)),
                    *(_r(x) for x in (rate, low_rate, high_rate)),
                )
            )
    order = sorted(
        (s for s in out if s.mean_rank is not None), key=lambda s: (s.mean_rank, -(s.win_rate or 0.0), s.method)
    )
    for position, summary in enumerate(order, start=1):
        summary.rank = position
    return out


def _r(x: float) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), 4)


# ---------------------------------------------------------------------------------------- reports

PAIRS_SCHEMA = pa.schema(
    [
        ("group", pa.string()), ("a", pa.string()), ("b", pa.string()), ("reference", pa.string()),
        ("p_a_better", pa.float64()), ("winner", pa.string()), ("confidence", pa.float64()), ("agree", pa.bool_()),
        ("ab_answer", pa.string()), ("ab_confidence", pa.float64()), ("ab_detail", pa.string()),
        ("ba_answer", pa.string()), ("ba_confidence", pa.float64()), ("ba_detail", pa.string()),
        ("question", pa.string()), ("error", pa.string()),
    ]
)  # fmt: skip
RANKING_SCHEMA = pa.schema(
    [
        ("group", pa.string()), ("rank", pa.int32()), ("label", pa.string()), ("path", pa.string()),
        ("reference", pa.string()), ("score", pa.float64()), ("strength", pa.float64()), ("wins", pa.float64()),
        ("games", pa.int32()), ("confidence", pa.float64()), ("error_code", pa.string()), ("error", pa.string()),
    ]
)  # fmt: skip
METHODS_SCHEMA = pa.schema(
    [
        ("rank", pa.int32()), ("method", pa.string()), ("images", pa.int32()), ("mean_rank", pa.float64()),
        ("mean_rank_low", pa.float64()), ("mean_rank_high", pa.float64()), ("win_rate", pa.float64()),
        ("win_rate_low", pa.float64()), ("win_rate_high", pa.float64()),
    ]
)  # fmt: skip


def pair_rows(ranking: Ranking) -> list[dict[str, Any]]:
    """One row per compared pair: the combined answer and both orders' own answers."""
    paths = {row.index: row.path for row in ranking.standings}
    rows = []
    for p in ranking.pairs:
        f, b = p.forward, p.backward
        rows.append(
            {
                "group": ranking.group, "a": paths[p.a], "b": paths[p.b], "reference": ranking.reference,
                "p_a_better": p.p_a, "winner": paths[p.winner] if p.winner is not None else None,
                "confidence": p.confidence, "agree": p.agree,
                "ab_answer": f and f.answer, "ab_confidence": f and f.confidence, "ab_detail": f and f.detail,
                "ba_answer": b and b.answer, "ba_confidence": b and b.confidence, "ba_detail": b and b.detail,
                "question": f and f.question, "error": p.error,
            }
        )  # fmt: skip
    return rows


def ranking_rows(ranking: Ranking) -> list[dict[str, Any]]:
    """One row per candidate, best first, unranked ones last."""
    ordered = sorted(ranking.standings, key=lambda s: (s.rank is None, s.rank or 0, s.index))
    return [
        {"group": ranking.group, "rank": s.rank, "label": s.label, "path": s.path, "reference": ranking.reference,
         "score": s.score, "strength": s.strength, "wins": s.wins, "games": s.games, "confidence": s.confidence,
         "error_code": s.error_code, "error": s.error}
        for s in ordered
    ]  # fmt: skip


def method_rows(summaries: Sequence[MethodSummary]) -> list[dict[str, Any]]:
    """One row per method, best first."""
    ordered = sorted(summaries, key=lambda s: (s.rank is None, s.rank or 0, s.method))
    return [{name: getattr(s, name) for name in METHODS_SCHEMA.names} for s in ordered]
