"""The check itself: the hash index against brute force, review's findings in order, pickling to workers."""

from __future__ import annotations

import pickle
import random

import numpy as np
import pytest

# Here, not in conftest.py: a skip raised while pytest loads a conftest named on its command line (or in
# testpaths) aborts the whole run instead of skipping these tests.
pytest.importorskip("iqa_dupes", reason="the iqa-dupes plugin is not installed: pip install -e plugins/iqa-dupes")

from dupestools import EDITS, photo, pixels
from iqa_cli.checks import Finding
from iqa_cli.images import FileFacts, LoadedImage

from iqa_dupes.check import HashIndex, NearDuplicateCheck, hamming


def loaded(image_pixels: np.ndarray, path: str = "x.png", content_hash: str | None = None) -> LoadedImage:
    """What the loader hands a check: pixels and the file's facts."""
    return LoadedImage(FileFacts(path=path, content_hash=content_hash), image_pixels)


@pytest.mark.parametrize("radius", [0, 3, 6, 9])
def test_index_finds_what_brute_force_finds(radius: int) -> None:
    rng = random.Random(radius)
    index = HashIndex(radius)
    for i in range(3000):
        value = rng.getrandbits(64)
        if i % 3 == 0 and len(index):  # a planted near copy of an earlier hash, up to radius + 2 bits away
            value = index.hashes[rng.randrange(len(index))]
            for bit in rng.sample(range(64), rng.randint(0, radius + 2)):
                value ^= 1 << bit
        distances = [(hamming(value, h), entry) for entry, h in enumerate(index.hashes)]
        expected = min((d, e) for d, e in distances if d <= radius) if any(d <= radius for d, _ in distances) else None
        found = index.search(value, 0)
        assert (None if found is None else (found[1], found[0])) == expected
        index.add(value, 0, f"p{i}")


def test_review_flags_the_copy_not_the_original(edit: str) -> None:
    check = NearDuplicateCheck()
    original = photo("astronaut")
    other = photo("coffee")
    assert check.review("a.png", check.measure(loaded(pixels(original), "a.png", "aa" * 16))) == []
    assert check.review("b.png", check.measure(loaded(pixels(other), "b.png", "bb" * 16))) == []
    findings = check.review("a-copy.jpg", check.measure(loaded(pixels(EDITS[edit](original)), "a-copy.jpg", "cc" * 16)))
    assert len(findings) == 1
    assert findings[0].check == "near-duplicate" and findings[0].code == "near_copy"
    assert str(findings[0]).startswith("near-duplicate/near_copy: looks like a.png (hash distance ")


def test_byte_identical_files_are_left_to_duplicate_of() -> None:
    check = NearDuplicateCheck()
    image = pixels(photo())
    assert check.review("a.png", check.measure(loaded(image, "a.png", "ab" * 16))) == []
    assert check.review("a-again.png", check.measure(loaded(image, "a-again.png", "ab" * 16))) == []
    # Same pixels, different bytes (say, metadata stripped): a near copy.
    assert check.review("a-stripped.png", check.measure(loaded(image, "a-stripped.png", "cd" * 16))) == [
        Finding("near-duplicate", "near_copy", "looks like a.png (hash distance 0)")
    ]


def test_copies_of_an_edit_find_the_closest_earlier_image() -> None:
    check = NearDuplicateCheck(threshold=63)
    for path, value in (("a", 0), ("b", 0b111), ("c", 0b1111)):
        check.review(path, (value, 0))
    assert check.review("d", (0b1111, 1)) == [Finding("near-duplicate", "near_copy", "looks like c (hash distance 0)")]


def test_flat_images_are_skipped() -> None:
    check = NearDuplicateCheck()
    blank = pixels(photo()) * 0
    assert check.measure(loaded(blank)) is None
    assert check.review("black1.png", None) == [] and check.review("black2.png", None) == []


def test_pickled_check_leaves_the_index_behind() -> None:
    check = NearDuplicateCheck(threshold=4)
    for i in range(1000):
        check.review(f"p{i}", (random.Random(i).getrandbits(64), 0))
    copy = pickle.loads(pickle.dumps(check))
    assert copy.threshold == 4 and len(copy._index) == 0
    assert len(pickle.dumps(check)) < 200


@pytest.mark.parametrize("threshold", [-1, 64])
def test_threshold_out_of_range(threshold: int) -> None:
    with pytest.raises(ValueError, match="threshold"):
        NearDuplicateCheck(threshold)
