"""How often DepictQA's answer changes between iqa's pixels and the authors' loader, on files where they differ.

Builds the tiny release (iqa_cli/testing/tiny_depictqa.py), writes the files of iqa_cli/testing/pixel_cases.py
(EXIF-rotated JPEGs, RGBA / LA / palette PNGs with transparency, a CMYK JPEG, 16-bit grey PNGs, a plain JPEG),
loads each through the audit's loader with the engine's decode plan in both pixel modes ("iqa" and "authors"),
and asks the distortion question of both. Prints, per kind, how many files changed pixels, answer and the
confidence, and the largest difference in the first answer token's probability.

The tiny release has random weights: its answers are noise and its probabilities nearly uniform, so the figures
say that the switch takes effect and how often the input differs, not how much the real model's answers move.

Run: python benchmarks/pixels_effect.py [--work DIR] [--max-new-tokens N]. The numbers go into
docs/depictqa-engine.md ("Where iqa differs").
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import tempfile
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from iqa_cli.audit.load import load_image
from iqa_cli.engines.base import AssessRequest, EngineOptions, Prepared
from iqa_cli.engines.depictqa import questions
from iqa_cli.engines.depictqa.engine import Ask, DepictQAEngine
from iqa_cli.engines.depictqa.prompts import ImageSlot, task_type
from iqa_cli.images import LoadedImage
from iqa_cli.testing import pixel_cases, tiny_depictqa

ROOT = Path(__file__).resolve().parent.parent


def _commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _prepared(engine: DepictQAEngine, paths: list[Path]) -> tuple[list[Prepared], list[LoadedImage]]:
    """The files through the audit's loader and the engine's preparer, as a run prepares them."""
    preparer = engine.preparer()
    items, loaded = [], []
    for key, path in enumerate(paths):
        image = load_image(str(path), engine.decode_plan)
        assert isinstance(image, LoadedImage), image
        items.append(Prepared(key, preparer(image), image.pixels.shape[1], image.pixels.shape[0]))
        loaded.append(image)
    return items, loaded


def _first_token_probs(engine: DepictQAEngine, items: list[Prepared]) -> list[float]:
    """p of the first generated token of the distortion question's answer, per image."""
    question = questions.default_question(questions.DISTORTION_IDENTIFICATION, reference=False)
    task = task_type(compare=False, reference=False)
    asks = [Ask(task, question, {ImageSlot.A: e}) for e in engine._encode([i.payload for i in items])]
    return [g.probs[0] for g in engine._ask(asks, 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="folder for the tiny release and the files (default: a temp one)")
    parser.add_argument("--max-new-tokens", type=int, default=16, help="answer length cap (default 16)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        tiny_depictqa.build_tiny_models(work / "models", variant="dq495k")
        cases = pixel_cases.write_pixel_cases(work / "files")
        paths = [work / "files" / name for name in cases]
        options = EngineOptions(model_dir=str(work / "models"), device="cpu", dtype="float32",
                                max_new_tokens=args.max_new_tokens)  # fmt: skip
        ours = DepictQAEngine.create(options)
        theirs = DepictQAEngine.create(replace(options, pixels="authors"))
        runs = {}
        for name, engine in (("iqa", ours), ("authors", theirs)):
            items, loaded = _prepared(engine, paths)
            runs[name] = (loaded, engine.assess(items, AssessRequest()), _first_token_probs(engine, items))

    rows: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    (loaded_a, results_a, first_a), (loaded_b, results_b, first_b) = runs["iqa"], runs["authors"]
    noted = 0
    for i, kind in enumerate(cases.values()):
        a, b = loaded_a[i].pixels, loaded_b[i].pixels
        differ = a.shape != b.shape or not np.array_equal(a, b)
        noted += differ and any(n.startswith("pixels:") for n in loaded_a[i].facts.notes)
        row = rows[kind]
        row["files"] += 1
        row["pixels"] += differ
        row["answer"] += results_a[i].answer != results_b[i].answer
        row["confidence"] = max(row["confidence"], abs(results_a[i].confidence - results_b[i].confidence))
        row["first"] = max(row["first"], abs(first_a[i] - first_b[i]))

    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"commit {_commit()}; {machine}; Python {platform.python_version()}; tiny release (random weights), "
          f"float32 CPU, max_new_tokens {args.max_new_tokens}, distortion question")  # fmt: skip
    print()
    print("| kind | files | pixels differ | answer changed | max abs diff confidence | max abs diff p(first token) |")
    print("|---|---|---|---|---|---|")
    for kind in pixel_cases.KINDS:
        r = rows[kind]
        print(f"| {kind} | {r['files']:.0f} | {r['pixels']:.0f} | {r['answer']:.0f} | {r['confidence']:.2e} "
              f"| {r['first']:.2e} |")  # fmt: skip
    total = {key: sum(r[key] for r in rows.values()) for key in ("files", "pixels", "answer")}
    print()
    print(f"pixels differ on {total['pixels']:.0f} of {total['files']:.0f} files (all noted: "
          f"{'yes' if noted == total['pixels'] else 'NO'}); answer changed on {total['answer']:.0f}; "
          f"max abs diff confidence {max(r['confidence'] for r in rows.values()):.2e}, "
          f"p(first token) {max(r['first'] for r in rows.values()):.2e}")  # fmt: skip


if __name__ == "__main__":
    main()
