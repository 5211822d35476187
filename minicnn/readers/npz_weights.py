"""minicnn's own ``.npz`` weight arrays, read without pickle (``read_npz_weights``).

Kept apart from the model-file reader (``minicnn.model.read_npz``); the two are to be unified.
"""
from __future__ import annotations

import zipfile

import numpy as np

from ..errors import WeightFileError
from ._files import check_exists

__all__ = ["read_npz_weights"]


def read_npz_weights(path) -> dict[str, np.ndarray]:
    """Read minicnn's own ``.npz`` weight file (``np.load(allow_pickle=False)``), in file order."""
    path = check_exists(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise WeightFileError(f"{path}: not a readable .npz file ({e})", path=path) from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise WeightFileError(f"{path}: is a single .npy array, not an .npz weight archive", path=path)
    out = {}
    with npz:
        for key in npz.files:
            try:
                out[key] = npz[key]
            except ValueError as e:
                if "allow_pickle" in str(e) or "Object arrays" in str(e):
                    raise WeightFileError(f"{path}: array '{key}' holds pickled Python objects; minicnn "
                                     "never unpickles weight files. Save plain numeric arrays.",
                                          path=path, field=key) from None
                raise WeightFileError(f"{path}: cannot read array '{key}' ({e})", path=path, field=key) from None
            except (OSError, EOFError, zipfile.BadZipFile) as e:
                raise WeightFileError(f"{path}: corrupt array '{key}' ({e})", path=path, field=key) from None
    return out
