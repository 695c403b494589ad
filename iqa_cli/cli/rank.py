"""`iqa compare` and `iqa rank`: thin commands over rank.py, rendered with Rich or as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from iqa_cli.cli.errors import user_errors
from iqa_cli.cli.options import (
    BEHAVIOUR,
    ENGINE,
    INPUT,
    OUTPUT,
    DeviceOpt,
    DtypeOpt,
    EngineOpt,
    JsonOpt,
    ModelOpt,
    Pixels,
    PixelsOpt,
    TableFormatsOpt,
    TokensOpt,
    WorkersOpt,
    decode_workers,
    engine_from,
    writer_classes,
)
from iqa_cli.cli.terminal import stderr_console, stdout_console
from iqa_cli.defaults import AUTO, PAIR_LIMIT
from iqa_cli.errors import IqaError, UsageError
from iqa_cli.text import shown

if TYPE_CHECKING:  # the ranking itself (numpy, PyArrow, the decode queue) loads when a command runs
    from rich.console import Console

    from iqa_cli.engines.base import Engine
    from iqa_cli.rank.model import MethodSummary, Ranking
    from iqa_cli.rank.run import Matching, RankSettings

BatchOpt = Annotated[
    int, typer.Option("--batch-size", min=1, metavar="N", help="Comparisons per engine batch.", rich_help_panel=ENGINE)
]
DetailOpt = Annotated[
    bool,
    typer.Option("--detail", help="Also ask for the reasoning behind each answer.", rich_help_panel=ENGINE),
]

# Each paragraph is one line, which --help wraps to the terminal; the man page splits the epilog at blank lines.
COMPARE_EPILOG = "\n\n".join(
    [
        "Examples:",
        "  iqa compare restored_a.png restored_b.png",
        "  iqa compare a.png b.png --ref clean.png --detail",
        "The pair is asked both ways, (A, B) and (B, A); the answers are combined to cancel position bias, and a "
        "disagreement between the two orders lowers the confidence and is shown.",
    ]
)

RANK_EPILOG = "\n\n".join(
    [
        "Examples:",
        "  iqa rank out/*.png",
        "  iqa rank a.png b.png c.png --ref clean.png --out ranking/",
        "  iqa rank --ref-dir refs/ outputs/methodA outputs/methodB --out bench/",
        "Every image path given is a candidate; a reference is only ever the image named by --ref (in folder mode, "
        "the files of --ref-dir). Folders are matched by file name (extension and case ignored). See "
        "docs/ranking.md for the model.",
    ]
)


def _setup(workers: int | None, batch_size: int, detail: bool, pair_limit: int, seed: int) -> RankSettings:
    from iqa_cli.rank.run import RankSettings

    return RankSettings(
        detail=detail,
        pair_limit=pair_limit,
        workers=decode_workers(workers),
        batch_size=batch_size,
        seed=seed,
    )


def _engine(
    name: str, model: str | None, device: str | None, dtype: str | None, tokens: int | None, pixels: Pixels
) -> Engine:
    return engine_from(name, model, device, dtype, tokens, pixels=pixels)[0]


def compare(
    a: Annotated[str, typer.Argument(metavar="A", help="The first image.", show_default=False)],
    b: Annotated[str, typer.Argument(metavar="B", help="The second image.", show_default=False)],
    ref: Annotated[
        str | None,
        typer.Option(
            "--ref", metavar="PATH", help="A clean reference image both are judged against.", rich_help_panel=INPUT
        ),
    ] = None,
    engine: EngineOpt = AUTO,
    detail: DetailOpt = False,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    max_new_tokens: TokensOpt = None,
    pixels: PixelsOpt = Pixels.iqa,
    json_out: JsonOpt = False,
    workers: Annotated[
        int,
        typer.Option(
            "--workers", "-j", min=0, metavar="N", help="Decoding processes (0: in-process).", rich_help_panel=BEHAVIOUR
        ),
    ] = 0,
) -> None:
    """Say which of two images has better quality, how sure that is, and (with --detail) why."""
    from iqa_cli.rank.run import rank_files

    with user_errors():
        settings = _setup(workers, 2, detail, PAIR_LIMIT, 0)
        chosen = _engine(engine, model, device, dtype, max_new_tokens, pixels)
        try:
            ranking = rank_files([a, b], ref, chosen, settings)
        finally:
            chosen.close()
        for row in ranking.standings:
            if row.error_code in (None, "compare_failed", "not_compared"):
                continue
            raise IqaError(f"cannot compare: {row.path}: {row.error_code}: {row.error}")
        (pair,) = ranking.pairs
        if pair.error:
            raise IqaError(f"cannot compare {a} and {b}: {pair.error}")
    result = _compare_json(ranking, a, b, chosen.name)
    if json_out:
        typer.echo(json.dumps(result, indent=2))
    else:
        _render_compare(result, stdout_console())


def _compare_json(ranking: Ranking, a: str, b: str, engine: str) -> dict[str, Any]:
    (pair,) = ranking.pairs
    assert pair.forward is not None and pair.backward is not None
    paths = {"A": a, "B": b}
    orders = []
    for order, answer, slots in (("A,B", pair.forward, ("A", "B")), ("B,A", pair.backward, ("B", "A"))):
        picked = paths[slots[0] if answer.winner == "A" else slots[1]]
        orders.append(
            {"order": order, "answer": answer.answer, "picked": picked, "confidence": answer.confidence,
             "detail": answer.detail}
        )  # fmt: skip
    winner = {0: a, 1: b}.get(pair.winner) if pair.winner is not None else None
    return {
        "engine": engine, "a": a, "b": b, "reference": ranking.reference, "winner": winner,
        "p_a_better": pair.p_a, "confidence": pair.confidence, "agree": pair.agree,
        "question": pair.forward.question, "orders": orders,
    }  # fmt: skip


def _render_compare(result: dict[str, Any], console: Console) -> None:
    from rich.table import Table

    a, b, winner = shown(result["a"]), shown(result["b"]), result["winner"]
    if winner is None:
        console.print(f"[bold]A tie:[/bold] neither {a} nor {b} is better (p = 0.50)", highlight=False)
    else:
        loser = result["b"] if winner == result["a"] else result["a"]
        console.print(
            f"[bold]{shown(winner)}[/bold] is better than {shown(loser)} (confidence {result['confidence']:.2f})",
            highlight=False,
        )
    table = Table("order", "answer", "picks", "confidence")
    for order in result["orders"]:
        table.add_row(
            f"({order['order']})", shown(order["answer"]), shown(order["picked"]), f"{order['confidence']:.2f}"
        )
    console.print(table)
    if not result["agree"]:
        console.print(
            "[yellow]the two orders disagree[/yellow]: the answer depends on which image is shown first, "
            "so the confidence is lowered",
            highlight=False,
        )
    for order in result["orders"]:
        if order["detail"]:
            console.print(f"[bold]({order['order']})[/bold] {shown(order['detail'])}", highlight=False)


def rank(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH", help="Images to rank, every one a candidate; or one folder per method.", show_default=False
        ),
    ],
    ref: Annotated[
        str | None,
        typer.Option(
            "--ref",
            metavar="PATH",
            help="A clean reference image every candidate is judged against.",
            rich_help_panel=INPUT,
        ),
    ] = None,
    no_ref: Annotated[
        bool,
        typer.Option(
            "--no-ref",
            hidden=True,
            help="No reference: what iqa rank does without --ref (kept for scripts from when the last path was one).",
        ),
    ] = False,
    ref_dir: Annotated[
        str | None,
        typer.Option(
            "--ref-dir",
            metavar="DIR",
            help="Folder mode: references, matched to the method folders by name.",
            rich_help_panel=INPUT,
        ),
    ] = None,
    engine: EngineOpt = AUTO,
    detail: DetailOpt = False,
    pair_limit: Annotated[
        int,
        typer.Option(
            "--pair-limit",
            min=2,
            metavar="N",
            help="Compare every pair up to this many candidates, else Swiss rounds.",
            rich_help_panel=ENGINE,
        ),
    ] = PAIR_LIMIT,
    batch_size: BatchOpt = 8,
    model: ModelOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    max_new_tokens: TokensOpt = None,
    pixels: PixelsOpt = Pixels.iqa,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            metavar="DIR",
            help="Folder for the pairs, ranking (and methods) tables.",
            show_default="none: print only",
            rich_help_panel=OUTPUT,
        ),
    ] = None,
    formats: TableFormatsOpt = "parquet,csv",
    json_out: JsonOpt = False,
    workers: WorkersOpt = None,
    seed: Annotated[
        int,
        typer.Option(
            "--seed", metavar="N", help="Seed of the bootstrap confidence intervals.", rich_help_panel=BEHAVIOUR
        ),
    ] = 0,
) -> None:
    """Rank images (or methods, one folder each) by quality from pairwise comparisons, best first."""
    from iqa_cli.rank.run import plan_rank, run_rank, write_tables

    err = stderr_console()
    with user_errors():
        chosen_writers = writer_classes(formats, any_schema=True)
        settings = _setup(workers, batch_size, detail, pair_limit, seed)
        if no_ref and (ref is not None or ref_dir is not None):
            raise UsageError("--no-ref contradicts --ref and --ref-dir; without either there is no reference")
        to_rank = plan_rank(paths, ref, ref_dir)
        chosen = _engine(engine, model, device, dtype, max_new_tokens, pixels)
        try:
            rankings, summaries = run_rank(to_rank, chosen, settings)
        finally:
            chosen.close()
        reports = write_tables(out, chosen_writers, rankings, summaries) if out is not None else []
    _log_problems(err, rankings, to_rank.matching)
    if json_out:
        typer.echo(
            json.dumps(_rank_json(chosen.name, rankings, summaries, to_rank.matching, reports), indent=2, default=str)
        )
        return
    console = stdout_console()
    if summaries is not None:
        _render_methods(console, summaries, len(rankings))
    else:
        _render_ranking(console, rankings[0], chosen.name)
    for path in reports:
        console.print(f"wrote {shown(str(path))}", highlight=False)


def _log_problems(err: Console, rankings: list[Ranking], matching: Matching | None) -> None:
    for name, why in matching.unmatched if matching is not None else []:
        err.print(f"[yellow]unmatched[/yellow] {shown(name)}: {shown(why)}", highlight=False)
    for ranking in rankings:
        for row in ranking.standings:
            if row.error_code:
                err.print(
                    f"[yellow]skipped[/yellow] {shown(row.path)}: {row.error_code}: {shown(row.error or '')}",
                    highlight=False,
                )


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def _render_ranking(console: Console, ranking: Ranking, engine: str) -> None:
    from rich.table import Table

    from iqa_cli.rank.model import ranking_rows

    against = f"against {shown(ranking.reference)}" if ranking.reference else "no reference"
    # Above the table, not its title: a long reference path must not be cut to the table's width.
    console.print(f"Ranking ({engine} engine, {against})", highlight=False)
    table = Table("rank", "image", "score", "wins", "confidence")
    for row in ranking_rows(ranking):
        table.add_row(
            _fmt(row["rank"], "d"), shown(row["label"]), _fmt(row["score"]), f"{row['wins']:g}/{row['games']}",
            _fmt(row["confidence"]),
        )  # fmt: skip
    console.print(table)
    split = [p for p in ranking.pairs if p.agree is False]
    if split:
        console.print(
            f"[yellow]{len(split)} of {len(ranking.pairs)} pairs[/yellow] were answered differently in the two "
            "orders (a tie or position bias); their confidence is lowered",
            highlight=False,
        )


def _render_methods(console: Console, summaries: list[MethodSummary], images: int) -> None:
    from rich.table import Table

    from iqa_cli.rank.model import method_rows

    table = Table(
        "rank", "method", "mean rank [95% CI]", "win rate [95% CI]", "images",
        title=f"Methods over {images} images (1 = best)",
    )  # fmt: skip
    for row in method_rows(summaries):
        table.add_row(
            _fmt(row["rank"], "d"), shown(row["method"]),
            f"{_fmt(row['mean_rank'])} [{_fmt(row['mean_rank_low'])}, {_fmt(row['mean_rank_high'])}]",
            f"{_fmt(row['win_rate'], '.0%')} [{_fmt(row['win_rate_low'], '.0%')}, {_fmt(row['win_rate_high'], '.0%')}]",
            str(row["images"]),
        )  # fmt: skip
    console.print(table)


def _rank_json(
    engine: str,
    rankings: list[Ranking],
    summaries: list[MethodSummary] | None,
    matching: Matching | None,
    reports: list[Path],
) -> dict[str, Any]:
    from iqa_cli.rank.model import method_rows, pair_rows, ranking_rows

    result: dict[str, Any] = {"engine": engine}
    if summaries is not None and matching is not None:
        result["methods"] = method_rows(summaries)
        result["unmatched"] = [{"name": n, "why": w} for n, w in matching.unmatched]
    result["ranking"] = [row for r in rankings for row in ranking_rows(r)]
    result["pairs"] = [row for r in rankings for row in pair_rows(r)]
    result["reports"] = [str(p) for p in reports]
    return result
