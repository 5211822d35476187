"""minicnn's own ``.npz`` files (models, checkpoints, weight arrays), read without pickle.

    read_npz_arrays(path)   every array, in file order
    read_npz(path)          ``(arrays, config)``: a model file's arrays and its parsed ``architecture``
                            JSON (``None`` for a plain weights file)
"""
from __future__ import annotations

import json
import zipfile

import numpy as np

from ..errors import WeightFileError
from ._files import check_exists

__all__ = ["read_npz_arrays", "read_npz"]


def read_npz_arrays(path, what: str = "weight file") -> dict[str, np.ndarray]:
    """Read a minicnn ``.npz`` (``np.load(allow_pickle=False)``): ``{name: array}`` in file order."""
    path = check_exists(path, what)
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise WeightFileError(f"{path} is not a readable .npz file ({e}); was it truncated?", path=path) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise WeightFileError(f"{path}: is a single .npy array, not an .npz archive", path=path)
    out = {}
    with npz:
        for key in npz.files:
            try:
                out[key] = npz[key]
            except ValueError as e:
                if "allow_pickle" in str(e) or "Object arrays" in str(e) or "pickle" in str(e).lower():
                    raise WeightFileError(f"{path}: array '{key}' holds pickled Python objects; minicnn never "
                                          "unpickles files (they can run code). Save plain numeric arrays.",
                                          path=path, field=key) from None
                raise WeightFileError(f"{path}: cannot read array '{key}' ({e})", path=path, field=key) from None
            except (OSError, EOFError, zipfile.BadZipFile) as e:
                raise WeightFileError(f"{path}: corrupt array '{key}' ({e}); was it truncated?", path=path,
                                      field=key) from None
    return out


def read_npz(path):
    """A minicnn model file: ``(arrays, config)``; ``config`` is the parsed ``architecture`` entry,
    or None for a weights-only file."""
    arrays = read_npz_arrays(path, "model file")
    if "architecture" not in arrays:
        return arrays, None
    try:
        config = json.loads(str(arrays.pop("architecture")))
    except (ValueError, UnicodeError) as e:
        raise WeightFileError(f"{path}: its 'architecture' entry is not valid JSON ({e})", path=path,
                              field="architecture") from None
    if not isinstance(config, dict):
        raise WeightFileError(f"{path}: its 'architecture' entry is not a JSON object", path=path, field="architecture")
    return arrays, config
