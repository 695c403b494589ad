"""The signal engine's training script: its quick mode rebuilds a working model from bundled photos."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lightgbm", reason="the training script needs lightgbm (pip install '.[train]')")

from iqa_cli.engines.signal.decide import decide_many
from iqa_cli.engines.signal.features import ANALYSIS_SIDE, FEATURES
from iqa_cli.engines.signal.model import MODEL_FILE, read_model
from training import train_signal


def test_quick_mode_trains_a_model_the_engine_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out, report, docs = tmp_path / "model.json.gz", tmp_path / "report.json", tmp_path / "docs"
    args = ["--quick", "--out", str(out), "--report", str(report), "--jobs", "1", "--docs", str(docs)]
    assert train_signal.main(args) == 0
    printed = capsys.readouterr().out
    assert "development photos" in printed and "never trained on" in printed and "ECE" in printed
    model = read_model(out)
    assert model.features == FEATURES and model.info["quick"] is True
    figures = json.loads(report.read_text())
    # The test photos never fit the model they measure; the shipped one is the same recipe on every photo.
    checked = read_model(tmp_path / "model.check.json.gz")
    assert figures["test_photos"] and figures["photos"] == len(figures["test_photos"]) == checked.info["test_photos"]
    assert model.info["test_photos"] == 0 and model.info["checked_by"] == checked.info["id"] != model.info["id"]
    assert model.info["photos"] == checked.info["photos"] + checked.info["test_photos"]
    assert figures["cross_validation_all"]["photos"] == model.info["photos"]
    table = (docs / "signal-validation.md").read_text()
    assert (
        f"`{checked.info['id']}`" in table
        and "| figure | test | cross-validation | cross-validation, every photo |" in table
    )
    assert (docs / "signal-reliability.png").stat().st_size > 0
    probe = json.loads(gzip.decompress(out.read_bytes()))["probe"]
    x = np.asarray(probe["x"])
    for j, category in enumerate(model.categories):
        assert np.allclose(model.predict(x).presence[:, j], probe["presence"][category], atol=1e-9)
    rows = [dict(zip(FEATURES, row, strict=True)) for row in x]
    assert len(decide_many(rows, model)) == len(rows)


def test_isotonic_fit_is_monotone_and_pools_violators():
    x = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    y = np.array([0.0, 1.0, 0.0, 1.0, 1.0])
    knots_x, knots_y = train_signal.isotonic(x, y)
    assert knots_y == sorted(knots_y)
    assert np.interp(0.25, knots_x, knots_y) == pytest.approx(0.5)  # 0.2 and 0.3 pooled
    assert np.interp(0.45, knots_x, knots_y) == pytest.approx(1.0)


def test_thresholds_keep_clean_images_within_budget_on_expected_severity():
    # One category. Clean images: probability up to 0.95 but severity ~1 (a vivid photo); distorted ones:
    # probability 0.9 at severity 4. On the probability no threshold separates them; on expected severity
    # (0.95 x 1.2 = 1.14 against 3.6) every distorted image is found and no clean one flagged.
    categories = len(train_signal.CATEGORY_KEYS)
    n_clean, n_bad = 40, 20
    presence = np.zeros((n_clean + n_bad, categories))
    severity = np.ones_like(presence)
    presence[:n_clean, 0] = np.linspace(0.5, 0.95, n_clean)
    severity[:n_clean, 0] = 1.2
    presence[n_clean:, 0] = 0.9
    severity[n_clean:, 0] = 4.0
    present = np.zeros((n_clean + n_bad, categories), dtype=np.int64)
    present[n_clean:, 0] = 4
    data = train_signal.Data(
        np.zeros((len(present), 1)), present, np.array(["p"] * len(present)), [[]] * len(present), [], ("x",)
    )
    decision = train_signal.fit_decision(presence, severity, data, clean_target=0.05)
    named, _, any_named = train_signal.answers(presence, severity, decision.thresholds)
    assert any_named[:n_clean].mean() <= 0.05
    assert all(n == [train_signal.CATEGORY_KEYS[0]] for n in named[n_clean:])
    # The same data thresholded on the probability alone (every severity 1): the budget caps what is found.
    flat = np.ones_like(severity)
    on_probability = train_signal.fit_decision(presence, flat, data, clean_target=0.05)
    _, _, found = train_signal.answers(presence, flat, on_probability.thresholds)
    assert found[:n_clean].mean() <= 0.05 and not found[n_clean:].any()


def test_split_is_by_photo_and_covers_every_source():
    photos = [f"src{s}/p{i}" for s in range(3) for i in range(10)]
    valid = train_signal.split_photos(photos, seed=0)
    assert all(any(p.startswith(f"src{s}/") for p in valid) for s in range(3))
    assert 0.1 < len(valid) / len(photos) < 0.3
    assert valid == train_signal.split_photos(photos, seed=0)


def test_compare_features_finds_a_changed_measurement_and_only_that(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    from PIL import Image

    root = Path(__file__).resolve().parents[1]
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(3)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (300, 420, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    script = [sys.executable, str(root / "training" / "compare_features.py")]
    same = subprocess.run([*script, str(root), "--photos", str(photos)], capture_output=True, text=True)
    assert same.returncode == 0 and "identical" in same.stdout, same.stdout + same.stderr
    # A copy of the package whose whole-image measurement runs at another size: its features must differ.
    changed = tmp_path / "changed"
    shutil.copytree(root / "iqa_cli", changed / "iqa_cli", ignore=shutil.ignore_patterns("__pycache__"))
    features = changed / "iqa_cli" / "engines" / "signal" / "features.py"
    source, line = features.read_text(), f"\nANALYSIS_SIDE = {ANALYSIS_SIDE}\n"
    assert line in source and ANALYSIS_SIDE > 420  # 400: under the photos' 420 px, so the whole image is resized
    features.write_text(source.replace(line, "\nANALYSIS_SIDE = 400\n"))
    differs = subprocess.run([*script, str(changed), "--photos", str(photos)], capture_output=True, text=True)
    assert differs.returncode == 1, differs.stdout + differs.stderr
    assert "differs: blur " in differs.stdout and "differs: jpeg_quality" not in differs.stdout


def test_evaluate_shipped_measures_the_packaged_model_on_a_feature_cache(tmp_path: Path, capsys) -> None:
    from PIL import Image

    from training import evaluate_shipped
    from training import photos as photo_source

    found = photo_source.bundled_photos(tmp_path / "bundled")
    photos = sorted((f"{p.source}/{p.name}", str(p.path), max(Image.open(p.path).size)) for p in found)[:4]
    rows = train_signal.build_features(train_signal.plan_corpus(photos, seed=0, pairs=1, quick=True), None, 1)
    # The cache sits beside the photo folder, where train_signal.py keeps it.
    train_signal._write_cache(tmp_path / "signal-features.parquet", rows, train_signal._code_version())
    # The packaged model saw the test photos: its check model (here a stand-in under the id it names) is measured.
    shipped = json.loads(gzip.decompress(MODEL_FILE.read_bytes()))
    wanted = shipped["info"]["checked_by"]
    check_file = tmp_path / "signal-check-model.json.gz"
    with pytest.raises(SystemExit):  # not there yet
        evaluate_shipped.main(["--cache", str(tmp_path / "photos")])
    assert f"is missing, not {wanted}" in capsys.readouterr().err
    stand_in = {**shipped, "info": {**shipped["info"], "id": wanted, "test_photos": 33}}
    check_file.write_bytes(gzip.compress(json.dumps(stand_in).encode()))
    copied = tmp_path / "test-photos"
    assert evaluate_shipped.main(["--cache", str(tmp_path / "photos"), "--photos-to", str(copied)]) == 0
    printed = capsys.readouterr().out
    assert f"model {wanted} " in printed and "clean called ok" in printed and "ECE" in printed
    assert "other feature code" not in printed
    with pytest.raises(SystemExit):  # a model fitted on the test photos has nothing to say about them
        evaluate_shipped.main(["--cache", str(tmp_path / "photos"), "--model", str(MODEL_FILE)])
    assert "was fitted on the test photos too" in capsys.readouterr().err
    # The test photos, the clean originals byte for byte, for `iqa eval --make-set`.
    test_keys = train_signal.split_photos([key for key, _, _ in photos], 0)
    path_of = {key: Path(path) for key, path, _ in photos}
    names = {k: k.replace("/", "__") + path_of[k].suffix for k in test_keys}  # bundled keys have no suffix
    assert test_keys and sorted(p.name for p in copied.iterdir()) == sorted(names.values())
    assert all((copied / names[k]).read_bytes() == path_of[k].read_bytes() for k in test_keys)
    # The studies' two sets from the same cache: every photo in the shipped model's folds, and the
    # development photos alone in theirs.
    cache = tmp_path / "signal-features.parquet"
    every, every_fold = train_signal.every_photo_set(cache)
    dev, dev_fold = train_signal.development_set(cache)
    assert set(every.photo) == {key for key, _, _ in photos} and set(dev.photo) == set(every.photo) - test_keys
    fold_of = train_signal.assign_folds(every.photo, train_signal.FOLDS, 0)
    assert every_fold.tolist() == [fold_of[p] for p in every.photo] and len(dev_fold) == len(dev.photo)


def test_sweep_settings_reads_each_setting_as_its_own_type_and_refuses_unknown_ones():
    from training import sweep_settings

    variants = sweep_settings._variants(
        ["s1_weight=0,0.5", "num_leaves=31", "clean_target=0.04", "hull_min_severity=4", "clean_weight=3"]
    )
    assert variants == [
        ("s1_weight", 0.0),
        ("s1_weight", 0.5),
        ("num_leaves", 31),
        ("clean_target", 0.04),
        ("hull_min_severity", 4),
        ("clean_weight", 3.0),
    ]
    assert isinstance(variants[2][1], int) and isinstance(variants[3][1], float) and isinstance(variants[4][1], int)
    assert isinstance(variants[5][1], float)
    with pytest.raises(SystemExit, match="unknown setting"):
        sweep_settings._variants(["leaves=31"])


def test_presence_weights_clean_images_up_and_mild_distortions_down(monkeypatch: pytest.MonkeyPatch):
    # Rows: clean, blur at severity 1, blur at 3, noise at 1 alone. Blur's classifier weighs the clean row by
    # CLEAN_WEIGHT and its own severity-1 row by S1_WEIGHT; another category's mild distortion is an ordinary
    # negative. The severity regressors and the worst-severity regressor are not weighted.
    monkeypatch.setattr(train_signal, "CLEAN_WEIGHT", 3.0)
    monkeypatch.setattr(train_signal, "S1_WEIGHT", 0.25)
    present = np.zeros((4, len(train_signal.CATEGORY_KEYS)), dtype=np.int64)
    blur, noise = train_signal.CATEGORY_KEYS.index("blur"), train_signal.CATEGORY_KEYS.index("noise")
    present[1, blur], present[2, blur], present[3, noise] = 1, 3, 1
    data = train_signal.Data(np.zeros((4, 1)), present, np.array(list("abcd")), [[]] * 4, [], ("x",))
    objective, _, target, weight, _ = train_signal._task("presence/blur", data)
    assert objective == "binary" and target.tolist() == [0, 1, 1, 0]
    assert weight.tolist() == [3.0, 0.25, 1.0, 1.0]
    assert train_signal._task("severity/blur", data)[3] is None and train_signal._task("worst", data)[3] is None


def test_hull_rule_spends_the_budget_where_it_buys_the_most(monkeypatch: pytest.MonkeyPatch):
    # Two categories, 40 clean images, room for three clean flags. Category 0: three copies of one odd clean
    # photo at expected severity 3.0 stand between the other clean images (<= 2.0) and ten distorted ones at
    # 2.5. Category 1 finds nothing whatever it flags. Equal shares give both the same share, so flagging the
    # odd photo's three copies in category 0 costs three more in category 1, over the budget: they find
    # nothing. The hull spends the whole budget on category 0 and finds all ten.
    categories = len(train_signal.CATEGORY_KEYS)
    n_clean, n_bad = 40, 10
    presence = np.zeros((n_clean + n_bad, categories))
    severity = np.ones_like(presence)
    presence[:, 0] = 1.0
    severity[:37, 0] = np.linspace(1.0, 2.0, 37)
    severity[37:n_clean, 0] = 3.0
    severity[n_clean:, 0] = 2.5
    presence[:n_clean, 1] = 1.0
    severity[:n_clean, 1] = np.linspace(2.0, 1.0, n_clean)  # its highest clean images are other ones
    present = np.zeros((n_clean + n_bad, categories), dtype=np.int64)
    present[n_clean:, 0] = 4
    data = train_signal.Data(
        np.zeros((len(present), 1)), present, np.array(["p"] * len(present)), [[]] * len(present), [], ("x",)
    )
    hull = train_signal.hull_thresholds(presence, severity, data, clean_target=0.08)
    _, _, named = train_signal.answers(presence, severity, hull)
    assert named[n_clean:].all() and named[:n_clean].sum() == 3
    shares = train_signal.equal_share_thresholds(presence, severity, data, clean_target=0.08)
    _, _, named = train_signal.answers(presence, severity, shares)
    assert not named[n_clean:].any()
    # Counting only severity 5 as found, the ten severity-4 images buy nothing: no clean image is spent.
    monkeypatch.setattr(train_signal, "HULL_MIN_SEVERITY", 5)
    hull = train_signal.hull_thresholds(presence, severity, data, clean_target=0.08)
    _, _, named = train_signal.answers(presence, severity, hull)
    assert not named.any()


def test_the_photo_cap_keeps_one_odd_photo_from_setting_a_threshold(monkeypatch: pytest.MonkeyPatch):
    # Ten photos with four clean copies each (40 clean images, a budget of two) and ten distorted images at
    # 2.6. One odd photo's four copies sit at 3.0, over the other clean images (<= 2.0): flagging them costs
    # four, over the budget, so the uncapped hull keeps its threshold over 3.0 and finds nothing. With each
    # photo counting at most one copy, they cost one: the threshold drops under 2.6 and finds all ten.
    categories = len(train_signal.CATEGORY_KEYS)
    n_clean, n_bad = 40, 10
    presence = np.zeros((n_clean + n_bad, categories))
    presence[:, 0] = 1.0
    severity = np.ones_like(presence)
    severity[:36, 0] = np.linspace(1.0, 2.0, 36)
    severity[36:n_clean, 0] = 3.0
    severity[n_clean:, 0] = 2.6
    present = np.zeros((n_clean + n_bad, categories), dtype=np.int64)
    present[n_clean:, 0] = 4
    photos = np.array([f"p{i // 4}" for i in range(n_clean)] + [f"d{i}" for i in range(n_bad)])
    data = train_signal.Data(np.zeros((len(present), 1)), present, photos, [[]] * len(present), [], ("x",))
    monkeypatch.setattr(train_signal, "PHOTO_CAP", None)
    _, _, named = train_signal.answers(
        presence, severity, train_signal.hull_thresholds(presence, severity, data, clean_target=0.05)
    )
    assert not named.any()
    monkeypatch.setattr(train_signal, "PHOTO_CAP", 1.0)
    _, _, named = train_signal.answers(
        presence, severity, train_signal.hull_thresholds(presence, severity, data, clean_target=0.05)
    )
    assert named[n_clean:].all() and named[:n_clean].sum() == 4 and named[36:n_clean].all()


def test_the_engine_knows_the_clean_share_its_confidence_was_calibrated_on():
    # decide.CALIBRATION_CLEAN_SHARE is what --clean-share re-weights from: the corpus's clean share per photo.
    from iqa_cli.engines.signal.decide import CALIBRATION_CLEAN_SHARE

    recipes = train_signal.plan_corpus(
        [("source/photo", "unused.png", 2000)], seed=0, pairs=train_signal.PAIRS, quick=False
    )
    assert sum(not r.distortions for r in recipes) / len(recipes) == CALIBRATION_CLEAN_SHARE


def test_a_feature_read_only_by_some_categories_is_never_split_on_by_the_others(monkeypatch: pytest.MonkeyPatch):
    # Feature "tell" gives away every category's presence and severity; "weak" only noise's, faintly. With
    # "tell" read only by noise's boosters, noise's trees split on it and no other booster's (the worst-severity
    # regressor's included) ever does.
    rng = np.random.default_rng(0)
    n = 400
    present = np.zeros((n, len(train_signal.CATEGORY_KEYS)), dtype=np.int64)
    for j in range(present.shape[1]):
        present[:, j] = np.where(rng.random(n) < 0.3, rng.integers(1, 6, n), 0)
    tell = present.sum(axis=1) + 0.1 * rng.random(n)
    weak = present[:, train_signal.CATEGORY_KEYS.index("noise")] + 3 * rng.random(n)
    data = train_signal.Data(
        np.c_[tell, weak, rng.random(n)], present, np.array(["p"] * n), [[]] * n, [], ("tell", "weak", "other")
    )
    monkeypatch.setattr(train_signal, "READ_ONLY_BY", {"tell": ("noise",)})
    boosters = train_signal.train_trees(data, None, quick=True, seed=0, rounds=dict.fromkeys(train_signal.BOOSTERS, 10))
    for name, booster in boosters.items():
        used = set(train_signal.export_booster(booster, sigmoid=False)["feature"]) - {-1}
        assert (0 in used) == name.endswith("/noise"), name
    seen = train_signal.booster_columns("contrast_weaken", data)
    assert (seen[:, 0] == train_signal.MISSING).all() and np.array_equal(seen[:, 1:], data.x[:, 1:])
    assert train_signal.booster_columns("noise", data) is data.x


def test_ablate_features_refuses_an_unknown_reader(capsys: pytest.CaptureFixture[str]):
    from training import ablate_features

    with pytest.raises(SystemExit) as stop:
        ablate_features.main(["blur", "--read-only-by", "noise,sparkle"])
    assert stop.value.code == 2 and "unknown categories: sparkle" in capsys.readouterr().err


def test_learning_curve_fits_each_fold_on_the_share_of_its_photos(monkeypatch: pytest.MonkeyPatch):
    from training import learning_curve

    seen: list[set[str]] = []
    monkeypatch.setattr(train_signal, "train_trees", lambda train, stop, **settings: seen.append(set(train.photo)))
    photos = np.array([f"src/p{i}" for i in range(10) for _ in range(3)])  # three images per photo
    data = train_signal.Data(np.zeros((30, 1)), np.zeros((30, 12), int), photos, [[]] * 30, [{}] * 30, ("x",))
    thinned = learning_curve.thinned_training(0.6, seed=0)
    thinned(data, None, quick=True, seed=0)
    thinned(data, None, quick=True, seed=0)
    assert len(seen[0]) == 6 and seen[0] == seen[1] and seen[0] <= set(photos)  # whole photos, the same draw
    learning_curve.thinned_training(0.6, seed=1)(data, None, quick=True, seed=1)
    assert seen[2] != seen[0]
    with pytest.raises(SystemExit):
        learning_curve.main(["--shares", "0,1"])


def test_leave_out_photos_refuses_a_fragment_that_names_no_photo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    from training import leave_out_photos

    (tmp_path / "signal-features.parquet").write_bytes(b"")  # only its presence is checked before the data
    photos = np.array(["src/pyramid.webp", "src/gosling.webp"])
    data = train_signal.Data(np.zeros((2, 1)), np.zeros((2, 12), int), photos, [[]] * 2, [{}] * 2, ("x",))
    monkeypatch.setattr(train_signal, "development_set", lambda cache: (data, np.array([0, 1])))
    with pytest.raises(SystemExit):
        leave_out_photos.main(["pyramid", "swan,gosling", "--cache", str(tmp_path / "photos")])
    assert "no development photo's key holds swan" in capsys.readouterr().err


def test_add_sources_joins_sets_row_for_row_and_refuses_a_source_with_no_photo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    from training import add_sources

    def rows(photo: str, n: int, value: float) -> train_signal.Data:
        present = np.zeros((n, len(train_signal.CATEGORY_KEYS)), int)
        present[0, 0] = 3
        return train_signal.Data(
            np.full((n, 1), value), present, np.array([photo] * n), [["f"]] * n, [{"k": value}] * n, ("x",)
        )

    both = add_sources.joined(rows("a/one", 2, 1.0), rows("b/two", 3, 2.0))
    assert both.x[:, 0].tolist() == [1, 1, 2, 2, 2] and both.photo.tolist() == ["a/one"] * 2 + ["b/two"] * 3
    assert both.present[:, 0].tolist() == [3, 0, 3, 0, 0] and len(both.functions) == len(both.rows) == 5
    (tmp_path / "signal-features.parquet").write_bytes(b"")  # only its presence is checked before the data
    monkeypatch.setattr(train_signal, "cached_data", lambda cache: both)
    with pytest.raises(SystemExit):
        add_sources.main(["a", "c", "--cache", str(tmp_path / "photos")])
    assert "no photo of c in the feature cache" in capsys.readouterr().err


def test_severity_ceiling_reads_each_image_on_the_category_it_was_distorted_in():
    from training import severity_ceiling

    # Two functions of two categories, severities 1-5 twice each, plus clean images (left out: no function).
    # The own category's severity regressor is right and the other category's is reversed, so only a reading
    # of the category each image was really distorted in ranks them; the score is turned (it falls).
    categories = len(train_signal.CATEGORY_KEYS)
    levels = np.tile(np.arange(1, 6), 2)
    present = np.zeros((22, categories), dtype=np.int64)
    present[:10, 0] = levels
    present[10:20, 1] = levels
    functions = [["blur_motion"]] * 10 + [["noise_speckle"]] * 10 + [[], []]
    severity = np.ones((22, categories))
    severity[:10, 0], severity[:10, 1] = levels, 6 - levels
    severity[10:20, 1], severity[10:20, 0] = levels, 6 - levels
    presence = np.full((22, categories), 0.5)
    worst = np.r_[6 - levels, levels, 0, 0].astype(float)
    scores = -np.r_[levels, levels, 0, 0].astype(float)
    data = train_signal.Data(np.zeros((22, 1)), present, np.array(["p"] * 22), functions, [], ("x",))
    # The engine named the right category for the first function and nothing for the second.
    named = [["blur"]] * 10 + [[]] * 12
    rows = severity_ceiling.ceiling_rows(data, presence, severity, worst, scores, named)
    assert [(r["function"], r["images"]) for r in rows] == [("blur_motion", 10), ("noise_speckle", 10)]
    for row in rows:
        assert row["score"] == pytest.approx(1.0)
        assert row["own severity"] == pytest.approx(1.0)
        assert row["own expected"] == pytest.approx(1.0)
    assert rows[0]["worst"] == pytest.approx(-1.0) and rows[1]["worst"] == pytest.approx(1.0)
    # Named: its own severity (right); not named: the worst-severity regressor (right for the second function).
    assert rows[0]["named severity"] == pytest.approx(1.0) and rows[1]["named severity"] == pytest.approx(1.0)
    assert severity_ceiling.summary(rows, "worst") == "lowest -1.00, median 0.00, 1 of 2 under 0.8"


def test_tables_split_identification_by_how_the_distorted_copy_was_saved():
    # Four blur images at severity 4: the two saved losslessly are found, the two re-saved as JPEG are not;
    # a compression image saved as its own JPEG counts as lossless (the function made that file).
    categories = len(train_signal.CATEGORY_KEYS)
    present = np.zeros((5, categories), dtype=np.int64)
    present[:4, 0] = 4
    present[4, 2] = 4
    saves = ["png", "png", "jpeg:93", "jpeg:90", "own-jpeg"]
    rows = [{"save": how, "long_side": 640} for how in saves]
    functions = [["blur_gaussian"]] * 4 + [["compression_jpeg"]]
    data = train_signal.Data(np.zeros((5, 1)), present, np.array(["p"] * 5), functions, rows, ("x",))
    named = [["blur"], ["blur"], [], [], ["compression"]]
    report = train_signal.tables(data, named, np.full(5, 0.9), np.full(5, 0.5))
    assert report["identification"]["blur"][3] == 0.5
    assert report["identification_mean"][3] == 0.75  # blur 0.5, compression 1.0
    assert report["identification_mean_lossless"][3] == 1.0
    assert report["identification_mean_resaved"][3] == 0.0  # blur alone: no compression image was re-saved
    assert report["identification_mean_resaved"][1] is None
    assert report["identification_lossless"]["blur"][3] == 1.0 and report["identification_resaved"]["blur"][3] == 0.0


def test_tables_split_clean_ok_and_identification_by_the_copy_s_size():
    # Two clean copies (one small, flagged; one large, ok) and two blur images at severity 4 (the small one
    # found, the large one missed): each size band has its own figures, and an empty band has none.
    categories = len(train_signal.CATEGORY_KEYS)
    present = np.zeros((4, categories), dtype=np.int64)
    present[2:, 0] = 4
    rows = [{"save": "png", "long_side": side} for side in (700, 1600, 700, 1600)]
    functions = [[], [], ["blur_gaussian"], ["blur_gaussian"]]
    data = train_signal.Data(np.zeros((4, 1)), present, np.array(["p", "p", "q", "q"]), functions, rows, ("x",))
    named = [["noise"], [], ["blur"], []]
    bands = train_signal.tables(data, named, np.full(4, 0.9), np.full(4, 0.5))["by_size"]
    assert [b["long_side"] for b in bands] == [list(band) for band in train_signal.SIZE_BANDS]
    small, _, _, large = bands
    assert (small["images"], small["clean_ok"], small["identification_mean"][3]) == (2, 0.0, 1.0)
    assert (large["images"], large["clean_ok"], large["identification_mean"][3]) == (2, 1.0, 0.0)
    assert bands[1]["images"] == 0 and bands[1]["clean_ok"] is None and bands[1]["identification_mean"][3] is None
    assert [train_signal._band(band) for band in train_signal.SIZE_BANDS] == [
        "under 800 px",
        "800-1099 px",
        "1100-1399 px",
        "1400 px and over",
    ]
