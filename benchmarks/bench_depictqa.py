"""DepictQA-Wild throughput: iqa's engine and audit against the authors' style and plain generate(), one run.

Random weights with the paper model's exact shapes (Vicuna-7B LLaMA, CLIP ViT-L/14, Linear projector, merged
r=16 LoRA; built on the device as `gpu_depictqa_smoke.py` does, nothing downloaded), fp16, 3:2 photos
(224x336 after preprocessing: 384 image tokens) plus the real prompt text (~80 tokens). Generation length is
forced: 10 tokens for a brief answer, 200 for a detailed one. Measured, in images per second:

- authors' style: batch 1, eager attention, `generate()` greedy with per-step scores, one image at a time;
- plain `generate()`, SDPA, left-padded batches of 16 and 64;
- iqa's engine, model only: prepared pixels in memory -> token-budgeted continuous batching -> answers and
  confidences (`DepictQAEngine.assess`; detail = the reasoning question alone);
- iqa's audit end to end: 12 MP JPEGs on disk -> decode workers -> engine -> Parquet report (`run_audit`).

Also the fp16 token agreement of batched against one-at-a-time greedy decoding on random inputs. Prints a
markdown table with the card's name and the torch / transformers versions; `--json` writes every figure.

    python benchmarks/bench_depictqa.py --json bench.json     # CUDA: H100 / H200, ~4 minutes
    python benchmarks/bench_depictqa.py --tiny                # tiny shapes on the CPU, seconds (the test suite)

The tokenizer is the tiny fixture's SentencePiece model (its ids are valid in the 32000-word vocabulary; the
prompt text splits into about as many pieces as with LLaMA's). The detail confidence runs a random MiniLM of
all-MiniLM-L6-v2's shapes. With random weights the answers are noise; only the speed means anything.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
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
FULL = dict(
    authors=(8, 2), hf16=(32, 16), hf64=(128, 64), engine=(512, 256), both=256, e2e=(512, 256), agree=16, steps=64
)
TINY = dict(authors=(3, 2), hf16=(16, 16), hf64=(32, 32), engine=(32, 16), both=16, e2e=(12, 8), agree=6, steps=8)


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
        self.set_attention("sdpa")
        layout = tiny_depictqa.build_tiny_models(work / "fixture")
        self.tokenizer = PromptTokenizer.from_folder(layout.llm)
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

            def run(count: int) -> None:
                for pixels in self.images(count):
                    self.hf_generate(self.prompts([pixels], brief), tokens, scores=True)

            run(1)  # warm-up: kernels, allocator
            return n / self.timed(lambda: run(n))
        finally:
            self.set_attention("sdpa")

    def hf_batched(self, tokens: int, n: int, batch: int) -> float:
        brief = questions.default_question(questions.DISTORTION_IDENTIFICATION, reference=False)

        def run(count: int) -> None:
            images = self.images(count)
            for start in range(0, count, batch):
                self.hf_generate(self.prompts(images[start : start + batch], brief), tokens, scores=False)

        run(min(batch, 4))
        return n / self.timed(lambda: run(n))

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

    def end_to_end(self, n: int, *, detail: bool) -> tuple[float, int]:
        """JPEGs on disk through `run_audit` (decode workers, engine, Parquet writer); (img/s, rows written)."""
        from iqa_cli.audit.run import AuditSettings, run_audit
        from iqa_cli.report.writers import ParquetWriter

        folder = jpeg_folder(self.work / "jpegs", n, (800, 1200) if self.tiny else (3000, 4000))
        settings = AuditSettings(
            paths=[str(folder)],
            detail=detail,
            batch_size=self.args.audit_batch,
            **({"workers": self.args.workers} if self.args.workers else {}),
        )
        out = self.work / f"report-{'detail' if detail else 'brief'}"
        out.mkdir(parents=True, exist_ok=True)
        summary = None

        def run() -> None:
            nonlocal summary
            summary = run_audit(settings, self.engine, [ParquetWriter(out)])

        seconds = self.timed(run)
        import pyarrow.parquet as pq

        rows = pq.read_table(next(out.glob("*.parquet"))).num_rows
        return n / seconds, rows

    def static_rates(self, n_brief: int, n_detail: int, *, compile: bool) -> dict[str, float | None]:
        """The engine's brief and detail rates with the static-KV-cache decoder (and its step compiled)."""
        self.engine.static_kv, self.engine.compile_decode = True, compile
        try:
            return {"brief": self.engine_brief(n_brief), "detail": self.engine_detail(n_detail)}
        finally:
            self.engine.static_kv, self.engine.compile_decode = False, False

    def step_costs(self, n: int, tokens: int) -> dict[str, float]:
        """Milliseconds per prefill call and per decode step of the scheduler, and how much of a decode step
        is the decoder's forward (synchronised) rather than the host's bookkeeping around it."""
        brief = questions.default_question(questions.DISTORTION_IDENTIFICATION, reference=False)
        prompts = self.prompts(self.images(n), brief)
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

        budget = 10**9 if self.tiny else cuda_token_budget(self.llm, prefill_tokens=16384, max_rows=512)
        batcher = ContinuousBatcher(self.llm, eos_id=-1, token_budget=budget, max_rows=512, ignore_eos=True)
        batcher.generate(prompts[:2], 2)  # warm-up
        batcher.stats = type(batcher.stats)()
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


# ------------------------------------------------------------------------------------------------ report


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ratio(a: float | None, b: float | None, digits: int = 1) -> str:
    return "-" if a is None or not b else f"{a / b:.{digits}f}"


def table(results: dict[str, Any]) -> str:
    r = results["rates"]
    f = fmt

    authors_b, authors_d = r["authors"]["brief"], r["authors"]["detail"]
    lines = [
        f"DepictQA-Wild throughput on {results['device']} (torch {results['torch']}, transformers "
        f"{results['transformers']}, {results['dtype']}; brief = {results['brief_tokens']} forced tokens, "
        f"detail = {results['detail_tokens']})",
        "",
        "| path | brief img/s | detail img/s | x authors (brief / detail) |",
        "|---|---|---|---|",
    ]
    rows = [
        ("authors' style: batch 1, eager, greedy with scores", r["authors"]),
        ("generate() batched SDPA, batch 16", r["hf16"]),
        ("generate() batched SDPA, batch 64", r["hf64"]),
        ("iqa engine, model only (token budget + continuous batching)", r["engine"]),
    ]
    for name, rate in rows:
        ratio = f"{_ratio(rate['brief'], authors_b)} / {_ratio(rate['detail'], authors_d)}"
        lines.append(f"| {name} | {f(rate['brief'])} | {f(rate['detail'])} | {ratio} |")
    for key, name in (("engine_static", "static KV cache"), ("engine_static_compiled", "static KV, compiled step")):
        rate = r.get(key)
        if rate:
            ratio = f"{_ratio(rate['brief'], authors_b)} / {_ratio(rate['detail'], authors_d)}"
            lines.append(f"| iqa engine, model only, {name} | {f(rate['brief'])} | {f(rate['detail'])} | {ratio} |")
    e2e = r.get("e2e")
    if e2e:
        lines.append(
            f"| iqa audit end to end from JPEGs on disk (detail column: brief + detail) | {f(e2e['brief'])} | "
            f"{f(e2e['both'])} | {_ratio(e2e['brief'], authors_b)} / - |"
        )
        lines += [
            "",
            f"End to end / model only: brief {_ratio(e2e['brief'], r['engine']['brief'], 2)} "
            f"({f(e2e['brief'])} vs {f(r['engine']['brief'])}), "
            f"brief + detail {_ratio(e2e['both'], r['engine_both'], 2)} "
            f"({f(e2e['both'])} vs {f(r['engine_both'])} for `assess(detail=True)` model only).",
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
    a = results["agreement"]
    if a is None:
        return "\n".join(lines)
    lines += [
        "",
        f"Token agreement, continuous batching vs one at a time ({a['rows']} random inputs of mixed sizes, "
        f"{a['tokens']} tokens, {results['dtype']}): identical rows {a['identical_rows']:.0%}, mean common prefix "
        f"{a['mean_common_prefix']:.0%}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU (seconds; what the tests run)")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--brief-tokens", type=int, default=10, help="forced length of a brief answer")
    parser.add_argument("--detail-tokens", type=int, default=200, help="forced length of a detailed answer")
    parser.add_argument("--audit-batch", type=int, default=256, help="images per engine call in the audit")
    parser.add_argument("--workers", type=int, default=0, help="decode workers for the audit (0: one per core)")
    parser.add_argument("--no-e2e", action="store_true", help="skip the end-to-end audit from JPEGs")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every image count (e.g. 0.5 if short)")
    args = parser.parse_args(argv)
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
            "rates": {},
        }
        rates = results["rates"]
        bt, dt = args.brief_tokens, args.detail_tokens
        errors: list[str] = []
        results["errors"] = errors

        def attempt(label: str, fn: Callable[[], Any]) -> Any:
            """One measurement; a failure is logged and recorded, and the others still run (one GPU call)."""
            try:
                value = fn()
            except Exception as exc:
                errors.append(f"{label}: {type(exc).__name__}: {exc}")
                log(f"{label} FAILED:\n{traceback.format_exc()}")
                value = None
            if args.json:  # after every measurement, so a timeout still leaves the figures so far
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(results, indent=2, default=str))
            return value

        for key, label, fn in (
            ("authors", "authors' style", lambda t, k: bench.authors(t, k)),
            ("hf16", "generate() batch 16", lambda t, k: bench.hf_batched(t, k, 16)),
            ("hf64", "generate() batch 64", lambda t, k: bench.hf_batched(t, k, 64)),
        ):
            brief_n, detail_n = n(c[key][0]), n(c[key][1])
            rates[key] = {"brief": attempt(f"{label} brief", lambda fn=fn, k=brief_n: fn(bt, k))}
            rates[key]["detail"] = attempt(f"{label} detail", lambda fn=fn, k=detail_n: fn(dt, k))
            log(f"{label}: brief {fmt(rates[key]['brief'])} img/s, detail {fmt(rates[key]['detail'])} img/s")
        if bench.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        brief_n, detail_n = c["engine"]
        rates["engine"] = {"brief": attempt("engine brief", lambda: bench.engine_brief(n(brief_n)))}
        results["engine_brief_stats"] = vars(bench.engine.last_stats) if bench.engine.last_stats else None
        rates["engine"]["detail"] = attempt("engine detail", lambda: bench.engine_detail(n(detail_n)))
        results["engine_detail_stats"] = vars(bench.engine.last_stats) if bench.engine.last_stats else None
        log(f"iqa engine: brief {fmt(rates['engine']['brief'])} img/s, detail {fmt(rates['engine']['detail'])} img/s")
        rates["engine_both"] = attempt("engine assess(detail=True)", lambda: bench.engine_both(n(c["both"])))
        log(f"iqa engine, assess(detail=True): {fmt(rates['engine_both'])} img/s")
        if bench.device == "cuda":
            results["engine_peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            results["engine_token_budget"] = cuda_token_budget(bench.llm, prefill_tokens=16384, max_rows=512)
        brief_n, detail_n = c["engine"]
        rates["engine_static"] = attempt(
            "engine static KV", lambda: bench.static_rates(n(brief_n), n(detail_n), compile=False)
        )
        log(f"iqa engine, static KV cache: {rates['engine_static']}")
        if bench.device == "cuda":
            rates["engine_static_compiled"] = attempt(
                "engine static KV compiled", lambda: bench.static_rates(n(brief_n), n(detail_n), compile=True)
            )
            log(f"iqa engine, static KV cache, compiled step: {rates['engine_static_compiled']}")
        results["step_costs"] = attempt("step costs", lambda: bench.step_costs(n(c["steps"]), dt))
        log(f"scheduler step costs: {results['step_costs']}")
        if not args.no_e2e:
            brief_n, both_n = c["e2e"]
            results["e2e_images"] = {"brief": n(brief_n), "both": n(both_n)}
            brief = attempt("e2e brief", lambda: bench.end_to_end(n(brief_n), detail=False)) or (None, None)
            both = attempt("e2e brief+detail", lambda: bench.end_to_end(n(both_n), detail=True)) or (None, None)
            rates["e2e"] = {"brief": brief[0], "both": both[0]}
            results["e2e_rows"] = {"brief": brief[1], "both": both[1]}
            log(f"audit end to end: brief {fmt(brief[0])} img/s, brief + detail {fmt(both[0])} img/s")
        results["agreement"] = attempt("agreement", lambda: bench.agreement(c["agree"], 32))
        log(f"agreement: {results['agreement']}")
        print(table(results), flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
        if errors:
            log(f"{len(errors)} measurement(s) failed: {errors}")
            return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
