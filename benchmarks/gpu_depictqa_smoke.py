"""GPU smoke check: the full DepictQA-Wild architecture (random weights) runs a forward and a generation.

Builds Vicuna-7B's LLaMA shape, CLIP ViT-L/14 and the vision projection (optionally the Abstractor) with
random weights directly on the device, applies and merges a random r=16 LoRA, then for each dtype runs
one batched forward over two images of different sizes and a short greedy generation, checking that
the logits are finite and the shapes right. Prints one JSON line per dtype; exits 1 on any failure.

    python benchmarks/gpu_depictqa_smoke.py                 # CUDA, fp16 and bf16, paper shapes (~15 GB)
    python benchmarks/gpu_depictqa_smoke.py --abstractor    # the Abstractor variant
    python benchmarks/gpu_depictqa_smoke.py --tiny          # tiny shapes on the CPU (what CI can run)
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from iqa_cli.engines.depictqa.generate import greedy_generate, pad_left
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes on the CPU instead of 7B on CUDA")
    parser.add_argument("--abstractor", action="store_true", help="build the Abstractor variant")
    parser.add_argument("--dtypes", default="float16,bfloat16", help="comma-separated dtypes to check")
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens to generate")
    args = parser.parse_args(argv)
    device = "cpu" if args.tiny else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device; use --tiny to run on the CPU", file=sys.stderr)
        return 2
    ok = True
    model = None
    for name in args.dtypes.split(","):
        dtype = getattr(torch, name)
        # Build once, then cast: a second random 7B would double the time and the peak memory.
        model = build(args.tiny, args.abstractor, device, dtype) if model is None else model.to(dtype)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        result = {
            "dtype": name,
            "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
            "variant": "abstractor" if args.abstractor else "dq495k",
            **check(model, device, args.new_tokens),
        }
        print(json.dumps(result), flush=True)
        ok = ok and bool(result["ok"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
