"""Near-duplicate photos: a 64-bit DCT perceptual hash per image, compared within a run by multi-index hashing."""

from __future__ import annotations

from array import array
from itertools import combinations
from typing import Any

import numpy as np
from iqa_cli.checks import Check, Finding
from iqa_cli.images import LoadedImage
from PIL import Image

HASH_BITS = 64
BANDS = 4
BAND_BITS = HASH_BITS // BANDS
DEFAULT_THRESHOLD = 6  # of 64 bits: resized / recompressed copies measure 0-4, unrelated photos ~32

# Below this spread of the hashed frequencies an image is flat (a blank frame, a solid fill): its bits
# are rounding noise, and every flat image would "look like" every other.
_FLAT_SPREAD = 1.0

Payload = tuple[int, int] | None  # (perceptual hash, first 64 bits of the file's content hash), None when flat


def perceptual_hash(pixels: np.ndarray) -> int | None:
    """The 64-bit DCT hash (pHash) of RGB uint8 pixels (H x W x 3), or None for a flat image.

    The pixels are reduced to 32 x 32 grey by area averaging, so the decode size hardly matters; of
    their 2-D DCT, the 8 x 8 lowest frequencies after the DC row and column (as in the original
    pHash) are compared with their median: one bit each, row-major, the first in the highest bit.
    Low frequencies carry the picture's layout, which survives resizing and JPEG recompression; a
    uniform brightness change moves only the DC term, which is left out.
    """
    from scipy.fft import dctn  # here, not at the top: only the decode workers need it, not every run's start

    grey = Image.fromarray(pixels).convert("L").resize((32, 32), Image.Resampling.BOX)
    low = dctn(np.asarray(grey, dtype=np.float64), type=2, norm="ortho")[1:9, 1:9]
    if float(np.ptp(low)) < _FLAT_SPREAD:
        return None
    bits = np.packbits((low > np.median(low)).ravel())
    return int.from_bytes(bits.tobytes(), "big")


def hamming(a: int, b: int) -> int:
    """How many of the 64 bits differ."""
    return (a ^ b).bit_count()


class HashIndex:
    """The hashes seen so far, searchable by Hamming distance up to `radius`.

    Multi-index hashing: two hashes within distance r differ in at most r // 4 bits in at least one of
    their four 16-bit bands (pigeonhole), so a search visits, in each band, the entries whose band
    value is within r // 4 bits of its own (17 values per band for r = 4..7) and measures only those.
    Each band is a table of 65,536 chain heads plus one "next" link per entry, all flat arrays: the
    tables are a fixed 1 MiB, and each entry costs 32 bytes (hash, content digest, four links) plus
    its path: 14 MB measured for 100,000 images with 40-character paths.
    """

    def __init__(self, radius: int) -> None:
        self.radius = radius
        self.hashes = array("Q")
        self.digests = array("Q")
        self.paths: list[str] = []
        self._heads = [array("i", [-1]) * (1 << BAND_BITS) for _ in range(BANDS)]
        self._next = [array("i") for _ in range(BANDS)]
        flips = radius // BANDS
        self._probes = [
            sum(1 << bit for bit in bits)
            for count in range(flips + 1)
            for bits in combinations(range(BAND_BITS), count)
        ]

    def __len__(self) -> int:
        return len(self.paths)

    def add(self, value: int, digest: int, path: str) -> None:
        """Remember one image."""
        entry = len(self.paths)
        self.hashes.append(value)
        self.digests.append(digest)
        self.paths.append(path)
        for band, value_of_band in enumerate(_bands(value)):
            self._next[band].append(self._heads[band][value_of_band])
            self._heads[band][value_of_band] = entry

    def search(self, value: int, digest: int) -> tuple[int, int] | None:
        """The closest earlier entry within `radius` as (entry, distance), or None.

        Ties go to the entry with the same content digest (the same file's bytes), then to the earliest.
        """
        best: tuple[int, bool, int] | None = None
        for band, value_of_band in enumerate(_bands(value)):
            heads, links = self._heads[band], self._next[band]
            for probe in self._probes:
                entry = heads[value_of_band ^ probe]
                while entry >= 0:
                    distance = hamming(value, self.hashes[entry])
                    if distance <= self.radius:
                        key = (distance, self.digests[entry] != digest, entry)
                        if best is None or key < best:
                            best = key
                    entry = links[entry]
        return None if best is None else (best[2], best[0])


def _bands(value: int) -> list[int]:
    mask = (1 << BAND_BITS) - 1
    return [(value >> (band * BAND_BITS)) & mask for band in range(BANDS)]


def _digest(content_hash: str | None) -> int:
    """64 bits of iqa's content hash (hex), to tell byte-identical files apart; 0 when unknown."""
    try:
        return int((content_hash or "")[:16], 16)
    except ValueError:
        return 0


class NearDuplicateCheck(Check):
    """Flags an image that looks like one earlier in the run: resized, recompressed or lightly edited copies.

    `measure` (in the decode workers) hashes the decoded pixels; `review` (in the main process, in report
    order) searches the hashes seen so far and remembers this one. The first image of a group is never
    flagged; each later one names the closest earlier image (ties: the earliest). Byte-identical files
    are left to iqa's own `duplicate_of` column, and flat images (blank frames) are not compared.

    Memory grows with the images reviewed, 32 bytes plus the path per image (see HashIndex); the hashes
    are not kept between runs, so a re-run that replays unchanged files from the results store compares
    only the files it assesses again.
    """

    name = "near-duplicate"
    description = "images that look like an earlier one (resized, recompressed, lightly edited), by perceptual hash"

    def __init__(self, threshold: int = DEFAULT_THRESHOLD) -> None:
        if not 0 <= threshold < HASH_BITS:
            raise ValueError(f"threshold must be 0-{HASH_BITS - 1} bits, not {threshold}")
        self.threshold = threshold
        self._index = HashIndex(threshold)

    def __getstate__(self) -> dict[str, Any]:
        # The check is pickled to every decode worker, which only hashes: leave the (growing) index behind.
        return {"threshold": self.threshold}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["threshold"])

    def measure(self, image: LoadedImage) -> Payload:
        value = perceptual_hash(image.pixels)
        return None if value is None else (value, _digest(image.facts.content_hash))

    def review(self, path: str, payload: Payload) -> list[Finding]:
        if payload is None:
            return []
        value, digest = payload
        match = self._index.search(value, digest)
        if match is None:
            self._index.add(value, digest, path)
            return []
        entry, distance = match
        if digest and self._index.digests[entry] == digest:
            return []  # the same bytes: iqa's duplicate_of column says so, and the first copy is indexed
        self._index.add(value, digest, path)  # indexed too, so a copy of this edit finds it
        return [Finding(self.name, "near_copy", f"looks like {self._index.paths[entry]} (hash distance {distance})")]
