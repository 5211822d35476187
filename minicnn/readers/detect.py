"""Which weight-file format a file is, by its content (magic bytes, zip members, HDF5 attributes)."""
from __future__ import annotations

import os
import struct
import zipfile

import h5py

from ..errors import WeightFileError
from ._files import FORMATS, ZIP_ERRORS, check_exists
from .keras import H5_ERRORS, check_h5_file, legacy_root, string_list_attr
from .torch_pickle import is_torch_legacy_file

__all__ = ["FORMATS", "detect_format"]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _unknown(path: str, why: str) -> WeightFileError:
    return WeightFileError(f"{path}: unrecognised or corrupt weight file ({why}). Supported formats: "
                      "Keras legacy .h5 (weights or full model), Keras 3 .weights.h5, .keras "
                      "archive, torch .pth/.pt (zip or legacy), .safetensors, minicnn .npz, ONNX "
                      f"({', '.join(FORMATS)})", path=path)


def _is_hdf5(path: str) -> bool:
    try:
        return bool(h5py.is_hdf5(path))
    except H5_ERRORS:
        return False


# ONNX ModelProto top-level fields -> protobuf wire type (0 varint, 2 length-delimited)
_ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_ONNX_GRAPH = 7


def _varint(f) -> int | None:
    shift = value = 0
    for _ in range(10):
        b = f.read(1)
        if not b:
            return None
        value |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return value
        shift += 7
    return None


def looks_like_onnx(path, size: int) -> bool:
    """True if the file parses as an ONNX ``ModelProto`` at the top level: ``ir_version`` first, only
    ModelProto's field numbers with their wire types, lengths inside the file, and a ``graph``."""
    seen = set()
    with open(path, "rb") as f:
        while f.tell() < size:
            tag = _varint(f)
            if tag is None:
                return False
            field, wire = tag >> 3, tag & 7
            if _ONNX_FIELDS.get(field) != wire or (not seen and field != 1):
                return False
            value = _varint(f)
            if value is None:
                return False
            if wire == 2:
                if f.tell() + value > size:
                    return False
                f.seek(value, 1)
            seen.add(field)
        end = f.tell()
    return _ONNX_GRAPH in seen and end == size


def detect_format(path) -> str:
    """Identify a weight file by its content (magic bytes, zip members, HDF5 attributes).

    Returns one of :data:`FORMATS`. Raises ``FileNotFoundError`` for a missing file and
    ``WeightFileError`` (a ``ValueError``) naming the file and the supported formats for anything else.
    """
    path = check_exists(path)
    with open(path, "rb") as f:
        head = f.read(16)
    size = os.path.getsize(path)
    if head.startswith(_HDF5_MAGIC) or _is_hdf5(path):
        try:
            f = h5py.File(path, "r")
        except WeightFileError:
            raise
        except H5_ERRORS as e:
            raise _unknown(path, f"HDF5 file not readable: {e}") from None
        with f:
            check_h5_file(f, path)          # refuses external storage/links before anything is read
            try:
                if string_list_attr(f, "layer_names") is not None:
                    return "keras_h5"
                if legacy_root(f) is not None:
                    return "keras_h5_model"
                if "layers" in f or "vars" in f:
                    return "keras3_weights"
            except WeightFileError:
                raise
            except H5_ERRORS as e:
                raise _unknown(path, f"HDF5 file not readable: {e}") from None
        raise _unknown(path, "an HDF5 file with neither Keras 'layer_names' nor a 'layers' group")
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except ZIP_ERRORS as e:       # a zip's directory is at its end: the usual cause is a cut-off copy
            raise _unknown(path, f"a zip archive without a readable directory ({e}): was it truncated "
                                 "(an interrupted download or copy)?") from None
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
    if head[:1] == b"\x08" and looks_like_onnx(path, size):
        return "onnx"
    what = describe_content(path)
    if what is not None and ("image" in what or "DICOM" in what):
        raise WeightFileError(f"{path} is {what}, not a model or weight file; give the model first "
                              f"(e.g. minicnn predict MODEL IMAGE)", path=path)
    raise _unknown(path, what or "no known magic bytes")


_CONTENT = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
            (b"BM", "a BMP image"), (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"),
            (_HDF5_MAGIC, "an HDF5 file (Keras .h5 / .weights.h5)"), (b"\x80", "a Python pickle (a legacy torch .pth?)"),
            (b"\x93NUMPY", "a single .npy array"))


def describe_content(path) -> str | None:
    """What a file that is not a zip archive is, by its first bytes ("a PNG image", "an HDF5 file
    (...)", "a DICOM file", ...), for messages; None for a zip, an unknown or unreadable file."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return None
    if head[128:132] == b"DICM":
        return "a DICOM file"
    return next((what for magic, what in _CONTENT if head.startswith(magic)), None)
