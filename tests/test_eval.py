"""`iqa eval`: the labels file, every metric against hand-computed values, a scripted engine's exact tables, sets."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from iqa_cli.cli.app import app
from iqa_cli.evaluation.metrics import (
    Answer,
    Label,
    LabelError,
    auroc,
    category_key,
    confidence_buckets,
    expected_calibration_error,
    identified,
    make_set,
    primary_right,
    read_labels,
    score,
    spearman,
)
from iqa_cli.install import install_hint
from iqa_cli.testing.engines import ScriptedEngine

runner = CliRunner()

# file -> its label rows (category, severity, function), and what the scripted engine answers for it.
LABELS = """file,category,severity,function
clean1.png,none,,
clean2.png,none,0,
blur2.png,blur,2,blur_gaussian
blur4.png,blur,4,blur_gaussian
dark4.png,darken,4,darken_shift_hsv
noise2.png,noise,2,noise_speckle
pair4.png,blur,4,blur_lens
pair4.png,noise,3,noise_poisson
broken.png,blur,1,blur_motion
missing.png,none,,
"""
SCRIPT = {
    "clean1.png": ([], 0.95, 0.9),  # right
    "clean2.png": (["noise"], 0.55, 0.7),  # a clean photo flagged: wrong
    "blur2.png": ([], 0.65, 0.6),  # missed: wrong
    "blur4.png": (["blur"], 0.85, 0.3),  # right
    "dark4.png": (["noise", "insufficient brightness"], 0.9, 0.35),  # identified, but the first name is wrong
    "noise2.png": (["noise"], 0.92, 0.55),  # right
    "pair4.png": (["blur"], 1.0, 0.2),  # one of two named; first right
}
# (confidence, right) of the seven assessed images, in label order.
CONF_RIGHT = [(0.95, True), (0.55, False), (0.65, False), (0.85, True), (0.9, False), (0.92, True), (1.0, True)]


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    """Small generated images in a folder with labels.csv; broken.png is not an image, missing.png absent."""
    rng = np.random.default_rng(0)
    for name in SCRIPT:
        Image.fromarray(rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    (tmp_path / "labels.csv").write_text(LABELS)
    return tmp_path / "labels.csv"


def _scripted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("iqa_cli.cli.options.create_engine", lambda name, options: (ScriptedEngine(SCRIPT), "scripted"))


def _answers(folder: Path) -> list[Answer]:
    return [
        Answer(file=str(folder / name), named=[category_key(n) for n in names], confidence=c, score=s)
        for name, (names, c, s) in SCRIPT.items()
    ]


# ---------------------------------------------------------------------------------------------- metrics


def test_identified_and_primary_right() -> None:
    assert identified({"blur", "noise"}, ["noise"]) and not identified({"blur"}, ["noise", "darken"])
    assert not identified({"blur"}, [])
    assert primary_right(set(), []) and not primary_right(set(), ["blur"])
    assert primary_right({"blur", "noise"}, ["noise", "darken"]) and not primary_right({"blur"}, ["noise", "blur"])
    assert not primary_right({"blur"}, [])


def test_category_key_maps_engine_names_back() -> None:
    assert category_key("Overly high brightness") == "brighten" and category_key("pixelation") == "pixelate"
    assert category_key("blur") == "blur" and category_key("something else") == "something else"


def test_confidence_buckets_by_hand() -> None:
    conf = [0.2, 0.5, 0.6, 0.65, 0.9, 1.0, 0.99]
    right = [False, True, True, False, True, False, True]
    buckets = confidence_buckets(conf, right)
    assert [(b["low"], b["high"], b["count"]) for b in buckets] == [
        (0.0, 0.5, 1),
        (0.5, 0.6, 1),
        (0.6, 0.7, 2),  # 0.6 opens its bucket
        (0.7, 0.8, 0),
        (0.8, 0.9, 0),
        (0.9, 1.0, 3),  # 1.0 is in the last bucket
    ]
    assert buckets[2]["accuracy"] == 0.5 and buckets[2]["mean_confidence"] == pytest.approx(0.625, abs=1e-12)
    assert buckets[3]["accuracy"] is None and buckets[3]["mean_confidence"] is None
    assert buckets[5]["accuracy"] == pytest.approx(2 / 3) and buckets[5]["mean_confidence"] == pytest.approx(2.89 / 3)
    assert confidence_buckets([0.3, 0.7], [True, False], edges=(0.0, 0.5, 1.0))[1]["count"] == 1


def test_expected_calibration_error_by_hand() -> None:
    # bin 2: 0.2 (wrong), 0.25 (right): |0.5 - 0.225| x 2/4; bin 8: |1 - 0.8| x 1/4; bin 9 holds 1.0: |0 - 1| x 1/4.
    assert expected_calibration_error([0.2, 0.25, 0.8, 1.0], [False, True, True, False]) == pytest.approx(
        0.4375, abs=1e-12
    )
    assert expected_calibration_error([0.7, 0.7], [True, True], bins=2) == pytest.approx(0.3, abs=1e-12)
    assert math.isnan(expected_calibration_error([], []))


def test_auroc_by_hand_with_ties() -> None:
    assert auroc([0.1, 0.4, 0.35, 0.8], [False, False, True, True]) == 0.75
    # right (0.9, 0.5) against wrong (0.9, 0.5): ties count half -> (0.5 + 1 + 0 + 0.5) / 4.
    assert auroc([0.9, 0.9, 0.5, 0.5], [True, False, True, False]) == 0.5
    assert auroc([0.2, 0.9], [False, True]) == 1.0 and auroc([0.2, 0.9], [True, False]) == 0.0
    assert math.isnan(auroc([0.2, 0.9], [True, True])) and math.isnan(auroc([], []))


def test_spearman_by_hand() -> None:
    # y ranks 5, 3.5, 3.5, 2, 1 against 1..5: sum of products of deviations -9.5, squares 10 and 9.5.
    assert spearman([1, 2, 3, 4, 5], [0.9, 0.8, 0.8, 0.5, 0.1]) == pytest.approx(-9.5 / math.sqrt(95), abs=1e-12)
    scipy_stats = pytest.importorskip("scipy.stats")
    x, y = [1, 1, 2, 3, 3, 5], [0.3, 0.1, 0.1, 0.7, 0.2, 0.0]
    assert spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic, abs=1e-12)
    assert math.isnan(spearman([2, 2, 2], [0.1, 0.5, 0.3])) and math.isnan(spearman([1], [0.5]))


# ------------------------------------------------------------------------------------------ the tables


def _expected_identification() -> list[dict]:
    rates = {("blur", 2): (1, 0), ("blur", 4): (1, 1), ("noise", 2): (1, 1), ("darken", 4): (1, 1)}
    table = []
    for row in ("blur", "noise", "darken"):  # the categories labelled, in CATEGORIES order
        for s in range(1, 6):
            n, hits = rates.get((row, s), (0, 0))
            table.append({"row": row, "severity": s, "images": n, "identified": hits, "rate": hits / n if n else None})
    means = {1: (0, 0, None), 2: (2, 1, 0.5), 3: (0, 0, None), 4: (2, 2, 1.0), 5: (0, 0, None)}
    table += [{"row": "mean", "severity": s, "images": n, "identified": h, "rate": r} for s, (n, h, r) in means.items()]
    for row, hits in (("pairs_both", 0), ("pairs_either", 1)):
        for s in range(1, 6):
            n, h = (1, hits) if s == 4 else (0, 0)
            table.append({"row": row, "severity": s, "images": n, "identified": h, "rate": h / n if n else None})
    return table


def _check_tables(report) -> None:
    assert report.images == 9 and report.assessed == 7
    assert sorted(Path(f["file"]).name for f in report.failed) == ["broken.png", "missing.png"]
    assert report.identification == _expected_identification()
    assert report.clean_flagged == {"images": 2, "flagged": 1, "share": 0.5}
    assert report.primary_accuracy == [
        {"severity": None, "images": 7, "right": 4, "accuracy": 4 / 7},
        {"severity": 0, "images": 2, "right": 1, "accuracy": 0.5},
        {"severity": 2, "images": 2, "right": 1, "accuracy": 0.5},
        {"severity": 4, "images": 3, "right": 2, "accuracy": 2 / 3},
    ]
    assert report.accuracy_at(4) == 2 / 3 and report.accuracy_at(None) == 4 / 7
    assert report.names_per_image == [
        {"kind": "clean", "severity": 0, "images": 2, "mean_named": 0.5},
        {"kind": "single", "severity": 2, "images": 2, "mean_named": 0.5},
        {"kind": "single", "severity": 4, "images": 2, "mean_named": 1.5},
    ]
    counts = [b["count"] for b in report.confidence]
    assert counts == [0, 1, 1, 0, 1, 4]
    assert [b["accuracy"] for b in report.confidence] == [None, 0.0, 0.0, None, 1.0, 0.75]
    assert report.confidence[5]["mean_confidence"] == pytest.approx((0.95 + 0.92 + 1.0 + 0.9) / 4, abs=1e-12)
    # bins 5, 6, 8 hold one answer each (|0 - .55|, |0 - .65|, |1 - .85|); bin 9 four: |.75 - .9425| x 4.
    assert report.ece == pytest.approx((0.55 + 0.65 + 0.15 + 0.77) / 7, abs=1e-9)
    assert report.ece == pytest.approx(expected_calibration_error(*zip(*CONF_RIGHT, strict=True)), abs=1e-12)
    assert report.auroc == 11 / 12  # only the wrong 0.9 beats a right answer (0.85)
    rho = [(r["category"], r["function"], r["images"]) for r in report.severity_score]
    assert rho == [("blur", "blur_gaussian", 2), ("darken", "darken_shift_hsv", 1), ("noise", "noise_speckle", 1)]
    assert report.severity_score[0]["spearman"] == -1.0 and math.isnan(report.severity_score[1]["spearman"])


def test_score_gives_the_exact_tables(labelled: Path) -> None:
    answers = _answers(labelled.parent)
    answers.append(Answer(file=str(labelled.parent / "broken.png"), error="not_an_image: cannot identify"))
    _check_tables(score(read_labels(labelled), answers))


def test_eval_runs_the_engine_through_the_audit_and_writes_the_tables(
    labelled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scripted(monkeypatch)
    out = tmp_path / "eval"
    result = runner.invoke(app, ["eval", str(labelled), "--out", str(out), "--workers", "0", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["engine"] == "scripted" and data["clean_flagged"]["share"] == 0.5
    assert data["primary_accuracy_severity_4"] == 2 / 3 and data["auroc"] == 11 / 12
    assert data["severity_score"][1]["spearman"] is None  # NaN is written as null
    failed = {Path(f["file"]).name: f["error"] for f in data["failed"]}
    assert set(failed) == {"broken.png", "missing.png"} and failed["missing.png"].startswith("not_found")
    for name in ("identification", "confidence", "rows"):
        assert (out / f"eval-{name}.parquet").is_file() and (out / f"eval-{name}.csv").is_file()
    assert json.loads((out / "eval-summary.json").read_text())["identification"] == data["identification"]
    rows = pd.read_parquet(out / "eval-rows.parquet")
    assert len(rows) == 9
    dark = rows[rows["file"].str.endswith("dark4.png")].iloc[0]
    assert list(dark["named"]) == ["noise", "darken"] and not dark["right"] and dark["identified"]
    pair = rows[rows["file"].str.endswith("pair4.png")].iloc[0]
    assert list(pair["categories"]) == ["blur", "noise"] and pair["severity"] == 4 and pair["right"]
    csv_rows = pd.read_csv(out / "eval-rows.csv")
    assert csv_rows.loc[csv_rows["file"].str.endswith("pair4.png"), "categories"].item() == "blur; noise"
    assert (csv_rows["status"] == "error").sum() == 2
    ident = pd.read_csv(out / "eval-identification.csv")
    assert ident.loc[(ident["row"] == "mean") & (ident["severity"] == 2), "rate"].item() == 0.5


def test_a_labels_file_given_by_a_relative_path_is_assessed_too(
    labelled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its rows once named the files relative to the working folder while the audit's rows name them in full,
    # so no file matched and every one came out "not assessed".
    _scripted(monkeypatch)
    monkeypatch.chdir(labelled.parent.parent)
    relative = str(Path(labelled.parent.name) / labelled.name)
    result = runner.invoke(app, ["eval", relative, "--out", str(tmp_path / "eval"), "--workers", "0", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {Path(f["file"]).name for f in data["failed"]} == {"broken.png", "missing.png"}
    assert data["primary_accuracy_severity_4"] == 2 / 3 and data["clean_flagged"]["share"] == 0.5


def test_eval_takes_every_table_format_the_audit_takes(
    labelled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scripted(monkeypatch)
    out = tmp_path / "eval"
    result = runner.invoke(app, ["eval", str(labelled), "--out", str(out), "--workers", "0", "--json", "-f", "jsonl"])
    assert result.exit_code == 0, result.output
    lines = (out / "eval-rows.jsonl").read_text(encoding="utf-8").splitlines()
    rows = {Path(row["file"]).name: row for row in map(json.loads, lines)}
    assert len(rows) == 9 and rows["pair4.png"]["categories"] == ["blur", "noise"]
    assert not (out / "eval-rows.parquet").exists() and not (out / "eval-rows.csv").exists()
    refused = runner.invoke(app, ["eval", str(labelled), "--out", str(tmp_path / "x"), "-f", "xlsx"])
    assert refused.exit_code == 2 and "unknown report format xlsx" in refused.output
    assert not (tmp_path / "x").exists()


def test_eval_results_match_scoring_the_answers_directly(
    labelled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scripted(monkeypatch)
    from iqa_cli.evaluation.run import assess_labels

    answers, summary = assess_labels(read_labels(labelled), ScriptedEngine(SCRIPT), workers=0)
    assert summary.files == 9 and summary.errors == 2
    _check_tables(score(read_labels(labelled), answers))


def test_eval_prints_a_rich_summary(labelled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _scripted(monkeypatch)
    result = runner.invoke(
        app, ["eval", str(labelled), "--out", str(tmp_path / "e"), "-j", "2", "-f", "csv"], env={"COLUMNS": "160"}
    )
    assert result.exit_code == 0, result.output
    for text in ("Identified", "Clean photos flagged: 50% (1 of 2)", "Primary answer right", "ECE 0.303", "AUROC"):
        assert text in result.stdout, text
    assert "2 files could not be assessed" in result.stdout and "broken.png" in result.stdout
    assert not (tmp_path / "e" / "eval-rows.parquet").exists()


def test_plot_writes_a_png(labelled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    _scripted(monkeypatch)
    plot = tmp_path / "plots" / "eval.png"
    args = ["eval", str(labelled), "--out", str(tmp_path / "e"), "-j", "0", "--plot", str(plot), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(plot) in json.loads(result.stdout)["files_written"]


def test_plot_without_matplotlib_is_one_line(labelled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _scripted(monkeypatch)
    for module in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    args = ["eval", str(labelled), "--out", str(tmp_path / "e"), "-j", "0", "--plot", str(tmp_path / "p.png")]
    result = runner.invoke(app, args, env={"COLUMNS": "400"})
    assert result.exit_code == 2 and install_hint("plot") in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_evaluate_imports_no_heavy_modules() -> None:
    heavy = "('scipy', 'torch', 'pandas', 'pyarrow', 'matplotlib')"
    code = f"import sys, iqa_cli.evaluation.metrics; print(sorted(m for m in {heavy} if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


# ------------------------------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("file,category\na.png,blur\n", "missing column severity"),
        ("file,category,severity\na.png,fog,2\n", "unknown category 'fog'"),
        ("file,category,severity\na.png,blur,7\n", "line 2: severity 7 of blur must be 1-5"),
        ("file,category,severity\na.png,blur,\n", "severity (empty) of blur must be 1-5"),
        ("file,category,severity\na.png,blur,two\n", "severity 'two' is not a whole number"),
        ("file,category,severity\na.png,none,3\n", "severity empty or 0"),
        ("file,category,severity\na.png,none,\na.png,blur,2\n", "labelled none and also distorted"),
        ("file,category,severity\na.png,blur,2\na.png,blur,3\n", "has blur twice"),
        ("file,category,severity\n", "has no labels"),
        ("file,category,severity\n,blur,2\n", "the file is empty"),
    ],
)
def test_bad_labels_exit_2_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text(text)
    with pytest.raises(LabelError) as raised:
        read_labels(labels)
    assert isinstance(raised.value, ValueError) and message in str(raised.value)
    result = runner.invoke(app, ["eval", str(labels), "--out", str(tmp_path / "e")], env={"COLUMNS": "400"})
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_labels_resolve_against_their_folder(tmp_path: Path) -> None:
    (tmp_path / "set").mkdir()
    labels = tmp_path / "set" / "labels.csv"
    labels.write_text(
        f"\ufefffile,Category,severity,function\nsub/a.png,Blur,3,blur_gaussian\n{tmp_path}/b.png,none,,\n"
    )
    assert read_labels(labels) == [
        Label(str(tmp_path / "set" / "sub" / "a.png"), "blur", 3, "blur_gaussian"),
        Label(str(tmp_path / "b.png"), "none", 0, None),
    ]


def test_cli_usage_errors(tmp_path: Path) -> None:
    for args, message in (
        (["eval"], "give a labels CSV"),
        (["eval", "--make-set", str(tmp_path)], "--make-set needs --set-out"),
        (["eval", "x.csv", "--make-set", str(tmp_path), "--set-out", str(tmp_path)], "not both"),
        (["eval", "--make-set", str(tmp_path), "--set-out", str(tmp_path), "--severities", "0,9"], "among 1-5"),
        (["eval", str(tmp_path / "none.csv")], "cannot read the labels file"),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)


# --------------------------------------------------------------------------------------------- sets


@pytest.fixture
def clean_photos(tmp_path: Path) -> Path:
    folder = tmp_path / "clean"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    smooth = np.linspace(0, 255, 40 * 48, dtype=np.float64).reshape(40, 48)
    base = np.stack([smooth, smooth[::-1], np.full_like(smooth, 90)], axis=-1)
    Image.fromarray((base + rng.normal(0, 5, base.shape)).clip(0, 255).astype(np.uint8)).save(folder / "a.png")
    Image.fromarray(base.astype(np.uint8)[:, ::-1]).save(folder / "sub" / "a.jpg")  # same stem: renamed a-2
    return folder


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_make_set_files_labels_and_determinism(clean_photos: Path, tmp_path: Path) -> None:
    args = ["eval", "--make-set", str(clean_photos), "--functions", "one-per-category", "--severities", "2,4"]
    args += ["--pairs", "2", "--seed", "5"]
    first = runner.invoke(app, [*args, "--set-out", str(tmp_path / "s1")])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, [*args, "--set-out", str(tmp_path / "s2")])
    assert second.exit_code == 0 and _digest(tmp_path / "s1") == _digest(tmp_path / "s2")
    labels = read_labels(tmp_path / "s1" / "labels.csv")
    images = {label.file for label in labels}
    assert len(images) == 2 * (1 + 12 * 2 + 2)  # per photo: the clean copy, 12 categories x 2 severities, 2 pairs
    assert len(list((tmp_path / "s1").rglob("*.png"))) == len(images) and all(Path(f).is_file() for f in images)
    assert len(labels) == len(images) + 2 * 2  # each pair has two rows
    assert sorted(Path(f).name for f in images if "/clean/" in f) == ["a-2.png", "a.png"]
    assert {label.severity for label in labels if label.category != "none"} <= {2, 4}
    singles = [label for label in labels if "/pairs/" not in label.file and label.category != "none"]
    assert all(label.function and label.function in Path(label.file).name for label in singles)
    assert {label.category for label in singles} == set(category_key(k) for k in _all_keys())
    other = runner.invoke(app, [*args[:-1], "6", "--set-out", str(tmp_path / "s3")])
    assert other.exit_code == 0 and _digest(tmp_path / "s3") != _digest(tmp_path / "s1")
    # Built one photo per process, the set is the same, labels in the same order.
    parallel = runner.invoke(app, [*args, "--set-out", str(tmp_path / "s4"), "--workers", "2"])
    assert parallel.exit_code == 0 and _digest(tmp_path / "s4") == _digest(tmp_path / "s1")


def _all_keys() -> list[str]:
    from iqa_cli.categories import CATEGORIES

    return list(CATEGORIES)


def test_make_set_all_functions_and_max_side(clean_photos: Path, tmp_path: Path) -> None:
    labels = make_set(clean_photos, tmp_path / "s", severities=(3,), functions="all", max_side=20)
    rows = read_labels(labels)
    from iqa_cli.evaluation.distortions import FUNCTIONS

    functions = sum(len(f) for f in FUNCTIONS.values())
    assert len(rows) == 2 * (1 + functions)
    assert {(r.category, r.function) for r in rows if r.category != "none"} == {
        (c, f) for c, fs in FUNCTIONS.items() for f in fs
    }
    with Image.open(Path(rows[0].file)) as image:
        assert max(image.size) == 20  # shrunk from 48
    bigger = make_set(clean_photos, tmp_path / "big", severities=(1,), functions="one-per-category", max_side=4000)
    with Image.open(Path(read_labels(bigger)[0].file)) as image:
        assert image.size == (48, 40)  # never enlarged
    with pytest.raises(ValueError, match="one-per-category"):
        make_set(clean_photos, tmp_path / "x", functions="some")
