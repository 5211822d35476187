"""What every reader shares: the list of formats and the check that a path names a file."""
from __future__ import annotations

import os

from ..errors import WeightFileError, file_not_found

#: Every format :func:`minicnn.readers.detect.detect_format` can return.
FORMATS = ("keras_h5", "keras_h5_model", "keras3_weights", "keras_archive", "torch_zip",
           "torch_legacy", "safetensors", "npz", "onnx")


def check_exists(path, what: str = "weight file") -> str:
    """``path`` as a string; ``FileNotFoundError`` if it is missing, ``WeightFileError`` if a directory."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise file_not_found(what, path)
    if os.path.isdir(path):
        raise WeightFileError(f"{path} is a directory, not a {what}", path=path)
    return path
