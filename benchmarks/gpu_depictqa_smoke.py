"""GPU smoke check: the full DepictQA-Wild architecture (random weights) runs a forward and a generation.

Builds Vicuna-7B's LLaMA shape, CLIP ViT-L/14 and the vision projection (optionally the Abstractor) with
random weights directly on the device, applies and merges a random r=16 LoRA, then for each dtype runs
one batched forward over two images of different sizes and a short greedy generation, checking that
the logits are finite and the shapes right. Prints one JSON line per dtype (`--json` writes them all, after
each dtype); exits 1 on any failure.

With `--agreement N` the model is built in float32 instead, N random inputs of mixed sizes and prompt lengths
are decoded greedily in one batch there, and each dtype then runs from a cast of those same weights: its tokens
are compared with float32's (identical rows, mean common prefix, first token). Random weights give a flat
next-token distribution, so near-ties make this a harsh test of the arithmetic, not a forecast of how often a
trained model's answers would change.

    python benchmarks/gpu_depictqa_smoke.py                 # CUDA, fp16 and bf16, paper shapes (~15 GB)
    python benchmarks/gpu_depictqa_smoke.py --agreement 8   # + tokens against float32 (~45 GB)
    python benchmarks/gpu_depictqa_smoke.py --abstractor    # the Abstractor variant
    python benchmarks/gpu_depictqa_smoke.py --tiny          # tiny shapes on the CPU (what CI can run)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from iqa_cli.engines.depictqa.generate import Generated, PaddedBatch, greedy_generate, pad_left
from iqa_cli.engines.depictqa.model import AbstractorConfig, DepictQAConfig, DepictQAModel
from iqa_cli.engines.depictqa.preprocess import pad_and_normalize
from iqa_cli.engines.depictqa.vision import VisionConfig

PAPER_LLM = dict(
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    vocab_size=32000,
    max_position_embeddings=4096,
    rms_norm_eps=1e-5,
)
TINY_LLM = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    vocab_size=1000,
    max_position_embeddings=4096,
    rms_norm_eps=1e-5,
)
TINY_VISION = VisionConfig(width=32, layers=2, heads=4, intermediate=64)


def build(tiny: bool, abstractor: bool, device: str, dtype: torch.dtype, seed: int = 0) -> DepictQAModel:
    """Random-weight DepictQAModel built in `dtype` on `device` (no float32 copy of 7B on the host)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    llm_cfg = LlamaConfig(**(TINY_LLM if tiny else PAPER_LLM), bos_token_id=1, eos_token_id=2)
    vision = TINY_VISION if tiny else VisionConfig()
    abs_cfg = None
    if abstractor:
        abs_cfg = AbstractorConfig(width=vision.width, feedforward=64) if tiny else AbstractorConfig()
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            llm = LlamaForCausalLM(llm_cfg)
            model = DepictQAModel(
                DepictQAConfig(vision=vision, llm_hidden=llm_cfg.hidden_size, abstractor=abs_cfg), llm
            )
    finally:
        torch.set_default_dtype(previous)
    with torch.no_grad():
        # Random weights that keep activations in range (default inits leave zeros / large values in places).
        for p in model.vision.parameters():
            p.normal_(0, 0.02)
        model.vision.position_embedding.normal_(0, 0.1)
        hidden, r = llm_cfg.hidden_size, 16 if not tiny else 4
        lora = {
            (i, name): (
                torch.randn(r, hidden, device=device, dtype=dtype) * 0.01,
                torch.randn(hidden, r, device=device, dtype=dtype) * 0.01,
            )
            for i in range(llm_cfg.num_hidden_layers)
            for name in ("q_proj", "k_proj", "v_proj", "o_proj")
        }
    model.apply_lora(lora, 1.0)
    model.merge_lora()
    return model.eval().requires_grad_(False)


def check(model: DepictQAModel, device: str, new_tokens: int) -> dict[str, object]:
    """One forward over a two-image batch (224x336 and 224x224 inputs), then a greedy generation."""
    rng = np.random.default_rng(0)
    images = [
        torch.from_numpy(pad_and_normalize(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))).to(device)
        for h, w in ((224, 336), (224, 224))
    ]
    vocab = model.llm.config.vocab_size
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    started = time.perf_counter()
    with torch.inference_mode():
        embeds = model.encode_images(images)
        prompts = [
            model.embed_prompt([[1], list(range(3, 60)), None, list(range(60, 90 + 7 * i))], [e])
            for i, e in enumerate(embeds)
        ]
        batch = pad_left(prompts)
        logits = model.llm(
            inputs_embeds=batch.inputs_embeds, attention_mask=batch.attention_mask, position_ids=batch.position_ids
        ).logits
        sync()
        forward_s = time.perf_counter() - started
        started = time.perf_counter()
        out = greedy_generate(model.llm, batch, max_new_tokens=new_tokens, eos_id=-1)
        sync()
        generate_s = time.perf_counter() - started
    problems = []
    if not torch.isfinite(logits[batch.attention_mask.bool()]).all():
        problems.append("non-finite logits")
    if logits.shape != (2, batch.inputs_embeds.shape[1], vocab):
        problems.append(f"logits shape {tuple(logits.shape)}")
    if [len(g.ids) for g in out] != [new_tokens, new_tokens]:
        problems.append("generation length")
    if not all(0.0 <= p <= 1.0 for g in out for p in g.probs):
        problems.append("probabilities out of range")
    result = {
        "image_tokens": [int(e.shape[0]) for e in embeds],
        "prompt_tokens": [int(p.shape[0]) for p in prompts],
        "forward_s": round(forward_s, 3),
        "generate_s": round(generate_s, 3),
        "new_tokens": new_tokens,
        "ok": not problems,
        "problems": problems,
    }
    if device.startswith("cuda"):
        result["max_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


@contextmanager
def cast(model: DepictQAModel, dtype: torch.dtype) -> Iterator[DepictQAModel]:
    """`model` with every floating parameter and buffer in `dtype`, as `model.to(dtype)` would leave it, and the
    original tensors put back afterwards: casting in place and back would round the float32 reference."""
    saved = [(t, t.data) for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    for tensor, data in saved:
        tensor.data = data.to(dtype)
    try:
        yield model
    finally:
        for tensor, data in saved:
            tensor.data = data


def agreement_batch(model: DepictQAModel, device: str, n: int) -> PaddedBatch:
    """`n` random images of mixed sizes with prompts of mixed lengths, embedded in the model's current dtype."""
    rng = np.random.default_rng(1)
    sizes = ((224, 336), (224, 224), (336, 224), (224, 280))
    images = [
        torch.from_numpy(pad_and_normalize(rng.integers(0, 256, (*sizes[i % 4], 3), dtype=np.uint8))).to(device)
        for i in range(n)
    ]
    with torch.inference_mode():
        embeds = model.encode_images(images)
        prompts = [
            model.embed_prompt([[1], list(range(3, 60)), None, list(range(60, 80 + 5 * i))], [e])
            for i, e in enumerate(embeds)
        ]
    return pad_left(prompts)


def greedy_tokens(model: DepictQAModel, device: str, n: int, tokens: int) -> list[Generated]:
    """The agreement inputs' greedy answers (`tokens` each, no stop) in the model's current dtype."""
    batch = agreement_batch(model, device, n)
    with torch.inference_mode():
        return greedy_generate(model.llm, batch, max_new_tokens=tokens, eos_id=-1)


def compare_tokens(reference: list[Generated], other: list[Generated]) -> dict[str, float]:
    """How far `other`'s greedy tokens follow `reference`'s: whole rows, the shared prefix, the first token.

    Past the first difference the two decode from different contexts, so the prefix is the measure that counts.
    """
    pairs = list(zip(reference, other, strict=True))
    prefixes = []
    for a, b in pairs:
        k = next((i for i, (x, y) in enumerate(zip(a.ids, b.ids, strict=True)) if x != y), len(a.ids))
        prefixes.append(k / max(len(a.ids), 1))
    return {
        "identical_rows": sum(a.ids == b.ids for a, b in pairs) / len(pairs),
        "mean_common_prefix": float(np.mean(prefixes)),
        "first_token": sum(a.ids[:1] == b.ids[:1] for a, b in pairs) / len(pairs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU instead of 7B on CUDA")
    parser.add_argument("--abstractor", action="store_true", help="build the Abstractor variant")
    parser.add_argument("--dtypes", default="float16,bfloat16", help="comma-separated dtypes to check")
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens to generate")
    parser.add_argument("--agreement", type=int, default=0, help="inputs whose tokens are compared with float32")
    parser.add_argument("--agreement-tokens", type=int, default=32, help="tokens per input for the agreement")
    parser.add_argument("--json", type=Path, help="write every dtype's result to this JSON file")
    args = parser.parse_args(argv)
    device = "cpu" if args.tiny else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device; use --tiny to run on the CPU", file=sys.stderr)
        return 2
    summary: dict[str, object] = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "variant": "abstractor" if args.abstractor else "dq495k",
        "reference": "float32" if args.agreement else None,
        # TF32 would make the float32 reference itself approximate.
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
        "dtypes": {},
    }
    results: dict[str, dict[str, object]] = summary["dtypes"]  # type: ignore[assignment]

    def save() -> None:  # whole or not at all: a timeout may kill this mid-write
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            partial = args.json.with_name(args.json.name + ".partial")
            partial.write_text(json.dumps(summary, indent=2))
            partial.replace(args.json)

    ok = True
    model: DepictQAModel | None = None
    base: DepictQAModel | None = None  # the float32 model the agreement's dtypes are cast from
    reference: list[Generated] = []
    if args.agreement:
        started = time.perf_counter()
        base = build(args.tiny, args.abstractor, device, torch.float32)
        reference = greedy_tokens(base, device, args.agreement, args.agreement_tokens)
        summary["reference_s"] = round(time.perf_counter() - started, 3)
        # How peaked float32's choices are: near 1/vocab, every step is a near-tie.
        summary["reference_mean_p"] = float(np.mean([p for g in reference for p in g.probs]))
        save()
    for name in args.dtypes.split(","):
        dtype = getattr(torch, name)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        if base is not None:
            with cast(base, dtype) as low:
                result = check(low, device, args.new_tokens)
                tokens = greedy_tokens(low, device, args.agreement, args.agreement_tokens)
            result["agreement"] = {
                "inputs": args.agreement,
                "tokens": args.agreement_tokens,
                **compare_tokens(reference, tokens),
            }
        else:
            # Build once, then cast: a second random 7B would double the time and the peak memory.
            model = build(args.tiny, args.abstractor, device, dtype) if model is None else model.to(dtype)
            result = check(model, device, args.new_tokens)
        results[name] = result
        print(
            json.dumps({"dtype": name, "device": summary["device"], "variant": summary["variant"], **result}),
            flush=True,
        )
        ok = ok and bool(result["ok"])
        save()
    summary["ok"] = ok
    save()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
