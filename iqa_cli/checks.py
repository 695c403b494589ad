"""Per-image checks: extra findings beside the engine's answer (near-duplicates, screenshots, ...), from plugins."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from iqa_cli.images import LoadedImage


@dataclass(frozen=True)
class Finding:
    """Something a check noticed about one image: a short code and a sentence for people."""

    check: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.check}/{self.code}: {self.message}"


class Check(ABC):
    """A check runs in two steps, like an engine.

    `measure` runs in the decode workers on every loaded image and returns a small picklable payload
    (a hash, a few numbers); the check object itself is pickled to the workers, so keep its state small.
    `review` runs in the main process, once per image and in report order, and may keep state across
    images (a near-duplicate check remembers the hashes it has seen). Report rows carry the findings.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""

    @abstractmethod
    def measure(self, image: LoadedImage) -> Any:
        """The per-image payload (in a worker process)."""

    @abstractmethod
    def review(self, path: str, payload: Any) -> list[Finding]:
        """The findings for one image (in the main process, in order)."""
