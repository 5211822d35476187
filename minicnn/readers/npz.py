"""minicnn's own ``.npz`` files (models, checkpoints, weight arrays), read without pickle.

    read_npz_arrays(path)   every array, in file order (``keys=``: only those)
    npz_keys(path)          the array names, nothing inflated
    read_npy(path)          one ``.npy`` file, checked the same way
    read_npz(path)          ``(arrays, config)``: a model file's arrays and its parsed ``architecture``
                            JSON (``None`` for a plain weights file)

The archive is parsed here rather than by ``np.load``, so that nothing is allocated or inflated
before it is checked: member names, compression and declared sizes against the zip directory and
the deflate bound (:func:`~minicnn.readers._files.check_zip_members`), each ``.npy`` header's
dtype (plain numbers, booleans or text; never objects) and its shape times item size against the
member's real size. ``w:*`` entries (weights and buffers) must be floating point: an int, complex
or text weight is an error, never silently cast.
"""
from __future__ import annotations

import json
import math
import os
import tokenize

import numpy as np

from ..errors import WeightFileError
from ._files import check_exists, check_zip_members, open_zip, read_member

__all__ = ["NpzArrays", "read_npz_arrays", "read_npz", "npz_keys", "read_npy"]


class NpzArrays(dict):
    """``{name: array}`` in file order, remembering the file it came from (``.path``) for messages."""
    path: str | None = None

_NPY_MAGIC = b"\x93NUMPY"
_HEADER_ERRORS = (ValueError, SyntaxError, TypeError, KeyError, tokenize.TokenError, OverflowError,
                  RecursionError, MemoryError, EOFError, UnicodeError)
_ALLOWED_KINDS = "biufUS"          # booleans, ints, floats, text (the architecture JSON)


def _parse_npy(data: bytes, path: str, key: str) -> np.ndarray:
    import io
    fh = io.BytesIO(data)
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise ValueError(f"npy format version {version} is not supported")
    except _HEADER_ERRORS as e:
        raise WeightFileError(f"{path}: array '{key}' has a damaged .npy header ({type(e).__name__}: {e})",
                              path=path, field=key) from None
    if dtype.hasobject:
        raise WeightFileError(f"{path}: array '{key}' holds pickled Python objects; minicnn never "
                              "unpickles files (they can run code). Save plain numeric arrays.",
                              path=path, field=key)
    if dtype.kind not in _ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise WeightFileError(f"{path}: array '{key}' has dtype {dtype}; minicnn files hold plain numbers, "
                              "booleans and text only", path=path, field=key)
    if not all(isinstance(s, int) and s >= 0 for s in shape):
        raise WeightFileError(f"{path}: array '{key}' has an invalid shape {shape!r}", path=path, field=key)
    count = math.prod(shape)
    want = count * dtype.itemsize
    have = len(data) - fh.tell()
    if want != have:
        raise WeightFileError(f"{path}: array '{key}' declares shape {tuple(shape)} of {dtype} ({want:,} bytes) "
                              f"but its member holds {have:,}; the file is damaged", path=path, field=key)
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=fh.tell())
    if fortran:
        arr = arr.reshape(shape[::-1]).T
    return np.array(arr.reshape(shape), copy=True)


def read_npy(path, what: str = "array file") -> np.ndarray:
    """One ``.npy`` file, checked as an ``.npz`` member is (no objects, shape against the real size)."""
    path = check_exists(path, what)
    with open(path, "rb") as f:
        data = f.read()
    return _parse_npy(data, path, os.path.basename(path))


def npz_keys(path, what: str = "weight file", *, max_bytes=None) -> list[str]:
    """The array names of an ``.npz``, in file order, after the directory checks (nothing is inflated)."""
    return _read(path, what, max_bytes, keys=())[1]


def read_npz_arrays(path, what: str = "weight file", *, max_bytes=None, keys=None) -> dict[str, np.ndarray]:
    """Read a minicnn ``.npz`` (no pickle): ``{name: array}`` in file order (only ``keys``, when given).

    A damaged, hostile or oversized file raises ``WeightFileError`` naming it and the member;
    ``max_bytes`` caps each member's uncompressed size (default ``MAX_MEMBER_BYTES``).
    """
    return _read(path, what, max_bytes, keys)[0]


def _read(path, what, max_bytes, keys):
    path = check_exists(path, what)
    with open(path, "rb") as f:
        head = f.read(6)
    if head == _NPY_MAGIC:
        raise WeightFileError(f"{path}: is a single .npy array, not an .npz archive", path=path)
    if not head.startswith(b"PK"):
        raise WeightFileError(f"{path} is not a readable .npz file (not a zip archive); was it truncated?",
                              path=path)
    out = NpzArrays()
    out.path = path
    names = []
    with open_zip(path, ".npz file") as zf:
        for info in check_zip_members(zf, path, max_bytes):
            name = info.filename
            if not name.endswith(".npy"):
                raise WeightFileError(f"{path}: member {name!r} is not a .npy array; not a minicnn .npz file",
                                      path=path, field=name)
            key = name[:-4]
            if key in names:
                raise WeightFileError(f"{path}: array '{key}' is stored twice", path=path, field=key)
            names.append(key)
            if keys is None or key in keys:
                out[key] = _parse_npy(read_member(zf, info, path), path, key)
    return out, names


def read_npz(path, *, max_bytes=None):
    """A minicnn model file: ``(arrays, config)``; ``config`` is the parsed ``architecture`` entry,
    or None for a weights-only file. ``w:*`` arrays must be floating point."""
    arrays = read_npz_arrays(path, "model file", max_bytes=max_bytes)
    for k, v in arrays.items():
        if k.startswith("w:") and v.dtype.kind != "f":
            raise WeightFileError(f"{path}: weight '{k[2:]}' has dtype {v.dtype}; minicnn weights are floating "
                                  "point (refused rather than cast)", path=path, field=k)
    if "architecture" not in arrays:
        return arrays, None
    arch = arrays.pop("architecture")
    if arch.dtype.kind not in "US" or arch.ndim != 0:
        raise WeightFileError(f"{path}: its 'architecture' entry is not a JSON string (a {arch.dtype} array of "
                              f"shape {arch.shape})", path=path, field="architecture")
    try:
        text = arch.item()
        config = json.loads(text.decode("utf8") if isinstance(text, bytes) else text)
    except (ValueError, UnicodeError, RecursionError) as e:
        raise WeightFileError(f"{path}: its 'architecture' entry is not valid JSON ({e})", path=path,
                              field="architecture") from None
    if not isinstance(config, dict):
        raise WeightFileError(f"{path}: its 'architecture' entry is not a JSON object", path=path, field="architecture")
    return arrays, config
