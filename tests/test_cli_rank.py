"""`iqa compare` and `iqa rank` on real photos with synthetic distortions of known, clearly different severities."""

from __future__ import annotations

import glob
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skimage.data
from PIL import Image
from typer.testing import CliRunner

from iqa_cli.evaluation.distortions import distort
from iqa_cli.testing.cli import invoke_iqa

runner = CliRunner()

SIGNAL = ("--engine", "signal", "--workers", "0")


def invoke(*args: str) -> tuple[int, str, str]:
    return invoke_iqa(*args, reraise=True)


def save(pixels: np.ndarray, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return str(path)


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A clean photo and three increasingly blurred versions (Gaussian blur, severities 1-3)."""
    root = tmp_path_factory.mktemp("ladder")
    clean = skimage.data.astronaut()
    files = {"ref": save(clean, root / "ref.png")}
    for severity in (1, 2, 3):
        files[f"s{severity}"] = save(
            distort(clean, "blur", severity, function="blur_gaussian"), root / f"s{severity}.png"
        )
    return files


def test_help_explains_every_option() -> None:
    for command, options, example in (
        ("rank", ("--ref", "--ref-dir", "--out", "--format", "--pair-limit", "--seed", "--json"),
         "iqa rank out/*.png"),
        ("compare", ("--ref", "--detail", "--json", "--engine", "--model", "--device", "--dtype"),
         "iqa compare a.png b.png --ref clean.png"),
    ):  # fmt: skip
        code, out, _ = invoke(command, "--help")
        assert code == 0 and example in out
        for option in options:
            assert option in out, option


def ranked(out_dir: Path) -> list[str]:
    rows = pd.read_parquet(out_dir / "ranking.parquet")
    assert list(rows["rank"]) == sorted(rows["rank"])
    return [Path(p).stem for p in rows["path"]]


def test_rank_against_the_reference_given_with_ref(ladder: dict[str, str], tmp_path: Path) -> None:
    code, out, err = invoke(
        "rank", ladder["s3"], ladder["s1"], ladder["s2"], "--ref", ladder["ref"], *SIGNAL, "--out", str(tmp_path)
    )
    assert code == 0, err
    assert ranked(tmp_path) == ["s1", "s2", "s3"]
    assert "against" in out and "ref.png" in out
    pairs = pd.read_parquet(tmp_path / "pairs.parquet")
    assert len(pairs) == 3 and pairs["agree"].all() and (pairs["reference"] == ladder["ref"]).all()
    assert pairs["ab_answer"].isin(["Image A", "Image B"]).all() and pairs["ba_answer"].notna().all()
    assert len(pd.read_csv(tmp_path / "ranking.csv")) == 3


def test_rank_of_a_shell_glob_ranks_every_file(ladder: dict[str, str], tmp_path: Path) -> None:
    """`iqa rank out/*.png`: the shell expands the glob, and no file of it may be taken as a reference."""
    out = tmp_path / "out"
    for name in ("ref", "s1", "s2", "s3"):
        out.mkdir(exist_ok=True)
        shutil.copy(ladder[name], out / f"{name}.png")
    expanded = sorted(glob.glob(str(out / "*.png")))  # as bash expands it: sorted names
    assert len(expanded) == 4
    code, stdout, err = invoke("rank", *expanded, *SIGNAL, "--json")
    assert code == 0, err
    result = json.loads(stdout)
    assert sorted(Path(r["path"]).name for r in result["ranking"]) == ["ref.png", "s1.png", "s2.png", "s3.png"]
    assert [r["rank"] for r in result["ranking"]] == [1, 2, 3, 4]
    assert all(r["reference"] is None for r in result["ranking"] + result["pairs"]) and len(result["pairs"]) == 6
    code, text, _ = invoke("rank", *expanded, *SIGNAL)
    assert code == 0 and "no reference" in text and all(name in text for name in ("ref.png", "s3.png"))


def test_rank_without_a_reference(ladder: dict[str, str], tmp_path: Path) -> None:
    paths = [ladder["s2"], ladder["ref"], ladder["s3"], ladder["s1"]]
    code, out, err = invoke("rank", *paths, *SIGNAL, "--out", str(tmp_path), "--format", "csv")
    assert code == 0, err
    rows = pd.read_csv(tmp_path / "ranking.csv")
    assert [Path(p).stem for p in rows["path"]] == ["ref", "s1", "s2", "s3"]
    assert list(rows["rank"]) == [1, 2, 3, 4] and rows["reference"].isna().all()
    assert rows.loc[0, "wins"] == 3 and rows.loc[3, "wins"] == 0
    assert not (tmp_path / "ranking.parquet").exists() and "no reference" in out


def test_no_ref_is_still_accepted_and_contradicts_a_reference(ladder: dict[str, str]) -> None:
    """Scripts written when the last path was the reference said --no-ref to rank every path: now the default."""
    paths = [ladder["s2"], ladder["ref"], ladder["s1"]]
    code, out, err = invoke("rank", *paths, "--no-ref", *SIGNAL, "--json")
    assert code == 0, err
    assert sorted(Path(r["path"]).stem for r in json.loads(out)["ranking"]) == ["ref", "s1", "s2"]
    code, _, err = invoke("rank", ladder["s1"], ladder["s2"], "--no-ref", "--ref", ladder["ref"], *SIGNAL)
    assert code == 2 and "--no-ref contradicts --ref" in err
    code, out, _ = invoke("rank", "--help")
    assert code == 0 and "--no-ref" not in out


def test_rank_writes_every_table_format_the_audit_does(ladder: dict[str, str], tmp_path: Path) -> None:
    paths = [ladder["s2"], ladder["s3"], ladder["s1"], "--ref", ladder["ref"]]
    code, _, err = invoke("rank", *paths, *SIGNAL, "--out", str(tmp_path), "--format", "jsonl,parquet")
    assert code == 0, err
    lines = [json.loads(line) for line in (tmp_path / "ranking.jsonl").read_text().splitlines()]
    parquet = pd.read_parquet(tmp_path / "ranking.parquet")
    assert [Path(r["path"]).stem for r in lines] == ["s1", "s2", "s3"] == [Path(p).stem for p in parquet["path"]]
    assert (tmp_path / "pairs.jsonl").is_file() and not list(tmp_path.glob(".*.tmp"))


def test_rank_refuses_a_format_that_only_holds_audit_reports(ladder: dict[str, str], tmp_path: Path) -> None:
    code, _, err = invoke("rank", ladder["s1"], ladder["s2"], *SIGNAL, "--out", str(tmp_path), "-f", "xml")
    assert code == 2 and "unknown report format xml" in err and "jsonl" in err


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """refs/ and two methods over four photos: one adds mild noise, one heavy blur; plus unmatched files."""
    root = tmp_path_factory.mktemp("bench")
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        clean = getattr(skimage.data, name)()
        save(clean, root / "refs" / f"{name}.png")
        save(distort(clean, "noise", 1, rng=1, function="noise_gaussian_rgb"), root / "mild_noise" / f"{name}.png")
        save(distort(clean, "blur", 4, function="blur_gaussian"), root / "heavy_blur" / f"{name.upper()}.jpg")
    save(skimage.data.astronaut(), root / "mild_noise" / "extra.png")
    return root


@pytest.mark.parametrize("with_ref", [True, False])
def test_folder_mode_ranks_mild_noise_above_heavy_blur(bench: Path, tmp_path: Path, with_ref: bool) -> None:
    refs = ("--ref-dir", str(bench / "refs")) if with_ref else ()
    methods = (str(bench / "heavy_blur"), str(bench / "mild_noise"))
    code, out, err = invoke("rank", *refs, *methods, *SIGNAL, "--out", str(tmp_path), "--seed", "3")
    assert code == 0, err
    assert "unmatched extra: missing from heavy_blur" in " ".join(err.split())
    table = pd.read_parquet(tmp_path / "methods.parquet")
    assert list(table["method"]) == ["mild_noise", "heavy_blur"] and list(table["images"]) == [4, 4]
    best = table.iloc[0]
    assert best["mean_rank"] == 1.0 and best["win_rate"] == 1.0
    assert best["win_rate_low"] <= best["win_rate"] <= best["win_rate_high"]
    assert "mild_noise" in out and "95% CI" in out
    per_image = pd.read_parquet(tmp_path / "ranking.parquet")
    assert sorted(per_image["group"].unique()) == ["astronaut", "chelsea", "coffee", "rocket"]
    assert len(pd.read_parquet(tmp_path / "pairs.parquet")) == 4


def test_folder_mode_in_worker_processes_matches_in_process(bench: Path, tmp_path: Path) -> None:
    args = ("rank", "--ref-dir", str(bench / "refs"), str(bench / "heavy_blur"), str(bench / "mild_noise"), "--json")
    one = json.loads(invoke(*args, "--engine", "signal", "--workers", "1")[1])
    zero = json.loads(invoke(*args, *SIGNAL)[1])
    assert one["methods"] == zero["methods"] and one["pairs"] == zero["pairs"]


def test_bad_inputs_become_rows_and_clear_errors(ladder: dict[str, str], tmp_path: Path) -> None:
    fake = tmp_path / "page.jpg"
    fake.write_text("<!doctype html>")
    missing = str(tmp_path / "gone.png")
    code, out, err = invoke("rank", ladder["s1"], missing, str(fake), ladder["s2"], *SIGNAL, "--json")
    assert code == 0, err
    rows = {Path(r["path"]).name: r for r in json.loads(out)["ranking"]}
    assert rows["gone.png"]["error_code"] == "not_found" and rows["gone.png"]["rank"] is None
    assert rows["page.jpg"]["error_code"] == "not_an_image"
    assert rows["s1.png"]["rank"] == 1 and rows["s2.png"]["rank"] == 2
    assert "skipped" in err and "gone.png" in err
    # An unreadable reference stops the run: ranking without it would answer another question.
    code, _, err = invoke("rank", ladder["s1"], ladder["s2"], "--ref", missing, *SIGNAL)
    assert code == 2 and "could not be read" in err and "leave out --ref" in " ".join(err.split())
    code, _, err = invoke("compare", ladder["s1"], missing, *SIGNAL)
    assert code == 1 and "not_found" in err and "gone.png" in err
    code, _, err = invoke("rank", ladder["s1"], str(tmp_path), *SIGNAL)
    assert code == 2 and "not both" in err


def test_sizes_against_a_reference(ladder: dict[str, str], tmp_path: Path) -> None:
    blurred = np.asarray(Image.open(ladder["s2"]))
    half = save(
        np.asarray(Image.fromarray(np.asarray(Image.open(ladder["s1"]))).resize((256, 256))), tmp_path / "half.png"
    )
    wide = save(blurred[:300], tmp_path / "wide.png")  # another framing: cannot be lined up with the reference
    code, out, err = invoke("rank", half, ladder["s2"], wide, "--ref", ladder["ref"], *SIGNAL, "--json")
    assert code == 0, err
    rows = {Path(r["path"]).name: r for r in json.loads(out)["ranking"]}
    assert rows["half.png"]["rank"] == 1 and rows["s2.png"]["rank"] == 2  # same framing, half size: fine
    assert rows["wide.png"]["error_code"] == "compare_failed" and "aspect ratio" in rows["wide.png"]["error"]


def test_compare_asks_both_orders_and_shows_disagreement(ladder: dict[str, str], tmp_path: Path) -> None:
    code, out, err = invoke("compare", ladder["s2"], ladder["s1"], "--ref", ladder["ref"], "--detail", *SIGNAL)
    assert code == 0, err
    assert "s1.png is better than" in " ".join(out.split())
    assert "(A,B)" in out and "(B,A)" in out and "SSIM" in out and "disagree" not in out
    code, out, _ = invoke("compare", ladder["s1"], ladder["s2"], *SIGNAL, "--json")
    result = json.loads(out)
    assert result["winner"] == ladder["s1"] and result["agree"] is True and result["reference"] is None
    assert [o["order"] for o in result["orders"]] == ["A,B", "B,A"]
    assert [o["answer"] for o in result["orders"]] == ["Image A", "Image B"]
    # Two identical images: each order says "Image A", so the orders disagree and it is a tie.
    copy = shutil.copy(ladder["s1"], tmp_path / "copy.png")
    code, out, _ = invoke("compare", ladder["s1"], str(copy), *SIGNAL)
    assert code == 0 and "tie" in out and "the two orders disagree" in " ".join(out.split())


# ------------------------------------------------------------------------------- DepictQA, tiny


def test_depictqa_end_to_end_on_the_tiny_checkpoint(ladder: dict[str, str], tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("torch", reason="the depictqa engine needs torch (pip install '.[depictqa]')")
    pytest.importorskip("transformers", reason="the depictqa engine needs transformers")
    pytest.importorskip("sentencepiece", reason="the depictqa engine needs sentencepiece")
    from iqa_cli.engines.depictqa import questions
    from iqa_cli.engines.depictqa.engine import DepictQAEngine
    from iqa_cli.testing import tiny_depictqa

    tiny_depictqa.build_tiny_models(tmp_path / "models")
    asked: list[tuple[str, str]] = []
    ask = DepictQAEngine._ask

    def spy(self, asks, max_new_tokens):  # record the task type and question of every prompt the model sees
        asked.extend((task, question) for task, question, _ in asks)
        return ask(self, asks, max_new_tokens)

    monkeypatch.setattr(DepictQAEngine, "_ask", spy)
    model = ("--engine", "depictqa", "--model", str(tmp_path / "models"), "--device", "cpu", "--dtype", "float32",
             "--max-new-tokens", "4", "--workers", "0")  # fmt: skip
    code, out, err = invoke(
        "rank", ladder["s1"], ladder["s2"], ladder["s3"], "--ref", ladder["ref"], *model, "--out", str(tmp_path)
    )
    assert code == 0, err
    rated = [a for a in asked if a[1].startswith(questions.default_question(questions.INSTANT_RATING, reference=True))]
    assert len(rated) == 6 and {task for task, _ in rated} == {"quality_compare"}  # three pairs, both orders
    pairs = pd.read_parquet(tmp_path / "pairs.parquet")
    assert len(pairs) == 3 and pairs["ab_answer"].notna().all() and pairs["ba_answer"].notna().all()
    for _, row in pairs.iterrows():  # the combined probability is the mean of the two orders' probabilities
        assert 0.0 <= row["p_a_better"] <= 1.0 and row["agree"] in (True, False)
    ranking = pd.read_parquet(tmp_path / "ranking.parquet")
    assert len(ranking) == 3 and ranking["games"].tolist() == [2, 2, 2]
    asked.clear()
    code, out, err = invoke("compare", ladder["s1"], ladder["s2"], *model, "--detail", "--json")
    assert code == 0, err
    assert {task for task, _ in asked} == {"quality_compare_noref"}
    result = json.loads(out)
    assert [o["order"] for o in result["orders"]] == ["A,B", "B,A"] and all(o["detail"] for o in result["orders"])
