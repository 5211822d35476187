"""Which weight-file format a file is, by its content (magic bytes, zip members, HDF5 attributes)."""
from __future__ import annotations

import os
import struct
import zipfile

import h5py

from ..errors import WeightFileError
from ._files import FORMATS, check_exists
from .keras import legacy_root, string_list_attr
from .torch_pickle import is_torch_legacy_file

__all__ = ["FORMATS", "detect_format"]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _unknown(path: str, why: str) -> WeightFileError:
    return WeightFileError(f"{path}: unrecognised or corrupt weight file ({why}). Supported formats: "
                      "Keras legacy .h5 (weights or full model), Keras 3 .weights.h5, .keras "
                      "archive, torch .pth/.pt (zip or legacy), .safetensors, minicnn .npz "
                      f"({', '.join(FORMATS)})", path=path)


def detect_format(path) -> str:
    """Identify a weight file by its content (magic bytes, zip members, HDF5 attributes).

    Returns one of :data:`FORMATS`. Raises ``FileNotFoundError`` for a missing file and
    ``WeightFileError`` (a ``ValueError``) naming the file and the supported formats for anything else.
    """
    path = check_exists(path)
    with open(path, "rb") as f:
        head = f.read(16)
    size = os.path.getsize(path)
    if head.startswith(_HDF5_MAGIC) or h5py.is_hdf5(path):
        try:
            with h5py.File(path, "r") as f:
                if string_list_attr(f, "layer_names") is not None:
                    return "keras_h5"
                if legacy_root(f) is not None:
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
    raise _unknown(path, describe_content(path) or "no known magic bytes")


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
