"""The DepictQA-Wild network: CLIP vision tower, optional Abstractor, vision projection, LoRA-tuned LLaMA.

This module composes the parts and assembles prompt embeddings; reading files is `loading.py`'s job and
the decoding loops are `generate.py`'s. `DepictQAModel.answer` is the whole pass for one prompt, written
out as the reference the batched engine (`engine.py` + `scheduler.py`) is tested against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from iqa_cli.engines.depictqa.checkpoint import ABSTRACTOR_HEADS, ABSTRACTOR_LAYERS, ABSTRACTOR_QUERIES, LORA_TARGETS
from iqa_cli.engines.depictqa.generate import Generated, greedy_generate, pad_left
from iqa_cli.engines.depictqa.vision import CLIPVisionTower, VisionConfig


@dataclass(frozen=True)
class AbstractorConfig:
    """The Abstractor variant's query transformer (the authors' settings; the width is CLIP's)."""

    width: int = 1024
    heads: int = ABSTRACTOR_HEADS
    feedforward: int = 2048
    layers: int = ABSTRACTOR_LAYERS
    queries: int = ABSTRACTOR_QUERIES  # image tokens per image, whatever its resolution


@dataclass(frozen=True)
class DepictQAConfig:
    """What the assembly needs beyond the LLaMA's own config."""

    vision: VisionConfig = field(default_factory=VisionConfig)
    llm_hidden: int = 4096
    abstractor: AbstractorConfig | None = None  # None: the DQ495K model (one token per patch)


class LoRALinear(nn.Module):
    """A frozen Linear plus the low-rank update ``scale * B(A(x))``, unmerged (as peft computes it)."""

    def __init__(self, base: nn.Linear, lora_a: torch.Tensor, lora_b: torch.Tensor, scale: float) -> None:
        """lora_a: [r, in_features]; lora_b: [out_features, r]."""
        super().__init__()
        if lora_a.shape != (lora_a.shape[0], base.in_features) or lora_b.shape != (
            base.out_features,
            lora_a.shape[0],
        ):
            raise ValueError(
                f"LoRA shapes A {tuple(lora_a.shape)}, B {tuple(lora_b.shape)} do not fit "
                f"Linear({base.in_features}, {base.out_features})"
            )
        self.base = base
        param = base.weight
        self.lora_a = nn.Parameter(lora_a.to(param.dtype, copy=True), requires_grad=False)
        self.lora_b = nn.Parameter(lora_b.to(param.dtype, copy=True), requires_grad=False)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + F.linear(F.linear(x, self.lora_a), self.lora_b) * self.scale

    def merged(self) -> nn.Linear:
        """The equivalent single Linear: W + scale * B @ A, summed in float32, stored in W's dtype."""
        weight = self.base.weight
        delta = (self.lora_b.float() @ self.lora_a.float()) * self.scale
        merged = nn.Linear(
            self.base.in_features,
            self.base.out_features,
            bias=self.base.bias is not None,
            device=weight.device,
            dtype=weight.dtype,
        )
        with torch.no_grad():
            merged.weight.copy_((weight.float() + delta).to(weight.dtype))
            if self.base.bias is not None:
                merged.bias.copy_(self.base.bias)
        merged.requires_grad_(False)
        return merged


class Abstractor(nn.Module):
    """Learned queries attending to the patch features: [B, N, C] -> [B, queries, C].

    A post-norm, ReLU, sequence-first nn.TransformerDecoder with no final norm, exactly the module the
    Abstractor checkpoint was trained as (``abstractor.abstractor.*`` maps to ``decoder.*``).
    """

    def __init__(self, cfg: AbstractorConfig) -> None:
        super().__init__()
        layer = nn.TransformerDecoderLayer(
            d_model=cfg.width, nhead=cfg.heads, dim_feedforward=cfg.feedforward, dropout=0.0
        )
        self.decoder = nn.TransformerDecoder(layer, num_layers=cfg.layers)
        self.query_embeds = nn.Parameter(torch.zeros(cfg.queries, 1, cfg.width))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        memory = features.transpose(0, 1)  # [N, B, C]: sequence-first, as trained
        queries = self.query_embeds.expand(-1, features.shape[0], -1)  # [Q, B, C]
        return self.decoder(queries, memory).transpose(0, 1)


class DepictQAModel(nn.Module):
    """Vision tower -> (Abstractor) -> vision_proj -> image embeddings spliced into a LLaMA prompt."""

    def __init__(self, cfg: DepictQAConfig, llm: nn.Module) -> None:
        """`llm` is a transformers LlamaForCausalLM whose hidden size is `cfg.llm_hidden`."""
        super().__init__()
        self.cfg = cfg
        self.vision = CLIPVisionTower(cfg.vision)
        self.abstractor = Abstractor(cfg.abstractor) if cfg.abstractor is not None else None
        self.vision_proj = nn.Linear(cfg.vision.width, cfg.llm_hidden)
        self.llm = llm

    # ------------------------------------------------------------------------------------------ LoRA
    def attention_layers(self) -> list[nn.Module]:
        """The LLaMA's self-attention modules, layer by layer."""
        return [layer.self_attn for layer in self.llm.model.layers]

    def apply_lora(self, lora: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]], scale: float) -> None:
        """Wrap each (layer, projection) named in `lora` as a LoRALinear with its (A [r, in], B [out, r])."""
        attention = self.attention_layers()
        for (index, name), (lora_a, lora_b) in sorted(lora.items()):
            base = getattr(attention[index], name)
            if isinstance(base, LoRALinear):
                raise ValueError(f"LoRA already applied to layer {index} {name}")
            setattr(attention[index], name, LoRALinear(base, lora_a, lora_b, scale))

    def merge_lora(self) -> None:
        """Fold every LoRA update into its Linear: one matmul per projection instead of three."""
        for attention in self.attention_layers():
            for name in LORA_TARGETS:
                module = getattr(attention, name, None)
                if isinstance(module, LoRALinear):
                    setattr(attention, name, module.merged())

    # ---------------------------------------------------------------------------------------- images
    def encode_images(self, images: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Images [3, H_i, W_i] (prepared pixels) -> embeddings [N_i, llm_hidden], in the LLM's dtype.

        Images of one size go through the tower together; each image's result does not depend on the
        others (no padding in the tower). N_i = H_i/14 * W_i/14, or the Abstractor's query count.
        """
        out: list[torch.Tensor | None] = [None] * len(images)
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(tuple(image.shape), []).append(i)
        weight = self.vision_proj.weight
        for indices in by_size.values():
            pixels = torch.stack([images[i] for i in indices]).to(weight.device, weight.dtype)
            features = self.vision(pixels)  # [b, N, C]
            if self.abstractor is not None:
                features = self.abstractor(features)  # [b, Q, C]
            embeds = self.vision_proj(features).to(self.llm.get_input_embeddings().weight.dtype)
            for j, i in enumerate(indices):
                out[i] = embeds[j]
        return out  # type: ignore[return-value]

    # ---------------------------------------------------------------------------------------- prompt
    def embed_prompt(self, segments: Sequence[Sequence[int] | None], images: Sequence[torch.Tensor]) -> torch.Tensor:
        """Token-id segments with image places (None) -> the prompt's input embeddings [T, llm_hidden].

        Each None takes the next of `images` ([N_i, llm_hidden]) in order; the caller puts BOS in the
        first segment. The counts must agree: a missing or extra image would silently shift the prompt.
        """
        slots = sum(1 for s in segments if s is None)
        if slots != len(images):
            raise ValueError(
                f"the prompt has {slots} image place(s) but {len(images)} image embedding(s) were "
                "given; each image slot of the task needs exactly one image"
            )
        table = self.llm.get_input_embeddings()
        hidden = table.weight.shape[1]
        parts: list[torch.Tensor] = []
        remaining = iter(images)
        for segment in segments:
            if segment is None:
                image = next(remaining)
                if image.ndim != 2 or image.shape[1] != hidden:
                    raise ValueError(f"image embeddings must be [N, {hidden}], got {tuple(image.shape)}")
                parts.append(image.to(table.weight.dtype))
            elif len(segment):
                ids = torch.tensor(list(segment), dtype=torch.long, device=table.weight.device)
                parts.append(table(ids))
        return torch.cat(parts, dim=0)

    # ---------------------------------------------------------------------------------------- answer
    @torch.inference_mode()
    def answer(
        self,
        segments: Sequence[Sequence[int] | None],
        images: Sequence[torch.Tensor],
        *,
        max_new_tokens: int,
        eos_id: int,
    ) -> Generated:
        """One prompt's greedy answer, the whole forward pass top to bottom.

        Before: `preprocess.pad_and_normalize` makes each image's pixels [3, H_i, W_i] (its own size, padded
        to a multiple of 14, CLIP-normalised); `prompts.build_chunks` and the tokenizer make `segments`, the
        token ids of each text chunk with None where an image goes (BOS first). After: the tokenizer decodes
        `ids`, and `confidence.answer_confidence` turns `probs` into the answer's confidence.
        """
        embeds = self.encode_images(images)  # [N_i, hidden] per image: CLIP -> (Abstractor) -> projection
        prompt = self.embed_prompt(segments, embeds)  # [T, hidden]: text embeddings with the images spliced in
        batch = pad_left([prompt])  # [1, T, hidden], mask, positions
        return greedy_generate(self.llm, batch, max_new_tokens=max_new_tokens, eos_id=eos_id)[0]
