"""Continuous batching for greedy decoding: a token-budgeted set of rows, finished answers leave, waiting ones join.

`greedy_generate` decodes one fixed batch until its longest answer ends, so a batch of detailed answers
runs at the pace of its longest one while the rows that finished early decode padding. `ContinuousBatcher`
instead keeps a left-padded, rectangular KV cache of the rows in flight and, whenever enough of them have
emitted `</s>` (or reached their token limit), drops them and splices freshly prefilled prompts into the same
cache. Every row keeps its own mask and position ids, so each answer is the one it would get alone.

Memory is bounded by a token budget, rows x (cache width + tokens still to come), which on CUDA is derived
from the free memory and the model's KV bytes per token (`cuda_token_budget`). A CUDA out-of-memory error
halves the budget and reruns the unfinished rows from their prompts: no prompt is ever dropped.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from iqa_cli.engines.depictqa.generate import Generated, cache_kwarg, greedy_step, new_cache, pad_left


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA allocation failure (its own class in torch >= 2.1; a RuntimeError text before that)."""
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    return (oom is not None and isinstance(exc, oom)) or (isinstance(exc, RuntimeError) and "out of memory" in str(exc))


def kv_bytes_per_token(llm: nn.Module) -> int:
    """Bytes the KV cache holds per token per row: 2 (K and V) x layers x kv heads x head dim x element size.

    0.5 MiB for Vicuna-7B in fp16 (2 x 32 x 32 x 128 x 2).
    """
    cfg = llm.config
    heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    element = llm.get_input_embeddings().weight.element_size()
    return 2 * cfg.num_hidden_layers * heads * head_dim * element


def cuda_token_budget(llm: nn.Module, *, prefill_tokens: int, max_rows: int, fraction: float = 0.9) -> int:
    """The KV-cache token budget that fits the memory this process can still use on the model's GPU.

    Available = free device memory + what PyTorch's allocator holds but does not use, times `fraction`, less a
    reserve for one prefill's activations (`prefill_tokens` x ~6 hidden-sized and 3 MLP-sized vectors, fp32
    logits rows) -- then divided by the KV bytes per token. 80 GB H100 with fp16 7B weights: ~110k tokens;
    141 GB H200: ~220k.
    """
    device = llm.get_input_embeddings().weight.device
    free, _total = torch.cuda.mem_get_info(device)
    free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    cfg = llm.config
    element = llm.get_input_embeddings().weight.element_size()
    activations = prefill_tokens * (8 * cfg.hidden_size + 3 * cfg.intermediate_size) * element
    logits = max_rows * cfg.vocab_size * 4 * 3
    reserve = activations + logits + (512 << 20)  # + CUDA workspaces, allocator fragmentation
    return max(1, int((free * fraction - reserve) // kv_bytes_per_token(llm)))


# ------------------------------------------------------------------------------- cache tensors, any version


def _layer_tensors(cache: object) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's (keys, values) [B, heads, T, head_dim] of a DynamicCache (transformers 4.46 .. 5.x)."""
    if hasattr(cache, "layers"):  # transformers >= 4.56: one DynamicLayer per decoder layer
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))  # type: ignore[attr-defined]


def _set_layer(cache: object, index: int, keys: torch.Tensor, values: torch.Tensor) -> None:
    if hasattr(cache, "layers"):
        cache.layers[index].keys, cache.layers[index].values = keys, values
    else:
        cache.key_cache[index], cache.value_cache[index] = keys, values  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------------- the batcher


@dataclass
class _Row:
    """One prompt's answer in progress."""

    prompt: int  # index into the prompts given to `generate`
    limit: int  # max new tokens for this row
    ids: list[int] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    done: bool = False


@dataclass
class _Flight:
    """The rows of the batch in cache order, their cache geometry and their next input token (on the device).

    Row r's real tokens fill cache columns [start[r], width); columns before are left padding (zeros, masked).
    Its next position id is width - start[r] (the count of its real tokens).
    """

    cache: object
    rows: list[_Row]
    start: list[int]
    width: int
    next_token: torch.Tensor  # [B] long
    positions: torch.Tensor | None = None  # [B, 1] long on the device: position id of next_token
    starts: torch.Tensor | None = None  # [B] long on the device: `start`, for the attention mask


@dataclass
class _Transit:
    """One step's (token, p) [2, B] on its way to the host, for the rows of that step in cache order."""

    rows: list[_Row]
    packed: torch.Tensor
    event: torch.cuda.Event | None


@dataclass
class BatcherStats:
    """What a run did: for the benchmark and the tests."""

    prefill_calls: int = 0
    decode_steps: int = 0
    refills: int = 0
    max_rows: int = 0
    oom_retries: int = 0


class ContinuousBatcher:
    """Greedy answers to many prompts through one continuously refilled batch.

    `token_budget`: the KV cache holds at most rows x (width + tokens still to generate) tokens.
    `max_rows`: rows decoded together at most. `prefill_tokens`: rows x padded length of one prefill forward
    (activation memory). `refill_fraction`: new rows join once they would make up this share of the batch, so
    the cost of rebuilding the cache (one copy of it) is paid rarely. `ignore_eos`: every row runs to its
    limit (forced lengths, for benchmarks).
    """

    def __init__(
        self,
        llm: nn.Module,
        *,
        eos_id: int,
        token_budget: int,
        max_rows: int = 256,
        prefill_tokens: int = 16384,
        refill_fraction: float = 0.25,
        ignore_eos: bool = False,
    ) -> None:
        self.llm = llm
        self.eos_id = eos_id
        self.token_budget = max(1, token_budget)
        self.max_rows = max(1, max_rows)
        self.prefill_tokens = max(1, prefill_tokens)
        self.refill_fraction = refill_fraction
        self.ignore_eos = ignore_eos
        self.stats = BatcherStats()
        self._cache_kw = cache_kwarg(llm.model)
        weight = llm.get_input_embeddings().weight
        self._device, self._dtype = weight.device, weight.dtype
        # Results are read one step late on CUDA, so the host never waits for the step it just launched.
        self._lag = 1 if self._device.type == "cuda" else 0

    # ------------------------------------------------------------------------------------------ public
    @torch.inference_mode()
    def generate(self, prompts: Sequence[torch.Tensor], max_new_tokens: int | Sequence[int]) -> list[Generated]:
        """Prompt embeddings [T_i, H] -> one Generated per prompt, in order (ids up to and including `</s>`)."""
        limits = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
        if len(limits) != len(prompts):
            raise ValueError(f"{len(limits)} token limits for {len(prompts)} prompts")
        self._prompts, self._limits = prompts, limits
        results: list[Generated | None] = [None] * len(prompts)
        # Shortest first: neighbours in the queue have similar lengths, so prefill groups need little padding.
        waiting = deque(sorted((i for i in range(len(prompts)) if limits[i] > 0), key=lambda i: prompts[i].shape[0]))
        for i in range(len(prompts)):
            if limits[i] <= 0:
                results[i] = Generated([], [], stopped=False)
        rows: dict[int, _Row] = {i: _Row(i, limits[i]) for i in waiting}
        self._finished: list[_Row] = []
        flight: _Flight | None = None
        in_transit: deque[_Transit] = deque()
        try:
            while waiting or flight is not None:
                try:
                    if self._should_refill(flight, waiting):
                        self._absorb(in_transit, keep=0)
                        flight = self._refill(flight, waiting, rows)
                    elif flight is not None:
                        in_transit.append(self._decode_step(flight))
                        self._absorb(in_transit, keep=self._lag)
                except Exception as exc:
                    if not is_out_of_memory(exc):
                        raise
                    flight, in_transit = None, deque()
                    self._recover(exc, waiting, rows)
                for row in self._finished:
                    results[row.prompt] = Generated(
                        row.ids, row.probs, stopped=bool(row.ids) and row.ids[-1] == self.eos_id
                    )
                    rows.pop(row.prompt, None)
                self._finished = []
        finally:
            self._prompts, self._limits = (), []
        return results  # type: ignore[return-value]

    # --------------------------------------------------------------------------------------- scheduling
    def _remaining(self, row: _Row) -> int:
        return row.limit - len(row.ids)

    def _admissible(self, kept: list[tuple[_Row, int]], waiting: deque[int]) -> int:
        """How many waiting prompts fit beside `kept` (row, real length): the budget and `max_rows` hold."""
        width = max((length for _, length in kept), default=0)
        grow = max((self._remaining(r) for r, _ in kept), default=0)
        count = 0
        for i in waiting:
            if len(kept) + count >= self.max_rows:
                break
            row_width = max(width, self._prompts[i].shape[0])
            row_grow = max(grow, self._limits[i])
            # The cache only grows between refills: its peak is rows x (width now + longest remaining answer).
            if (len(kept) + count + 1) * (row_width + row_grow) > self.token_budget and (kept or count):
                break
            width, grow, count = row_width, row_grow, count + 1
        return count

    def _kept(self, flight: _Flight | None) -> list[tuple[_Row, int]]:
        if flight is None:
            return []
        return [(r, flight.width - s) for r, s in zip(flight.rows, flight.start, strict=True) if not r.done]

    def _should_refill(self, flight: _Flight | None, waiting: deque[int]) -> bool:
        if flight is None:
            return bool(waiting)
        kept = self._kept(flight)
        finished = len(flight.rows) - len(kept)
        if not waiting:
            # Nothing to add; dropping finished rows still pays once half the batch is dead weight.
            return finished > 0 and (not kept or finished * 2 >= len(flight.rows))
        if finished == 0 and len(kept) >= self.max_rows:
            return False
        joining = self._admissible(kept, waiting)
        return joining > 0 and (not kept or joining >= self.refill_fraction * (len(kept) + joining))

    def _refill(self, flight: _Flight | None, waiting: deque[int], rows: dict[int, _Row]) -> _Flight | None:
        """Drop finished rows, prefill what fits from `waiting`, splice both into one cache."""
        kept = self._kept(flight)
        count = self._admissible(kept, waiting)
        joining = [waiting.popleft() for _ in range(count)]
        parts: list[_Flight] = []
        if flight is not None and kept:
            parts.append(self._select(flight, [i for i, r in enumerate(flight.rows) if not r.done]))
        start = 0
        while start < len(joining):  # prefill forwards of at most `prefill_tokens` padded tokens
            end = start + 1
            while (
                end < len(joining) and (end - start + 1) * self._prompts[joining[end]].shape[0] <= self.prefill_tokens
            ):
                end += 1
            group = self._prefill([rows[i] for i in joining[start:end]])
            if group is not None:
                parts.append(group)
            start = end
        if flight is not None or joining:
            self.stats.refills += 1
        if not parts:
            return None
        merged = parts[0] if len(parts) == 1 else self._concat(parts)
        self.stats.max_rows = max(self.stats.max_rows, len(merged.rows))
        return merged

    # --------------------------------------------------------------------------------------- the model
    def _prefill(self, group: list[_Row]) -> _Flight | None:
        """Run the prompts of `group` through the decoder; their first tokens are read now (one sync per group)."""
        prompts = [self._prompts[r.prompt] for r in group]
        batch = pad_left(prompts)
        lengths = [p.shape[0] for p in prompts]
        padded = len(set(lengths)) > 1
        cache = new_cache()
        out = self.llm.model(
            inputs_embeds=batch.inputs_embeds,
            # Equal lengths: no mask, so SDPA may take its flash / causal fast path.
            attention_mask=batch.attention_mask if padded else None,
            position_ids=batch.position_ids,
            use_cache=True,
            **{self._cache_kw: cache},
        )
        self.stats.prefill_calls += 1
        token, packed = self._choose(out.last_hidden_state[:, -1])
        self._record(group, packed.tolist())  # a row may end at its first token
        width = batch.inputs_embeds.shape[1]
        flight = _Flight(cache, group, [width - n for n in lengths], width, token)
        alive = [i for i, r in enumerate(group) if not r.done]
        if not alive:
            return None
        return flight if len(alive) == len(group) else self._select(flight, alive)

    def _decode_step(self, flight: _Flight) -> _Transit:
        """Feed every row its next token; the chosen tokens and their p come back later (see `_absorb`)."""
        if flight.positions is None or flight.starts is None:
            # Built once per batch layout: the step itself then sends nothing from the host.
            flight.positions = torch.tensor([flight.width - s for s in flight.start], device=self._device)[:, None]
            flight.starts = torch.tensor(flight.start, device=self._device)
        mask = None
        if any(flight.start):
            # A 4D additive mask made from host-known geometry: transformers takes it as is (a 2D mask would make
            # it check for padding on the device, a sync per step), and it suits SDPA and eager attention alike.
            columns = torch.arange(flight.width + 1, device=self._device)
            hidden = columns[None, :] < flight.starts[:, None]  # [B, W+1]
            mask = torch.zeros(hidden.shape, dtype=self._dtype, device=self._device)
            mask = mask.masked_fill(hidden, torch.finfo(self._dtype).min)[:, None, None, :]
        out = self.llm.model(
            input_ids=flight.next_token[:, None],
            attention_mask=mask,
            position_ids=flight.positions,
            use_cache=True,
            **{self._cache_kw: flight.cache},
        )
        flight.width += 1
        flight.positions = flight.positions + 1
        self.stats.decode_steps += 1
        token, packed = self._choose(out.last_hidden_state[:, -1])
        flight.next_token = token
        if self._device.type != "cuda":
            return _Transit(list(flight.rows), packed, None)
        # Copy into pinned memory without waiting; an event marks when it has landed.
        host = torch.empty(packed.shape, dtype=packed.dtype, pin_memory=True)
        host.copy_(packed, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        return _Transit(list(flight.rows), host, event)

    def _choose(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Last hidden states [B, H] -> greedy tokens [B] and (token, p) packed as float32 [2, B].

        p is the float32 softmax at the chosen token, as the authors compute confidences. Token ids are exact in
        float32 (vocabularies are far below 2^24), so one copy brings both to the host.
        """
        token, p = greedy_step(self.llm.lm_head, hidden)
        return token, torch.stack([token.float(), p])

    def _absorb(self, in_transit: deque[_Transit], *, keep: int) -> None:
        """Read step results into the rows, oldest first, leaving the newest `keep` in transit."""
        while len(in_transit) > keep:
            item = in_transit.popleft()
            if item.event is not None:
                item.event.synchronize()  # waits for that step only; the next one keeps the GPU busy
            self._record(item.rows, item.packed.tolist())

    def _record(self, rows: list[_Row], packed: list[list[float]]) -> None:
        for row, token, p in zip(rows, packed[0], packed[1], strict=True):
            if row.done:
                continue  # a passenger: finished earlier, still in the cache until the next refill
            row.ids.append(int(token))
            row.probs.append(p)
            if (not self.ignore_eos and int(token) == self.eos_id) or len(row.ids) >= row.limit:
                row.done = True
                self._finished.append(row)

    # ----------------------------------------------------------------------------------- cache surgery
    def _select(self, flight: _Flight, keep: list[int]) -> _Flight:
        """The rows `keep` of `flight`, with the leading columns that are padding for all of them cut off."""
        cut = min(flight.start[i] for i in keep)
        index = torch.tensor(keep, device=self._device)
        for layer, (keys, values) in enumerate(_layer_tensors(flight.cache)):
            # Layer by layer, so the extra memory is one layer's copy, not the whole cache's.
            _set_layer(flight.cache, layer, keys[index, :, cut:], values[index, :, cut:])
        return _Flight(
            flight.cache,
            [flight.rows[i] for i in keep],
            [flight.start[i] - cut for i in keep],
            flight.width - cut,
            flight.next_token[index],
        )

    def _concat(self, parts: list[_Flight]) -> _Flight:
        """Stack flights along the batch, each left-padded to the widest: [B_1 + B_2 + ..., heads, W, dim]."""
        width = max(p.width for p in parts)
        base = parts[0].cache

        def padded(t: torch.Tensor, part: _Flight) -> torch.Tensor:
            return t if part.width == width else F.pad(t, (0, 0, width - part.width, 0))

        for layer in range(len(_layer_tensors(base))):
            # Layer by layer, releasing each part's tensors as soon as they are copied: the extra memory is
            # one layer's worth, not a second copy of the whole cache.
            pairs = [_layer_tensors(p.cache)[layer] for p in parts]
            keys = torch.cat([padded(k, p) for (k, _), p in zip(pairs, parts, strict=True)])
            values = torch.cat([padded(v, p) for (_, v), p in zip(pairs, parts, strict=True)])
            del pairs
            for p in parts:
                _set_layer(p.cache, layer, keys[:0], values[:0])
            _set_layer(base, layer, keys, values)
        return _Flight(
            base,
            [r for p in parts for r in p.rows],
            [s + width - p.width for p in parts for s in p.start],
            width,
            torch.cat([p.next_token for p in parts]),
        )

    # -------------------------------------------------------------------------------------- OOM backoff
    def _recover(self, exc: BaseException, waiting: deque[int], rows: dict[int, _Row]) -> None:
        """Out of memory: the batch is gone; halve the budget and put every unfinished row back in the queue."""
        queued = set(waiting)
        unfinished = [r for r in rows.values() if not r.done and r.prompt not in queued]
        if self.token_budget <= 1 and self.max_rows <= 1 and len(unfinished) <= 1:
            raise exc  # one row alone does not fit: nothing smaller is left to try
        self.stats.oom_retries += 1
        self.token_budget = max(1, self.token_budget // 2)
        self.prefill_tokens = max(1, self.prefill_tokens // 2)
        self.max_rows = max(1, min(self.max_rows, math.ceil(len(unfinished) / 2)))
        for row in unfinished:
            row.ids, row.probs = [], []  # restart from the prompt: the same greedy answer, recomputed
        # Back to the front of the queue, shortest first, as they were.
        waiting.extendleft(sorted((r.prompt for r in unfinished), key=lambda i: -self._prompts[i].shape[0]))
        if self._device.type == "cuda":
            torch.cuda.empty_cache()
