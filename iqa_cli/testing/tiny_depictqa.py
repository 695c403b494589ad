"""Write a tiny DepictQA model set in exactly the released layout, for tests and CPU smoke runs.

Every folder mirrors its release: a LLaMA folder (sharded safetensors, the 4.31-era `config.json`, a
SentencePiece `tokenizer.model` trained here with LLaMA's settings), a CLIP folder with a 16x16 patch grid,
the DepictQA2 folder (`ckpt.pt` with the real key names, fp16, shapes scaled down), and a MiniLM folder.
Models load through the same code path as real weights. Folders are built once per (seed, version) and
reused, so a session-scoped test fixture pays a few seconds once.
"""

from __future__ import annotations

import functools
import io
import json
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iqa_cli.engines.depictqa import checkpoint, files

# Bump when the files written change, so cached builds are rebuilt.
FIXTURE_VERSION = 1
_MARKER = ".iqa-fixture.json"


@dataclass(frozen=True)
class TinySizes:
    """The fixture's sizes; the real ones are in comments."""

    hidden: int = 64  # 4096
    layers: int = 2  # 32
    heads: int = 4  # 32
    intermediate: int = 128  # 11008
    vocab_target: int = 1000  # 32000; the trained tokenizer may end a little smaller
    clip_width: int = 32  # 1024
    clip_layers: int = 2  # 24
    clip_heads: int = 2  # 16
    lora_rank: int = 4  # 16 (alpha = r in both, so the scale is 1.0)
    abstractor_heads: int = 8  # 8
    abstractor_ffn: int = 64  # 2048
    minilm_width: int = 32  # 384


TINY = TinySizes()

# Text the tokenizer is trained on: the prompt pieces and the words of questions and answers, so every
# piece the model code looks up ("▁Image", "▁A", "▁B", "▁and") exists as in LLaMA. No "\n" (it falls back to
# the byte piece <0x0A>, id 13, as in LLaMA) and no "</s>" (transformers splits it off as the EOS token).
_CORPUS = [
    "A chat between a curious human and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the human's questions.",
    "As an AI assistant, you are performing an image quality assessment task.",
    "A high-quality Reference Image is provided to assist the evaluation.",
    "Image: <Img> </Img> Reference Image: <Img-Reference> </Img-Reference>",
    "Image A: <Img-A> </Img-A> Image B: <Img-B> </Img-B>",
    "USER: ASSISTANT: USER: ASSISTANT:",
    "What is the primary ONE degradation observed in the evaluated image?",
    "What are the most critical TWO distortions in the evaluated image?",
    "Identify the chief degradation in the evaluated image compared to the reference.",
    "Answer the question using a single word or phrase.",
    "Which image do you believe has better overall quality: Image A or Image B?",
    "Compare the overall quality of Image A with Image B and provide a comprehensive explanation.",
    "Evaluate the quality of the image and provide a comprehensive explanation.",
    "Image A Image B Image A Image B Image A or Image B",
    "Noise Blur Compression Brightness Darkness Contrast Saturation Pixelation None",
    "Blur and noise. Noise and compression. Compression and blur. None.",
    "noise, blur, compression, oversharpening, pixelation, color quantization",
    "insufficient saturation, overly high saturation, insufficient contrast, overly high contrast",
    "insufficient brightness, overly high brightness",
    "The image suffers from severe noise and slight blur, which obscure fine textures and edges.",
    "The details of the building are lost, and the colors look washed out and dull.",
    "Image A is sharper than Image B, so Image A has better quality and is preferred.",
    "Image B shows heavy compression artifacts and blocking, so Image B is worse.",
    "Therefore, the quality of the image is poor, fair, good, excellent or bad.",
    "excellent good fair poor bad high low severe slight moderate noticeable",
    "0 1 2 3 4 5 6 7 8 9 10 14 16 224 336 672",
]


@functools.lru_cache(maxsize=1)
def _tokenizer_model() -> bytes:
    """A small BPE SentencePiece model trained with LLaMA's settings (byte fallback, ids 0-2 special)."""
    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS * 8),
        model_writer=out,
        model_type="bpe",
        vocab_size=TINY.vocab_target,
        hard_vocab_limit=False,  # the corpus is small: take as many pieces as it yields
        character_coverage=1.0,
        byte_fallback=True,  # puts <0x00>..<0xFF> at ids 3..258 as in LLaMA, so "\n" is id 13
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        num_threads=1,  # deterministic
        minloglevel=2,
    )
    return out.getvalue()


def tokenizer_vocab_size() -> int:
    """How many pieces the fixture's tokenizer has (the tiny LLaMA's vocab_size)."""
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_proto=_tokenizer_model()).get_piece_size()


def build_tiny_models(root: Path, *, variant: str = "dq495k", seed: int = 0) -> files.ModelLayout:
    """Write (or reuse) a tiny model set for `variant` under `root`; returns its layout.

    Deterministic for a seed. Shared folders (LLaMA, CLIP, MiniLM) serve every variant built in `root`.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    vocab = tokenizer_vocab_size()
    stamp = {"version": FIXTURE_VERSION, "seed": seed}
    _build_once(root / files.LLM_DIR, stamp, lambda d: _write_llama(d, vocab, seed))
    _build_once(root / files.CLIP_DIR, stamp, lambda d: _write_clip(d, seed))
    _build_once(root / files.MINILM_DIR, stamp, lambda d: _write_minilm(d, seed))
    _build_once(
        root / files.variant_dir_name(variant),
        stamp | {"variant": variant},
        lambda d: _write_depictqa(d, variant, seed),
    )
    return files.locate(root, variant)


def _build_once(folder: Path, stamp: dict[str, Any], write: Any) -> None:
    """Run `write` into a scratch folder and move it into place, unless `folder` was built with `stamp`."""
    marker = folder / _MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == stamp:
                return
        except ValueError:
            pass
    scratch = folder.with_name(folder.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    write(scratch)
    (scratch / _MARKER).write_text(json.dumps(stamp))
    # Written aside and moved last: an interrupted build never leaves a folder that looks complete.
    shutil.rmtree(folder, ignore_errors=True)
    scratch.rename(folder)


def _llama_config(vocab: int) -> dict[str, Any]:
    """Vicuna-7B v1.5's config.json with the sizes scaled down (same keys, written by transformers 4.31)."""
    return {
        "_name_or_path": "vicuna-7b-v1.5",
        "architectures": ["LlamaForCausalLM"],
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": TINY.hidden,
        "initializer_range": 0.02,
        "intermediate_size": TINY.intermediate,
        "max_position_embeddings": files.VICUNA_CONTEXT,
        "model_type": "llama",
        "num_attention_heads": TINY.heads,
        "num_hidden_layers": TINY.layers,
        "num_key_value_heads": TINY.heads,
        "pad_token_id": 0,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "tie_word_embeddings": False,
        "torch_dtype": "float16",
        "transformers_version": "4.31.0",
        "use_cache": True,
        "vocab_size": vocab,
    }


def _special(content: str) -> dict[str, Any]:
    """An AddedToken entry as LLaMA-2's tokenizer files write it."""
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False}  # fmt: skip


def _tokenizer_config(*, pad: str | None) -> dict[str, Any]:
    """tokenizer_config.json: the slow LlamaTokenizer, non-legacy, as in the Vicuna v1.5 release."""
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": _special("<s>"),
        "clean_up_tokenization_spaces": False,
        "eos_token": _special("</s>"),
        "legacy": False,
        "model_max_length": files.VICUNA_CONTEXT,
        "pad_token": pad,
        "padding_side": "right",
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
        "unk_token": _special("<unk>"),
    }


def _write_tokenizer(folder: Path, *, pad: str | None) -> None:
    """tokenizer.model, tokenizer_config.json and special_tokens_map.json (no tokenizer.json, as released)."""
    (folder / "tokenizer.model").write_bytes(_tokenizer_model())
    _write_json(folder / "tokenizer_config.json", _tokenizer_config(pad=pad))
    special = {"bos_token": _special("<s>"), "eos_token": _special("</s>"), "unk_token": _special("<unk>")}
    if pad is not None:
        special["pad_token"] = pad
    for entry in special.values():
        if isinstance(entry, dict):
            entry.pop("__type", None)
    _write_json(folder / "special_tokens_map.json", special)


def _write_llama(folder: Path, vocab: int, seed: int) -> None:
    """The Vicuna folder: fp16 weights in two safetensors shards with an index, configs, tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config_dict = _llama_config(vocab)
    keys = {k: v for k, v in config_dict.items() if k not in {"_name_or_path", "architectures", "transformers_version"}}
    keys.pop("torch_dtype")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(LlamaConfig(**keys))
    # Two shards, like the release, so loaders meet the index file.
    model.to(torch.float16).save_pretrained(folder, max_shard_size="300KB", safe_serialization=True)
    _write_json(folder / "config.json", config_dict)
    _write_json(
        folder / "generation_config.json",
        # As released: sampling values without do_sample, so code must pass its own generation settings.
        {"bos_token_id": 1, "eos_token_id": 2, "max_length": files.VICUNA_CONTEXT, "pad_token_id": 0,
         "temperature": 0.9, "top_p": 0.6, "transformers_version": "4.31.0"},
    )  # fmt: skip
    _write_tokenizer(folder, pad=None)


def _write_clip(folder: Path, seed: int) -> None:
    """The CLIP folder: a tiny full CLIPModel (text and vision) with patch 14 at 224 px, and its preprocessor file."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config={"vocab_size": 99, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": 1, "eos_token_id": 2,
                     "pad_token_id": 0},
        vision_config={"hidden_size": TINY.clip_width, "intermediate_size": 2 * TINY.clip_width,
                       "num_hidden_layers": TINY.clip_layers, "num_attention_heads": TINY.clip_heads,
                       "patch_size": files.CLIP_PATCH, "image_size": files.CLIP_IMAGE_SIZE},
        projection_dim=16,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        model = CLIPModel(config)
    model.save_pretrained(folder, safe_serialization=True)
    _write_json(
        folder / "preprocessor_config.json",
        {"crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
         "feature_extractor_type": "CLIPFeatureExtractor",
         "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
         "resample": 3, "size": 224},
    )  # fmt: skip


def _write_depictqa(folder: Path, variant: str, seed: int) -> None:
    """The DepictQA2 folder: ckpt.pt (real names, fp16, non-zero LoRA B), the LLaMA config, tokenizer files."""
    import torch

    generator = torch.Generator().manual_seed(seed * 100 + list(files.VARIANTS).index(variant) + 2)

    def randn(*shape: int, std: float) -> torch.Tensor:
        return (torch.randn(*shape, generator=generator) * std).to(torch.float16)

    # Order as the authors' module lists its trainable parameters: LoRA, Abstractor, projection.
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for layer in range(TINY.layers):
        for target in checkpoint.LORA_TARGETS:
            # Both halves non-zero (peft starts B at zero), large enough that LoRA visibly changes outputs.
            state[checkpoint.lora_key(layer, target, "A")] = randn(TINY.lora_rank, TINY.hidden, std=0.1)
            state[checkpoint.lora_key(layer, target, "B")] = randn(TINY.hidden, TINY.lora_rank, std=0.1)
    if variant == "abstractor":
        state["abstractor.query_embeds"] = randn(checkpoint.ABSTRACTOR_QUERIES, 1, TINY.clip_width, std=1.0)
        # Names straight from torch's own module, so they cannot drift from what the authors saved.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 3)
            layer = torch.nn.TransformerDecoderLayer(
                d_model=TINY.clip_width, nhead=TINY.abstractor_heads, dim_feedforward=TINY.abstractor_ffn
            )
            decoder = torch.nn.TransformerDecoder(layer, num_layers=checkpoint.ABSTRACTOR_LAYERS)
        for name, tensor in decoder.state_dict().items():
            state[f"abstractor.abstractor.{name}"] = tensor.detach().to(torch.float16).clone()
    state["vision_proj.weight"] = randn(TINY.hidden, TINY.clip_width, std=0.05)
    state["vision_proj.bias"] = randn(TINY.hidden, std=0.01)
    torch.save(state, folder / files.CHECKPOINT)

    # The authors save the LLM config and tokenizer next to ckpt.pt (transformers 4.35, pad set to EOS).
    config = _llama_config(tokenizer_vocab_size()) | {
        "_name_or_path": "../../../ModelZoo/LLM/vicuna/vicuna-7b-v1.5/",
        "attention_bias": False,
        "rope_theta": 10000.0,
        "transformers_version": "4.35.0",
    }
    _write_json(folder / "config.json", config)
    _write_tokenizer(folder, pad="</s>")


def _write_minilm(folder: Path, seed: int) -> None:
    """The all-MiniLM-L6-v2 folder: a tiny BertModel, a word-piece vocab, and the sentence-transformers files."""
    import torch
    from transformers import BertConfig, BertModel

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = sorted({c for line in _CORPUS for c in line.lower() if not c.isspace()})
    words = sorted({w.strip(".,:;?'\"()<>").lower() for line in _CORPUS for w in line.split()} - {""})
    vocab = specials + chars + [f"##{c}" for c in chars] + [w for w in words if w not in chars]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=TINY.minilm_width,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * TINY.minilm_width,
        max_position_embeddings=512,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 4)
        model = BertModel(config)
    model.save_pretrained(folder, safe_serialization=True)
    _write_json(
        folder / "tokenizer_config.json",
        {"do_lower_case": True, "model_max_length": 512, "tokenizer_class": "BertTokenizer", "unk_token": "[UNK]",
         "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"},
    )  # fmt: skip
    _write_json(
        folder / "special_tokens_map.json",
        {
            "unk_token": "[UNK]",
            "sep_token": "[SEP]",
            "pad_token": "[PAD]",
            "cls_token": "[CLS]",
            "mask_token": "[MASK]",
        },
    )
    _write_json(
        folder / "modules.json",
        [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
         {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
         {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}],
    )  # fmt: skip
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": 256, "do_lower_case": False})
    (folder / "1_Pooling").mkdir()
    _write_json(
        folder / "1_Pooling" / "config.json",
        {"word_embedding_dimension": TINY.minilm_width, "pooling_mode_cls_token": False,
         "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
         "pooling_mode_mean_sqrt_len_tokens": False},
    )  # fmt: skip


def _write_json(path: Path, data: Any) -> None:
    """JSON as Hugging Face writes it: indented, keys in the given order."""
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def use_16k_vicuna(models: Path) -> None:
    """Turn the models folder's Vicuna config into the -16k variant's (linear RoPE scaling, 16384 positions),
    which loads without error and answers garbage: what the loader and `iqa model check` must refuse."""
    config_path = models / files.LLM_DIR / "config.json"
    config = json.loads(config_path.read_text())
    config.update(max_position_embeddings=16384, rope_scaling={"factor": 4.0, "type": "linear"})
    config_path.write_text(json.dumps(config))
