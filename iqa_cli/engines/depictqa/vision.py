"""CLIP ViT-L/14 as DepictQA uses it: any resolution, last-block patch features, no CLS and no post-norm.

The tower is our own small module rather than transformers' CLIPVisionModel because DepictQA needs two
things that model does differently: the position embeddings resized with bicubic ``align_corners=True``
(transformers' ``interpolate_pos_encoding`` uses another algorithm), and the raw last-block output.
Weights come from a Hugging Face folder (CLIPModel or CLIPVisionModel) or from the OpenAI ``ViT-L-14.pt``
archive, which `convert_openai_clip` can also turn into a Hugging Face folder once. That archive is TorchScript;
`read_torchscript_state` reads its tensors as data, without torch.jit.load, so no file's code is ever run.
"""

from __future__ import annotations

import collections
import io
import json
import math
import pickle
import re
import sys
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from iqa_cli.errors import ModelFilesError


@dataclass(frozen=True)
class VisionConfig:
    """The shape of a CLIP vision transformer; the defaults are ViT-L/14 at 224 px."""

    width: int = 1024
    layers: int = 24
    heads: int = 16
    intermediate: int = 4096
    patch_size: int = 14
    image_size: int = 224  # pre-training resolution: a 16 x 16 grid of position embeddings
    layer_norm_eps: float = 1e-5
    activation: str = "quick_gelu"

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size


def interpolate_position_embedding(embedding: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """Resize CLIP position embeddings [1 + G*G, C] to an image grid -> [1 + grid_h*grid_w, C].

    The CLS position is kept as is; the G x G patch positions are resized with bicubic interpolation,
    ``align_corners=True``, as the authors do. Computed in float32 whatever the weights' dtype.
    """
    cls_pos, patch_pos = embedding[:1], embedding[1:]
    n, channels = patch_pos.shape
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"position embeddings of {n} patches do not form a square grid")
    if (grid_h, grid_w) == (side, side):
        return embedding
    grid = patch_pos.float().T.reshape(1, channels, side, side)
    resized = F.interpolate(grid, size=(grid_h, grid_w), mode="bicubic", align_corners=True)
    resized = resized.reshape(channels, grid_h * grid_w).T.to(embedding.dtype)
    return torch.cat([cls_pos, resized], dim=0)


class VisionAttention(nn.Module):
    """Multi-head self-attention of one CLIP block (separate q/k/v projections, as in Hugging Face)."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.q_proj = nn.Linear(cfg.width, cfg.width)
        self.k_proj = nn.Linear(cfg.width, cfg.width)
        self.v_proj = nn.Linear(cfg.width, cfg.width)
        self.out_proj = nn.Linear(cfg.width, cfg.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, C] -> [B, L, C]; every token sees every token (no mask: images are never padded here)."""
        b, length, width = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, length, self.heads, width // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x)))
        return self.out_proj(out.transpose(1, 2).reshape(b, length, width))


class VisionMLP(nn.Module):
    """The block's feed-forward part: fc1, QuickGELU (OpenAI's activation), fc2."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        if cfg.activation not in ("quick_gelu", "gelu"):
            raise ModelFilesError(f"unsupported CLIP activation {cfg.activation!r} (expected quick_gelu)")
        self.quick = cfg.activation == "quick_gelu"
        self.fc1 = nn.Linear(cfg.width, cfg.intermediate)
        self.fc2 = nn.Linear(cfg.intermediate, cfg.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        h = h * torch.sigmoid(1.702 * h) if self.quick else F.gelu(h)
        return self.fc2(h)


class VisionBlock(nn.Module):
    """A pre-norm transformer block."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.self_attn = VisionAttention(cfg)
        self.layer_norm2 = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.mlp = VisionMLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class CLIPVisionTower(nn.Module):
    """CLIP's vision transformer, returning one feature per 14 x 14 patch.

    Parameter names follow Hugging Face's ``vision_model.*`` without that prefix, the ``embeddings.``
    level and ``.weight`` of the position embedding (see `hf_to_tower_names`).
    """

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embedding = nn.Conv2d(3, cfg.width, cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(cfg.width))
        self.position_embedding = nn.Parameter(torch.zeros(cfg.grid * cfg.grid + 1, cfg.width))
        self.pre_layrnorm = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(VisionBlock(cfg) for _ in range(cfg.layers))
        # Resized position embeddings per grid; cleared whenever weights may have changed.
        self._positions: dict[tuple[int, int, torch.dtype, torch.device], torch.Tensor] = {}

    def clear_position_cache(self) -> None:
        """Forget resized position embeddings (after the weights changed)."""
        self._positions = {}

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def] - .to()/.half() change the weights
        self.clear_position_cache()
        return super()._apply(fn, recurse)

    def positions(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Position embeddings for a grid_h x grid_w image, CLS first: [1 + grid_h*grid_w, C] (cached)."""
        weight = self.position_embedding
        key = (grid_h, grid_w, weight.dtype, weight.device)
        if key not in self._positions:
            if len(self._positions) >= 64:  # a few distinct aspect ratios in practice; stay bounded
                self._positions.clear()
            self._positions[key] = interpolate_position_embedding(weight.detach(), grid_h, grid_w)
        return self._positions[key]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, 3, H, W] (H, W multiples of 14, CLIP-normalised) -> features [B, H/14 * W/14, C].

        The output of the last block with the CLS token dropped: no post-layernorm, no projection.
        """
        b, _, h, w = pixels.shape
        p = self.cfg.patch_size
        if h % p or w % p:
            raise ValueError(f"image size {h}x{w} is not a multiple of the patch size {p}")
        x = self.patch_embedding(pixels.to(self.patch_embedding.weight.dtype))  # [B, C, h/p, w/p]
        x = x.flatten(2).transpose(1, 2)  # [B, N, C]
        cls = self.class_embedding.to(x.dtype).expand(b, 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positions(h // p, w // p).to(x.dtype)
        x = self.pre_layrnorm(x)
        for layer in self.layers:
            x = layer(x)
        return x[:, 1:]


# ---------------------------------------------------------------------------------------------- loading

_HF_PREFIX = "vision_model."
# Present in the checkpoints but not used for DepictQA's features.
_HF_UNUSED = ("post_layernorm.weight", "post_layernorm.bias", "embeddings.position_ids")


def hf_to_tower_names(name: str) -> str | None:
    """A Hugging Face ``vision_model.*`` key (prefix removed) -> our parameter name; None if unused."""
    if name in _HF_UNUSED:
        return None
    if name == "embeddings.position_embedding.weight":
        return "position_embedding"
    if name.startswith("embeddings."):
        return name.removeprefix("embeddings.")
    if name.startswith("encoder.layers."):
        return name.removeprefix("encoder.")
    return name


def load_tower_weights(tower: CLIPVisionTower, hf_state: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy Hugging Face-named weights into `tower`, checking that every key and shape matches."""
    expected = dict(tower.state_dict())
    got: dict[str, torch.Tensor] = {}
    unexpected = []
    for key, value in hf_state.items():
        name = hf_to_tower_names(key)
        if name is None:
            continue
        if name not in expected:
            unexpected.append(key)
            continue
        got[name] = value
    missing = sorted(set(expected) - set(got))
    wrong = [
        f"{k} (expected {tuple(expected[k].shape)}, got {tuple(v.shape)})"
        for k, v in got.items()
        if v.shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        parts = [
            f"missing: {', '.join(missing[:5])}" if missing else "",
            f"unexpected: {', '.join(unexpected[:5])}" if unexpected else "",
            f"wrong shape: {', '.join(wrong[:5])}" if wrong else "",
        ]
        raise ModelFilesError(
            f"the CLIP weights in {source} do not fit ViT config {tower.cfg}: "
            + "; ".join(p for p in parts if p)
            + ". Re-download them with `iqa model download`."
        )
    tower.load_state_dict(got)
    tower.clear_position_cache()


def _config_from_hf(folder: Path) -> VisionConfig:
    try:
        raw = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelFilesError(f"cannot read the CLIP config {folder / 'config.json'}: {exc}") from exc
    from transformers import CLIPVisionConfig  # fills in the defaults a saved config may omit

    vc = (
        CLIPVisionConfig(**raw.get("vision_config", raw))
        if raw.get("model_type") == "clip"
        else (CLIPVisionConfig(**{k: v for k, v in raw.items() if k not in ("architectures", "model_type")}))
    )
    return VisionConfig(
        width=vc.hidden_size,
        layers=vc.num_hidden_layers,
        heads=vc.num_attention_heads,
        intermediate=vc.intermediate_size,
        patch_size=vc.patch_size,
        image_size=vc.image_size,
        layer_norm_eps=vc.layer_norm_eps,
        activation=vc.hidden_act,
    )


def _vision_key(key: str) -> str | None:
    """A checkpoint key's name inside the vision model, or None for other parts (the text tower).

    CLIPModel files and older CLIPVisionModel files prefix ``vision_model.``; transformers 5 saves a
    CLIPVisionModel without it.
    """
    if key.startswith(_HF_PREFIX):
        return key.removeprefix(_HF_PREFIX)
    if key.startswith(("embeddings.", "encoder.layers.", "pre_layrnorm.", "post_layernorm.")):
        return key
    return None


def _read_hf_vision_state(folder: Path) -> dict[str, torch.Tensor]:
    """Only the ``vision_model.*`` tensors (a CLIPModel file also holds the text tower), prefix removed."""
    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else []
    if not files and (folder / "model.safetensors").exists():
        files = ["model.safetensors"]
    state: dict[str, torch.Tensor] = {}
    if files:
        from safetensors import safe_open

        for name in files:
            with safe_open(str(folder / name), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 - safe_open handles are not mappings
                    name = _vision_key(key)
                    if name is not None:
                        state[name] = f.get_tensor(key)
    elif (folder / "pytorch_model.bin").exists():
        full = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
        state = {name: v for k, v in full.items() if (name := _vision_key(k)) is not None}
    else:
        raise ModelFilesError(f"no model.safetensors or pytorch_model.bin in the CLIP folder {folder}")
    if not state:
        raise ModelFilesError(f"the CLIP folder {folder} holds no vision_model.* weights")
    return state


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder; plain torch.save files have none."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


# ----------------------------------------------------------------------- OpenAI's TorchScript archive
#
# OpenAI released ViT-L-14.pt as a TorchScript archive. torch.jit.load would deserialise and compile the
# TorchScript code in it, and torch.load(weights_only=True) refuses it, so we read it ourselves, as data
# only. The archive is a zip holding, under one top folder:
#   data.pkl       the module tree, pickled: each module is a ``__torch__.*`` object rebuilt from a dict
#                  of its attributes (parameters, buffers, submodules, plain values);
#   data/<key>     the raw bytes of each tensor storage, which data.pkl refers to by key;
#   code/...       the TorchScript source, of which we only read each class's ``__parameters__`` and
#                  ``__buffers__`` lists (as text), to know which tensor attributes the state dict holds;
#   constants.pkl  tensors used by the code; not part of the state dict, never read.
# data.pkl is unpickled by `_ScriptArchiveUnpickler`, which resolves only a short list of globals to inert
# stand-ins of ours: a crafted archive can build dicts, lists and tensors, and nothing else.

# The storage classes the TorchScript pickler writes ("torch." + scalar type + "Storage").
_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
}


@dataclass(frozen=True)
class _StorageType:
    """What the pickled global ``torch.<Type>Storage`` resolves to: only its dtype."""

    dtype: torch.dtype


@dataclass(frozen=True)
class _Storage:
    """A storage read from ``data/<key>``: the bytes (shared by every tensor viewing them) and a dtype."""

    data: torch.UntypedStorage
    dtype: torch.dtype


class _ScriptObject:
    """Stands in for a pickled ``__torch__.*`` object: keeps the state it is given, runs no code of its own.

    `_ScriptArchiveUnpickler.find_class` makes one subclass per TorchScript class name, so that the walk can
    look up that class's parameter and buffer lists.
    """

    qualified_name: ClassVar[str] = ""
    state: object = None  # pickle creates instances without __init__; BUILD then calls __setstate__

    def __setstate__(self, state: object) -> None:
        self.state = state


def _rebuild_tensor(
    storage: object,
    offset: object,
    size: object,
    stride: object,
    requires_grad: object = False,
    backward_hooks: object = None,
    metadata: object = None,
) -> torch.Tensor:
    """Our ``torch._utils._rebuild_tensor_v2``: a CPU view of a storage; hooks and grad flags are dropped.

    The view is checked against the storage first: ``Tensor.set_`` does not check it on the CPU, and a
    crafted archive could otherwise make a tensor that reads memory past its storage.
    """
    if not isinstance(storage, _Storage):
        raise ModelFilesError(f"a tensor in the TorchScript archive has no storage (got {type(storage).__name__})")
    if metadata:  # torch.save's extra tensor flags; the TorchScript pickler never writes them
        raise ModelFilesError("a tensor in the TorchScript archive carries metadata this reader does not handle")
    if not (
        _is_index(offset)
        and isinstance(size, tuple)
        and isinstance(stride, tuple)
        and len(size) == len(stride)
        and all(map(_is_index, size))
        and all(map(_is_index, stride))
    ):
        raise ModelFilesError(f"a tensor in the TorchScript archive has an invalid layout {size!r:.60} {stride!r:.60}")
    elements = storage.data.nbytes() // storage.dtype.itemsize
    if 0 not in size and offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) >= elements:
        raise ModelFilesError(f"a tensor in the TorchScript archive reaches past its storage ({elements} elements)")
    return torch.empty(0, dtype=storage.dtype).set_(storage.data, offset, size, stride)


def _is_index(value: object) -> bool:
    return type(value) is int and value >= 0


def _rebuild_parameter(data: torch.Tensor, requires_grad: bool = False, backward_hooks: object = None) -> object:
    """Our ``torch._utils._rebuild_parameter``: the state dict holds the data, not the Parameter wrapper."""
    return data


def _build_list(items: Iterable[object]) -> list[object]:
    """Our ``torch.jit._pickle.build_*list``: typed lists of module attributes, as plain lists."""
    return list(items)


def _restore_type_tag(value: object, type_str: object = None) -> object:
    """Our ``torch.jit._pickle.restore_type_tag``: the TorchScript type annotation is not needed."""
    return value


def _device(name: object) -> str:
    """Our ``torch.device``: a device attribute stays a string (tensors are always read onto the CPU)."""
    return str(name)


# The only globals data.pkl may name, each mapped to something inert. Everything else is refused.
_ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.jit._pickle", "build_intlist"): _build_list,
    ("torch.jit._pickle", "build_doublelist"): _build_list,
    ("torch.jit._pickle", "build_boollist"): _build_list,
    ("torch.jit._pickle", "build_tensorlist"): _build_list,
    ("torch.jit._pickle", "restore_type_tag"): _restore_type_tag,
    ("torch", "device"): _device,
    ("collections", "OrderedDict"): collections.OrderedDict,  # tensors' (empty) backward-hook dicts
    ("builtins", "complex"): complex,  # how TorchScript pickles a complex attribute
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _ScriptArchiveUnpickler(pickle.Unpickler):
    """Unpickles a TorchScript ``data.pkl`` into `_ScriptObject` trees and CPU tensors, running nothing.

    Pickle runs code only through the globals it looks up (``find_class``) and the persistent ids it resolves
    (``persistent_load``); both are answered here, from `_ALLOWED_GLOBALS` and the archive's ``data/``.
    """

    def __init__(self, archive: zipfile.ZipFile, prefix: str, source: Path) -> None:
        super().__init__(io.BytesIO(archive.read(prefix + "data.pkl")))
        self._archive = archive
        self._prefix = prefix
        self._source = source
        self._storages: dict[str, torch.UntypedStorage] = {}  # by key: tensors that share bytes stay shared
        self._classes: dict[str, type[_ScriptObject]] = {}

    def find_class(self, module: str, name: str) -> object:
        if module == "__torch__" or module.startswith("__torch__."):
            qualified = f"{module}.{name}"
            if qualified not in self._classes:
                self._classes[qualified] = type(name, (_ScriptObject,), {"qualified_name": qualified})
            return self._classes[qualified]
        if (module, name) in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[(module, name)]
        raise ModelFilesError(
            f"the TorchScript archive {self._source} refers to {module}.{name}, which is not model data; "
            "refusing to load it. Re-download OpenAI's ViT-L-14.pt, or use a Hugging Face CLIP folder."
        )

    def persistent_load(self, pid: object) -> _Storage:
        # ("storage", <storage type>, key, location, element count): the location is ignored, all on the CPU
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ModelFilesError(f"the TorchScript archive {self._source} has an unknown reference {pid!r:.80}")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, _StorageType) or not isinstance(key, str) or not isinstance(numel, int):
            raise ModelFilesError(f"the TorchScript archive {self._source} has a malformed storage {pid!r:.80}")
        if key not in self._storages:
            self._storages[key] = self._read_storage(key, numel * kind.dtype.itemsize)
        return _Storage(self._storages[key], kind.dtype)

    def _read_storage(self, key: str, nbytes: int) -> torch.UntypedStorage:
        try:
            info = self._archive.getinfo(f"{self._prefix}data/{key}")
        except KeyError:
            raise ModelFilesError(f"the TorchScript archive {self._source} lacks the storage data/{key}") from None
        if info.file_size != nbytes:
            raise ModelFilesError(
                f"the storage data/{key} in {self._source} holds {info.file_size} bytes, not {nbytes}: "
                "the archive is damaged"
            )
        if nbytes == 0:
            return torch.UntypedStorage(0)
        buffer = bytearray(nbytes)  # read straight into memory torch can adopt, without another copy
        with self._archive.open(info) as member:
            if member.readinto(buffer) != nbytes:
                raise ModelFilesError(f"the storage data/{key} in {self._source} is truncated")
        return torch.frombuffer(buffer, dtype=torch.uint8).untyped_storage()


# ``class Name(Module):`` followed by the lists TorchScript prints for it, as in
#   class Linear(Module):
#     __parameters__ = ["weight", "bias", ]
#     __buffers__ = []
_DECLARATIONS = re.compile(
    r"^class (\w+)\(Module\):\n  __parameters__ = \[([^\]\n]*)\]\n(?:  __buffers__ = \[([^\]\n]*)\]\n)?",
    re.MULTILINE,
)


class _Declarations:
    """Which attributes of each TorchScript module class are parameters and buffers, read from ``code/``.

    A module may hold other tensors (OpenAI's text blocks keep ``attn_mask`` as a plain attribute) which
    torch.jit's state dict leaves out; only the source says which is which. It is read as text, never run.
    """

    def __init__(self, archive: zipfile.ZipFile, prefix: str) -> None:
        self._archive = archive
        self._prefix = prefix
        self._files: dict[str, dict[str, tuple[list[str], list[str] | None]]] = {}

    def __call__(self, qualified_name: str) -> tuple[list[str], list[str] | None] | None:
        """(parameter names, buffer names or None if unlisted), or None where the class is not found."""
        qualifier, _, name = qualified_name.rpartition(".")
        if qualifier not in self._files:
            # TorchScript keeps the classes of ``a.b`` in ``code/a/b.py``
            path = f"{self._prefix}code/{qualifier.replace('.', '/')}.py"
            try:
                text = self._archive.read(path).decode("utf-8", errors="replace")
            except KeyError:
                text = ""
            self._files[qualifier] = {
                m[1]: (_quoted(m[2]), None if m[3] is None else _quoted(m[3])) for m in _DECLARATIONS.finditer(text)
            }
        return self._files[qualifier].get(name)


def _quoted(items: str) -> list[str]:
    return re.findall(r'"([^"]*)"', items)


def _module_state(obj: object) -> dict[str, object] | None:
    """The attributes of a pickled TorchScript module, or None for anything else (every module has
    ``training``; TorchScript class objects and plain values do not)."""
    if isinstance(obj, _ScriptObject) and isinstance(obj.state, dict) and "training" in obj.state:
        return obj.state
    return None


def _script_state_dict(root: object, declared: _Declarations, source: Path) -> dict[str, torch.Tensor]:
    """The state dict of a pickled module tree, named and ordered as ``torch.jit.load(...).state_dict()``.

    As nn.Module.state_dict does: each module's parameters, then its buffers (each in attribute order, None
    ones skipped), then its submodules'. A class whose source lists are missing contributes every tensor
    attribute: a superset, which is harmless here, as only named ``visual.*`` parameters are used.
    """
    out: dict[str, torch.Tensor] = {}

    def walk(obj: object, prefix: str, path: tuple[int, ...]) -> None:
        state = _module_state(obj)
        if state is None:
            raise ModelFilesError(f"the TorchScript archive {source} does not hold a module at {prefix or 'root'}")
        if id(obj) in path:  # only a crafted pickle can make a module contain itself
            raise ModelFilesError(f"the TorchScript archive {source} has a module cycle at {prefix}")
        tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        lists = declared(type(obj).qualified_name)
        if lists is None:
            names = list(tensors)
        else:
            params, buffers = lists
            kept = [k for k in tensors if k in params]
            names = kept + [k for k in tensors if k not in params and (buffers is None or k in buffers)]
        for name in names:
            out[prefix + name] = tensors[name]
        for name, value in state.items():
            if isinstance(name, str) and _module_state(value) is not None:
                walk(value, f"{prefix}{name}.", (*path, id(obj)))

    walk(root, "", ())
    return out


def read_torchscript_state(path: Path) -> dict[str, torch.Tensor]:
    """The parameters and buffers of a TorchScript archive, without loading its code (see above).

    Equal, names and order included, to ``torch.jit.load(path, map_location="cpu").state_dict()``.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            roots = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(roots) != 1:
                raise ModelFilesError(f"{path} is not a TorchScript archive (no single <name>/data.pkl)")
            prefix = roots[0].removesuffix("data.pkl")
            if prefix + "byteorder" in archive.namelist():
                order = archive.read(prefix + "byteorder").decode(errors="replace").strip()
                if order != sys.byteorder:
                    raise ModelFilesError(f"{path} was saved {order}-endian; this machine is {sys.byteorder}-endian")
            root = _ScriptArchiveUnpickler(archive, prefix, path).load()
            return _script_state_dict(root, _Declarations(archive, prefix), path)
    except ModelFilesError:
        raise
    except Exception as exc:  # a damaged or crafted pickle fails in many ways; all mean "not this file"
        raise ModelFilesError(f"cannot read the CLIP archive {path}: {exc}") from exc


def read_openai_archive(path: Path) -> dict[str, torch.Tensor]:
    """The ``visual.*`` tensors of OpenAI's CLIP file (a TorchScript archive, or a plain state dict).

    Neither way runs code from the file: a plain state dict goes through ``torch.load(weights_only=True)``,
    and the TorchScript archive OpenAI released through `read_torchscript_state`, never torch.jit.load.
    """
    if _is_torchscript(path):
        state = read_torchscript_state(path)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelFilesError(f"cannot read the CLIP archive {path}: {exc}") from exc
    visual = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    if not visual:
        raise ModelFilesError(f"{path} holds no visual.* weights: is it OpenAI's CLIP ViT-L-14.pt?")
    return visual


def openai_to_hf(visual: Mapping[str, torch.Tensor]) -> tuple[VisionConfig, dict[str, torch.Tensor]]:
    """OpenAI ``visual.*`` weights -> (config, Hugging Face ``vision_model.*`` weights); prefixes removed.

    OpenAI keeps q, k and v in one ``in_proj`` matrix [3C, C] (nn.MultiheadAttention); Hugging Face splits
    it in that order. Linear weights are [out, in] in both, so nothing is transposed.
    """
    conv = visual["conv1.weight"]
    width, patch = conv.shape[0], conv.shape[-1]
    layers = len({k.split(".")[2] for k in visual if k.startswith("transformer.resblocks.")})
    grid = math.isqrt(visual["positional_embedding"].shape[0] - 1)
    cfg = VisionConfig(
        width=width,
        layers=layers,
        heads=width // 64,  # OpenAI's rule: 64-wide heads
        intermediate=visual["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        patch_size=patch,
        image_size=patch * grid,
    )
    hf = {
        "embeddings.patch_embedding.weight": conv,
        "embeddings.class_embedding": visual["class_embedding"],
        "embeddings.position_embedding.weight": visual["positional_embedding"],
        "pre_layrnorm.weight": visual["ln_pre.weight"],
        "pre_layrnorm.bias": visual["ln_pre.bias"],
        "post_layernorm.weight": visual["ln_post.weight"],
        "post_layernorm.bias": visual["ln_post.bias"],
    }
    for i in range(layers):
        src, dst = f"transformer.resblocks.{i}.", f"encoder.layers.{i}."
        q, k, v = visual[src + "attn.in_proj_weight"].chunk(3, dim=0)
        qb, kb, vb = visual[src + "attn.in_proj_bias"].chunk(3, dim=0)
        for name, weight, bias in (("q_proj", q, qb), ("k_proj", k, kb), ("v_proj", v, vb)):
            hf[f"{dst}self_attn.{name}.weight"] = weight.contiguous()
            hf[f"{dst}self_attn.{name}.bias"] = bias.contiguous()
        pairs = (
            ("attn.out_proj", "self_attn.out_proj"),
            ("ln_1", "layer_norm1"),
            ("ln_2", "layer_norm2"),
            ("mlp.c_fc", "mlp.fc1"),
            ("mlp.c_proj", "mlp.fc2"),
        )
        for a, b in pairs:
            hf[f"{dst}{b}.weight"] = visual[f"{src}{a}.weight"]
            hf[f"{dst}{b}.bias"] = visual[f"{src}{a}.bias"]
    return cfg, hf


def convert_openai_clip(src: Path, dst: Path) -> Path:
    """Write OpenAI's ``ViT-L-14.pt`` as a Hugging Face CLIPVisionModel folder (config + safetensors)."""
    from safetensors.torch import save_file

    cfg, hf = openai_to_hf(read_openai_archive(src))
    dst.mkdir(parents=True, exist_ok=True)
    config = {
        "architectures": ["CLIPVisionModel"],
        "model_type": "clip_vision_model",
        "hidden_size": cfg.width,
        "intermediate_size": cfg.intermediate,
        "num_hidden_layers": cfg.layers,
        "num_attention_heads": cfg.heads,
        "patch_size": cfg.patch_size,
        "image_size": cfg.image_size,
        "layer_norm_eps": cfg.layer_norm_eps,
        "hidden_act": cfg.activation,
        "num_channels": 3,
    }
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    save_file({_HF_PREFIX + k: v.contiguous() for k, v in hf.items()}, str(dst / "model.safetensors"))
    return dst


def read_vision_weights(path: Path) -> tuple[VisionConfig, dict[str, torch.Tensor]]:
    """(config, Hugging Face-named weights) from a Hugging Face folder or an OpenAI ``.pt`` file."""
    if path.is_dir():
        return _config_from_hf(path), _read_hf_vision_state(path)
    if path.is_file():
        return openai_to_hf(read_openai_archive(path))
    raise ModelFilesError(f"CLIP weights not found at {path}; fetch them with `iqa model download`")


def load_vision_tower(path: Path) -> CLIPVisionTower:
    """A float32 CLIPVisionTower with its weights from `path` (folder or OpenAI archive), in eval mode."""
    cfg, state = read_vision_weights(path)
    tower = CLIPVisionTower(cfg)
    load_tower_weights(tower, state, str(path))
    return tower.eval()


def config_dict(cfg: VisionConfig) -> dict[str, object]:
    """The config as plain data (for reports and benchmarks)."""
    return asdict(cfg)
