"""rank/model.py on hand-built answers: both orders, Bradley-Terry, pair schedule, aggregation; rank/run.py matching."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from iqa_cli.engines.base import AssessRequest, Comparison, Prepared
from iqa_cli.errors import UsageError
from iqa_cli.rank.model import (
    PAIR_LIMIT,
    PairResult,
    Ranking,
    Standing,
    aggregate,
    all_pairs,
    combine,
    fit_bradley_terry,
    standings,
    swiss_rounds,
    tournament,
)
from iqa_cli.rank.run import RankSettings, _judge, match_folders, plan_rank


def answer(winner: str, confidence: float) -> Comparison:
    return Comparison(winner=winner, answer=f"Image {winner}", confidence=confidence)


# ---------------------------------------------------------------------------------- both orders


def test_agreeing_orders_average_their_probabilities() -> None:
    pair = combine(0, 1, answer("A", 0.9), answer("B", 0.7))  # both pick candidate 0
    assert pair.agree is True and pair.p_a == pytest.approx(0.8) and pair.winner == 0
    assert pair.confidence == pytest.approx(0.8)


def test_position_bias_cancels_and_is_flagged() -> None:
    pair = combine(0, 1, answer("A", 0.9), answer("A", 0.9))  # always "Image A": no information
    assert pair.agree is False and pair.p_a == pytest.approx(0.5) and pair.winner is None


def test_disagreement_lowers_the_confidence() -> None:
    pair = combine(0, 1, answer("B", 0.95), answer("B", 0.6))  # 1 then 0
    assert pair.agree is False and pair.winner == 1 and pair.confidence == pytest.approx(0.675)


def test_unsure_or_unparsed_answers_count_as_coin_tosses() -> None:
    assert combine(0, 1, answer("A", 0.0), answer("B", 0.3)).p_a == pytest.approx(0.5)


# ------------------------------------------------------------------------------- Bradley-Terry


def pairs(outcomes: dict[tuple[int, int], float]) -> list[PairResult]:
    return [PairResult(a, b, p) for (a, b), p in outcomes.items()]


def test_clear_order_is_recovered_with_mean_zero_strengths() -> None:
    results = pairs({(i, j): 0.95 for i, j in all_pairs(4)})  # 0 > 1 > 2 > 3
    strength, se = fit_bradley_terry(4, results)
    assert list(np.argsort(-strength)) == [0, 1, 2, 3]
    assert strength.mean() == pytest.approx(0.0, abs=1e-9) and np.all(se > 0)


def test_undefeated_candidate_stays_finite() -> None:
    strength, _ = fit_bradley_terry(3, pairs({(0, 1): 1.0, (0, 2): 1.0, (1, 2): 1.0}))
    assert np.all(np.isfinite(strength)) and strength[0] > strength[1] > strength[2]


def test_cycle_and_tie_give_equal_strengths_and_shared_ranks() -> None:
    cycle = pairs({(0, 1): 1.0, (1, 2): 1.0, (2, 0): 1.0})
    strength, _ = fit_bradley_terry(3, cycle)
    assert np.ptp(strength) < 1e-6
    rows = standings(["a", "b", "c"], ["a", "b", "c"], cycle)
    assert [r.rank for r in rows] == [1, 1, 1] and all(r.confidence == 0.5 for r in rows)
    assert [r.wins for r in rows] == [1.0, 1.0, 1.0]
    tie = standings(["a", "b"], ["a", "b"], pairs({(0, 1): 0.5}))
    assert [(r.rank, r.wins, r.score) for r in tie] == [(1, 0.5, 0.5), (1, 0.5, 0.5)]


def test_standings_rank_score_wins_and_confidence() -> None:
    results = pairs({(0, 1): 0.1, (0, 2): 0.2, (1, 2): 0.9})  # 1 > 2 > 0
    rows = standings(["a", "b", "c", "d"], ["A", "B", "C", "D"], [*results, PairResult(0, 3, error="boom")])
    by_label = {r.label: r for r in rows}
    assert [by_label[x].rank for x in "BCA"] == [1, 2, 3] and by_label["D"].rank is None
    assert by_label["B"].wins == 2 and by_label["B"].games == 2 and by_label["A"].wins == 0
    assert by_label["B"].score > by_label["C"].score > by_label["A"].score
    # B's neighbour C: they met, B won with 0.9; C sits between B (0.9) and A (0.8).
    assert by_label["B"].confidence == pytest.approx(0.9) and by_label["C"].confidence == pytest.approx(0.8)


# ---------------------------------------------------------------------------------- pair schedule


def oracle(truth: Sequence[float]):
    """A judge that knows the true strengths (higher better) and answers with their BT probability."""

    def judge(asked: list[tuple[int, int]]) -> list[PairResult]:
        judge.calls.append(list(asked))
        return [PairResult(i, j, float(1 / (1 + np.exp(truth[j] - truth[i])))) for i, j in asked]

    judge.calls = []
    return judge


@pytest.mark.parametrize("n", [2, 5, PAIR_LIMIT])
def test_all_pairs_up_to_the_limit_in_one_batch(n: int) -> None:
    judge = oracle(range(n))
    results = tournament(n, judge)
    assert len(results) == n * (n - 1) // 2 and len(judge.calls) == 1


@pytest.mark.parametrize("n", [PAIR_LIMIT + 1, 40, 100])
def test_swiss_rounds_above_the_limit(n: int) -> None:
    rng = np.random.default_rng(n)
    truth = rng.normal(0, 2, n)
    judge = oracle(truth)
    results = tournament(n, judge)
    met = [frozenset((r.a, r.b)) for r in results]
    assert len(met) == len(set(met))  # no pair asked twice
    assert len(results) <= n + swiss_rounds(n) * (n // 2) < n * (n - 1) // 2
    assert len(judge.calls) == 1 + swiss_rounds(n)  # one engine batch per round
    strength, _ = fit_bradley_terry(n, results)
    assert int(np.argmax(strength)) == int(np.argmax(truth))
    assert np.corrcoef(np.argsort(np.argsort(strength)), np.argsort(np.argsort(truth)))[0, 1] > 0.9


def test_fewer_than_two_candidates_ask_nothing() -> None:
    assert tournament(1, oracle([0.0])) == [] and tournament(0, oracle([])) == []


# --------------------------------------------------------------------------------- engine calls


class BiasedEngine:
    """Says "Image A" unless told to fail on a pair; records what it was asked."""

    name = "biased"

    def __init__(self, fail_key: int | None = None) -> None:
        self.asked: list[tuple[int, int, int | None]] = []
        self.fail_key = fail_key

    def compare(self, triples, request: AssessRequest) -> list[Comparison]:
        if any(self.fail_key in (a.key, b.key) for a, b, _ in triples):
            raise RuntimeError("cannot")
        self.asked += [(a.key, b.key, None if r is None else r.key) for a, b, r in triples]
        return [answer("A", 0.8) for _ in triples]


def test_judge_asks_both_orders_with_the_reference() -> None:
    items = [Prepared(k, None, 1, 1) for k in range(3)]
    engine = BiasedEngine()
    results = _judge(engine, items, Prepared(9, None, 1, 1), RankSettings(batch_size=3))([(0, 1), (1, 2)])
    assert engine.asked == [(0, 1, 9), (1, 0, 9), (1, 2, 9), (2, 1, 9)]
    assert all(r.p_a == 0.5 and r.agree is False for r in results)


def test_judge_retries_a_failing_batch_pair_by_pair() -> None:
    items = [Prepared(k, None, 1, 1) for k in range(3)]
    results = _judge(BiasedEngine(fail_key=2), items, None, RankSettings(batch_size=8))([(0, 1), (0, 2)])
    assert results[0].p_a == 0.5 and results[0].error is None
    assert results[1].p_a is None and "RuntimeError: cannot" in (results[1].error or "")


# ------------------------------------------------------------------------------- command rules


def test_every_path_is_a_candidate_and_only_ref_names_a_reference(tmp_path: Path) -> None:
    _touch(tmp_path, "a.png", "b.png", "c.png", "r.png")
    paths = [str(tmp_path / name) for name in ("a.png", "b.png", "c.png", "r.png")]
    assert (plan_rank(paths, None, None).candidates, plan_rank(paths, None, None).reference) == (paths, None)
    with_ref = plan_rank(paths[:3], paths[3], None)
    assert (with_ref.candidates, with_ref.reference) == (paths[:3], paths[3])


# -------------------------------------------------------------------------------- aggregation


def _image(group: str, ranks: Sequence[int | None]) -> Ranking:
    rows = [
        Standing(k, f"{group}/{k}", f"m{k}", rank=r, wins=float(len(ranks) - r) if r else 0.0,
                 games=len(ranks) - 1 if r else 0)
        for k, r in enumerate(ranks)
    ]  # fmt: skip
    return Ranking(group, None, rows, [])


def test_aggregate_mean_rank_win_rate_and_seeded_bootstrap() -> None:
    images = [_image("x", [1, 2, 3]), _image("y", [1, 3, 2]), _image("z", [2, 1, None]), _image("w", [1, 2, 3])]
    methods = ["m0", "m1", "m2"]
    first = aggregate(methods, images, seed=7)
    assert aggregate(methods, images, seed=7) == first  # deterministic for a seed
    m0, m1, m2 = first
    assert (m0.rank, m1.rank, m2.rank) == (1, 2, 3)
    assert m0.mean_rank == pytest.approx(1.25) and m2.images == 3
    assert m0.win_rate == pytest.approx((2 + 2 + 1 + 2) / 8)
    for s in first:
        assert s.mean_rank_low <= s.mean_rank <= s.mean_rank_high
        assert s.win_rate_low <= s.win_rate <= s.win_rate_high
    assert aggregate(["m0"], [], seed=0)[0].mean_rank is None


# ------------------------------------------------------------------------------------- matching


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


def test_match_folders_by_name_ignoring_extension_and_case(tmp_path: Path) -> None:
    _touch(tmp_path / "refs", "a.png", "b.png", "c.png")
    _touch(tmp_path / "out" / "m1", "A.JPG", "b.png", "c.png", "only_here.png")
    _touch(tmp_path / "out" / "m2", "a.webp", "B.png", "notes.txt")
    matching = match_folders([str(tmp_path / "out" / "m1"), str(tmp_path / "out" / "m2")], str(tmp_path / "refs"))
    assert matching.methods == ["m1", "m2"]
    assert [(name, [Path(p).name for p in paths], Path(ref).name) for name, paths, ref in matching.groups] == [
        ("a", ["A.JPG", "a.webp"], "a.png"),
        ("b", ["b.png", "B.png"], "b.png"),
    ]
    assert dict(matching.unmatched) == {"c": "missing from m2", "only_here": "missing from m2, reference"}


def test_match_folders_reports_duplicate_names_and_non_folders(tmp_path: Path) -> None:
    _touch(tmp_path / "x" / "m1", "a.png", "a.jpg")
    _touch(tmp_path / "y" / "m1", "a.png")
    matching = match_folders([str(tmp_path / "x" / "m1"), str(tmp_path / "y" / "m1")])
    assert matching.methods == [str(tmp_path / "x" / "m1"), str(tmp_path / "y" / "m1")]  # names clash: paths
    assert len(matching.groups) == 1 and any("same name" in why for _, why in matching.unmatched)
    with pytest.raises(UsageError, match="not a folder"):
        match_folders([str(tmp_path / "x" / "m1" / "a.png")])


def test_plan_rank_picks_files_or_folders_and_refuses_mixes(tmp_path: Path) -> None:
    _touch(tmp_path / "m1", "a.png", "b.png")
    _touch(tmp_path / "m2", "a.png")
    _touch(tmp_path / "lone", "z.png")
    a, b, r = (str(tmp_path / "m1" / n) for n in ("a.png", "b.png", "a.png"))
    files = plan_rank([a, b], r, None)
    assert (files.candidates, files.reference, files.matching) == ([a, b], r, None)
    folders = plan_rank([str(tmp_path / "m1"), str(tmp_path / "m2")], None, None)
    assert folders.matching is not None and [name for name, _, _ in folders.matching.groups] == ["a"]
    with pytest.raises(UsageError, match="not both"):
        plan_rank([a, str(tmp_path / "m2")], None, None)
    with pytest.raises(UsageError, match="not files or --ref"):
        plan_rank([str(tmp_path / "m1"), str(tmp_path / "m2")], a, None)
    with pytest.raises(UsageError, match="no file name is present in every folder"):
        plan_rank([str(tmp_path / "m1"), str(tmp_path / "lone")], None, None)


def test_all_pairs_count() -> None:
    assert len(all_pairs(PAIR_LIMIT)) == 66 and set(all_pairs(3)) == set(itertools.combinations(range(3), 2))
