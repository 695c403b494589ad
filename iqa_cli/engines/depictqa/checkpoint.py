"""Read DepictQA's trained weights (`ckpt.pt`) safely and check every key and shape before anything uses them."""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iqa_cli.engines.depictqa.files import CLIP_REPO, VARIANTS, VICUNA_REPO
from iqa_cli.errors import ModelFilesError, first_line

if TYPE_CHECKING:
    from torch import Tensor

# The authors wrap Vicuna with peft 0.3.0 (`get_peft_model`, adapter "default") inside their `DepictQA`
# module under the attribute `llm`, and save only the parameters that require grad; that gives these names.
LORA_PREFIX = "llm.base_model.model.model.layers"
# Facts about the released checkpoints (model.py builds its modules from them).
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
# Every released config trains LoRA with r=16 and alpha=16; the checkpoint does not store alpha, so the
# scale (alpha / r) is a fact about the release, kept here rather than guessed from the tensors.
LORA_SCALE = 1.0
ABSTRACTOR_PREFIX = "abstractor."
ABSTRACTOR_LAYERS = 4
ABSTRACTOR_QUERIES = 64
ABSTRACTOR_HEADS = 8
# Most names to show per kind of problem, so one line stays readable for a 7B-sized mismatch.
_SHOWN = 6
# A release's pickle (tensor names and storage records) is tens of KB; a bigger one is not a checkpoint's.
_PICKLE_LIMIT = 16 * 1024 * 1024
# torch.save's legacy (pre-zip) format opens with this number, pickled on its own.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def lora_key(layer: int, target: str, half: str) -> str:
    """The checkpoint name of one LoRA matrix; `half` is "A" ([r, in]) or "B" ([out, r])."""
    return f"{LORA_PREFIX}.{layer}.self_attn.{target}.lora_{half}.default.weight"


def abstractor_shapes(vision_width: int, ffn: int) -> dict[str, tuple[int, ...]]:
    """Names (relative to "abstractor.") and shapes of the Abstractor: 64 queries and a 4-layer decoder.

    The decoder is `nn.TransformerDecoder` (post-norm, no final norm), so its names are that module's
    state_dict names under "abstractor.".
    """
    w = vision_width
    shapes: dict[str, tuple[int, ...]] = {"query_embeds": (ABSTRACTOR_QUERIES, 1, w)}
    for i in range(ABSTRACTOR_LAYERS):
        base = f"abstractor.layers.{i}"
        for attn in ("self_attn", "multihead_attn"):
            shapes[f"{base}.{attn}.in_proj_weight"] = (3 * w, w)
            shapes[f"{base}.{attn}.in_proj_bias"] = (3 * w,)
            shapes[f"{base}.{attn}.out_proj.weight"] = (w, w)
            shapes[f"{base}.{attn}.out_proj.bias"] = (w,)
        shapes[f"{base}.linear1.weight"] = (ffn, w)
        shapes[f"{base}.linear1.bias"] = (ffn,)
        shapes[f"{base}.linear2.weight"] = (w, ffn)
        shapes[f"{base}.linear2.bias"] = (w,)
        for norm in ("norm1", "norm2", "norm3"):
            shapes[f"{base}.{norm}.weight"] = (w,)
            shapes[f"{base}.{norm}.bias"] = (w,)
    return shapes


def expected_shapes(
    *,
    num_layers: int,
    hidden: int,
    vision_width: int,
    lora_rank: int,
    abstractor_ffn: int | None = None,
) -> dict[str, tuple[int, ...]]:
    """Every key a DepictQA2 `ckpt.pt` holds and its shape; the Abstractor's keys when `abstractor_ffn` is set."""
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in range(num_layers):
        for target in LORA_TARGETS:
            shapes[lora_key(layer, target, "A")] = (lora_rank, hidden)
            shapes[lora_key(layer, target, "B")] = (hidden, lora_rank)
    if abstractor_ffn is not None:
        for name, shape in abstractor_shapes(vision_width, abstractor_ffn).items():
            shapes[ABSTRACTOR_PREFIX + name] = shape
    shapes["vision_proj.weight"] = (hidden, vision_width)
    shapes["vision_proj.bias"] = (hidden,)
    return shapes


@dataclass
class TrainedWeights:
    """The trained part of DepictQA, checked and sorted by role.

    - `lora`: (layer, "q_proj") -> (A [r, hidden], B [hidden, r]); the update is `lora_scale * B @ A`.
    - `vision_proj_weight` [llm_hidden, vision_width] and `vision_proj_bias` [llm_hidden].
    - `abstractor`: names relative to "abstractor." ("query_embeds" [64, 1, vision_width],
      "abstractor.layers.0.self_attn.in_proj_weight", ...), or None for the projector-only variants.
    - `variant`: "abstractor" or "dq495k" (the structure shared by DQ495K, QPath and QInst).
    Tensors keep the checkpoint's dtype (fp16 in the releases); the loader casts.
    """

    lora: dict[tuple[int, str], tuple[Tensor, Tensor]]
    lora_scale: float
    vision_proj_weight: Tensor
    vision_proj_bias: Tensor
    abstractor: dict[str, Tensor] | None
    variant: str

    @property
    def lora_rank(self) -> int:
        """The LoRA rank r (16 in the releases)."""
        first_a, _ = next(iter(self.lora.values()))
        return int(first_a.shape[0])


def read_checkpoint(path: Path, *, num_layers: int, hidden: int, vision_width: int) -> TrainedWeights:
    """Load `ckpt.pt` with `torch.load(weights_only=True)` and check it against the LLM and CLIP sizes.

    Raises ModelFilesError naming every missing, unexpected and mis-shaped tensor (never a partial load),
    and for files that are truncated, not a checkpoint, or hold objects other than tensors.
    """
    state = _load_tensors(Path(path))
    variant = "abstractor" if any(k.startswith(ABSTRACTOR_PREFIX) for k in state) else "dq495k"
    lora_rank = _infer_dim(state, lora_key(0, "q_proj", "A"), 0, default=16)
    ffn = _infer_dim(state, "abstractor.abstractor.layers.0.linear1.weight", 0, default=2048)
    expected = expected_shapes(
        num_layers=num_layers,
        hidden=hidden,
        vision_width=vision_width,
        lora_rank=lora_rank,
        abstractor_ffn=ffn if variant == "abstractor" else None,
    )
    mismatch = state_mismatch(expected, shapes(state))
    if mismatch:
        raise ModelFilesError(
            f"{path} does not match a DepictQA2 checkpoint for an LLM with {num_layers} layers of width {hidden} "
            f"and a CLIP of width {vision_width}: {mismatch}. Check that the Vicuna and CLIP folders are "
            f"{VICUNA_REPO} and {CLIP_REPO}, then re-fetch the checkpoint with `iqa model download` "
            "(`iqa model check` lists every problem)."
        )

    lora = {
        (layer, target): (state[lora_key(layer, target, "A")], state[lora_key(layer, target, "B")])
        for layer in range(num_layers)
        for target in LORA_TARGETS
    }
    abstractor = None
    if variant == "abstractor":
        abstractor = {k[len(ABSTRACTOR_PREFIX) :]: v for k, v in state.items() if k.startswith(ABSTRACTOR_PREFIX)}
    return TrainedWeights(
        lora=lora,
        lora_scale=LORA_SCALE,
        vision_proj_weight=state["vision_proj.weight"],
        vision_proj_bias=state["vision_proj.bias"],
        abstractor=abstractor,
        variant=variant,
    )


def checkpoint_structure(path: Path) -> str:
    """The structure of `ckpt.pt`, "abstractor" or "dq495k" (that of DQ495K, QPath and QInst), from its
    tensor names alone: no torch, no tensor read, so cheap enough for `iqa model info` on a 7B-sized setup.

    Raises ModelFilesError when the file is not a PyTorch checkpoint or holds no DepictQA2 weights. Shapes
    are not checked here: `read_checkpoint` (and so `iqa model check`) checks every one.
    """
    path = Path(path)
    names = _pickled_strings(path)
    lacking = [
        what
        for what, found in (
            ("vision_proj.weight", "vision_proj.weight" in names),
            (f"LoRA tensors under {LORA_PREFIX}", any(n.startswith(LORA_PREFIX + ".") for n in names)),
        )
        if not found
    ]
    if lacking:
        raise ModelFilesError(
            f"{path} is a PyTorch file but not a DepictQA2 checkpoint: it has no {' and no '.join(lacking)}."
        )
    return "abstractor" if any(n.startswith(ABSTRACTOR_PREFIX) for n in names) else "dq495k"


def checkpoint_problem(path: Path, variant: str) -> str | None:
    """Why `path` cannot be `variant`'s checkpoint, judged from its tensor names (`checkpoint_structure`),
    or None when it looks like one."""
    try:
        structure = checkpoint_structure(path)
    except ModelFilesError as exc:
        return str(exc)
    if (structure == "abstractor") != (variant == "abstractor"):
        has = "has" if structure == "abstractor" else "lacks"
        return f"{path} {has} Abstractor weights, so it is not {VARIANTS[variant]}."
    return None


def _pickled_strings(path: Path) -> set[str]:
    """Every string in the pickle of a torch.save file (the tensor names among them), read with pickletools,
    which parses opcodes and runs none: both the zip archive (`<name>/data.pkl`) and the legacy format."""
    unreadable = (
        f"{path} is not a PyTorch checkpoint (neither torch.save's zip archive nor its legacy format); "
        "it may be truncated or corrupted"
    )
    try:
        # Garbage can hold pickle's text opcodes with bad escapes, which warn as they are decoded.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ops = _pickle_ops(path, unreadable)
    except ModelFilesError:
        raise
    except Exception as exc:
        # Damaged files fail in many ways here: unknown opcodes, truncation, bad UTF-8, a broken zip.
        raise ModelFilesError(unreadable) from exc
    return {arg for _, arg, _ in ops if isinstance(arg, str)}


def _pickle_ops(path: Path, unreadable: str) -> list[tuple[Any, Any, Any]]:
    """The opcodes of a torch.save file's object pickle (`pickletools.genops`); ModelFilesError(`unreadable`)
    when a file that is no zip does not open with the legacy format's magic number."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            pickles = [i for i in archive.infolist() if i.filename.rpartition("/")[2] == "data.pkl"]
            if len(pickles) != 1 or pickles[0].file_size > _PICKLE_LIMIT:
                raise ModelFilesError(f"{path} is a zip archive but not a PyTorch checkpoint (no one data.pkl)")
            return list(pickletools.genops(archive.read(pickles[0])))
    with path.open("rb") as whole:
        # The legacy format's pickles come before the tensors' bytes, so a bounded head holds them.
        f = io.BytesIO(whole.read(_PICKLE_LIMIT))
        if _LEGACY_MAGIC not in [arg for _, arg, _ in pickletools.genops(f)]:
            raise ModelFilesError(unreadable)
        for _ in range(2):  # the protocol version, then the system's facts; the object comes third
            list(pickletools.genops(f))
        return list(pickletools.genops(f))


def _load_tensors(path: Path) -> dict[str, Tensor]:
    """The checkpoint's name -> tensor mapping, loaded without running any pickled code."""
    import torch

    redownload = "Delete it and fetch it again with `iqa model download`."
    if not path.is_file():
        raise ModelFilesError(f"No DepictQA checkpoint at {path}. Fetch it with `iqa model download`.")
    try:
        loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses any global that is not a tensor type: such a file is not a release.
        found = re.search(r"unsupported global:? (?:GLOBAL )?([\w.]+)|unsupported GLOBAL ([\w.]+)", str(exc), re.I)
        if found is None:
            raise ModelFilesError(
                f"{path} is not a readable PyTorch checkpoint; it may be truncated or corrupted "
                f"({_weights_only_reason(exc)}). {redownload}"
            ) from exc
        raise ModelFilesError(
            f"{path} holds a pickled object ({found.group(1) or found.group(2)}) that is not a tensor; iqa "
            f"loads checkpoints with torch.load(weights_only=True) only and refuses it. The released ckpt.pt "
            f"holds tensors only: {redownload}"
        ) from exc
    except Exception as exc:
        # A damaged file fails in many ways (zip reader RuntimeError, EOFError, KeyError on garbage bytes).
        raise ModelFilesError(
            f"{path} is not a readable PyTorch checkpoint; it may be truncated or corrupted "
            f"({type(exc).__name__}: {first_line(exc, 200)}). {redownload}"
        ) from exc

    if not isinstance(loaded, Mapping):
        raise ModelFilesError(
            f"{path} holds a {type(loaded).__name__}, not a name -> tensor mapping like the released ckpt.pt. "
            f"{redownload}"
        )
    not_tensors = [str(k) for k, v in loaded.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ModelFilesError(f"{path} has entries that are not named tensors: {_sample(not_tensors)}. {redownload}")
    not_float = [k for k, v in loaded.items() if not v.is_floating_point()]
    if not_float:
        raise ModelFilesError(f"{path} has non-floating-point tensors: {_sample(not_float)}. {redownload}")
    return dict(loaded)


def _infer_dim(state: Mapping[str, Tensor], key: str, dim: int, *, default: int) -> int:
    """A size read from one tensor (LoRA rank, Abstractor FFN width); `default` when it is absent or odd."""
    tensor = state.get(key)
    if tensor is None or tensor.dim() <= dim:
        return default
    return int(tensor.shape[dim])


def state_mismatch(
    expected: Mapping[str, Sequence[int] | None],
    found: Mapping[str, Sequence[int]],
    *,
    others_allowed: bool = False,
) -> str:
    """What keeps `found` (name -> shape) from being `expected` (None: any shape), as one clause: counts of
    missing, unexpected and mis-shaped tensors with the first few names; "" when it fits. Names `found` has
    beyond `expected` are unexpected unless `others_allowed`.

    The one check behind every weight load (checkpoint, CLIP tower, projector, Abstractor) and `iqa model
    check`, so each names a problem the same way."""
    missing = [k for k in expected if k not in found]
    unexpected = [] if others_allowed else [k for k in found if k not in expected]
    wrong = [
        f"{k} expected {list(shape)} got {list(found[k])}"
        for k, shape in expected.items()
        if shape is not None and k in found and tuple(found[k]) != tuple(shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({_sample(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_sample(unexpected)})")
    if wrong:
        parts.append(f"{len(wrong)} with the wrong shape ({_sample(wrong)})")
    return "; ".join(parts)


def shapes(state: Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    """Name -> shape of a state dict, for `state_mismatch`."""
    return {name: tuple(tensor.shape) for name, tensor in state.items()}


def _sample(names: list[str]) -> str:
    """The first few names, and how many more there are."""
    shown = ", ".join(names[:_SHOWN])
    return shown if len(names) <= _SHOWN else f"{shown}, ... and {len(names) - _SHOWN} more"


def _weights_only_reason(exc: Exception) -> str:
    """The specific line of torch's long weights_only message ("Unsupported operand 60"), else its first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    specific = [line for line in lines if line.lower().startswith(("unsupported", "trying to load"))]
    return (specific or lines or [type(exc).__name__])[0][:200]
