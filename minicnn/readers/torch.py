"""PyTorch weight files: ``.safetensors`` and ``.pth``/``.pt``/``.pth.tar`` state dicts, read without torch.

Pure parsing: arrays are returned as saved -- conv weights OIHW, Linear weights ``(out, in)``.
Torch checkpoints go through :mod:`minicnn.readers.torch_pickle`, which never executes the pickle.
"""
from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field

import numpy as np

from ..errors import WeightFileError
from ._files import check_exists
from .detect import detect_format
from .torch_pickle import TorchModuleRecord, load_torch_checkpoint, module_state_dict

__all__ = ["normalize_torch_keys", "read_torch_state_dict", "read_torch_file", "TorchFile"]

_LEGACY_DENSE_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12])\."
    r"(weight|bias|running_mean|running_var|num_batches_tracked)$")
_STRIP_PREFIXES = ("module.", "densenet121.")


def normalize_torch_keys(state_dict: dict, source: str = "<state_dict>") -> dict:
    """Normalise torch state_dict keys, keeping the order.

    Strips leading ``module.`` (DataParallel) and ``densenet121.`` (CheXNet wrapper) prefixes,
    and rewrites legacy DenseNet keys ``...denselayerN.norm.1.weight`` -> ``...denselayerN.norm1.weight``
    (likewise ``relu.1``, ``conv.2``, ...) as torchvision does when loading old checkpoints.
    Two keys that normalise to the same name raise ``ValueError``.
    """
    out = {}
    for key, value in state_dict.items():
        new = key
        changed = True
        while changed:
            changed = False
            for p in _STRIP_PREFIXES:
                if new.startswith(p):
                    new, changed = new[len(p):], True
        m = _LEGACY_DENSE_KEY.match(new)
        if m:
            new = f"{m.group(1)}{m.group(2)}.{m.group(3)}"
        if new in out:
            raise WeightFileError(f"{source}: keys collide after normalisation: '{key}' -> '{new}'",
                                  path=None if source.startswith("<") else source, field=key)
        out[new] = value
    return out


def _is_tensor_dict(obj) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items())


def _unwrap_checkpoint(obj, path: str) -> dict:
    if isinstance(obj, TorchModuleRecord):                 # a whole pickled module: its state_dict()
        return module_state_dict(obj, source=path)
    if _is_tensor_dict(obj):
        return obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), TorchModuleRecord):
                return module_state_dict(obj[key], source=path)
            if _is_tensor_dict(obj.get(key)):
                return obj[key]
        keys = ", ".join(repr(k) for k in list(obj)[:12])
        raise WeightFileError(f"{path}: no state_dict found: the checkpoint is a dict with keys {keys} "
                         "that is neither a name -> tensor mapping nor holds one under "
                         "'state_dict' / 'model_state_dict' / 'model'", path=path)
    raise WeightFileError(f"{path}: the checkpoint holds a {type(obj).__name__}, not a state_dict", path=path)


_ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
              "I16": "<i2", "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8",
              "BOOL": "?"}


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    """Read a .safetensors file, in the order of the tensors' data in the file.

    The safetensors library validates the header; the bytes are then read with NumPy so that
    BF16 (which NumPy lacks) can be widened to float32 exactly.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="numpy"):
            pass
    except (SafetensorError, OSError, ValueError) as e:
        raise WeightFileError(f"{path}: corrupt or unsupported safetensors file ({e})", path=path) from None
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        header.pop("__metadata__", None)
        data = f.read()
    entries = sorted(header.items(), key=lambda kv: tuple(kv[1]["data_offsets"]))
    out = {}
    for name, info in entries:
        dt = info["dtype"]
        if dt not in _ST_DTYPES:
            raise WeightFileError(f"{path}: tensor '{name}' has unsupported dtype {dt}", path=path, field=name)
        begin, end = info["data_offsets"]
        arr = np.frombuffer(data[begin:end], dtype=np.dtype(_ST_DTYPES[dt]))
        arr = arr.reshape(info["shape"]).astype(np.dtype(_ST_DTYPES[dt]).newbyteorder("="), copy=True)
        if dt == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = arr
    return out


@dataclass
class TorchFile:
    """What a torch weight file holds, parsed (never executed).

    state_dict   ``{key: array}`` in file order (keys normalised unless asked not to)
    raw_keys     the keys as saved (``module.densenet121.features.norm0.weight``)
    module       the root :class:`~minicnn.readers.torch_pickle.TorchModuleRecord` of a whole pickled
                 module (``torch.save(model)``), else None
    extra        the other top-level entries of a checkpoint dict (``epoch``, ``arch``, ...), non-tensor
    """
    state_dict: dict
    raw_keys: list
    module: TorchModuleRecord | None = None
    extra: dict = field(default_factory=dict)

    @property
    def module_class(self) -> str | None:
        """The dotted class name of a whole pickled module (``torchxrayvision.models.DenseNet``)."""
        return None if self.module is None else self.module.torch_class


def read_torch_file(path, *, normalize_keys: bool = True) -> TorchFile:
    """Read a torch file (``.safetensors``, ``.pth`` zip or legacy, a whole pickled module) as a :class:`TorchFile`."""
    path = check_exists(path)
    fmt = detect_format(path)
    module, extra = None, {}
    if fmt == "safetensors":
        sd = _read_safetensors(path)
    elif fmt in ("torch_zip", "torch_legacy"):
        obj = load_torch_checkpoint(path)
        if isinstance(obj, TorchModuleRecord):
            module = obj
        elif isinstance(obj, dict) and not _is_tensor_dict(obj):
            extra = {k: v for k, v in obj.items() if isinstance(k, str) and not isinstance(v, (dict, np.ndarray))}
            inner = next((obj[k] for k in ("state_dict", "model_state_dict", "model")
                          if isinstance(obj.get(k), TorchModuleRecord)), None)
            module = inner
        sd = _unwrap_checkpoint(obj, path)
    else:
        raise WeightFileError(f"{path}: is a {fmt} file, not a torch state_dict "
                              "(.pth/.pt/.pth.tar or .safetensors)", path=path)
    sd = dict(sd)
    raw = list(sd)
    return TorchFile(normalize_torch_keys(sd, path) if normalize_keys else sd, raw, module, extra)


def read_torch_state_dict(path, *, normalize_keys: bool = True) -> dict[str, np.ndarray]:
    """Read a torch state_dict from ``.safetensors`` or ``.pth``/``.pt``/``.pth.tar`` -- without torch.

    Torch checkpoints (zip or legacy format) are parsed by :mod:`minicnn.readers.torch_pickle`,
    which refuses any pickle global outside a small allow-list (:class:`UnsafeFileError`)
    and so never executes code. A checkpoint dict holding the weights under ``state_dict`` (e.g.
    CheXNet's ``{'epoch', 'arch', 'state_dict', 'best_prec1', 'optimizer'}``), ``model_state_dict``
    or ``model`` is unwrapped; a whole pickled module (``torch.save(model)``: torchxrayvision's
    DenseNets) gives its ``state_dict()``. With ``normalize_keys`` the keys go through
    :func:`normalize_torch_keys` (``module.`` / ``densenet121.`` stripped, legacy ``norm.1`` ->
    ``norm1``).

    Returns ``{key: np.ndarray}`` in file order, arrays contiguous and in their saved dtype
    (bfloat16 -> float32). ``*.num_batches_tracked`` entries are **kept**; the weight converter drops them explicitly
    (``WeightSpec.dropped_suffixes``).
    """
    return read_torch_file(path, normalize_keys=normalize_keys).state_dict
