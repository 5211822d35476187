"""PyTorch weight files: ``.safetensors`` and ``.pth``/``.pt``/``.pth.tar`` state dicts, read without torch.

Pure parsing: arrays are returned as saved -- conv weights OIHW, Linear weights ``(out, in)``.
Torch checkpoints go through :mod:`minicnn.readers.torch_pickle`, which never executes the pickle.
"""
from __future__ import annotations

import json
import re
import struct

import numpy as np

from ..errors import WeightFileError
from ._files import check_exists
from .detect import detect_format
from .torch_pickle import load_torch_checkpoint

__all__ = ["normalize_torch_keys", "read_torch_state_dict"]

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
    if _is_tensor_dict(obj):
        return obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
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


def read_torch_state_dict(path, *, normalize_keys: bool = True) -> dict[str, np.ndarray]:
    """Read a torch state_dict from ``.safetensors`` or ``.pth``/``.pt``/``.pth.tar`` -- without torch.

    Torch checkpoints (zip or legacy format) are parsed by :mod:`minicnn.readers.torch_pickle`,
    which refuses any pickle global outside a small allow-list (:class:`UnsafeFileError`)
    and so never executes code. A checkpoint dict holding the weights under ``state_dict`` (e.g.
    CheXNet's ``{'epoch', 'arch', 'state_dict', 'best_prec1', 'optimizer'}``), ``model_state_dict``
    or ``model`` is unwrapped. With ``normalize_keys`` the keys go through
    :func:`normalize_torch_keys` (``module.`` / ``densenet121.`` stripped, legacy ``norm.1`` ->
    ``norm1``).

    Returns ``{key: np.ndarray}`` in file order, arrays contiguous and in their saved dtype
    (bfloat16 -> float32). ``*.num_batches_tracked`` entries are **kept**; the weight converter drops them explicitly
    (``WeightSpec.dropped_suffixes``).
    """
    path = check_exists(path)
    fmt = detect_format(path)
    if fmt == "safetensors":
        sd = _read_safetensors(path)
    elif fmt in ("torch_zip", "torch_legacy"):
        sd = _unwrap_checkpoint(load_torch_checkpoint(path), path)
    else:
        raise WeightFileError(f"{path}: is a {fmt} file, not a torch state_dict "
                         "(.pth/.pt/.pth.tar or .safetensors)", path=path)
    sd = dict(sd)
    return normalize_torch_keys(sd, path) if normalize_keys else sd
