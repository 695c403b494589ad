"""Reading a TorchScript archive's state dict as data, running none of its code (for OpenAI's CLIP file)."""

from __future__ import annotations

import collections
import io
import pickle
import re
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from iqa_cli.errors import ModelFilesError

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
