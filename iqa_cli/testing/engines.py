"""A tiny engine for pipeline tests: judges images by mean brightness, with hooks to misbehave on cue."""

from __future__ import annotations

import fnmatch
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from iqa_cli.checks import Check, Finding
from iqa_cli.engines.base import (
    Assessment,
    AssessRequest,
    Engine,
    EngineOptions,
    Prepared,
    Preparer,
    rating_for_score,
)
from iqa_cli.engines.signal.engine import SignalEngine
from iqa_cli.images import DecodePlan, LoadedImage


def mean_brightness(image: LoadedImage) -> dict[str, Any]:
    """Preparer: runs in the workers. A file named crash-*.png kills its worker, like a decoder segfault; one
    named stall-*.png never returns, like a decoder caught in a loop (run it with workers: nothing ends it
    in-process)."""
    if os.path.basename(image.facts.path).startswith("crash-"):
        os._exit(13)
    if os.path.basename(image.facts.path).startswith("stall-"):
        threading.Event().wait()
    return {
        "mean": float(np.asarray(image.pixels, dtype=np.float64).mean()),
        "name": os.path.basename(image.facts.path),
    }


class BrightnessEngine(Engine):
    name = "brightness"
    version = "1"

    def __init__(self, fail_on_name: str | None = None, interrupt_after: int | None = None, delay: float = 0.0) -> None:
        self.fail_on_name = fail_on_name
        self.interrupt_after = interrupt_after
        self.delay = delay  # seconds per batch, to give a kill test time to strike mid-run
        self.batches: list[int] = []

    @classmethod
    def create(cls, options: EngineOptions) -> BrightnessEngine:
        return cls()

    @property
    def decode_plan(self) -> DecodePlan:
        return DecodePlan(long_side=64)

    def settings(self) -> dict[str, Any]:
        return {"long_side": 64}

    def preparer(self):
        return mean_brightness

    def assess(self, batch: Sequence[Prepared], request: AssessRequest) -> list[Assessment]:
        if self.interrupt_after is not None and len(self.batches) >= self.interrupt_after:
            raise KeyboardInterrupt
        self.batches.append(len(batch))
        time.sleep(self.delay)
        out = []
        for item in batch:
            if item.payload["name"] == self.fail_on_name:
                raise RuntimeError("engine exploded")
            mean = item.payload["mean"]
            dark = mean < 60
            out.append(
                Assessment(
                    task="distortion_identification",
                    question="What distortions are present?",
                    answer="Insufficient brightness" if dark else "None",
                    distortions=["insufficient brightness"] if dark else [],
                    severities=[4] if dark else [],
                    rating="poor" if dark else "good",
                    score=mean / 255,
                    confidence=0.9 if mean > 100 or dark else 0.3,
                    detail=f"mean {mean:.1f}" if request.detail else None,
                )
            )
        return out


class ControlledEngine(BrightnessEngine):
    """The brightness engine, misbehaving as files in its control folder (`--model DIR`) say, across processes
    (for the Ray tests, whose engine runs in actors):

    - ``die-once``: the first assess call that finds it renames it to ``died`` and kills its own process;
    - ``gate`` (holding a file-name pattern): an assess call with an image whose name matches it writes
      ``waiting``, then waits until the file ``open`` exists.

    Every call that returns appends its images' names to ``assessed``, one per line: a test can tell which
    images an actor got through before it was held (Ray may run a later block's call first)."""

    name = "controlled"

    def __init__(self, control: str) -> None:
        super().__init__()
        self.control = control

    @classmethod
    def create(cls, options: EngineOptions) -> ControlledEngine:
        if options.model_dir is None:
            raise ValueError("the controlled engine needs its control folder as model_dir")
        return cls(options.model_dir)

    def assess(self, batch: Sequence[Prepared], request: AssessRequest) -> list[Assessment]:
        try:
            os.rename(os.path.join(self.control, "die-once"), os.path.join(self.control, "died"))
        except FileNotFoundError:
            pass
        else:
            os._exit(14)
        gate = Path(self.control, "gate")
        held = gate.read_text().strip() if gate.exists() else None
        if held and any(fnmatch.fnmatch(item.payload["name"], held) for item in batch):
            Path(self.control, "waiting").touch()
            while not os.path.exists(os.path.join(self.control, "open")):
                time.sleep(0.05)
        results = super().assess(batch, request)
        with open(os.path.join(self.control, "assessed"), "a", encoding="utf-8") as log:
            log.writelines(f"{item.payload['name']}\n" for item in batch)
        return results


class GpuSignalEngine(SignalEngine):
    """The signal engine claiming a GPU, as DepictQA does: on a Ray that declares a GPU it does not have, the Ray
    tests run the GPU engines' pipeline (load tasks apart from one actor per GPU) with the signal engine's rows."""

    accelerated = True


class SameSizeCheck(Check):
    """A stateful check: notes images whose size was seen before; explodes on a file named boom*."""

    name = "same-size"

    def __init__(self) -> None:
        self.seen: dict[tuple[int, int], str] = {}

    def measure(self, image: LoadedImage) -> tuple[int, int]:
        if os.path.basename(image.facts.path).startswith("boom"):
            raise ValueError("cannot measure")
        return image.pixels.shape[:2]

    def review(self, path: str, payload: tuple[int, int]) -> list[Finding]:
        first = self.seen.setdefault(payload, path)
        return [] if first == path else [Finding(self.name, "repeat", f"same size as {first}")]


def file_name(image: LoadedImage) -> str:
    """Preparer of ScriptedEngine: just the file's name."""
    return os.path.basename(image.facts.path)


class ScriptedEngine(Engine):
    """Answers from a script: file name -> (DQ-495K names, confidence, score); other files get `default`
    (nothing named, confidence 0.5, score 0.8 unless given)."""

    name = "scripted"
    version = "1"

    def __init__(
        self,
        script: dict[str, tuple[list[str], float, float]],
        default: tuple[list[str], float, float] = ([], 0.5, 0.8),
    ) -> None:
        self.script = script
        self.default = default

    @classmethod
    def create(cls, options: EngineOptions) -> ScriptedEngine:
        return cls({})

    @property
    def decode_plan(self) -> DecodePlan:
        return DecodePlan(long_side=32)

    def settings(self) -> dict[str, Any]:
        return {}

    def preparer(self):
        return file_name

    def assess(self, batch: Sequence[Prepared], request: AssessRequest) -> list[Assessment]:
        out = []
        for item in batch:
            names, confidence, score = self.script.get(item.payload, self.default)
            out.append(
                Assessment(
                    task="distortion_identification",
                    question="What distortions are present?",
                    answer=" and ".join(names).capitalize() or "None",
                    distortions=list(names),
                    severities=[3] * len(names),
                    rating=rating_for_score(score),
                    score=score,
                    confidence=confidence,
                )
            )
        return out


class MarkingPreparer:
    """Wraps an engine's preparer: after preparing an image in a worker, leaves a file named after it in
    `folder`, so a test can see which images are decoded and prepared while the engine is busy."""

    def __init__(self, inner: Preparer, folder: str) -> None:
        self.inner, self.folder = inner, folder

    def __call__(self, image: LoadedImage) -> Any:
        payload = self.inner(image)
        open(os.path.join(self.folder, os.path.basename(image.facts.path)), "w").close()
        return payload


class PipelineProbe(Engine):
    """A stand-in for a GPU: another engine's decode plan and preparer (run in the workers as usual), and an
    `assess` that holds each batch until `hold(batch_index)` returns. It answers "None" for every image."""

    name = "probe"
    version = "1"

    def __init__(self, plan: DecodePlan, preparer: Preparer, hold: Any, batch_size: int) -> None:
        self._plan, self._preparer, self._hold, self._batch_size = plan, preparer, hold, batch_size
        self.batches: list[int] = []  # the size of each batch assessed

    @classmethod
    def create(cls, options: EngineOptions) -> PipelineProbe:
        raise NotImplementedError("built by the tests")

    @property
    def decode_plan(self) -> DecodePlan:
        return self._plan

    @property
    def preferred_batch_size(self) -> int:
        return self._batch_size

    def settings(self) -> dict[str, Any]:
        return {}

    def preparer(self) -> Preparer:
        return self._preparer

    def assess(self, batch: Sequence[Prepared], request: AssessRequest) -> list[Assessment]:
        self._hold(len(self.batches))
        self.batches.append(len(batch))
        return [
            Assessment(task="distortion_identification", question="", answer="None", rating="good", score=0.8)
            for _ in batch
        ]
