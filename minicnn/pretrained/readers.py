"""Weight-file readers: parse Keras and PyTorch weight files into NumPy arrays, never execute them.

This module is pure file parsing (numpy, h5py, safetensors, zipfile, stdlib only). It does **no
layout transforms**: Keras conv kernels stay HWIO ``(kh, kw, in, out)``, Keras Dense kernels
``(in, out)``, torch conv weights OIHW and torch Linear weights ``(out, in)``. Mapping arrays to
minicnn layers (and transposing them) happens in the architecture/mapping code, not here.

Readers
    :func:`read_keras_h5`         legacy Keras HDF5 (weights-only, or a full model under ``/model_weights``)
    :func:`read_keras3_weights`   Keras 3 ``.weights.h5`` (also the member of a ``.keras`` archive)
    :func:`read_keras_archive`    a Keras 3 ``.keras`` zip: ``(config, weights_tree)``
    :func:`read_torch_state_dict` ``.safetensors`` and ``.pth``/``.pt``/``.pth.tar`` (zip or legacy), no torch
    :func:`read_npz_weights`      minicnn's own ``.npz`` (no pickle)
    :func:`detect_format`         which of the above a file is, by content

Every reader raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file
for a corrupt one or one of the wrong format.
"""
from __future__ import annotations

import io
import json
import os
import re
import struct
import zipfile
from dataclasses import dataclass, field

import h5py
import numpy as np

from ..errors import WeightFileError, file_not_found
from .torch_pickle import UnsafeFileError, is_torch_legacy_file, load_torch_checkpoint

__all__ = [
    "FORMATS", "KerasLayerWeights", "UnsafeFileError", "detect_format", "read_keras_h5",
    "read_keras3_weights", "read_keras_archive", "read_torch_state_dict",
    "normalize_torch_keys", "num_batches_tracked_keys", "read_npz_weights",
]

#: Every format :func:`detect_format` can return.
FORMATS = ("keras_h5", "keras_h5_model", "keras3_weights", "keras_archive", "torch_zip",
           "torch_legacy", "safetensors", "npz")

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _check_exists(path) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise file_not_found("weight file", path)
    if os.path.isdir(path):
        raise WeightFileError(f"{path} is a directory, not a weight file")
    return path


def _open_h5(path: str) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise WeightFileError(f"{path}: not a readable HDF5 file ({e}); supported formats: "
                         f"{', '.join(FORMATS)}") from None


# ------------------------------------------------------------------------- Keras legacy .h5
@dataclass
class KerasLayerWeights:
    """The weights of one Keras layer as stored in a legacy HDF5 file.

    ``arrays`` are in ``weight_names`` order (e.g. Conv2D kernel HWIO then bias; BatchNorm gamma,
    beta, moving_mean, moving_variance minus those switched off), untransposed.
    """
    name: str
    weight_names: list[str] = field(default_factory=list)
    arrays: list[np.ndarray] = field(default_factory=list)


def _decode(s) -> str:
    if isinstance(s, (bytes, np.bytes_)):
        return bytes(s).decode("utf8")
    return str(s)


def _string_list_attr(group, name: str) -> list[str] | None:
    """Read a list-of-strings attribute, joining the ``name0``, ``name1``, ... split form."""
    if name in group.attrs:
        chunks = [group.attrs[name]]
    elif f"{name}0" in group.attrs:
        chunks, i = [], 0
        while f"{name}{i}" in group.attrs:
            chunks.append(group.attrs[f"{name}{i}"])
            i += 1
    else:
        return None
    out = []
    for c in chunks:
        out.extend(_decode(s) for s in np.atleast_1d(np.asarray(c)).tolist())
    return out


def _legacy_root(f: h5py.File):
    """The group holding ``layer_names``: the root, or ``/model_weights`` of a full-model file."""
    if _string_list_attr(f, "layer_names") is not None:
        return f
    mw = f.get("model_weights")
    if isinstance(mw, h5py.Group) and _string_list_attr(mw, "layer_names") is not None:
        return mw
    return None


def read_keras_h5(path) -> list[KerasLayerWeights]:
    """Read a legacy Keras HDF5 weight file (``save_weights('*.h5')`` or ``model.save('*.h5')``).

    Layers come in the order of the ``layer_names`` attribute (never ``group.keys()``, which HDF5
    sorts alphabetically); layers with no weights are left out, so the list matches Keras's
    by-position assignment to the model's layers that have weights. ``top_level_model_weights``
    is ignored. Arrays are returned as stored (no transposes).
    """
    path = _check_exists(path)
    with _open_h5(path) as f:
        root = _legacy_root(f)
        if root is None:
            hint = (" It looks like a Keras 3 '.weights.h5' file: use read_keras3_weights."
                    if ("layers" in f or "vars" in f) else "")
            raise WeightFileError(f"{path}: not a legacy Keras HDF5 weight file (no 'layer_names' "
                             f"attribute at the root or under /model_weights).{hint}")
        out = []
        for lname in _string_list_attr(root, "layer_names"):
            g = root.get(lname)
            if not isinstance(g, h5py.Group):
                raise WeightFileError(f"{path}: layer '{lname}' is listed in layer_names but has no group")
            wnames = _string_list_attr(g, "weight_names") or []
            if not wnames:
                continue
            arrays = []
            for wn in wnames:
                ds = g.get(wn)
                if not isinstance(ds, h5py.Dataset):
                    raise WeightFileError(f"{path}: weight '{wn}' of layer '{lname}' is missing")
                try:
                    arrays.append(np.array(ds[()]))
                except OSError as e:
                    raise WeightFileError(f"{path}: cannot read weight '{wn}' of layer '{lname}' ({e})") from None
            out.append(KerasLayerWeights(lname, wnames, arrays))
        return out


# ------------------------------------------------------------------------- Keras 3 .weights.h5
def _vars_sorted(group, where: str) -> list[np.ndarray]:
    items = []
    for k in group.keys():
        if not k.isdigit():
            raise WeightFileError(f"{where}: unexpected variable name '{k}' (expected 0, 1, 2, ...)")
        items.append((int(k), k))
    items.sort()                      # by integer: "10" after "9"
    if [i for i, _ in items] != list(range(len(items))):
        raise WeightFileError(f"{where}: variable indices {[i for i, _ in items]} are not 0..n-1")
    return [np.array(group[k][()]) for _, k in items]


def _keras3_node(group, where: str, skip=()) -> dict:
    node = {"vars": [], "layers": {}, "children": {}}
    for name in group.keys():
        if name in skip:
            continue
        item = group[name]
        if name == "vars" and isinstance(item, h5py.Group):
            node["vars"] = _vars_sorted(item, f"{where}/vars")
        elif name == "layers" and isinstance(item, h5py.Group):
            node["layers"] = {k: _keras3_node(item[k], f"{where}/layers/{k}") for k in item.keys()
                              if isinstance(item[k], h5py.Group)}
        elif isinstance(item, h5py.Group):
            node["children"][name] = _keras3_node(item, f"{where}/{name}")
    return node


def read_keras3_weights(path_or_h5file) -> dict:
    """Read a Keras 3 ``.weights.h5`` file (a path, a file object, or an open ``h5py.File``).

    Returns a tree mirroring the file: each node is
    ``{"vars": [arrays ordered by integer index], "layers": {key: node}, "children": {name: node}}``.
    ``layers`` holds the groups under ``layers/`` (a nested model's own ``layers/`` recurse);
    ``children`` holds any other sub-object groups (e.g. a Bidirectional's ``forward_layer``).
    Keys are Keras's storage keys (snake_case class name + ``_n``), **not** layer names -- see
    docs/weight-formats. The root ``optimizer`` group is ignored.
    """
    if isinstance(path_or_h5file, h5py.File):
        return _read_keras3_open(path_or_h5file, path_or_h5file.filename)
    if isinstance(path_or_h5file, (str, os.PathLike)):
        path = _check_exists(path_or_h5file)
        with _open_h5(path) as f:
            return _read_keras3_open(f, path)
    try:                                 # a binary file object, e.g. io.BytesIO
        f = h5py.File(path_or_h5file, "r")
    except OSError as e:
        raise WeightFileError(f"{path_or_h5file!r}: not a readable HDF5 file ({e})") from None
    with f:
        return _read_keras3_open(f, repr(path_or_h5file))


def _read_keras3_open(f: h5py.File, where: str) -> dict:
    if _legacy_root(f) is not None:
        raise WeightFileError(f"{where}: this is a legacy Keras HDF5 file; use read_keras_h5")
    if "layers" not in f and "vars" not in f:
        raise WeightFileError(f"{where}: not a Keras 3 weights file (no 'layers' or 'vars' group)")
    try:
        return _keras3_node(f, where, skip=("optimizer",))
    except OSError as e:
        raise WeightFileError(f"{where}: corrupt Keras 3 weights file ({e})") from None


def read_keras_archive(path) -> tuple[dict, dict]:
    """Open a Keras 3 ``.keras`` zip: return ``(config_dict, weights_tree)``.

    ``config_dict`` is ``config.json`` parsed; ``weights_tree`` is :func:`read_keras3_weights`
    of the ``model.weights.h5`` member, read from memory (nothing is extracted to disk).
    """
    path = _check_exists(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            missing = [m for m in ("config.json", "model.weights.h5") if m not in names]
            if missing:
                raise WeightFileError(f"{path}: not a Keras archive (missing {', '.join(missing)})")
            config = json.loads(zf.read("config.json").decode("utf8"))
            h5bytes = zf.read("model.weights.h5")
    except (zipfile.BadZipFile, OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightFileError(f"{path}: corrupt Keras archive ({type(e).__name__}: {e})") from None
    try:
        f = h5py.File(io.BytesIO(h5bytes), "r")
    except OSError as e:
        raise WeightFileError(f"{path}: model.weights.h5 in the archive is not readable HDF5 ({e})") from None
    with f:
        return config, _read_keras3_open(f, f"{path}!model.weights.h5")


# ------------------------------------------------------------------------- torch
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
            raise WeightFileError(f"{source}: keys collide after normalisation: '{key}' -> '{new}'")
        out[new] = value
    return out


def num_batches_tracked_keys(state_dict: dict) -> list[str]:
    """The ``*.num_batches_tracked`` keys of a state_dict (int64 counters, not weights).

    :func:`read_torch_state_dict` keeps them; the layer mapper drops these explicitly.
    """
    return [k for k in state_dict if k.endswith("num_batches_tracked")]


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
                         "'state_dict' / 'model_state_dict' / 'model'")
    raise WeightFileError(f"{path}: the checkpoint holds a {type(obj).__name__}, not a state_dict")


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
        raise WeightFileError(f"{path}: corrupt or unsupported safetensors file ({e})") from None
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
            raise WeightFileError(f"{path}: tensor '{name}' has unsupported dtype {dt}")
        begin, end = info["data_offsets"]
        arr = np.frombuffer(data[begin:end], dtype=np.dtype(_ST_DTYPES[dt]))
        arr = arr.reshape(info["shape"]).astype(np.dtype(_ST_DTYPES[dt]).newbyteorder("="), copy=True)
        if dt == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = arr
    return out


def read_torch_state_dict(path, *, normalize_keys: bool = True) -> dict[str, np.ndarray]:
    """Read a torch state_dict from ``.safetensors`` or ``.pth``/``.pt``/``.pth.tar`` -- without torch.

    Torch checkpoints (zip or legacy format) are parsed by :mod:`minicnn.pretrained.torch_pickle`,
    which refuses any pickle global outside a small allow-list (:class:`UnsafeFileError`)
    and so never executes code. A checkpoint dict holding the weights under ``state_dict`` (e.g.
    CheXNet's ``{'epoch', 'arch', 'state_dict', 'best_prec1', 'optimizer'}``), ``model_state_dict``
    or ``model`` is unwrapped. With ``normalize_keys`` the keys go through
    :func:`normalize_torch_keys` (``module.`` / ``densenet121.`` stripped, legacy ``norm.1`` ->
    ``norm1``).

    Returns ``{key: np.ndarray}`` in file order, arrays contiguous and in their saved dtype
    (bfloat16 -> float32). ``*.num_batches_tracked`` entries are **kept** (see
    :func:`num_batches_tracked_keys`); the layer mapper drops them explicitly.
    """
    path = _check_exists(path)
    fmt = detect_format(path)
    if fmt == "safetensors":
        sd = _read_safetensors(path)
    elif fmt in ("torch_zip", "torch_legacy"):
        sd = _unwrap_checkpoint(load_torch_checkpoint(path), path)
    else:
        raise WeightFileError(f"{path}: is a {fmt} file, not a torch state_dict "
                         "(.pth/.pt/.pth.tar or .safetensors)")
    sd = dict(sd)
    return normalize_torch_keys(sd, path) if normalize_keys else sd


# ------------------------------------------------------------------------- npz
def read_npz_weights(path) -> dict[str, np.ndarray]:
    """Read minicnn's own ``.npz`` weight file (``np.load(allow_pickle=False)``), in file order."""
    path = _check_exists(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise WeightFileError(f"{path}: not a readable .npz file ({e})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise WeightFileError(f"{path}: is a single .npy array, not an .npz weight archive")
    out = {}
    with npz:
        for key in npz.files:
            try:
                out[key] = npz[key]
            except ValueError as e:
                if "allow_pickle" in str(e) or "Object arrays" in str(e):
                    raise WeightFileError(f"{path}: array '{key}' holds pickled Python objects; minicnn "
                                     "never unpickles weight files. Save plain numeric arrays.") from None
                raise WeightFileError(f"{path}: cannot read array '{key}' ({e})") from None
            except (OSError, EOFError, zipfile.BadZipFile) as e:
                raise WeightFileError(f"{path}: corrupt array '{key}' ({e})") from None
    return out


# ------------------------------------------------------------------------- detection
def _unknown(path: str, why: str) -> ValueError:
    return ValueError(f"{path}: unrecognised or corrupt weight file ({why}). Supported formats: "
                      "Keras legacy .h5 (weights or full model), Keras 3 .weights.h5, .keras "
                      "archive, torch .pth/.pt (zip or legacy), .safetensors, minicnn .npz "
                      f"({', '.join(FORMATS)})")


def detect_format(path) -> str:
    """Identify a weight file by its content (magic bytes, zip members, HDF5 attributes).

    Returns one of :data:`FORMATS`. Raises ``FileNotFoundError`` for a missing file and
    ``ValueError`` naming the file and the supported formats for anything else.
    """
    path = _check_exists(path)
    with open(path, "rb") as f:
        head = f.read(16)
    size = os.path.getsize(path)
    if head.startswith(_HDF5_MAGIC) or h5py.is_hdf5(path):
        try:
            with h5py.File(path, "r") as f:
                if _string_list_attr(f, "layer_names") is not None:
                    return "keras_h5"
                if _legacy_root(f) is not None:
                    return "keras_h5_model"
                if "layers" in f or "vars" in f:
                    return "keras3_weights"
        except OSError as e:
            raise _unknown(path, f"HDF5 file not readable: {e}") from None
        raise _unknown(path, "an HDF5 file with neither Keras 'layer_names' nor a 'layers' group")
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise _unknown(path, f"broken zip archive: {e}") from None
        if "config.json" in names and "model.weights.h5" in names:
            return "keras_archive"
        if any(n.endswith("/data.pkl") and n.count("/") == 1 for n in names):
            return "torch_zip"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
        raise _unknown(path, f"a zip archive with members {names[:6]}")
    if is_torch_legacy_file(head):
        return "torch_legacy"
    if len(head) >= 9:
        n = struct.unpack("<Q", head[:8])[0]
        if head[8:9] == b"{" and 8 + n <= size:
            return "safetensors"
    if size == 0:
        raise _unknown(path, "empty file")
    raise _unknown(path, "no known magic bytes")
