"""The signal engine: its shipped model, its answers on photos it never trained on, and its contract."""

from __future__ import annotations

import gzip
import itertools
import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iqa_cli.audit.flag import DEFAULT_MIN_CONFIDENCE
from iqa_cli.audit.load import load_image
from iqa_cli.categories import CATEGORIES
from iqa_cli.engines.base import RATING_WORDS, AssessRequest, EngineOptions, Prepared
from iqa_cli.engines.signal import SignalEngine
from iqa_cli.engines.signal.decide import (
    CLEAN_FLOOR,
    NAMED_CEILING,
    brief_answer,
    decide,
    evidence,
    held_score,
    name_categories,
    score_for,
)
from iqa_cli.engines.signal.features import DECODE_PLAN, FEATURES, extract
from iqa_cli.engines.signal.model import MODEL_FILE, Booster, ModelFileError, read_model, shipped_model
from iqa_cli.errors import ModelFilesError
from iqa_cli.evaluation.distortions import FUNCTIONS, distort
from iqa_cli.images import LoadedImage
from iqa_cli.testing import photos as photo_set

# training/train_signal.py keeps these out of the training corpus: they are unseen photos here.
HELD_OUT = ("coffee", "china")


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return photo_set.load_all((*HELD_OUT, "chelsea", "chelsea_dof"))


def features_via_file(pixels: np.ndarray, folder: Path, name: str = "x.png", **save) -> dict[str, float]:
    """Save, load with the engine's plan and extract: exactly what an audit measures."""
    path = folder / name
    Image.fromarray(pixels).save(path, **save)
    loaded = load_image(str(path), DECODE_PLAN)
    assert isinstance(loaded, LoadedImage), loaded
    return extract(loaded)


def test_shipped_model_is_plain_json_and_loads_without_pickle():
    raw = gzip.decompress(MODEL_FILE.read_bytes())
    data = json.loads(raw)  # plain JSON: nothing in it can run code when read
    assert data["format"] == "iqa-signal-trees/2"
    assert b"pickle" not in raw and MODEL_FILE.stat().st_size < 5_000_000
    model = shipped_model()
    assert model.features == FEATURES and set(model.categories) == set(CATEGORIES)
    # 150+ real photos fit the shipped trees; the same recipe without a fifth of them was measured on that fifth.
    assert model.info["quick"] is False and model.info["photos"] >= 150 and model.info["test_photos"] == 0
    assert model.info["checked_by"].startswith("signal-") and model.info["checked_by"] != model.info["id"]


def test_numpy_trees_reproduce_lightgbm_outputs():
    # The training script stores LightGBM's own predictions for a few validation rows.
    data = json.loads(gzip.decompress(MODEL_FILE.read_bytes()))
    model = shipped_model()
    x = np.asarray(data["probe"]["x"], dtype=np.float64)
    prediction = model.predict(x)
    for j, category in enumerate(model.categories):
        assert np.allclose(prediction.presence[:, j], data["probe"]["presence"][category], atol=1e-9), category
    # The probe holds the worst severity as training reads it, clipped to 0-5 (the score's scale ends there too).
    assert np.allclose(np.clip(model.worst.predict(x), 0, 5), data["probe"]["worst"], atol=1e-9)


def test_tree_walk_on_a_hand_built_booster():
    # Node 0: x0 <= 1 -> node 1 (leaf 0.5) else node 2: x1 <= 0 -> leaf -1 else leaf 2.
    booster = Booster.from_json(
        {
            "sigmoid": False,
            "depth": 3,
            "base": 0.25,
            "feature": [0, -1, 1, -1, -1],
            "threshold": [1.0, 0, 0.0, 0, 0],
            "left": [1, 1, 3, 3, 4],
            "right": [2, 1, 4, 3, 4],
            "value": [0, 0.5, 0, -1.0, 2.0],
            "roots": [0, 0],
        }
    )
    x = np.array([[1.0, 5.0], [1.5, 0.0], [3.0, 0.1]])
    assert np.allclose(booster.raw(x), [0.25 + 1.0, 0.25 - 2.0, 0.25 + 4.0])
    with pytest.raises(ModelFileError, match="out of range"):
        Booster.from_json({"sigmoid": True, "depth": 1, "feature": [-1], "threshold": [0], "left": [3],
                           "right": [0], "value": [0], "roots": [0]})  # fmt: skip


def test_damaged_model_file_is_a_clear_error(tmp_path: Path):
    (tmp_path / "m.json.gz").write_bytes(b"not gzip")
    with pytest.raises(ModelFileError, match="cannot read"):
        read_model(tmp_path / "m.json.gz")
    (tmp_path / "m.json").write_text('{"format": "other"}')
    with pytest.raises(ModelFileError, match="format"):
        read_model(tmp_path / "m.json")


def test_a_category_is_named_by_expected_severity_not_by_probability_alone():
    # A vivid clean photo: saturation very probable but at severity ~1; blur probable and heavy; noise
    # heavy but more likely absent. Only blur reaches its threshold; the most evident comes first.
    presence = np.array([0.97, 0.9, 0.45, 0.8])
    severity = np.array([1.1, 4.0, 5.0, 3.0])
    evident = evidence(presence, severity)
    assert evident == pytest.approx([0.97 * 1.1, 3.6, 0.0, 2.4])
    thresholds = np.array([2.0, 2.0, 0.5, 2.0])
    assert name_categories(evident, thresholds, 2) == [1, 3]
    assert name_categories(evident, thresholds, 1) == [1]
    # Severities outside 1-5 count as their nearest end.
    assert evidence(np.array([0.6, 0.6]), np.array([-3.0, 9.0])) == pytest.approx([0.6, 3.0])


def test_clean_share_reweights_the_confidence_by_bayes_rule(photos: dict[str, np.ndarray], tmp_path: Path):
    from iqa_cli.engines.signal.decide import CALIBRATION_CLEAN_SHARE, shift_prior

    assert shift_prior(0.5, 0.5, 0.2) == pytest.approx(0.8)  # odds 1 x (1 / 1) / (0.2 / 0.8)
    assert shift_prior(0.3, 0.2, 0.2) == pytest.approx(0.3) and shift_prior(1.0, 0.01) == 1.0
    clean = features_via_file(photos["coffee"], tmp_path)
    blurred = features_via_file(distort(photos["coffee"], "blur", 4, function="blur_gaussian"), tmp_path)
    for values in (clean, blurred):
        default = decide(values)
        assert decide(values, clean_share=CALIBRATION_CLEAN_SHARE).confidence == pytest.approx(
            default.confidence, abs=1e-3
        )
        mostly_clean, mostly_distorted = decide(values, clean_share=0.95), decide(values, clean_share=0.01)
        assert mostly_clean.categories == mostly_distorted.categories == default.categories  # answers stay
        if default.categories:
            assert mostly_clean.confidence <= default.confidence <= mostly_distorted.confidence
        else:
            assert mostly_clean.confidence >= default.confidence >= mostly_distorted.confidence
    assert decide(clean).categories == [] and decide(blurred).categories[:1] == ["blur"]


def test_the_engine_keys_its_answers_by_the_clean_share_only_when_given():
    assert "clean_share" not in SignalEngine().settings()
    assert SignalEngine.create(EngineOptions(clean_share=0.9)).settings()["clean_share"] == 0.9


def test_the_engine_answers_with_the_model_file_given_as_model(photos: dict[str, np.ndarray], tmp_path: Path):
    # A retrained model (train_signal.py --out) is measured with `--model FILE`: its trees and thresholds answer,
    # and its identity keys the stored answers. Here every threshold is out of reach, so nothing is named.
    data = json.loads(gzip.decompress(MODEL_FILE.read_bytes()))
    data["thresholds"] = {c: 99.0 for c in data["thresholds"]}
    data["info"]["id"] = "signal-unreachable"
    own = tmp_path / "own.json.gz"
    own.write_bytes(gzip.compress(json.dumps(data).encode()))
    engine = SignalEngine.create(EngineOptions(model_dir=str(own)))
    assert engine.settings()["model"] == "signal-unreachable" != SignalEngine().settings()["model"]
    Image.fromarray(distort(photos["coffee"], "blur", 5, function="blur_gaussian")).save(tmp_path / "b.png")
    image = load_image(str(tmp_path / "b.png"), engine.decode_plan)
    prepared = [Prepared(key=0, payload=engine.preparer()(image), width=1, height=1)]
    assert engine.assess(prepared, AssessRequest())[0].distortions == []
    assert SignalEngine().assess(prepared, AssessRequest())[0].distortions[:1] == ["blur"]
    (tmp_path / "broken.json.gz").write_bytes(b"not gzip")
    with pytest.raises(ModelFilesError, match=r"cannot read the signal model .*broken\.json\.gz.*train_signal\.py"):
        SignalEngine.create(EngineOptions(model_dir=str(tmp_path / "broken.json.gz")))


def test_a_model_of_the_previous_format_is_refused(tmp_path: Path):
    # Format 1 thresholds are on the probability: read as expected severity they would name far too much.
    data = json.loads(gzip.decompress(MODEL_FILE.read_bytes()))
    data["format"] = "iqa-signal-trees/1"
    (tmp_path / "old.json").write_text(json.dumps(data))
    with pytest.raises(ModelFileError, match="iqa-signal-trees/1"):
        read_model(tmp_path / "old.json")


def test_unseen_photos_clean_ok_and_severity_4_identified(photos: dict[str, np.ndarray], tmp_path: Path):
    hits, total, names = 0, 0, []
    for name in HELD_OUT:
        clean = decide(features_via_file(photos[name], tmp_path))
        assert clean.categories == [] and clean.rating in ("excellent", "good"), (name, clean.categories)
        for n, category in enumerate(CATEGORIES):
            functions = list(FUNCTIONS[category])
            function = functions[n % len(functions)]
            pixels = distort(photos[name], category, 4, rng=n, function=function)
            verdict = decide(features_via_file(pixels, tmp_path))
            total += 1
            hits += category in verdict.categories
            names.append(len(verdict.categories))
    # A loose bar (docs/signal-validation.md gives the measured rates, about two thirds at severity 4):
    # a majority of severity-4 distortions named, answers not shotgun.
    assert hits >= 0.55 * total, f"{hits}/{total} identified"
    assert np.mean(names) <= 1.6


@pytest.mark.parametrize(("fill", "category"), [(3, "darken"), (252, "brighten")])
def test_black_and_white_frames_are_badly_exposed(fill: int, category: str, tmp_path: Path):
    flat = np.full((48, 64, 3), fill, np.uint8)
    flat[..., 0] = min(255, fill + 2)  # a trace of colour: not the monochrome rule
    verdict = decide(features_via_file(flat, tmp_path))
    assert verdict.categories[0] == category and verdict.severities[0] == 5 and verdict.rating == "bad"


def test_shallow_depth_of_field_is_not_blur(photos: dict[str, np.ndarray], tmp_path: Path):
    assert "blur" not in decide(features_via_file(photos["chelsea_dof"], tmp_path)).categories


def test_pixel_level_distortions_seen_at_any_size(photos: dict[str, np.ndarray], tmp_path: Path):
    # Pixelation made on a 1600 px copy: the native crop still sees its repeated pixels.
    big = np.asarray(Image.fromarray(photos["china"]).resize((1600, 1067), Image.Resampling.BICUBIC))
    pixelated = distort(big, "pixelate", 4, function="pixelate")
    assert "pixelate" in decide(features_via_file(pixelated, tmp_path)).categories


def test_jpeg_quality_setting_is_compression(photos: dict[str, np.ndarray], tmp_path: Path):
    big = np.asarray(Image.fromarray(photos["coffee"]).resize((1800, 1200), Image.Resampling.BICUBIC))
    low = decide(features_via_file(big, tmp_path, "q10.jpg", quality=10))
    high = decide(features_via_file(big, tmp_path, "q92.jpg", quality=92))
    assert "compression" in low.categories
    assert "compression" not in high.categories


def test_monochrome_is_insufficient_saturation_for_review(photos: dict[str, np.ndarray], tmp_path: Path):
    grey = np.repeat(np.asarray(Image.fromarray(photos["coffee"]).convert("L"))[..., None], 3, axis=2)
    verdict = decide(features_via_file(grey, tmp_path))
    # DepictQA calls a grey image insufficiently saturated; an intended black-and-white photo is possible,
    # so the severity is capped (verdict degraded, not bad) and the confidence sends it to review.
    assert verdict.monochrome and "saturate_weaken" in verdict.categories
    assert verdict.severities[verdict.categories.index("saturate_weaken")] <= 3
    assert verdict.confidence < DEFAULT_MIN_CONFIDENCE


def test_the_native_crop_measurement_skips_only_what_features_do_not_read(photos: dict[str, np.ndarray]):
    # The features must stay those the shipped trees were trained on: tone=False may only leave fields out.
    from iqa_cli.engines.signal.measure import _TONE_FIELDS, measure_pixels

    for name in HELD_OUT:
        crop = photos[name][:384, :384]
        full = measure_pixels(crop, crop.shape[1], 90).as_dict()
        lean = measure_pixels(crop, crop.shape[1], 90, tone=False).as_dict()
        skipped = {*_TONE_FIELDS, "coherence", "radial"}
        assert all(np.isnan(lean[k]) for k in skipped)
        assert {k: v for k, v in lean.items() if k not in skipped} == {
            k: v for k, v in full.items() if k not in skipped
        }
        assert not skipped & {f.removeprefix("native_") for f in FEATURES if f.startswith("native_")}


def test_colour_and_tone_curve_features_equal_their_plain_numpy_definitions(photos: dict[str, np.ndarray]):
    # Pillow's histogram and pairwise channel maxima replace per-channel bincounts and max(axis=1): the same
    # numbers, checked against the definitions written out the slow way.
    from iqa_cli.engines.signal import features

    for name in HELD_OUT:
        pixels = photos[name]
        flat = pixels.reshape(-1, 3)
        counts = [np.bincount(flat[:, c], minlength=256) for c in range(3)]
        assert np.array_equal(np.asarray(Image.fromarray(pixels).histogram()).reshape(3, 256), np.stack(counts))
        sub = pixels[::4, ::4].reshape(-1, 3)
        high, low = sub.max(axis=1), sub.min(axis=1)
        extremes = features._colour_extremes(pixels)
        assert extremes["value_p99"] == float(np.percentile(high, 99))
        assert extremes["low_p01"] == float(np.percentile(low, 1))
        s = np.where(high > 8, (high.astype(np.float32) - low) / np.maximum(high.astype(np.float32), 1.0), 0.0)
        assert extremes["sat_p95"] == float(np.percentile(s, 95))
        assert extremes["sat_top"] == float(np.percentile(s[high > 24], 99.9))


class _FixedAngle:
    """Stands in for blur_motion's random generator: the smear's angle, in degrees."""

    def __init__(self, degrees: float) -> None:
        self.degrees = degrees

    def uniform(self, low: float, high: float) -> float:
        return self.degrees


@pytest.mark.parametrize("degrees", [0, 45, 90])
def test_pooled_blur_reads_motion_blur_along_an_axis_or_a_diagonal(photos: dict[str, np.ndarray], degrees: float):
    # Along the smear the tiles hardly vary, so each tile's blur leaves that direction out; pooled over the
    # tiles it is still read, and so is the gap to the sharp direction across the smear.
    from iqa_cli.engines.signal.measure import measure_pixels
    from iqa_cli.evaluation.distortions import blur_motion

    for name in HELD_OUT:
        clean = measure_pixels(photos[name])
        smeared = measure_pixels(blur_motion(photos[name], 4, _FixedAngle(degrees)))
        assert smeared.blur_pooled > clean.blur_pooled + 0.2, (name, clean.blur_pooled, smeared.blur_pooled)
        assert smeared.blur_spread > clean.blur_spread + 0.05, (name, clean.blur_spread, smeared.blur_spread)


def test_hsv_gamma_leaves_empty_shadow_levels_in_the_highest_channel_only(photos: dict[str, np.ndarray]):
    # DQ-495K's HSV gamma bends V = max(R, G, B) on 8 bits: V keeps the curve's empty levels, while each RGB
    # channel mixes V with values of the other channels and fills them in. The V reading is the plain one.
    from iqa_cli.engines.signal import features
    from iqa_cli.evaluation.distortions import brighten_gamma_hsv, darken_gamma_hsv

    for name in HELD_OUT:
        clean_rgb, clean_value = features._tone_curve_traces(photos[name])
        assert clean_rgb[:2] == clean_value[:2] == (0.0, 0.0)  # (dark gaps, bright gaps)
        # Brightening spreads the shadows (dark gaps), darkening the highlights (bright gaps).
        for bend, at in ((brighten_gamma_hsv, 0), (darken_gamma_hsv, 1)):
            pixels = bend(photos[name], 4, np.random.default_rng(0))
            rgb, value = features._tone_curve_traces(pixels)
            counts = np.bincount(pixels.max(axis=2).ravel(), minlength=256).astype(np.float64)
            assert value == features._curve_traces(counts)
            assert value[at] > 0.15 and rgb[at] == 0.0, (name, bend.__name__, rgb, value)


def test_tile_sums_are_exact_at_the_largest_values_their_callers_sum():
    # _tile_sums adds in an order chosen for speed; that cannot change a value only while every tile sum is an
    # integer below 2^24. The worst cases: the noise filter's |lap| <= 8 x 255 over 32 x 32 tiles, a squared
    # half-resolution gradient <= 255^2 over 16 x 16 tiles (the orientation), a tile's activity <= 2 x 255.
    from iqa_cli.engines.signal.measure import _tile_sums

    rng = np.random.default_rng(3)
    for top, tile, dtype in ((8 * 255, 32, np.int16), (255**2, 16, np.float32), (510, 16, np.int16)):
        for values in (np.full((70, 90), top, dtype), rng.integers(0, top + 1, (70, 90)).astype(dtype)):
            rows, cols = 70 // tile, 90 // tile
            exact = values[: rows * tile, : cols * tile].astype(np.int64).reshape(rows, tile, cols, tile).sum((1, 3))
            assert np.array_equal(_tile_sums(values, rows, cols, tile), exact.ravel())


@pytest.mark.parametrize("shape", [(1, 1, 3), (20, 30, 3), (48, 2000, 3)])
@pytest.mark.parametrize("fill", [0, 128, None])
def test_small_flat_and_odd_images_are_measured(shape: tuple[int, int, int], fill: int | None, tmp_path: Path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, shape, dtype=np.uint8) if fill is None else np.full(shape, fill, np.uint8)
    verdict = decide(features_via_file(pixels, tmp_path))
    assert 0.0 <= verdict.score <= 1.0 and 0.0 <= verdict.confidence <= 1.0
    assert verdict.rating in RATING_WORDS and len(verdict.categories) <= 2


def _engine_answer(pixels: np.ndarray, folder: Path, detail: bool = False):
    engine = SignalEngine.create(EngineOptions())
    Image.fromarray(pixels).save(folder / "e.png")
    image = load_image(str(folder / "e.png"), engine.decode_plan)
    payload = pickle.loads(pickle.dumps(engine.preparer()))(image)  # the preparer must survive pickling
    prepared = Prepared(key=0, payload=payload, width=pixels.shape[1], height=pixels.shape[0])
    return engine.assess([prepared], AssessRequest(detail=detail))[0]


def test_brief_answer_form(photos: dict[str, np.ndarray], tmp_path: Path):
    assert brief_answer([]) == "None"
    assert brief_answer(["blur"]) == "Blur"
    assert brief_answer(["blur", "noise", "darken"]) == "Blur and noise"
    assert brief_answer(["saturate_weaken"]) == "Insufficient saturation"
    clean = _engine_answer(photos["coffee"], tmp_path)
    assert clean.answer == "None" and clean.distortions == [] and clean.rating in ("excellent", "good")
    assert clean.task == "distortion_identification" and clean.question.endswith("single word or phrase.")
    blurred = _engine_answer(distort(photos["coffee"], "blur", 5, function="blur_gaussian"), tmp_path)
    assert blurred.answer.startswith("Blur") and blurred.distortions[0] == "blur"
    assert blurred.rating in ("poor", "bad") and blurred.severities[0] >= 4
    assert set(blurred.distortions) <= set(CATEGORIES.values())
    assert 0.0 <= blurred.score <= 1.0 and 0.0 <= blurred.confidence <= 1.0


def test_detail_paragraph_quotes_numbers_and_probabilities(photos: dict[str, np.ndarray], tmp_path: Path):
    noisy = distort(photos["china"], "noise", 4, function="noise_gaussian_rgb")
    answer = _engine_answer(noisy, tmp_path, detail=True)
    assert answer.detail is not None and answer.detail_question and "explanation" in answer.detail_question
    assert "noise" in answer.detail and re.search(r"\d+\.\d", answer.detail)
    assert re.search(r"model probability [01]\.\d\d, expected severity \d\.\d", answer.detail)
    # The runner-up's expected severity says why it was not named.
    assert re.search(
        r"most likely other distortion is [a-z ]+ \(probability [01]\.\d\d, expected severity \d\.\d\)", answer.detail
    )
    assert _engine_answer(photos["china"], tmp_path).detail is None


@pytest.mark.parametrize("severities", [[], [1], [2, 1], [3], [4], [5]])
def test_the_held_score_keeps_the_answers_side_and_the_regressors_order(severities: list[int]):
    # Kept on the answer's side: nothing named scores at least good, a named severity within half a step of
    # it (and at most good). In order: a worse regressor quality never scores higher, and qualities past the
    # band's edges still score apart (a clamp would tie them all at the edge), after the engine's rounding.
    qualities = np.linspace(score_for(5), score_for(0), 83)
    scores = [held_score(float(q), severities) for q in qualities]
    if severities:
        worst = max(severities)
        low, high = score_for(worst + 0.5), min(NAMED_CEILING, score_for(worst - 0.5))
    else:
        low, high = CLEAN_FLOOR, 1.0
    assert all(low <= s <= high for s in scores), (min(scores), max(scores))
    assert all(a < b for a, b in itertools.pairwise(scores))
    # Past the low edge, qualities a twentieth apart (a step of the severity scale is 0.08-0.22) still score
    # apart in the three decimals the engine reports.
    # (Severity 5's band starts at the scale's end: nothing is past it.)
    past_low = [round(held_score(float(q), severities), 3) for q in np.arange(score_for(5), low, 0.05)]
    assert len(set(past_low)) == len(past_low), past_low
    assert len(past_low) >= 2 or low == score_for(5)
    # Inside the band, away from its edges, the score is the regressor's quality itself.
    middle = (low + high) / 2
    if high - low > 0.1:
        assert held_score(middle, severities) == pytest.approx(middle)


def test_score_falls_from_mild_to_heavy_blur(photos: dict[str, np.ndarray], tmp_path: Path):
    # Mild blur scores above heavy blur, and heavy blur is rated poor or bad, on both unseen photos. Among the
    # heavy severities (3-5) the order is not promised: the worst-severity regressor levels off there, and its
    # rank correlation with severity is under issue 10's 0.8 for some functions (signal-validation.md).
    for name in HELD_OUT:
        verdicts = [
            decide(features_via_file(distort(photos[name], "blur", s, function="blur_gaussian"), tmp_path))
            for s in (1, 3, 5)
        ]
        mild, *heavy = (v.score for v in verdicts)
        assert all(mild > h for h in heavy), (name, mild, heavy)
        assert verdicts[2].rating in ("poor", "bad"), (name, verdicts[2].rating)


def test_deterministic(photos: dict[str, np.ndarray], tmp_path: Path):
    pixels = distort(photos["china"], "noise", 3, rng=7)
    first = features_via_file(pixels, tmp_path, "a.png")
    again = features_via_file(pixels.copy(), tmp_path, "b.png")
    assert json.dumps(first) == json.dumps(again)  # NaN-safe equality of every value
    assert decide(first) == decide(again)


def test_engine_contract():
    engine = SignalEngine.create(EngineOptions())
    assert engine.name == "signal" and engine.version
    plan = engine.decode_plan
    assert plan.long_side == 512 and plan.draft and plan.native_crop == 384
    settings = engine.settings()
    assert settings["engine"] == "signal" and settings["model"].startswith("signal-")
    assert set(settings["thresholds"]) == set(CATEGORIES)
