"""The perceptual hash: stable under resizing, recompression and brightness; far apart for different photos."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

# Here, not in conftest.py: a skip raised while pytest loads a conftest named on its command line (or in
# testpaths) aborts the whole run instead of skipping these tests.
pytest.importorskip("iqa_dupes", reason="the iqa-dupes plugin is not installed: pip install -e plugins/iqa-dupes")

from dupestools import EDITS, PHOTOS, photo, pixels

from iqa_dupes.check import DEFAULT_THRESHOLD, hamming, perceptual_hash


@pytest.mark.parametrize("name", ["astronaut", "coffee", "rocket"])
def test_hash_survives_edits(name: str, edit: str) -> None:
    original = photo(name)
    before, after = perceptual_hash(pixels(original)), perceptual_hash(pixels(EDITS[edit](original)))
    assert before is not None and after is not None
    assert hamming(before, after) <= DEFAULT_THRESHOLD - 2, f"{name}, {edit}: leave a margin below the threshold"


def test_different_photos_are_far_apart() -> None:
    hashes = {name: perceptual_hash(pixels(photo(name))) for name in PHOTOS}
    closest = min(hamming(hashes[a], hashes[b]) for a, b in itertools.combinations(PHOTOS, 2))  # type: ignore[arg-type]
    assert closest >= 3 * DEFAULT_THRESHOLD


def test_hash_is_64_bits_about_half_set() -> None:
    value = perceptual_hash(pixels(photo()))
    assert value is not None and 0 <= value < 1 << 64
    assert 24 <= value.bit_count() <= 40  # bits are "above the median", so about half are set


@pytest.mark.parametrize("fill", [0, 128, 255])
def test_flat_images_are_not_hashed(fill: int) -> None:
    assert perceptual_hash(np.full((40, 60, 3), fill, dtype=np.uint8)) is None


def test_tiny_images_hash() -> None:
    rng = np.random.default_rng(0)
    assert perceptual_hash(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)) is not None
