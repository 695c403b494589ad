"""The summary's ranking, which report plugins reuse: badness and the bounded TopK."""

from __future__ import annotations

from iqa_cli.report.summary import SummaryBuilder, TopK, badness
from iqa_cli.testing.rows import ok_row


def test_badness_orders_verdict_then_score_then_distortion_count() -> None:
    ranked = sorted(
        [
            ("ok", 0.1, []),
            ("degraded", 0.9, ["blur"]),
            ("bad", 0.6, ["blur"]),
            ("bad", 0.2, ["blur"]),
            ("bad", 0.2, ["blur", "noise"]),
            ("bad", None, []),
        ],
        key=lambda r: badness(*r),
        reverse=True,
    )
    assert ranked[:3] == [("bad", 0.2, ["blur", "noise"]), ("bad", 0.2, ["blur"]), ("bad", None, [])]
    assert ranked[-2:] == [("degraded", 0.9, ["blur"]), ("ok", 0.1, [])]


def test_top_k_keeps_the_largest_and_the_earliest_of_equals() -> None:
    top: TopK[str] = TopK(3)
    for key, item in [(1, "a"), (5, "b"), (5, "c"), (2, "d"), (5, "e"), (9, "f")]:
        top.add(key, item)
    assert top.ranked() == ["f", "b", "c"] and len(top) == 3
    assert TopK(0).ranked() == []


def test_summary_lists_the_worst_in_badness_order() -> None:
    builder = SummaryBuilder("e", "1")
    for i, (verdict, score) in enumerate([("ok", 0.9), ("bad", 0.3), ("degraded", 0.5), ("bad", 0.1)]):
        builder.add(ok_row(f"{i}.png", verdict=verdict, score=score))
    summary = builder.finish(1.0)
    assert [line.path for line in summary.worst] == ["3.png", "1.png", "2.png"]
