"""Keras weight files: legacy HDF5 ``.h5`` (Keras 2 / tf-keras), Keras 3 ``.weights.h5`` and ``.keras`` archives.

    read_keras_h5(path)            legacy ``.h5`` (weights only, or a full model under ``/model_weights``)
    read_keras_h5_model(path)      a full-model legacy ``.h5``: ``(model_config, layers)``
    read_keras3_weights(path)      Keras 3 ``.weights.h5`` (also the member of a ``.keras`` archive)
    read_keras_archive(path)       a Keras 3 ``.keras`` zip: ``(config, weights_tree)``

Pure parsing (h5py, zipfile, json): arrays are returned as stored -- conv kernels HWIO
``(kh, kw, in, out)``, Dense kernels ``(in, out)``. Layout transforms happen in the importers
(:mod:`minicnn.pretrained.layout`). A corrupt file raises ``WeightFileError`` naming it.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from dataclasses import dataclass, field

import h5py
import numpy as np

from ..errors import WeightFileError
from ._files import FORMATS, check_exists

__all__ = ["KerasLayerWeights", "read_keras_h5", "read_keras_h5_model", "read_keras3_weights", "read_keras_archive"]


def _open_h5(path: str) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise WeightFileError(f"{path}: not a readable HDF5 file ({e}); supported formats: "
                         f"{', '.join(FORMATS)}", path=path) from None


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


def string_list_attr(group, name: str) -> list[str] | None:
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


def legacy_root(f: h5py.File):
    """The group holding ``layer_names``: the root, or ``/model_weights`` of a full-model file."""
    if string_list_attr(f, "layer_names") is not None:
        return f
    mw = f.get("model_weights")
    if isinstance(mw, h5py.Group) and string_list_attr(mw, "layer_names") is not None:
        return mw
    return None


def read_keras_h5(path) -> list[KerasLayerWeights]:
    """Read a legacy Keras HDF5 weight file (``save_weights('*.h5')`` or ``model.save('*.h5')``).

    Layers come in the order of the ``layer_names`` attribute (never ``group.keys()``, which HDF5
    sorts alphabetically); layers with no weights are left out, so the list matches Keras's
    by-position assignment to the model's layers that have weights. ``top_level_model_weights``
    is ignored. Arrays are returned as stored (no transposes).
    """
    path = check_exists(path)
    with _open_h5(path) as f:
        root = legacy_root(f)
        if root is None:
            hint = (" It looks like a Keras 3 '.weights.h5' file: use read_keras3_weights."
                    if ("layers" in f or "vars" in f) else "")
            raise WeightFileError(f"{path}: not a legacy Keras HDF5 weight file (no 'layer_names' "
                             f"attribute at the root or under /model_weights).{hint}", path=path)
        out = []
        for lname in string_list_attr(root, "layer_names"):
            g = root.get(lname)
            if not isinstance(g, h5py.Group):
                raise WeightFileError(f"{path}: layer '{lname}' is listed in layer_names but has no group",
                                      path=path, field=lname)
            wnames = string_list_attr(g, "weight_names") or []
            if not wnames:
                continue
            arrays = []
            for wn in wnames:
                ds = g.get(wn)
                if not isinstance(ds, h5py.Dataset):
                    raise WeightFileError(f"{path}: weight '{wn}' of layer '{lname}' is missing", path=path,
                                          field=f"{lname}/{wn}")
                try:
                    arrays.append(np.array(ds[()]))
                except OSError as e:
                    raise WeightFileError(f"{path}: cannot read weight '{wn}' of layer '{lname}' ({e})", path=path,
                                          field=f"{lname}/{wn}") from None
            out.append(KerasLayerWeights(lname, wnames, arrays))
        return out


# ------------------------------------------------------------------------- Keras 3 .weights.h5
def _vars_sorted(group, where: str) -> list[np.ndarray]:
    items = []
    for k in group.keys():
        if not k.isdigit():
            raise WeightFileError(f"{where}: unexpected variable name '{k}' (expected 0, 1, 2, ...)",
                                  field=f"{where}/{k}")
        items.append((int(k), k))
    items.sort()                      # by integer: "10" after "9"
    if [i for i, _ in items] != list(range(len(items))):
        raise WeightFileError(f"{where}: variable indices {[i for i, _ in items]} are not 0..n-1", field=where)
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
        path = check_exists(path_or_h5file)
        with _open_h5(path) as f:
            return _read_keras3_open(f, path)
    try:                                 # a binary file object, e.g. io.BytesIO
        f = h5py.File(path_or_h5file, "r")
    except OSError as e:
        raise WeightFileError(f"{path_or_h5file!r}: not a readable HDF5 file ({e})") from None
    with f:
        return _read_keras3_open(f, repr(path_or_h5file))


def _read_keras3_open(f: h5py.File, where: str) -> dict:
    if legacy_root(f) is not None:
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
    path = check_exists(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            missing = [m for m in ("config.json", "model.weights.h5") if m not in names]
            if missing:
                raise WeightFileError(f"{path}: not a Keras archive (missing {', '.join(missing)})", path=path)
            config = json.loads(zf.read("config.json").decode("utf8"))
            h5bytes = zf.read("model.weights.h5")
    except (zipfile.BadZipFile, OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WeightFileError(f"{path}: corrupt Keras archive ({type(e).__name__}: {e})", path=path) from None
    try:
        f = h5py.File(io.BytesIO(h5bytes), "r")
    except OSError as e:
        raise WeightFileError(f"{path}: model.weights.h5 in the archive is not readable HDF5 ({e})", path=path,
                              field="model.weights.h5") from None
    with f:
        return config, _read_keras3_open(f, f"{path}!model.weights.h5")


def read_keras_h5_model(path) -> tuple[dict, list[KerasLayerWeights]]:
    """A full-model legacy ``.h5`` (``model.save('*.h5')``): ``(model_config, layers)``.

    ``model_config`` is the parsed ``model_config`` attribute (``None`` when the file holds weights
    only); ``layers`` is :func:`read_keras_h5` of the file.
    """
    path = check_exists(path)
    with _open_h5(path) as f:
        raw = f.attrs.get("model_config")
    config = None
    if raw is not None:
        try:
            config = json.loads(raw.decode("utf8") if isinstance(raw, (bytes, np.bytes_)) else str(raw))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise WeightFileError(f"{path}: the 'model_config' attribute is not JSON ({e})", path=path,
                                  field="model_config") from None
    return config, read_keras_h5(path)
