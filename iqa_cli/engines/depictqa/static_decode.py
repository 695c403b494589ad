"""Greedy decoding with a static KV cache: every decode step has the same shapes, so it can be captured.

The default path (`scheduler.ContinuousBatcher`) grows a dynamic cache by one column per step and rebuilds
it when rows join; that suits continuous batching but gives each step new shapes, which CUDA graphs and
`torch.compile(mode="reduce-overhead")` cannot replay. Here a batch is decoded as a block: the cache is
allocated at prompt width + the token limit once, the step's inputs are fixed-shape tensors (the token, the
positions, the cache slot), and the attention mask is computed on the device from the rows' padding, so one
step is one replayable graph. Rows that finish keep decoding until the block's longest answer is done (the
price of fixed shapes); their extra tokens are dropped.

This path exists to be timed on a GPU (`benchmarks/bench_depictqa.py --static-kv`), where a 32-layer decode
step at small batch may be bound by kernel launches rather than arithmetic; on the CPU it gives the same
tokens as `generate.greedy_generate` (tests/test_depictqa_static.py). It is off by default.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
from torch import nn

from iqa_cli.engines.depictqa.generate import Generated, cache_kwarg, greedy_step, pad_left


def new_static_cache(llm: nn.Module, rows: int, length: int) -> object:
    """A transformers StaticCache of `length` slots for `rows` rows (the constructor changed across versions)."""
    from transformers import StaticCache

    weight = llm.get_input_embeddings().weight
    parameters = inspect.signature(StaticCache.__init__).parameters
    kwargs: dict[str, object] = {"config": llm.config, "max_cache_len": length}
    if "max_batch_size" in parameters:  # transformers 4.x allocates at construction
        kwargs.update(max_batch_size=rows, device=weight.device, dtype=weight.dtype)
    return StaticCache(**kwargs)


def _mask(starts: torch.Tensor, queries: torch.Tensor, length: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive 4D mask [B, 1, Q, length]: query at cache slot q sees slots start..q of its own row.

    A padding query (q < start) sees only itself, so no row of the softmax is empty; its output is unused.
    """
    columns = torch.arange(length, device=starts.device)
    visible = (columns[None, None, :] >= starts[:, None, None]) & (columns[None, None, :] <= queries[None, :, None])
    visible |= columns[None, None, :] == queries[None, :, None]
    mask = torch.zeros(visible.shape, dtype=dtype, device=starts.device)
    return mask.masked_fill(~visible, torch.finfo(dtype).min)[:, None]


class StaticDecoder:
    """Greedy answers, one fixed-shape block per call; `compile=True` wraps the decode step in
    `torch.compile(mode="reduce-overhead")` (CUDA graphs on a GPU)."""

    def __init__(self, llm: nn.Module, *, eos_id: int, max_rows: int = 64, compile: bool = False) -> None:
        self.llm = llm
        self.eos_id = eos_id
        self.max_rows = max(1, max_rows)
        self._cache_kw = cache_kwarg(llm.model)
        self._step: Callable[..., torch.Tensor] = self._decode_step
        if compile:
            self._step = torch.compile(self._decode_step, mode="reduce-overhead", fullgraph=False)

    @torch.inference_mode()
    def generate(self, prompts: Sequence[torch.Tensor], max_new_tokens: int | Sequence[int]) -> list[Generated]:
        """Prompt embeddings [T_i, H] -> one Generated per prompt, in order, as `ContinuousBatcher.generate`."""
        limits = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
        if len(limits) != len(prompts):
            raise ValueError(f"{len(limits)} token limits for {len(prompts)} prompts")
        results: list[Generated] = [Generated([], [], stopped=False)] * len(prompts)
        # Neighbours by length share a block, so little of it is padding.
        order = sorted((i for i in range(len(prompts)) if limits[i] > 0), key=lambda i: prompts[i].shape[0])
        for first in range(0, len(order), self.max_rows):
            block = order[first : first + self.max_rows]
            answers = self._block([prompts[i] for i in block], max(limits[i] for i in block))
            for i, answer in zip(block, answers, strict=True):
                results[i] = _truncated(answer, limits[i], self.eos_id)
        return results

    def _block(self, prompts: Sequence[torch.Tensor], max_new_tokens: int) -> list[Generated]:
        batch = pad_left(prompts)
        rows, width = batch.attention_mask.shape
        length = width + max_new_tokens
        dtype = batch.inputs_embeds.dtype
        device = batch.inputs_embeds.device
        cache = new_static_cache(self.llm, rows, length)
        starts = (batch.attention_mask == 0).sum(dim=1)  # left padding of each row
        slots = torch.arange(width, device=device)
        out = self.llm.model(
            inputs_embeds=batch.inputs_embeds,
            attention_mask=_mask(starts, slots, length, dtype),
            position_ids=batch.position_ids,
            cache_position=slots,
            use_cache=True,
            **{self._cache_kw: cache},
        )
        token, p = greedy_step(self.llm.lm_head, out.last_hidden_state[:, -1])
        tokens, probs = [token], [p]
        positions = batch.position_ids[:, -1:] + 1  # [B, 1]
        slot = torch.tensor([width], device=device)
        done = token == self.eos_id
        for _ in range(max_new_tokens - 1):
            if bool(done.all()):
                break
            hidden = self._step(token[:, None], positions, slot, starts, cache, length)
            token, p = greedy_step(self.llm.lm_head, hidden)
            tokens.append(token)
            probs.append(p)
            done |= token == self.eos_id
            positions = positions + 1
            slot = slot + 1
        ids, ps = torch.stack(tokens, dim=1).tolist(), torch.stack(probs, dim=1).tolist()
        return [Generated(i, q) for i, q in zip(ids, ps, strict=True)]

    def _decode_step(
        self,
        token: torch.Tensor,
        positions: torch.Tensor,
        slot: torch.Tensor,
        starts: torch.Tensor,
        cache: object,
        length: int,
    ) -> torch.Tensor:
        """One token for every row at cache slot `slot`; the last hidden states [B, H]."""
        weight = self.llm.get_input_embeddings().weight
        out = self.llm.model(
            input_ids=token,
            attention_mask=_mask(starts, slot, length, weight.dtype),
            position_ids=positions,
            cache_position=slot,
            use_cache=True,
            **{self._cache_kw: cache},
        )
        return out.last_hidden_state[:, -1]


def _truncated(answer: Generated, limit: int, eos_id: int) -> Generated:
    """A row's answer cut at its own stop token or token limit, as the dynamic path would have ended it."""
    ids, probs = answer.ids[:limit], answer.probs[:limit]
    if eos_id in ids:
        end = ids.index(eos_id) + 1
        ids, probs = ids[:end], probs[:end]
    return Generated(ids, probs, stopped=bool(ids) and ids[-1] == eos_id)
