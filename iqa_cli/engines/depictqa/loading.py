"""Build a ready DepictQAModel from local files: LLaMA, CLIP, the trained ckpt.pt, LoRA; and its tokenizer.

Order: the LLaMA (Hugging Face folder, in the target dtype), the CLIP vision tower, the trained weights
(`checkpoint.read_checkpoint`, which checks every key and shape), the Abstractor when the checkpoint has
one, then LoRA, merged on the target device by default. Nothing here touches the network.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import torch

from iqa_cli.engines.depictqa import checkpoint
from iqa_cli.engines.depictqa.model import AbstractorConfig, DepictQAConfig, DepictQAModel
from iqa_cli.engines.depictqa.vision import VisionConfig, load_tower_weights, read_vision_weights
from iqa_cli.errors import ModelFilesError

if TYPE_CHECKING:
    from iqa_cli.engines.depictqa.files import ModelLayout

_SPACE = "\u2581"  # SentencePiece's word-boundary mark


# -------------------------------------------------------------------------------------------- tokenizer


def _without_dummy_prefix(model_proto: bytes) -> bytes:
    """The SentencePiece model with ``normalizer_spec.add_dummy_prefix = false``.

    transformers' non-legacy LlamaTokenizer (what the authors ran) loads the model this way through
    protobuf; we edit the wire format directly rather than depend on protobuf: ModelProto field 3 is
    the normaliser spec, whose field 3 is the flag, and a repeated scalar field takes its last value.
    """

    def varint(data: bytes, pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, pos

    def encode_varint(value: int) -> bytes:
        out = bytearray()
        while True:
            out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
            value >>= 7
            if not value:
                return bytes(out)

    out = bytearray()
    pos = 0
    while pos < len(model_proto):
        start = pos
        key, pos = varint(model_proto, pos)
        wire = key & 7
        if wire == 0:
            _, pos = varint(model_proto, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = varint(model_proto, pos)
            payload = model_proto[pos : pos + length]
            pos += length
            if key >> 3 == 3:
                payload += b"\x18\x00"  # field 3 (add_dummy_prefix), varint, false
                out += encode_varint(key) + encode_varint(len(payload)) + payload
                continue
        else:
            raise ModelFilesError("tokenizer.model is not a SentencePiece model (unexpected wire type)")
        out += model_proto[start:pos]
    return bytes(out)


class PromptTokenizer:
    """LLaMA's SentencePiece tokenizer, tokenizing exactly as the authors' slow LlamaTokenizer did.

    transformers changed how LLaMA text is split over its versions (the ``legacy`` flag, then the move to
    fast tokenizers only), and a different split changes the answers. This class reproduces the slow
    tokenizer of transformers 4.35 (the authors' pin) from ``tokenizer.model`` and the folder's
    ``legacy`` setting, on top of the sentencepiece library alone:

    - special tokens written in the text ("</s>") become their ids; the text between them is encoded
      piecewise;
    - non-legacy (``"legacy": false``): one "▁" before the whole text, none after a special token;
    - legacy (the default when the config is silent): every piece gets SentencePiece's dummy prefix.

    `encode` adds no BOS/EOS. The attribute names follow transformers' where callers share them.
    """

    def __init__(self, model_file: Path, *, legacy: bool = True) -> None:
        import sentencepiece as spm

        proto = Path(model_file).read_bytes()
        self.legacy = legacy
        self.sp = spm.SentencePieceProcessor(model_proto=proto)
        # Non-legacy encodes without the automatic prefix and adds its own "▁".
        self.sp_plain = self.sp if legacy else spm.SentencePieceProcessor(model_proto=_without_dummy_prefix(proto))
        self.unk_token_id, self.bos_token_id, self.eos_token_id = (
            self.sp.unk_id(),
            self.sp.bos_id(),
            self.sp.eos_id(),
        )
        self.pad_token_id = self.eos_token_id  # the authors pad with EOS
        self.unk_token, self.bos_token, self.eos_token = (
            self.sp.id_to_piece(i) for i in (self.unk_token_id, self.bos_token_id, self.eos_token_id)
        )
        self.special_ids = frozenset((self.unk_token_id, self.bos_token_id, self.eos_token_id))
        specials = sorted((self.unk_token, self.bos_token, self.eos_token), key=len, reverse=True)
        self._split = re.compile("(" + "|".join(re.escape(s) for s in specials) + ")")
        self._unk_length = len(self.sp_plain.encode(self.unk_token))

    @classmethod
    def from_folder(cls, folder: Path) -> PromptTokenizer:
        """From a LLaMA folder: ``tokenizer.model``, and ``legacy`` from ``tokenizer_config.json``."""
        model = folder / "tokenizer.model"
        if not model.is_file():
            raise ModelFilesError(f"no tokenizer.model in {folder}; fetch the models with `iqa model download`")
        legacy = True  # transformers 4.35 treats a missing flag as legacy (with a warning)
        config = folder / "tokenizer_config.json"
        if config.is_file():
            value = json.loads(config.read_text()).get("legacy")
            legacy = True if value is None else bool(value)
        return cls(model, legacy=legacy)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def _encode_piece(self, text: str) -> list[int]:
        if self.legacy or not text.startswith((_SPACE, " ")):
            return self.sp_plain.encode(text)
        # A leading space must stay a "▁" of its own word: encode behind the unk text, then drop that.
        return self.sp_plain.encode(self.unk_token + text)[self._unk_length :]

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, special-token strings mapped to their ids, no BOS/EOS added."""
        if not text:
            return []
        if not self.legacy:
            text = _SPACE + text.replace(_SPACE, " ")
        ids: list[int] = []
        special = {
            self.unk_token: self.unk_token_id,
            self.bos_token: self.bos_token_id,
            self.eos_token: self.eos_token_id,
        }
        for part in self._split.split(text):
            if part in special:
                ids.append(special[part])
            elif part:
                ids.extend(self._encode_piece(part))
        space = self.sp.piece_to_id(_SPACE)
        if not self.legacy and len(ids) > 1 and ids[0] == space and ids[1] in self.special_ids:
            ids = ids[1:]  # the added "▁" before a leading special token is dropped, as transformers does
        return ids

    def __call__(self, text: str, add_special_tokens: bool = False) -> SimpleNamespace:
        """transformers-style call for code written against a Hugging Face tokenizer."""
        ids = self.encode(text)
        return SimpleNamespace(input_ids=[self.bos_token_id, *ids] if add_special_tokens else ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of `ids` as the slow tokenizer decodes: special tokens skipped, the first "▁" dropped."""
        pieces = [self.sp.id_to_piece(int(i)) for i in ids if not (skip_special_tokens and int(i) in self.special_ids)]
        if pieces and pieces[0].startswith(_SPACE):
            pieces[0] = pieces[0][1:]
        return self.sp_plain.decode_pieces([p for p in pieces if p])

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [self.sp.id_to_piece(int(i)) for i in ids]

    def convert_tokens_to_ids(self, piece: str) -> int:
        return self.sp.piece_to_id(piece)


# ---------------------------------------------------------------------------------------------- model

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def parse_dtype(name: str | None, device: str) -> torch.dtype:
    """A dtype name -> torch dtype; None picks float16 on CUDA (as the authors run) and float32 elsewhere."""
    if name is None:
        return torch.float16 if device.startswith("cuda") else torch.float32
    try:
        return _DTYPES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use float16, bfloat16 or float32") from None


def _dtype_kwarg(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """transformers renamed ``torch_dtype`` to ``dtype`` in 4.56; pass whichever this version reads."""
    import transformers
    from packaging.version import Version

    return {"dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype": dtype}


def load_llm(folder: Path, dtype: torch.dtype, *, attn_implementation: str = "sdpa") -> torch.nn.Module:
    """LlamaForCausalLM from a local Hugging Face folder, in `dtype`, in eval mode, frozen."""
    from transformers import LlamaConfig, LlamaForCausalLM

    try:
        config = LlamaConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelFilesError(f"cannot read the LLaMA config in {folder}: {exc}") from exc
    scaling = getattr(config, "rope_scaling", None) or {}
    if scaling.get("rope_type", scaling.get("type", "default")) not in ("default", None):
        # vicuna-7b-v1.5-16k has linear RoPE scaling: DepictQA was trained on the 4k model, and the 16k one
        # loads without error but answers garbage.
        raise ModelFilesError(
            f"{folder} is a RoPE-scaled LLaMA ({scaling}); DepictQA needs lmsys/vicuna-7b-v1.5 (not the -16k variant)"
        )
    llm = LlamaForCausalLM.from_pretrained(
        folder, local_files_only=True, attn_implementation=attn_implementation, **_dtype_kwarg(dtype)
    )
    return llm.eval().requires_grad_(False)


def _abstractor_config(weights: checkpoint.TrainedWeights, vision_width: int) -> AbstractorConfig | None:
    if weights.abstractor is None:
        return None
    queries = weights.abstractor["query_embeds"].shape[0]
    layers = len({k.split(".")[2] for k in weights.abstractor if k.startswith("abstractor.layers.")})
    feedforward = weights.abstractor["abstractor.layers.0.linear1.weight"].shape[0]
    return AbstractorConfig(width=vision_width, heads=8, feedforward=feedforward, layers=layers, queries=queries)


def _copy_checked(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict with every key and shape checked first, named in the error."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k} expected {list(expected[k].shape)} got {list(v.shape)}"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        raise ModelFilesError(
            f"{source} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"wrong shape {wrong[:5]}"
        )
    module.load_state_dict(state)


def assemble(
    llm: torch.nn.Module,
    vision_cfg: VisionConfig,
    vision_state: dict[str, torch.Tensor],
    weights: checkpoint.TrainedWeights,
    *,
    bos_id: int = 1,
    clip_source: str = "CLIP",
) -> DepictQAModel:
    """Compose the model from a loaded LLaMA, CLIP weights (Hugging Face names) and the trained weights.

    LoRA is not applied here (see `DepictQAModel.apply_lora`).
    """
    cfg = DepictQAConfig(
        vision=vision_cfg,
        llm_hidden=llm.config.hidden_size,
        abstractor=_abstractor_config(weights, vision_cfg.width),
        bos_id=bos_id,
    )
    model = DepictQAModel(cfg, llm)
    load_tower_weights(model.vision, vision_state, clip_source)
    _copy_checked(
        model.vision_proj,
        {"weight": weights.vision_proj_weight, "bias": weights.vision_proj_bias},
        "vision_proj in ckpt.pt",
    )
    if model.abstractor is not None and weights.abstractor is not None:
        # The checkpoint names the decoder "abstractor" inside the Abstractor; ours is "decoder".
        state = {
            ("decoder" + k.removeprefix("abstractor")) if k.startswith("abstractor.") else k: v
            for k, v in weights.abstractor.items()
        }
        _copy_checked(model.abstractor, state, "the Abstractor in ckpt.pt")
    return model


def load_depictqa(
    layout: ModelLayout,
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
    merge_lora: bool = True,
    attn_implementation: str = "sdpa",
) -> tuple[DepictQAModel, PromptTokenizer]:
    """The full model on `device` in `dtype`, eval mode, with its tokenizer; all from `layout`'s local files.

    `merge_lora=False` keeps the LoRA updates as separate matrices (the authors' unmerged form); merged
    is faster and gives the same answers up to rounding.
    """
    tokenizer_dir = layout.llm if (layout.llm / "tokenizer.model").is_file() else layout.depictqa
    tokenizer = PromptTokenizer.from_folder(tokenizer_dir)
    llm = load_llm(layout.llm, dtype, attn_implementation=attn_implementation)
    vision_cfg, vision_state = read_vision_weights(layout.clip)
    weights = checkpoint.read_checkpoint(
        layout.depictqa / "ckpt.pt",
        num_layers=llm.config.num_hidden_layers,
        hidden=llm.config.hidden_size,
        vision_width=vision_cfg.width,
    )
    model = assemble(
        llm, vision_cfg, vision_state, weights, bos_id=tokenizer.bos_token_id, clip_source=str(layout.clip)
    )
    model.apply_lora(weights.lora, weights.lora_scale)
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    if merge_lora:
        model.merge_lora()
    return model, tokenizer
