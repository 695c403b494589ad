"""Batched greedy decoding over prompt embeddings: left padding masked, per-row positions, KV cache.

`pad_left` turns prompts of different lengths into one batch; `greedy_generate` decodes it and returns,
for every row, the chosen token ids and the probability of each (the softmax of that step's logits
at the chosen token), which the confidence rules use. A row's result does not depend on the other rows:
padding is masked out of attention and every row's positions start at 0 at its first real token.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Generated:
    """One row's answer: token ids up to and including the stop token (if reached), and p of each."""

    ids: list[int]
    probs: list[float]
    stopped: bool = False  # False when `max_new_tokens` ran out before the stop token


@dataclass
class PaddedBatch:
    """Left-padded prompts: embeds [B, T, H], attention mask [B, T] (1 real, 0 pad), position ids [B, T]."""

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor


def pad_left(prompts: Sequence[torch.Tensor]) -> PaddedBatch:
    """Prompt embeddings [T_i, H] -> one left-padded batch.

    Left, so that every row's next token is predicted from the last column. Pad embeddings are zeros
    (never attended to); pad positions are 0 and real positions count from 0 at each row's first token,
    exactly as if the row were alone.
    """
    if not prompts:
        raise ValueError("no prompts to batch")
    length = max(p.shape[0] for p in prompts)
    first = prompts[0]
    embeds = first.new_zeros((len(prompts), length, first.shape[1]))
    mask = torch.zeros((len(prompts), length), dtype=torch.long, device=first.device)
    for row, prompt in enumerate(prompts):
        embeds[row, length - prompt.shape[0] :] = prompt
        mask[row, length - prompt.shape[0] :] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return PaddedBatch(embeds, mask, positions)


def new_cache() -> object:
    """An empty KV cache of the installed transformers."""
    from transformers import DynamicCache

    return DynamicCache()


def cache_kwarg(decoder: nn.Module) -> str:
    """The name under which this transformers version takes the KV cache (``cache`` from 5.2x on)."""
    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


def greedy_step(lm_head: nn.Module, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Last hidden states [B, H] -> the greedy token [B] and its probability [B].

    The probability is the float32 softmax at the chosen token, as the authors compute confidences; ties
    go to the lowest id, as torch.argmax and Hugging Face's greedy search do.
    """
    logits = lm_head(hidden).float()  # [B, V]
    token = logits.argmax(dim=-1)
    return token, torch.softmax(logits, dim=-1).gather(1, token[:, None])[:, 0]


@torch.inference_mode()
def greedy_generate(llm: nn.Module, batch: PaddedBatch, *, max_new_tokens: int, eos_id: int) -> list[Generated]:
    """Greedy decoding of a LlamaForCausalLM from left-padded embeddings, until every row emits `eos_id`.

    Uses the decoder (`llm.model`) and `llm.lm_head` directly so that logits are computed for the last
    position only: the prompt's full-vocabulary logits are never materialised. Probabilities come from a
    float32 softmax, as in the authors' code (LLaMA's logits are upcast there too).
    """
    rows = batch.inputs_embeds.shape[0]
    device = batch.inputs_embeds.device
    cache = {cache_kwarg(llm.model): new_cache()}
    mask = batch.attention_mask
    positions = batch.position_ids
    next_positions = positions[:, -1:] + 1  # [B, 1]
    ids: list[list[int]] = [[] for _ in range(rows)]
    probs: list[list[float]] = [[] for _ in range(rows)]
    done = torch.zeros(rows, dtype=torch.bool, device=device)

    out = llm.model(
        inputs_embeds=batch.inputs_embeds,
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        **cache,
    )
    for _ in range(max_new_tokens):
        token, p = greedy_step(llm.lm_head, out.last_hidden_state[:, -1])
        token_list, p_list, done_list = token.tolist(), p.tolist(), done.tolist()
        for row in range(rows):
            if not done_list[row]:
                ids[row].append(token_list[row])
                probs[row].append(p_list[row])
        done |= token == eos_id
        if bool(done.all()):
            break
        # Finished rows keep decoding (their outputs are ignored) so the cache stays rectangular.
        mask = torch.cat([mask, mask.new_ones((rows, 1))], dim=1)
        out = llm.model(
            input_ids=token[:, None],
            attention_mask=mask,
            position_ids=next_positions,
            use_cache=True,
            **cache,
        )
        next_positions = next_positions + 1
    return [Generated(i, p, stopped=bool(i) and i[-1] == eos_id) for i, p in zip(ids, probs, strict=True)]
