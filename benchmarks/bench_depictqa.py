"""DepictQA-Wild throughput: iqa's engine and audit against the authors' style and plain generate(), one run.

Random weights with the paper model's exact shapes (Vicuna-7B LLaMA, CLIP ViT-L/14, Linear projector, merged
r=16 LoRA; built on the device as `gpu_depictqa_smoke.py` does, nothing downloaded), fp16, 3:2 photos
(224x336 after preprocessing: 384 image tokens) plus the real prompt text (~80 tokens). Generation length is
forced: 10 tokens for a brief answer, 200 for a detailed one. Measured, in images per second (`--parts`
chooses among them, in this order):

- engine: iqa's engine, model only: prepared pixels in memory -> token-budgeted continuous batching -> answers
  and confidences (`DepictQAEngine.assess`; detail = the reasoning question alone), the budget it chose and
  the peak memory;
- authors: batch 1, eager attention, `generate()` greedy with per-step scores, one image at a time;
- steps: milliseconds per prefill call and per decode step of the scheduler, and the host's share of a step;
- varied: answers of varied length (0.3x to 2x the detail length), so rows leave and join the batch: the
  continuous batcher against static batches of the same prompts;
- hf: plain `generate()`, SDPA, left-padded batches of 16 and 64;
- agreement: fp16 tokens of batched against one-at-a-time greedy decoding on random inputs;
- static / compiled: the static-KV-cache decoder, eager and with its step compiled (compiled: CUDA only);
- e2e: iqa's audit end to end: 12 MP JPEGs on disk -> decode workers -> engine -> Parquet report (`run_audit`),
  brief with exact and with draft JPEG decoding, brief + detail with draft, and beside them the decode-only
  rate of the same files with the same plan and worker count.

Prints a markdown table with the card's name and the torch / transformers versions; `--json` writes every
figure (after each measurement, so a run cut short keeps what it measured).

    python benchmarks/bench_depictqa.py --json bench.json     # CUDA: H100 / H200, a few minutes
    python benchmarks/bench_depictqa.py --tiny                # tiny shapes on the CPU, seconds (the test suite)
    bash benchmarks/gpu_check.sh OUT_DIR                      # this, split into guarded parts, + the smoke test

The tokenizer is the tiny fixture's SentencePiece model (its ids are valid in the 32000-word vocabulary; the
prompt text splits into about as many pieces as with LLaMA's). The detail confidence runs a random MiniLM of
all-MiniLM-L6-v2's shapes. With random weights the answers are noise; only the speed means anything.

`--machine-info PATH` and `--collect WORK` are gpu_check.sh's helpers: the machine's facts, and the parts'
outputs merged into one JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

# Heavy imports (torch, transformers, the model code) happen in `main`: the audit's decode workers are spawned
# processes that re-import this script as their main module, and must start in a fraction of a second.
_HERE = Path(__file__).resolve().parent


def _import_heavy() -> None:
    global torch, build, AssessRequest, Prepared, tiny_depictqa, questions, Ask, DepictQAEngine, pad_left
    global PromptTokenizer, pad_and_normalize, ImageSlot, task_type, ContinuousBatcher, cuda_token_budget
    import torch

    sys.path.insert(0, str(_HERE))
    from gpu_depictqa_smoke import build  # the random paper-shape model, built on the device

    from iqa_cli.engines.base import AssessRequest, Prepared
    from iqa_cli.engines.depictqa import questions
    from iqa_cli.engines.depictqa.engine import Ask, DepictQAEngine
    from iqa_cli.engines.depictqa.generate import pad_left
    from iqa_cli.engines.depictqa.preprocess import pad_and_normalize
    from iqa_cli.engines.depictqa.prompts import ImageSlot, task_type
    from iqa_cli.engines.depictqa.scheduler import ContinuousBatcher, cuda_token_budget
    from iqa_cli.engines.depictqa.tokenizer import PromptTokenizer
    from iqa_cli.testing import tiny_depictqa


# Image counts per measurement: enough for a steady rate, small enough for one GPU call well under 10 minutes.
# varied: rows of the varied-length run, more than fit at once, so that rows join as others finish.
FULL = dict(
    authors=(8, 2), hf16=(32, 16), hf64=(128, 64), engine=(512, 256), both=256, e2e=(512, 256), agree=16, steps=64,
    varied=384,
)  # fmt: skip
TINY = dict(
    authors=(3, 2), hf16=(16, 16), hf64=(32, 32), engine=(32, 16), both=16, e2e=(12, 8), agree=6, steps=8, varied=24
)
# Tokens of a warm-up generation: enough to run every kernel and the allocator once; a full 200 would only cost time.
WARM_TOKENS = 8
PARTS = ("engine", "authors", "steps", "profile", "varied", "hf", "agreement", "static", "compiled", "e2e")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Bench:
    """The model, engine and inputs shared by every measurement."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.tiny = args.tiny
        self.device = "cpu" if args.tiny else "cuda"
        self.dtype = torch.float32 if args.tiny else torch.float16
        self.work = work
        self.counts = TINY if args.tiny else FULL
        log(f"building the {'tiny' if self.tiny else 'paper-shape'} model on {self.device} ({self.dtype})")
        self.model = build(self.tiny, False, self.device, self.dtype)
        self.llm = self.model.llm
        self.budgets = record_budgets()
        self.jpeg_files: list[Path] = []
        self.set_attention("sdpa")
        layout = tiny_depictqa.build_tiny_models(work / "fixture")
        tokenizer = PromptTokenizer.from_folder(layout.llm)
        # Random 32000-word weights emit ids past the fixture's small vocabulary; they decode as <unk>.
        self.tokenizer = tokenizer if self.tiny else _FixtureVocabulary(tokenizer)
        minilm = layout.minilm if self.tiny else real_shape_minilm(layout.minilm, work / "minilm")
        self.engine = DepictQAEngine(
            self.model,
            self.tokenizer,
            variant="dq495k",
            device=self.device,
            dtype=str(self.dtype).removeprefix("torch."),
            max_new_tokens=args.detail_tokens,
            brief_max_new_tokens=args.brief_tokens,
            ignore_eos=True,  # forced lengths: random weights would otherwise stop anywhere
            minilm=minilm,
        )
        rng = np.random.default_rng(0)
        # 16 distinct 3:2 images, reused in turn: the content does not change the cost.
        self.pixels = [pad_and_normalize(rng.integers(0, 256, (224, 336, 3), dtype=np.uint8)) for _ in range(16)]

    # --------------------------------------------------------------------------------------------- helpers
    def set_attention(self, name: str) -> None:
        """transformers 5 picks the attention function per call from the config, so it can change in place."""
        if hasattr(self.llm, "set_attn_implementation"):
            try:
                self.llm.set_attn_implementation(name)
                return
            except Exception:
                pass
        self.llm.config._attn_implementation = name

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def timed(self, fn: Callable[[], Any]) -> float:
        self.sync()
        started = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - started

    def images(self, n: int) -> list[np.ndarray]:
        return [self.pixels[i % len(self.pixels)] for i in range(n)]

    def prompts(self, pixels: list[np.ndarray], question: str) -> list[torch.Tensor]:
        """Pixels -> the engine's exact prompt embeddings [T, 4096] (vision tower, projector, template)."""
        embeds = self.engine._encode(pixels)
        with torch.inference_mode():
            segments = self.engine._segments(task_type(compare=False, reference=False), question)
            return [
                self.model.embed_prompt([None if isinstance(s, ImageSlot) else s for s in segments], [e])
                for e in embeds
            ]

    def hf_generate(self, prompts: list[torch.Tensor], tokens: int, *, scores: bool) -> None:
        batch = pad_left(prompts)
        with torch.inference_mode():
            self.llm.generate(
                inputs_embeds=batch.inputs_embeds,
                attention_mask=batch.attention_mask,
                max_new_tokens=tokens,
                min_new_tokens=tokens,  # forced length
                do_sample=False,
                num_beams=1,
                output_scores=scores,
                return_dict_in_generate=scores,
                pad_token_id=self.tokenizer.eos_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )

    # ---------------------------------------------------------------------------------------- measurements
    def authors(self, tokens: int, n: int) -> float:
        """Batch 1, eager attention, greedy with per-step scores; vision + prompt + generate per image."""
        self.set_attention("eager")
        try:
            brief = questions.default_question(questions.DISTORTION_IDENTIFICATION, reference=False)

            def run(count: int, length: int) -> None:
                for pixels in self.images(count):
                    self.hf_generate(self.prompts([pixels], brief), length, scores=True)

            run(1, min(tokens, WARM_TOKENS))  # warm-up: kernels, allocator
            return n / self.timed(lambda: run(n, tokens))
        finally:
            self.set_attention("sdpa")

    def hf_batched(self, tokens: int, n: int, batch: int) -> float:
        brief = questions.default_question(questions.DISTORTION_IDENTIFICATION, reference=False)

        def run(count: int, length: int) -> None:
            images = self.images(count)
            for start in range(0, count, batch):
                self.hf_generate(self.prompts(images[start : start + batch], brief), length, scores=False)

        run(min(batch, 4), min(tokens, WARM_TOKENS))
        return n / self.timed(lambda: run(n, tokens))

    def engine_brief(self, n: int) -> float:
        items = [Prepared(i, p, 336, 224) for i, p in enumerate(self.images(n))]
        self.engine.assess(items[:4], AssessRequest())  # warm-up
        return n / self.timed(lambda: self.engine.assess(items, AssessRequest()))

    def engine_detail(self, n: int) -> float:
        """The reasoning question alone (200 tokens), with its MiniLM-weighted confidence."""
        items = self.images(n)
        request = AssessRequest(detail=True)

        def run(images: list[np.ndarray]) -> None:
            task = task_type(compare=False, reference=False)
            asks = [Ask(task, "", {ImageSlot.A: e}) for e in self.engine._encode(images)]
            self.engine._details(asks, questions.ASSESSMENT_REASONING, request, compare=False)

        run(items[:2])
        return n / self.timed(lambda: run(items))

    def engine_both(self, n: int) -> float:
        """`assess` with detail: the brief question (10 tokens) and the reasoning one (200), as `--detail` runs."""
        items = [Prepared(i, p, 336, 224) for i, p in enumerate(self.images(n))]
        self.engine.assess(items[:2], AssessRequest(detail=True))
        return n / self.timed(lambda: self.engine.assess(items, AssessRequest(detail=True)))

    def jpegs(self, n: int) -> list[Path]:
        """`n` JPEG files, 12 MP (1200x800 when tiny); made once for the largest `n` asked for, then reused."""
        if len(self.jpeg_files) < n:
            size = (800, 1200) if self.tiny else (3000, 4000)
            self.jpeg_files = sorted(jpeg_folder(self.work / "jpegs", n, size).glob("*.jpg"))
        return self.jpeg_files[:n]

    def end_to_end(self, n: int, *, detail: bool, draft: bool) -> dict[str, Any]:
        """JPEGs on disk through `run_audit` (decode workers, engine, Parquet writer): img/s, rows written, the
        audit's seconds per stage (its `engine` share is how busy the GPU was)."""
        from iqa_cli.audit.run import AuditSettings, run_audit
        from iqa_cli.report.writers import ParquetWriter

        files = self.jpegs(n)
        settings = AuditSettings(
            paths=[str(f) for f in files],
            detail=detail,
            batch_size=self.args.audit_batch,
            **({"workers": self.args.workers} if self.args.workers else {}),
        )
        out = self.work / f"report-{'detail' if detail else 'brief'}-{'draft' if draft else 'exact'}"
        out.mkdir(parents=True, exist_ok=True)
        summary = None

        def run() -> None:
            nonlocal summary
            summary = run_audit(settings, self.engine, [ParquetWriter(out)])

        self.engine.draft_decode = draft
        try:
            seconds = self.timed(run)
        finally:
            self.engine.draft_decode = False
        import pyarrow.parquet as pq

        rows = pq.read_table(next(out.glob("*.parquet"))).num_rows
        timings = dict(getattr(summary, "timings", {}) or {})
        return {"rate": n / seconds, "rows": rows, "workers": settings.workers, "timings": timings}

    def decode_only(self, n: int, *, draft: bool, workers: int) -> float:
        """img/s of spawned workers that only read and decode the same JPEGs with the engine's plan: the host's
        ceiling for the end-to-end rate (pool start-up and imports excluded)."""
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        files = [str(f) for f in self.jpegs(n)]
        self.engine.draft_decode = draft
        try:
            plan = self.engine.decode_plan
        finally:
            self.engine.draft_decode = False
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            list(pool.map(_warm_worker, range(2 * workers)))
            started = time.perf_counter()
            list(pool.map(_decode_file, files, [plan] * len(files), chunksize=1))
            return n / (time.perf_counter() - started)

    def static_rates(self, n_brief: int, n_detail: int, *, compile: bool) -> dict[str, float | None]:
        """The engine's brief and detail rates with the static-KV-cache decoder (and its step compiled)."""
        self.engine.static_kv, self.engine.compile_decode = True, compile
        try:
            return {"brief": self.engine_brief(n_brief), "detail": self.engine_detail(n_detail)}
        finally:
            self.engine.static_kv, self.engine.compile_decode = False, False

    def warm_batcher(self, n: int) -> tuple[list[torch.Tensor], ContinuousBatcher]:
        """`n` brief prompts and a forced-length batcher over the whole token budget, warmed up, stats zeroed."""
        brief = questions.default_question(questions.DISTORTION_IDENTIFICATION, reference=False)
        prompts = self.prompts(self.images(n), brief)
        budget = 10**9 if self.tiny else cuda_token_budget(self.llm, prefill_tokens=16384, max_rows=512)
        batcher = ContinuousBatcher(self.llm, eos_id=-1, token_budget=budget, max_rows=512, ignore_eos=True)
        batcher.generate(prompts[:2], 2)  # warm-up
        batcher.stats = type(batcher.stats)()
        return prompts, batcher

    def step_costs(self, n: int, tokens: int) -> dict[str, float]:
        """Milliseconds per prefill call and per decode step of the scheduler, and how much of a decode step
        is the decoder's forward (synchronised) rather than the host's bookkeeping around it."""
        prompts, batcher = self.warm_batcher(n)
        decoder = self.llm.model
        spent = {"prefill": 0.0, "decode": 0.0}
        plain = decoder.forward

        def forward(*args: Any, **kwargs: Any) -> Any:
            self.sync()
            started = time.perf_counter()
            out = plain(*args, **kwargs)
            self.sync()
            spent["prefill" if kwargs.get("inputs_embeds") is not None else "decode"] += time.perf_counter() - started
            return out

        decoder.forward = forward
        try:
            wall = self.timed(lambda: batcher.generate(prompts, tokens))
        finally:
            del decoder.forward
        steps, prefills = batcher.stats.decode_steps, batcher.stats.prefill_calls
        decode_wall = wall - spent["prefill"]  # everything outside prefill forwards is the decode loop
        return {
            "rows": n,
            "tokens": tokens,
            "prefill_calls": prefills,
            "decode_steps": steps,
            "ms_per_prefill": 1000 * spent["prefill"] / max(prefills, 1),
            "ms_per_decode_step": 1000 * decode_wall / max(steps, 1),
            "decoder_ms_per_step": 1000 * spent["decode"] / max(steps, 1),
            "host_ms_per_step": 1000 * (decode_wall - spent["decode"]) / max(steps, 1),
            "host_share_of_step": (decode_wall - spent["decode"]) / decode_wall if decode_wall > 0 else float("nan"),
        }

    def decode_profile(self, n: int, tokens: int, top: int = 15) -> dict[str, Any]:
        """Where a decode step's device time goes: the profiler's per-operator self time over `n` rows decoding
        `tokens` tokens, less the same rows' prefill alone (a 1-token run), divided by the decode steps."""
        from torch.profiler import ProfilerActivity, profile

        prompts, batcher = self.warm_batcher(n)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.device == "cuda" else [])

        def per_operator(length: int) -> tuple[dict[str, list[float]], set[str], int]:
            batcher.stats = type(batcher.stats)()
            with profile(activities=activities) as prof:
                batcher.generate(prompts, length)
                self.sync()
            totals: dict[str, list[float]] = {}
            kernels: set[str] = set()
            for event in prof.key_averages():
                device_us = getattr(event, "self_device_time_total", None)
                if device_us is None:
                    device_us = getattr(event, "self_cuda_time_total", 0.0)
                totals[event.key] = [float(device_us), float(event.self_cpu_time_total), float(event.count)]
                if str(getattr(event, "device_type", "")).endswith("CUDA"):
                    kernels.add(event.key)
            return totals, kernels, batcher.stats.decode_steps

        full, kernels, steps = per_operator(tokens)
        prefill, _, prefill_steps = per_operator(1)
        steps -= prefill_steps
        rows = []
        for name, (device_us, cpu_us, count) in full.items():
            base = prefill.get(name, [0.0, 0.0, 0.0])
            rows.append(
                {
                    "op": name,
                    "kernel": name in kernels,
                    "device_ms_per_step": (device_us - base[0]) / 1000 / max(steps, 1),
                    "cpu_ms_per_step": (cpu_us - base[1]) / 1000 / max(steps, 1),
                    "calls_per_step": (count - base[2]) / max(steps, 1),
                }
            )
        key = "device_ms_per_step" if self.device == "cuda" else "cpu_ms_per_step"
        rows.sort(key=lambda r: r[key], reverse=True)
        for r in rows:
            r["op"] = r["op"][:100]  # CUDA kernel names run to hundreds of characters
        return {
            "rows": n,
            "tokens": tokens,
            "decode_steps": steps,
            # Kernels only: the profiler also gives an aten operator the device time of the kernels it launched.
            "kernel_ms_per_step": sum(r["device_ms_per_step"] for r in rows if r["kernel"]),
            "top": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows[:top]],
        }

    def varied(self, n: int, tokens: int) -> dict[str, Any]:
        """Answers of `n` rows whose lengths vary (uniform, 0.3x to 2x `tokens`), so that rows leave the batch
        and waiting ones join it: the continuous batcher against static batches (`refill_fraction=1`: a new
        batch only once every row of the last one is done, as batched `generate()` does), same prompts."""
        low, high = max(1, round(0.3 * tokens)), 2 * tokens
        limits = [int(k) for k in np.random.default_rng(3).integers(low, high + 1, n)]
        brief = questions.default_question(questions.DISTORTION_IDENTIFICATION, reference=False)
        prompts = self.prompts(self.images(n), brief)
        # The tiny run caps the rows so that it too has rows joining; on CUDA memory sets how many fit.
        max_rows = 6 if self.tiny else 512
        budget = 10**9 if self.tiny else cuda_token_budget(self.llm, prefill_tokens=16384, max_rows=max_rows)
        useful = sum(limits)
        out: dict[str, Any] = {
            "rows": n,
            "limits": {"min": min(limits), "max": max(limits), "mean": useful / n},
            "token_budget": budget,
            "max_rows": max_rows,
        }
        for name, fraction in (("continuous", 0.25), ("static", 1.0)):
            batcher = ContinuousBatcher(
                self.llm, eos_id=-1, token_budget=budget, max_rows=max_rows, refill_fraction=fraction, ignore_eos=True
            )
            batcher.generate(prompts[:2], 2)  # warm-up
            batcher.stats = type(batcher.stats)()
            done: list[Any] = []
            seconds = self.timed(partial(_extend, done, batcher.generate, prompts, limits))
            if [len(g.ids) for g in done] != limits:
                raise AssertionError(f"{name}: answers of the wrong length")
            stats = batcher.stats
            out[name] = {
                "img_per_s": n / seconds,
                "tokens_per_s": useful / seconds,
                "seconds": seconds,
                "decode_steps": stats.decode_steps,
                "prefill_calls": stats.prefill_calls,
                "refills": stats.refills,
                "peak_rows": stats.max_rows,
                # Useful tokens per decode step: rows doing work; static batches carry finished rows along.
                "tokens_per_decode_step": useful / max(stats.decode_steps, 1),
                "wall_ms_per_decode_step": 1000 * seconds / max(stats.decode_steps, 1),
            }
        out["continuous_over_static"] = out["continuous"]["img_per_s"] / out["static"]["img_per_s"]
        return out

    def agreement(self, n: int, tokens: int) -> dict[str, float]:
        """Batched (continuous, mixed image sizes) vs one-at-a-time greedy tokens on random inputs."""
        rng = np.random.default_rng(1)
        sizes = [(224, 336), (224, 224), (336, 224), (224, 280)]
        pixels = [
            pad_and_normalize(rng.integers(0, 256, (*sizes[i % len(sizes)], 3), dtype=np.uint8)) for i in range(n)
        ]
        brief = questions.default_question(questions.DISTORTION_IDENTIFICATION, reference=False)
        prompts = self.prompts(pixels, brief)
        budget = 10**9 if self.tiny else None

        def batcher() -> ContinuousBatcher:
            b = budget or cuda_token_budget(self.llm, prefill_tokens=16384, max_rows=512)
            return ContinuousBatcher(self.llm, eos_id=-1, token_budget=b, max_rows=512, ignore_eos=True)

        together = batcher().generate(prompts, tokens)
        alone = [batcher().generate([p], tokens)[0] for p in prompts]
        same_rows = sum(a.ids == b.ids for a, b in zip(together, alone, strict=True))
        prefix = []
        for a, b in zip(together, alone, strict=True):
            k = next((i for i, (x, y) in enumerate(zip(a.ids, b.ids, strict=True)) if x != y), tokens)
            prefix.append(k / tokens)
        return {
            "rows": n,
            "tokens": tokens,
            "identical_rows": same_rows / n,
            "mean_common_prefix": float(np.mean(prefix)),
        }


# ------------------------------------------------------------------------------------------------ inputs


class _FixtureVocabulary:
    """The fixture's tokenizer under the paper-shape model: an id it lacks decodes as <unk> instead of failing.

    The released tokenizer covers all 32000 ids (`iqa model verify` checks it); only this benchmark pairs a
    32000-word model with a smaller vocabulary, and its random answers are not read, only timed.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._size = tokenizer.sp.get_piece_size()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tokenizer, name)

    def _known(self, ids: Any) -> list[int]:
        return [i if 0 <= i < self._size else self._tokenizer.unk_token_id for i in map(int, ids)]

    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        return self._tokenizer.decode(self._known(ids), skip_special_tokens=skip_special_tokens)

    def convert_ids_to_tokens(self, ids: Any) -> list[str]:
        return self._tokenizer.convert_ids_to_tokens(self._known(ids))


def real_shape_minilm(tiny_folder: Path | None, folder: Path) -> Path | None:
    """A random model of all-MiniLM-L6-v2's shapes (6 x 384, 12 heads) with the fixture's tokenizer files."""
    if tiny_folder is None:
        return None
    from transformers import BertConfig, BertModel

    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(tiny_folder, folder)
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    config = json.loads((folder / "config.json").read_text())
    config.update(
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    BertModel(BertConfig(**config)).save_pretrained(folder)
    return folder


def jpeg_folder(folder: Path, n: int, size: tuple[int, int]) -> Path:
    """`n` JPEG photos of `size` (h, w): 8 distinct smooth-plus-grain images, copied; quality 92."""
    from PIL import Image

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    h, w = size
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    originals = []
    for k in range(min(8, n)):
        base = np.stack(
            [
                128 + 100 * np.sin(xx / (97 + 13 * k) + c) * np.cos(yy / (71 + 7 * k) - c)
                for c in (0.0, 1.0 + k * 0.1, 2.0 + k * 0.2)
            ],
            axis=-1,
        )
        grain = rng.normal(0, 6, (h, w, 1)).astype(np.float32)
        path = folder / f"photo_{k:04d}.jpg"
        Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8)).save(path, quality=92)
        originals.append(path)
    for i in range(len(originals), n):
        shutil.copyfile(originals[i % len(originals)], folder / f"photo_{i:04d}.jpg")
    return folder


def record_budgets() -> list[int]:
    """Every token budget the engine's batchers are built with, in order. The engine sizes its budget at each
    call (from free memory on CUDA) and keeps only the batcher's statistics, so the class is wrapped to hear it."""
    from iqa_cli.engines.depictqa import scheduler

    budgets: list[int] = []
    plain = scheduler.ContinuousBatcher

    class Recording(plain):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            budgets.append(self.token_budget)

    scheduler.ContinuousBatcher = Recording  # the engine imports it from the module at each call
    return budgets


def _extend(into: list[Any], fn: Callable[..., list[Any]], *args: Any) -> None:
    into.extend(fn(*args))


def _warm_worker(_: int) -> int:
    """Start-up work of a decode worker (its imports), done before the decode-only clock starts."""
    import iqa_cli.audit.load  # noqa: F401

    return os.getpid()


def _decode_file(path: str, plan: Any) -> None:
    from iqa_cli.audit.load import decode_pixels

    with open(path, "rb") as handle:
        decode_pixels(handle.read(), plan)


# ------------------------------------------------------------------------------------------------ report


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ratio(a: float | None, b: float | None, digits: int = 1) -> str:
    return "-" if a is None or not b else f"{a / b:.{digits}f}"


def table(results: dict[str, Any]) -> str:
    """The markdown table and the notes under it; what was not measured shows as "-" or is left out."""
    r = results.get("rates", {})
    f = fmt

    def rate(key: str) -> dict[str, Any]:
        return r.get(key) or {}

    authors_b, authors_d = rate("authors").get("brief"), rate("authors").get("detail")
    lines = [
        f"DepictQA-Wild throughput on {results.get('device')} (torch {results.get('torch')}, transformers "
        f"{results.get('transformers')}, {results.get('dtype')}; brief = {results.get('brief_tokens')} forced "
        f"tokens, detail = {results.get('detail_tokens')})",
        "",
        "| path | brief img/s | detail img/s | x authors (brief / detail) |",
        "|---|---|---|---|",
    ]
    rows = [
        ("authors", "authors' style: batch 1, eager, greedy with scores"),
        ("hf16", "generate() batched SDPA, batch 16"),
        ("hf64", "generate() batched SDPA, batch 64"),
        ("engine", "iqa engine, model only (token budget + continuous batching)"),
        ("engine_static", "iqa engine, model only, static KV cache"),
        ("engine_static_compiled", "iqa engine, model only, static KV, compiled step"),
    ]
    for key, name in rows:
        if key in r:
            b, d = rate(key).get("brief"), rate(key).get("detail")
            ratio = f"{_ratio(b, authors_b)} / {_ratio(d, authors_d)}"
            lines.append(f"| {name} | {f(b)} | {f(d)} | {ratio} |")
    e2e = rate("e2e")
    if e2e:
        for key, name in (("brief", "exact decoding"), ("brief_draft", "draft decoding")):
            lines.append(
                f"| iqa audit end to end from JPEGs on disk, brief, {name} | {f(e2e.get(key))} | - | "
                f"{_ratio(e2e.get(key), authors_b)} / - |"
            )
        lines.append(
            f"| iqa audit end to end, brief + detail, draft decoding | - | {f(e2e.get('both_draft'))} | - / - |"
        )
        decode = results.get("decode_only") or {}
        engine_b = rate("engine").get("brief")
        lines += [
            "",
            f"End to end / model only, brief: exact {_ratio(e2e.get('brief'), engine_b, 2)}, draft "
            f"{_ratio(e2e.get('brief_draft'), engine_b, 2)} (model only {f(engine_b)} img/s); brief + detail "
            f"(draft) {_ratio(e2e.get('both_draft'), r.get('engine_both'), 2)} against `assess(detail=True)` "
            f"model only ({f(r.get('engine_both'))} img/s). Decode only, the same files on "
            f"{decode.get('workers')} workers: exact {f(decode.get('exact'))} img/s, draft {f(decode.get('draft'))}.",
        ]
    steps = results.get("step_costs")
    if steps:
        lines += [
            "",
            f"Scheduler, {steps['rows']} rows x {steps['tokens']} tokens: {steps['ms_per_prefill']:.2f} ms per prefill "
            f"call, {steps['ms_per_decode_step']:.2f} ms per decode step, of which the decoder's forward "
            f"{steps['decoder_ms_per_step']:.2f} ms and host bookkeeping {steps['host_ms_per_step']:.2f} ms "
            f"({steps['host_share_of_step']:.0%}).",
        ]
    varied = results.get("varied")
    if varied:
        c, st = varied["continuous"], varied["static"]
        lines += [
            "",
            f"Varied lengths ({varied['rows']} rows, {varied['limits']['min']}-{varied['limits']['max']} tokens, "
            f"budget {varied['token_budget']} tokens): continuous batching {c['img_per_s']:.2f} img/s "
            f"({c['refills']} refills, {c['tokens_per_decode_step']:.1f} useful tokens per step, "
            f"{c['wall_ms_per_decode_step']:.2f} ms per step) against static batches {st['img_per_s']:.2f} img/s "
            f"({st['tokens_per_decode_step']:.1f} per step, {st['wall_ms_per_decode_step']:.2f} ms): "
            f"{varied['continuous_over_static']:.2f}x.",
        ]
    budget = results.get("engine_token_budget_chosen")
    if budget or results.get("engine_peak_memory_gib") is not None:
        lines += [
            "",
            f"Token budget the engine chose: {budget}; peak memory in the engine runs: "
            f"{results.get('engine_peak_memory_gib', '-')} GiB.",
        ]
    a = results.get("agreement")
    if a:
        lines += [
            "",
            f"Token agreement, continuous batching vs one at a time ({a['rows']} random inputs of mixed sizes, "
            f"{a['tokens']} tokens, {results.get('dtype')}): identical rows {a['identical_rows']:.0%}, mean common "
            f"prefix {a['mean_common_prefix']:.0%}.",
        ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- gpu_check.sh

# Distribution name -> module: what the model path and the audit import, and the two the GPU machine lacks.
PACKAGES = {
    "torch": "torch", "transformers": "transformers", "huggingface_hub": "huggingface_hub",
    "safetensors": "safetensors", "sentencepiece": "sentencepiece", "protobuf": "google.protobuf",
    "numpy": "numpy", "pillow": "PIL", "pyarrow": "pyarrow", "typer": "typer", "rich": "rich",
    "pluggy": "pluggy", "exifread": "exifread", "platformdirs": "platformdirs", "iqa-cli": "iqa_cli",
}  # fmt: skip


def machine_info() -> dict[str, Any]:
    """The facts a figure needs beside it: card, driver, versions, cores, and which packages this Python has."""
    import importlib.util
    from importlib import metadata

    packages: dict[str, Any] = {}
    for dist, module in PACKAGES.items():
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):  # a blocked or broken module counts as missing
            spec = None
        if spec is None:
            packages[dist] = None
            continue
        try:
            version = metadata.version(dist)
        except metadata.PackageNotFoundError:
            version = "?"
        packages[dist] = {"version": version, "from": str(Path(spec.origin or "?").parent)}
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "packages": packages,
    }
    import torch

    info["torch_cuda"] = torch.version.cuda
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)}
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            info["nvidia_smi"] = smi.stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            info["nvidia_smi"] = f"failed: {exc}"
    return info


def write_json(path: Path, value: Any) -> None:
    """Write `value` whole or not at all: a part killed by its timeout mid-write must not leave half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial_path = path.with_name(path.name + ".partial")
    partial_path.write_text(json.dumps(value, indent=2, default=str))
    os.replace(partial_path, path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # a part killed while writing: say so rather than lose the rest
        return {"unreadable": f"{type(exc).__name__}: {exc}"}


def _merge(into: dict[str, Any], part: dict[str, Any]) -> None:
    """Merge one bench part's results into the others': dicts key by key, lists appended, the rest replaced."""
    for key, value in part.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, list) and isinstance(into.get(key), list):
            into[key] = into[key] + value
        else:
            into[key] = value


def collect(work: Path) -> dict[str, Any]:
    """gpu_check.sh's folder -> one result: the run's facts, each part's exit, the figures, what failed.

    `work/run.json` is the run (mode, commit, start); `work/status/NAME.json` each part's exit code, seconds and
    limit, or why it was skipped; `work/parts/NAME.json` what the part wrote (machine, smoke, bench-*).
    """
    run = _read_json(work / "run.json") if (work / "run.json").exists() else {}
    # In the order the parts ran.
    status = {p.stem: _read_json(p) for p in sorted((work / "status").glob("*.json"), key=lambda p: p.stat().st_mtime)}
    parts = {p.stem: _read_json(p) for p in sorted((work / "parts").glob("*.json"))}
    bench: dict[str, Any] = {}
    for name in sorted(parts):
        if name.startswith("bench"):
            _merge(bench, parts[name])
    failed, notes = [], []
    for name, part in status.items():
        if name == "install" and part.get("rc") != 0:
            # gpu_check.sh then runs from the checkout on PYTHONPATH: the figures hold, the install step did not.
            notes.append(f"install failed (exit {part.get('rc')}): ran from the checkout on PYTHONPATH")
        elif part.get("rc") != 0:
            why = f"timed out after {part.get('limit_s')} s" if part.get("timed_out") else f"exit {part.get('rc')}"
            failed.append(f"{name}: {why}")
    failed += [f"bench {error}" for error in bench.get("errors", [])]
    smoke = parts.get("smoke") or {}
    for dtype, result in (smoke.get("dtypes") or {}).items():
        if result.get("problems"):
            failed.append(f"smoke {dtype}: {', '.join(result['problems'])}")
    for name, part in parts.items():
        if "unreadable" in part:
            failed.append(f"{name}: output {part['unreadable']}")
    started = run.get("started_epoch")
    return {
        **run,
        "elapsed_s": round(time.time() - started, 1) if isinstance(started, (int, float)) else None,
        "ok": not failed,
        "failed": failed,
        "notes": notes,
        "parts": status,
        "machine": parts.get("machine"),
        "smoke": smoke or None,
        "bench": bench or None,
    }


def report(combined: dict[str, Any]) -> str:
    """gpu_check.md: where and what ran, the benchmark's table, the dtype agreement, the parts' times, failures."""
    machine = combined.get("machine") or {}
    packages = machine.get("packages") or {}

    def version(name: str) -> str:
        return (packages.get(name) or {}).get("version", "missing")

    gpu = machine.get("nvidia_smi") or (machine.get("gpu") or {}).get("name") or "no GPU"
    lines = [
        f"# gpu_check ({combined.get('mode')}), commit {combined.get('commit')}"
        f"{' (uncommitted changes)' if combined.get('dirty') else ''}, {combined.get('started')}",
        "",
        f"{gpu}; CUDA {machine.get('torch_cuda')}; torch {version('torch')}, transformers {version('transformers')}; "
        f"Python {machine.get('python')}, {machine.get('cpus')} CPUs; exifread {version('exifread')}, "
        f"platformdirs {version('platformdirs')}; iqa from {(packages.get('iqa-cli') or {}).get('from')}.",
        "",
    ]
    bench = combined.get("bench") or {}
    if bench.get("rates"):
        lines += [table(bench), ""]
        e2e = bench.get("e2e_timings") or {}
        shares = ", ".join(
            f"{key} {t['engine'] / t['total']:.0%}" for key, t in e2e.items() if t.get("total") and "engine" in t
        )
        if shares:
            lines += [f"Share of each end-to-end run spent in the engine (the rest: waiting on decoding, writing): "
                      f"{shares}.", ""]  # fmt: skip
    smoke = combined.get("smoke") or {}
    for dtype, result in (smoke.get("dtypes") or {}).items():
        agree = result.get("agreement")
        memory = f", peak {result['max_memory_gib']} GiB" if "max_memory_gib" in result else ""
        line = f"Smoke {dtype}: {'ok' if result.get('ok') else 'FAILED ' + ', '.join(result.get('problems', []))}"
        if agree:
            line += (
                f"; tokens against float32 ({agree['inputs']} random inputs x {agree['tokens']} tokens): identical "
                f"rows {agree['identical_rows']:.0%}, mean common prefix {agree['mean_common_prefix']:.0%}, first "
                f"token {agree['first_token']:.0%}"
            )
        lines.append(line + memory + ".")
    if smoke.get("reference_mean_p") is not None:
        lines.append(f"(float32's mean probability of its greedy choice: {smoke['reference_mean_p']:.2g}.)")
    parts = combined.get("parts") or {}
    lines += [
        "",
        "Parts: "
        + ", ".join(
            f"{name} {p['seconds']} s of {p['limit_s']} (exit {p['rc']})" if "rc" in p else f"{name} skipped"
            for name, p in parts.items()
        )
        + f"; {combined.get('elapsed_s')} s in all.",
        "",
        "Failed: " + ("; ".join(combined.get("failed") or []) or "nothing") + ".",
        *(f"Note: {note}." for note in combined.get("notes") or []),
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------- measurements


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU (seconds; what the tests run)")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}")
    parser.add_argument("--brief-tokens", type=int, default=10, help="forced length of a brief answer")
    parser.add_argument("--detail-tokens", type=int, default=200, help="forced length of a detailed answer")
    parser.add_argument("--audit-batch", type=int, default=256, help="images per engine call in the audit")
    parser.add_argument("--workers", type=int, default=0, help="decode workers for the audit (0: one per core)")
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end audit from JPEGs")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every image count (e.g. 0.5 if short)")
    parser.add_argument("--machine-info", type=Path, metavar="PATH", help="write the machine's facts, and stop")
    parser.add_argument("--collect", type=Path, metavar="WORK", help="merge gpu_check.sh's parts into --json")
    args = parser.parse_args(argv)
    if args.collect:
        combined = collect(args.collect)
        out = args.json or Path("gpu_check.json")
        write_json(out, combined)
        out.with_suffix(".md").write_text(report(combined))
        return 0
    if args.machine_info:
        write_json(args.machine_info, {**machine_info(), "commit": os.environ.get("IQA_COMMIT")})
        return 0
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if args.no_e2e and "e2e" in parts:
        parts.remove("e2e")
    _import_heavy()
    if args.tiny:
        torch.set_num_threads(1)  # steadier tiny figures on a shared CPU; the tiny model gains nothing from threads
    elif not torch.cuda.is_available():
        print("no CUDA device; use --tiny to run on the CPU", file=sys.stderr)
        return 2
    import transformers

    work = Path(tempfile.mkdtemp(prefix="iqa-bench-"))
    try:
        bench = Bench(args, work)
        c = {k: v for k, v in bench.counts.items()}

        def n(value: int) -> int:
            return max(2, int(value * args.scale))

        device = "cpu: " + (platform.processor() or platform.machine()) if args.tiny else torch.cuda.get_device_name()
        results: dict[str, Any] = {
            "device": device,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "dtype": str(bench.dtype).removeprefix("torch."),
            "brief_tokens": args.brief_tokens,
            "detail_tokens": args.detail_tokens,
            "counts": c,
            "scale": args.scale,
            "parts_run": parts,
            "rates": {},
        }
        errors: list[str] = []
        results["errors"] = errors

        def attempt(label: str, fn: Callable[[], Any]) -> Any:
            """One measurement; a failure is logged and recorded, and the others still run (one GPU call)."""
            save()  # the previous measurement's value, which its caller stored after `attempt` returned
            started = time.perf_counter()
            try:
                value = fn()
            except Exception as exc:
                errors.append(f"{label}: {type(exc).__name__}: {exc}")
                log(f"{label} FAILED:\n{traceback.format_exc()}")
                value = None
            results.setdefault("seconds", {})[label] = round(time.perf_counter() - started, 2)
            save()
            return value

        def save() -> None:  # after every measurement, so a timeout still leaves the figures so far
            if args.json:
                write_json(args.json, results)

        for part in PARTS:  # the fixed order: the targets' own figures first, should the part be cut short
            if part in parts:
                MEASURE[part](bench, results, attempt, n, c)
        print(table(results), flush=True)
        save()
        if errors:
            log(f"{len(errors)} measurement(s) failed: {errors}")
            return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


Attempt = Callable[[str, Callable[[], Any]], Any]
Count = Callable[[int], int]


def _engine(bench: Bench, results: dict[str, Any], attempt: Attempt, n: Count, c: dict[str, Any]) -> None:
    rates = results["rates"]
    cuda = bench.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    brief_n, detail_n = c["engine"]
    chosen: dict[str, Any] = {}
    for key, label, fn in (
        ("brief", "engine brief", lambda: bench.engine_brief(n(brief_n))),
        ("detail", "engine detail", lambda: bench.engine_detail(n(detail_n))),
    ):
        before = len(bench.budgets)
        rates.setdefault("engine", {})[key] = attempt(label, fn)
        results[f"engine_{key}_stats"] = vars(bench.engine.last_stats) if bench.engine.last_stats else None
        # The timed call's own budgets (the warm-up's come first): what the scheduler chose from free memory.
        chosen[key] = sorted(set(bench.budgets[before:][-4:]))
    results["engine_token_budget_chosen"] = chosen
    log(f"iqa engine: brief {fmt(rates['engine']['brief'])} img/s, detail {fmt(rates['engine']['detail'])} img/s")
    rates["engine_both"] = attempt("engine assess(detail=True)", lambda: bench.engine_both(n(c["both"])))
    log(f"iqa engine, assess(detail=True): {fmt(rates['engine_both'])} img/s; budgets chosen {chosen}")
    if cuda:
        results["engine_peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        results["engine_peak_reserved_gib"] = round(torch.cuda.max_memory_reserved() / 2**30, 2)
        results["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 2)
        results["engine_token_budget"] = cuda_token_budget(bench.llm, prefill_tokens=16384, max_rows=512)
        log(f"peak memory {results['engine_peak_memory_gib']} GiB of {results['gpu_memory_gib']} GiB")


def _authors(bench: Bench, results: dict[str, Any], attempt: Attempt, n: Count, c: dict[str, Any]) -> None:
    bt, dt = bench.args.brief_tokens, bench.args.detail_tokens
    rate = results["rates"]["authors"] = {}
    rate["brief"] = attempt("authors' style brief", lambda: bench.authors(bt, n(c["authors"][0])))
    rate["detail"] = attempt("authors' style detail", lambda: bench.authors(dt, n(c["authors"][1])))
    log(f"authors' style: brief {fmt(rate['brief'])} img/s, detail {fmt(rate['detail'])} img/s")


def _steps(bench: Bench, results: dict[str, Any], attempt: Attempt, n: Count, c: dict[str, Any]) -> None:
    steps = results["step_costs"] = attempt(
        "step costs", lambda: bench.step_costs(n(c["steps"]), bench.args.detail_tokens)
    )
    if steps:
        log(
            f"scheduler: {steps['ms_per_prefill']:.2f} ms per prefill, {steps['ms_per_decode_step']:.2f} ms per "
            f"decode step (decoder {steps['decoder_ms_per_step']:.2f} ms, host {steps['host_ms_per_step']:.2f} ms)"
        )


def _profile(bench: Bench, results: dict[str, Any], attempt: Attempt, n: Count, c: dict[str, Any]) -> None:
    # The step costs' full row count, unscaled: the profile is about one step's make-up, and costs seconds.
    prof = results["decode_profile"] = attempt(
        "decode profile", lambda: bench.decode_profile(c["steps"], min(64, bench.args.detail_tokens))
    )
    if prof:
        unit = "device" if bench.device == "cuda" else "cpu"
        head = ", ".join(f"{r['op']} {r[unit + '_ms_per_step']:.2f}" for r in prof["top"][:6])
        log(f"decode step, {prof['rows']} rows, ms of {unit} time per step by operator: {head}")


def _varied(bench: Bench, results: dict[str, Any], attempt: Attempt, n: Count, c: dict[str, Any]) -> None:
    varied = results["varied"] = attempt(
        "varied lengths", lambda: bench.varied(n(c["varied"]), bench.args.detail_tokens)
    )
    if varied:
        log(
            f"varied lengths: continuous {varied['continuous']['img_per_s']:.2f} img/s "
            f"({varied['continuous']['refills']} refills), static {varied['static']['img_per_s']:.2f} img/s"
        )


def _hf(bench: Bench, results: dict[str, Any], attempt: Attempt, n: Count, c: dict[str, Any]) -> None:
    bt, dt = bench.args.brief_tokens, bench.args.detail_tokens
    for key, batch in (("hf16", 16), ("hf64", 64)):
        rate = results["rates"][key] = {}
        brief_n, detail_n = n(c[key][0]), n(c[key][1])
        rate["brief"] = attempt(f"generate() batch {batch} brief", partial(bench.hf_batched, bt, brief_n, batch))
        rate["detail"] = attempt(f"generate() batch {batch} detail", partial(bench.hf_batched, dt, detail_n, batch))
        log(f"generate() batch {batch}: brief {fmt(rate['brief'])} img/s, detail {fmt(rate['detail'])} img/s")


def _agreement(bench: Bench, results: dict[str, Any], attempt: Attempt, n: Count, c: dict[str, Any]) -> None:
    results["agreement"] = attempt("agreement", lambda: bench.agreement(c["agree"], 32))
    log(f"agreement: {results['agreement']}")


def _static(bench: Bench, results: dict[str, Any], attempt: Attempt, n: Count, c: dict[str, Any]) -> None:
    brief_n, detail_n = c["engine"]
    rate = results["rates"]["engine_static"] = attempt(
        "engine static KV", lambda: bench.static_rates(n(brief_n), n(detail_n), compile=False)
    )
    log(f"iqa engine, static KV cache: {rate}")


def _compiled(bench: Bench, results: dict[str, Any], attempt: Attempt, n: Count, c: dict[str, Any]) -> None:
    if bench.device != "cuda":
        log("static KV, compiled step: CUDA only, skipped")
        return
    brief_n, detail_n = c["engine"]
    rate = results["rates"]["engine_static_compiled"] = attempt(
        "engine static KV compiled", lambda: bench.static_rates(n(brief_n), n(detail_n), compile=True)
    )
    log(f"iqa engine, static KV cache, compiled step: {rate}")


def _e2e(bench: Bench, results: dict[str, Any], attempt: Attempt, n: Count, c: dict[str, Any]) -> None:
    brief_n, both_n = n(c["e2e"][0]), n(c["e2e"][1])
    runs = {"brief": (brief_n, False, False), "brief_draft": (brief_n, False, True), "both_draft": (both_n, True, True)}
    results["e2e_images"] = {key: count for key, (count, _, _) in runs.items()}
    rates: dict[str, Any] = {}
    rows: dict[str, Any] = {}
    timings: dict[str, Any] = {}
    results["rates"]["e2e"], results["e2e_rows"], results["e2e_timings"] = rates, rows, timings
    # One small audit first, untimed: the process's one-time imports (pyarrow's writer, the audit modules) would
    # otherwise count against whichever run came first.
    attempt("e2e JPEGs", partial(bench.jpegs, max(brief_n, both_n)))  # made once, before any clock
    attempt("e2e warm-up", partial(bench.end_to_end, min(4, brief_n), detail=False, draft=False))
    workers = None
    for key, (count, detail, draft) in runs.items():
        out = attempt(f"e2e {key}", partial(bench.end_to_end, count, detail=detail, draft=draft))
        rates[key], rows[key] = (out["rate"], out["rows"]) if out else (None, None)
        if out:
            timings[key], workers = out["timings"], out["workers"]
        log(f"audit end to end, {key}: {fmt(rates[key])} img/s")
    workers = workers or bench.args.workers or os.cpu_count() or 1
    decode = results["decode_only"] = {"workers": workers, "images": brief_n}
    for key, draft in (("exact", False), ("draft", True)):
        decode[key] = attempt(f"decode only {key}", partial(bench.decode_only, brief_n, draft=draft, workers=workers))
    log(f"decode only on {workers} workers: exact {fmt(decode['exact'])} img/s, draft {fmt(decode['draft'])} img/s")


MEASURE = {
    "engine": _engine, "authors": _authors, "steps": _steps, "profile": _profile, "varied": _varied, "hf": _hf,
    "agreement": _agreement, "static": _static, "compiled": _compiled, "e2e": _e2e,
}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
