"""The engine interface: prepare one image in a decode worker, assess a batch of prepared images."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from iqa_cli.images import DecodePlan, LoadedImage

# The instant-rating scale, best first, and the score each word stands for (centre of its fifth of [0, 1]).
RATING_WORDS = ("excellent", "good", "fair", "poor", "bad")


def rating_for_score(score: float) -> str:
    """The rating word for a 0-1 quality score (1 best): five equal bands."""
    index = min(4, max(0, int((1.0 - score) * 5)))
    return RATING_WORDS[index]


@dataclass(frozen=True)
class AssessRequest:
    """What the audit asks of every image."""

    detail: bool = False


@dataclass
class Prepared:
    """An image after the engine's per-image preparation, ready for a batch.

    `payload` is whatever the engine's preparer returned (measurements, a pixel tensor, ...);
    `width`/`height` are the decoded size.
    """

    key: int
    payload: Any
    width: int
    height: int


@dataclass
class Assessment:
    """One image's answers, in DepictQA's shape.

    - `answer`: the brief answer to the distortion question ("Blur", "Blur and noise", "None").
    - `distortions`: DQ-495K category names, lower case, most severe first; `severities` 1-5 alongside.
    - `rating` / `score`: the instant rating word and a 0-1 quality score (1 best).
    - `confidence`: 0-1; how sure the engine is of `answer` (see the engine's docs for its meaning).
    - `detail`: the explanatory paragraph when the request asked for detail (the answer to
      `detail_question`), else None; `detail_confidence` the engine's confidence in it, where it has one.
    """

    task: str
    question: str
    answer: str
    distortions: list[str] = field(default_factory=list)
    severities: list[int] = field(default_factory=list)
    rating: str | None = None
    score: float | None = None
    confidence: float = 0.0
    detail: str | None = None
    detail_question: str | None = None
    detail_confidence: float | None = None


@dataclass
class Comparison:
    """One answer to "which of A and B has better quality?" (optionally given a reference).

    `winner` is "A" or "B"; `answer` is the engine's own words ("Image A"); `confidence` 0-1 is the
    engine's certainty in that winner; `detail` the reasoning when asked for.
    """

    winner: str
    answer: str
    confidence: float
    question: str = ""
    detail: str | None = None
    detail_confidence: float | None = None


Preparer = Callable[[LoadedImage], Any]


@dataclass(frozen=True)
class EngineOptions:
    """Options the command line passes to whichever engine is chosen; engines ignore what they do not use."""

    model_dir: str | None = None
    device: str | None = None
    dtype: str | None = None
    max_new_tokens: int | None = None
    # JPEG draft decoding for engines that decode exactly by default: faster, pixels ~48 dB from exact.
    draft_decode: bool = False
    # Whose conversion to RGB (images.PIXEL_MODES): iqa's, or "authors" for DepictQA's authors' own loader.
    pixels: str = "iqa"
    # The share of clean photos expected in the collection (0-1): engines with a calibrated confidence
    # re-weight it for that mix (the signal engine); None keeps their training mix.
    clean_share: float | None = None


class Engine(ABC):
    """An assessment engine.

    The pipeline calls `preparer()` once and runs what it returns in the decode workers (it must be
    picklable: a module-level function or a small object), so per-image CPU work happens in parallel
    ahead of the engine. `assess` then runs in the main process on batches and returns one Assessment
    per prepared image, in order. A ValueError for one image should be avoided: engines judge what they
    are given.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    description: ClassVar[str] = ""
    # Wants a GPU where there is one: `iqa audit --ray` gives each of its actors one.
    accelerated: ClassVar[bool] = False

    @classmethod
    def availability(cls, options: EngineOptions) -> str | None:
        """None when the engine can run here with `options`, else what is missing and how to get it."""
        return None

    @classmethod
    @abstractmethod
    def create(cls, options: EngineOptions) -> Engine:
        """Build the engine (load models) from the command line's options."""

    @property
    @abstractmethod
    def decode_plan(self) -> DecodePlan:
        """How large the loader should decode images for this engine."""

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """The settings that change answers (written to every report row)."""

    @abstractmethod
    def preparer(self) -> Preparer:
        """A picklable callable turning a LoadedImage into this engine's per-image payload."""

    @property
    def preferred_batch_size(self) -> int:
        """Images per `assess` call when the user does not say: what keeps this engine busy."""
        return 16

    def compare_preparer(self) -> Preparer:
        """The preparer for images that will be compared (`compare`); by default the audit's."""
        return self.preparer()

    @abstractmethod
    def assess(self, batch: Sequence[Prepared], request: AssessRequest) -> list[Assessment]:
        """Assess a batch; one Assessment per item, in order."""

    def compare(
        self,
        pairs: Sequence[tuple[Prepared, Prepared, Prepared | None]],
        request: AssessRequest,
    ) -> list[Comparison]:
        """Compare each (A, B, reference-or-None) triple; one Comparison per triple, in order."""
        raise NotImplementedError(f"the {self.name} engine cannot compare images")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release models and devices."""
