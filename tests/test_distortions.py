"""The 35 DQ-495K distortion functions: shape, determinism, strength by severity, and parameters checked by value."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage
from skimage.filters import threshold_multiotsu
from sklearn.datasets import load_sample_image

from iqa_cli.evaluation import distortions as D
from iqa_cli.evaluation.distortions import FUNCTIONS, PAIRABLE, PAIRS, distort, pick_pair

ALL = [(cat, name) for cat, fs in FUNCTIONS.items() for name in fs]


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.ascontiguousarray(load_sample_image("china.jpg")[100:292, 200:456])


def flat(level: int, shape: tuple[int, int] = (40, 48)) -> np.ndarray:
    return np.full((*shape, 3), level, dtype=np.uint8)


def test_35_functions_in_12_categories() -> None:
    assert len(FUNCTIONS) == 12
    assert len(ALL) == 35
    assert [len(fs) for fs in FUNCTIONS.values()] == [6, 6, 2, 4, 4, 2, 2, 2, 2, 1, 1, 3]


@pytest.mark.parametrize(("category", "name"), ALL)
def test_shape_dtype_change_and_determinism(photo: np.ndarray, category: str, name: str) -> None:
    before = photo.copy()
    out = distort(photo, category, 3, rng=11, function=name)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert np.array_equal(photo, before), "the input must not be modified"
    assert np.abs(out.astype(int) - photo).mean() > 0.5
    assert np.array_equal(out, distort(photo, category, 3, rng=11, function=name))
    assert np.array_equal(out, distort(photo, category, 3, rng=np.random.default_rng(11), function=name))


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b).mean())


@pytest.mark.parametrize(("category", "name"), ALL)
def test_strength_grows_with_severity(photo: np.ndarray, category: str, name: str) -> None:
    outs = [distort(photo, category, s, rng=5, function=name) for s in range(1, 6)]
    if name == "contrast_strengthen_stretch":
        # The sigmoid remaps the tones at any factor; what grows is the spread of the output.
        measure = [float(o.std()) for o in outs]
    elif name == "quantization_hist":
        measure = [-len(np.unique(o)) for o in outs]  # fewer levels
    else:
        measure = [_mad(o, photo) for o in outs]
    assert all(b >= a for a, b in itertools.pairwise(measure)), measure
    assert measure[-1] > measure[0]


def test_rgb_shifts_truncate_like_dq495k() -> None:
    # float32(128 / 255) + 0.1 = 0.60196 -> *255 = 153.5 -> truncated 153; -0.35 -> 38.75 -> 38.
    assert np.all(D.brighten_shift_rgb(flat(128), 1, None) == 153)
    assert np.all(D.darken_shift_rgb(flat(128), 5, None) == 38)
    assert np.all(D.brighten_shift_rgb(flat(250), 5, None) == 255)
    # HSV shift on grey: V moves, S stays 0: 0.50196 + 0.5 -> 255 (clipped); - 0.1 -> 102.5 -> 102.
    assert np.all(D.brighten_shift_hsv(flat(128), 5, None) == 255)
    assert np.all(D.darken_shift_hsv(flat(128), 1, None) == 102)


def test_gamma_levels() -> None:
    # (100 / 255) ** 0.8 * 255 = 120.59; ** 3.2 * 255 = 12.75; 8-bit HSV gamma on grey acts on V alone.
    assert np.all(D.brighten_gamma_rgb(flat(100), 1, None) == 120)
    assert np.all(D.darken_gamma_rgb(flat(100), 5, None) == 12)
    assert np.all(D.brighten_gamma_hsv(flat(100), 1, None) == int((100 / 255) ** 0.7 * 255))
    assert np.all(D.darken_gamma_hsv(flat(100), 5, None) == int((100 / 255) ** 3.5 * 255))


def test_saturation_weakened_to_zero() -> None:
    img = np.zeros((4, 4, 3), dtype=np.uint8)
    img[...] = (200, 100, 50)
    # HSV scale 0: every channel becomes V (the maximum).
    assert np.all(D.saturate_weaken_hsv(img, 5, None) == 200)
    # YCrCb scale 0: every channel becomes OpenCV's fixed-point Y = (200*4899 + 100*9617 + 50*1868 + 8192) >> 14.
    assert np.all(D.saturate_weaken_ycrcb(img, 5, None) == 124)


def test_opencv_fixed_point_conversions_round_trip_greys() -> None:
    greys = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    hsv = D._rgb_to_hsv_u8(greys)
    assert np.all(hsv[..., :2] == 0) and np.array_equal(hsv[0, :, 2], np.arange(256))
    assert np.array_equal(D._hsv_u8_to_rgb(hsv), greys)
    ycc = D._rgb_to_ycc_u8(greys)
    assert np.all(ycc[..., 1:] == 128) and np.array_equal(D._ycc_u8_to_rgb(ycc), greys)
    # Pure red in OpenCV's 8-bit HSV: H 0, S 255, V 255; pure blue: H 120 (degrees / 2).
    assert D._rgb_to_hsv_u8(np.array([[[255, 0, 0], [0, 0, 255]]], dtype=np.uint8)).tolist() == [
        [[0, 255, 255], [120, 255, 255]]
    ]


def test_oversharpen_uses_the_5_tap_binomial_kernel() -> None:
    img = flat(100, (9, 9)).copy()
    img[4, 4] = 200
    out = D.oversharpen(img, 1, None)
    # Blurred centre: 100 + 100 * 36 / 256 = 114.06 -> 114; output 3 * 200 - 2 * 114 = 372 -> 255.
    # Its 4-neighbour: 100 + 100 * 24 / 256 = 109.4 -> 109; output 3 * 100 - 2 * 109 = 82.
    assert out[4, 4, 0] == 255 and out[4, 5, 0] == 82 and out[3, 4, 0] == 82
    # Diagonal neighbour: 100 + 100 * 16 / 256 = 106.25 -> 106 -> 88; far away: unchanged.
    assert out[5, 5, 0] == 88 and out[0, 0, 0] == 100
    assert np.all(D.oversharpen(flat(77), 5, None) == 77)


def test_motion_blur_smears_towards_the_angle() -> None:
    class Fixed:
        def uniform(self, low: float, high: float) -> float:
            return 0.0

    img = np.zeros((11, 60, 3), dtype=np.uint8)
    img[5, 40] = 255
    out = D.blur_motion(img, 1, Fixed())  # type: ignore[arg-type]
    row = out[5, :, 0].astype(int)
    # Angle 0: tap i reads the pixel i to the right, so the dot spreads to its left (radius 5: 11 taps).
    assert row[41:].sum() == 0 and row[30] == 0
    assert row[29:41].sum() > 0 and row[35] > 0 and row[40] > row[35]


def test_zoom_geometry_is_scipys() -> None:
    x = np.random.default_rng(0).random((37, 53, 3)).astype(np.float32)
    for factor in (1.02, 1.1, 1.2):
        ch, cw = int(np.ceil(37 / factor)), int(np.ceil(53 / factor))
        top, left = (37 - ch) // 2, (53 - cw) // 2
        ref = ndimage.zoom(x[top : top + ch, left : left + cw], (factor, factor, 1), order=1)[:37, :53]
        assert np.allclose(D._clipped_zoom(x, factor), ref, atol=1e-5)
    assert np.allclose(D._clipped_zoom(x, 1.0), x)


def test_multiotsu_matches_skimage(photo: np.ndarray) -> None:
    for c in range(3):
        channel = photo[..., c].astype(np.float32)
        for classes in (3, 5, 8):
            assert np.array_equal(D._multiotsu(channel, classes), threshold_multiotsu(channel, classes, nbins=30))


def test_shuffle_leaves_the_border_band() -> None:
    img = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    out = D.blur_jitter(img, 3, np.random.default_rng(2))
    assert np.array_equal(out[:4], img[:4]) and np.array_equal(out[:, :4], img[:, :4])
    assert not np.array_equal(out[4:-2, 4:-2], img[4:-2, 4:-2])


def test_pixelate_box_then_nearest() -> None:
    img = np.zeros((4, 4, 3), dtype=np.uint8)
    img[:2, :2] = 100
    img[0, 0] = 140
    out = D.pixelate(img, 1, None)  # scale 0.5: 2 x 2 box means, blown back up
    assert np.all(out[:2, :2] == 110) and np.all(out[2:, 2:] == 0)


def test_pairs_table() -> None:
    assert len(PAIRS) == 78
    assert ("oversharpen", "brighten") in PAIRS and ("brighten", "oversharpen") not in PAIRS
    assert all(a != b and b in FUNCTIONS for a, b in PAIRS)
    assert set(PAIRABLE) == set(FUNCTIONS)
    assert PAIRABLE["oversharpen"] == ("brighten",)


def test_pick_pair_draws_allowed_pairs_with_severity_1_to_3() -> None:
    seen = set()
    rng = np.random.default_rng(4)
    for _ in range(3000):
        (c1, f1, s1), (c2, f2, s2) = pick_pair(rng)
        assert (c1, c2) in PAIRS
        assert f1 in FUNCTIONS[c1] and f2 in FUNCTIONS[c2]
        assert 1 <= s1 <= 3 and 1 <= s2 <= 3
        seen.add((c1, c2))
    assert len(seen) == 78
    assert pick_pair(9) == pick_pair(9)


@pytest.mark.parametrize("shape", [(37, 53, 3), (5, 9, 3), (128, 96, 1)])
def test_the_numpy_filters_are_scipys_bit_for_bit(shape: tuple[int, int, int]) -> None:
    """The distortions need no scipy at run time; its filters are the reference (scipy is in the test extra)."""
    from scipy import ndimage

    from iqa_cli.evaluation.distortions import _box3, _gauss

    x = np.random.default_rng(sum(shape)).random(shape)
    for sigma in (0.5, 1.0, 2.3, 4.0):
        assert np.array_equal(_gauss(x, sigma), ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0), mode="nearest"))
    # The box mean's last bits depend on scipy's summation order, which has changed between releases.
    np.testing.assert_allclose(_box3(x), ndimage.uniform_filter(x, size=(3, 3, 1), mode="mirror"), rtol=0, atol=1e-15)
