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
import math
import os
from dataclasses import dataclass, field

import h5py
import numpy as np

from ..errors import UnsafeFileError, WeightFileError
from ._files import (DEFLATE_MAX_RATIO, FORMATS, check_exists, check_zip_members, member_cap,
                     open_zip, read_member)

__all__ = ["check_h5_file", "open_h5", "KerasLayerWeights", "read_keras_h5", "read_keras_h5_model", "read_keras3_weights", "read_keras_archive"]


#: What h5py raises on a damaged file (RuntimeError: a broken heap or B-tree; KeyError/ValueError:
#: a bad object or attribute header).
H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, OverflowError, RecursionError)
_NUMERIC_KINDS = "fiub"
_MAX_LINKS = 1_000_000
_MAX_DEPTH = 64


def _refuse(where: str, name: str, what: str) -> UnsafeFileError:
    return UnsafeFileError(f"{where}: '{name}' {what}; minicnn reads nothing outside the file it is given, "
                           "so the file is refused", path=where.split("!")[0], field=name)


def _check_dataset(ds: h5py.Dataset, where: str, name: str, file_size: int, max_bytes: int) -> None:
    if ds.is_virtual:
        srcs = ", ".join(sorted({f"{s.file_name}:{s.dset_name}" for s in ds.virtual_sources()}))[:200]
        raise _refuse(where, name, f"is a virtual dataset (its bytes come from {srcs})")
    ext = ds.external
    if ext:
        files = ", ".join(repr(_decode(e[0])) for e in ext)[:200]
        raise _refuse(where, name, f"keeps its bytes in external raw file(s) {files}")
    dt = ds.dtype
    if dt.kind not in _NUMERIC_KINDS or dt.fields is not None or dt.subdtype is not None:
        raise WeightFileError(f"{where}: dataset '{name}' has dtype {dt}; Keras weights are numbers "
                              "(refused rather than converted)", path=where.split("!")[0], field=name)
    nbytes = math.prod(int(s) for s in (ds.shape or ())) * dt.itemsize
    if nbytes > max_bytes:
        raise WeightFileError(f"{where}: dataset '{name}' declares {nbytes:,} bytes, over the limit of "
                              f"{max_bytes:,} (set MINICNN_MAX_MEMBER_BYTES for a file you trust)",
                              path=where.split("!")[0], field=name)
    stored = ds.id.get_storage_size()
    if nbytes > DEFLATE_MAX_RATIO * min(stored, file_size) + 4096:
        raise WeightFileError(f"{where}: dataset '{name}' declares {nbytes:,} bytes but stores only {stored:,} "
                              "(unwritten or a compression bomb); the file is damaged or hostile",
                              path=where.split("!")[0], field=name)


def _resolve_soft(f: h5py.File, group: h5py.Group, target: str, where: str, name: str, depth: int = 0):
    """Follow a soft link's target one component at a time, never through an external link."""
    if depth > 16:
        raise _refuse(where, name, "is a chain of soft links too deep to resolve")
    cur = f if target.startswith("/") else group
    for part in [p for p in target.split("/") if p and p != "."]:
        if not isinstance(cur, h5py.Group):
            break
        link = cur.get(part, getlink=True)
        if link is None:
            raise WeightFileError(f"{where}: soft link '{name}' points to '{target}', which does not exist",
                                  path=where.split("!")[0], field=name)
        if isinstance(link, h5py.ExternalLink):
            raise _refuse(where, name, f"is a soft link to '{target}', which leaves the file through an "
                          f"external link to {link.filename}:{link.path}")
        if isinstance(link, h5py.SoftLink):
            cur = _resolve_soft(f, cur, link.path, where, name, depth + 1)
        elif isinstance(link, h5py.HardLink):
            cur = cur[part]
        else:
            raise _refuse(where, name, f"is a soft link through a {type(link).__name__}")
    return cur


def check_h5_file(f: h5py.File, where: str, *, max_bytes=None, file_size: int | None = None) -> None:
    """Walk every link of ``f`` before any dataset is read, and refuse what would reach outside it.

    ``UnsafeFileError`` (naming the file, the object path and what it is) for an external link, a
    soft link that leaves the file, a user-defined link, a virtual dataset, a dataset stored in an
    external raw file; ``WeightFileError`` for a non-numeric dataset (strings, compounds, complex,
    datetimes, references) or one declaring more bytes than the cap or than its storage can hold.
    """
    cap = member_cap(max_bytes)
    if file_size is None:
        file_size = os.path.getsize(f.filename) if os.path.isfile(f.filename) else cap
    seen, count = set(), 0

    def walk(group, prefix, depth):
        nonlocal count
        if depth > _MAX_DEPTH:
            raise WeightFileError(f"{where}: groups nested deeper than {_MAX_DEPTH} at '{prefix}'",
                                  path=where.split("!")[0], field=prefix)
        for key in group.keys():
            count += 1
            if count > _MAX_LINKS:
                raise WeightFileError(f"{where}: more than {_MAX_LINKS:,} objects", path=where.split("!")[0])
            name = f"{prefix}/{key}"
            link = group.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise _refuse(where, name, f"is an external link to {link.filename}:{link.path}")
            if isinstance(link, h5py.SoftLink):
                _resolve_soft(f, group, link.path, where, name)
                continue                     # its target is walked where it is hard-linked
            if not isinstance(link, h5py.HardLink):
                raise _refuse(where, name, f"is a {type(link).__name__}")
            obj = group[key]
            if isinstance(obj, h5py.Dataset):
                _check_dataset(obj, where, name, file_size, cap)
            elif isinstance(obj, h5py.Group):
                token = h5py.h5o.get_info(obj.id).addr
                if token in seen:
                    continue                 # a hard link back to a group already walked
                seen.add(token)
                walk(obj, name, depth + 1)

    try:
        walk(f, "", 0)
    except WeightFileError:
        raise
    except H5_ERRORS as e:
        raise WeightFileError(f"{where}: corrupt HDF5 file ({type(e).__name__}: {e})",
                              path=where.split("!")[0]) from None


def open_h5(path: str, *, max_bytes=None) -> h5py.File:
    """Open a HDF5 file for reading after :func:`check_h5_file` (closed again if it is refused)."""
    try:
        f = h5py.File(path, "r")
    except WeightFileError:
        raise
    except H5_ERRORS as e:
        raise WeightFileError(f"{path}: not a readable HDF5 file ({e}); supported formats: "
                              f"{', '.join(FORMATS)}", path=path) from None
    try:
        check_h5_file(f, path, max_bytes=max_bytes)
    except BaseException:
        f.close()
        raise
    return f


_open_h5 = open_h5
#: The largest config.json read from a ``.keras`` archive.
MAX_CONFIG_BYTES = 64 << 20


def _read_float(ds, where: str, name: str) -> np.ndarray:
    """A weight dataset as stored; it must be floating point (never cast from int/complex/text)."""
    if not isinstance(ds, h5py.Dataset):
        raise WeightFileError(f"{where}: '{name}' is not a dataset", path=where.split("!")[0], field=name)
    if ds.dtype.kind != "f":
        raise WeightFileError(f"{where}: weight '{name}' has dtype {ds.dtype}; weights are floating point "
                              "(refused rather than cast)", path=where.split("!")[0], field=name)
    try:
        return np.array(ds[()])
    except WeightFileError:
        raise
    except H5_ERRORS as e:
        raise WeightFileError(f"{where}: cannot read weight '{name}' ({type(e).__name__}: {e})",
                              path=where.split("!")[0], field=name) from None


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
        try:
            root = legacy_root(f)
        except WeightFileError:
            raise
        except H5_ERRORS as e:
            raise WeightFileError(f"{path}: corrupt HDF5 file ({type(e).__name__}: {e})", path=path) from None
        if root is None:
            hint = (" It looks like a Keras 3 '.weights.h5' file: use read_keras3_weights."
                    if ("layers" in f or "vars" in f) else "")
            raise WeightFileError(f"{path}: not a legacy Keras HDF5 weight file (no 'layer_names' "
                             f"attribute at the root or under /model_weights).{hint}", path=path)
        try:
            return _legacy_layers(root, path)
        except WeightFileError:
            raise
        except H5_ERRORS as e:
            raise WeightFileError(f"{path}: corrupt HDF5 file ({type(e).__name__}: {e})", path=path) from None


def _legacy_layers(root, path: str) -> list[KerasLayerWeights]:
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
            arrays.append(_read_float(ds, path, f"{lname}/{wn}"))
        out.append(KerasLayerWeights(lname, wnames, arrays))
    return out


# ------------------------------------------------------------------------- Keras 3 .weights.h5
def _vars_sorted(group, where: str) -> list[np.ndarray]:
    items = []
    for k in group.keys():
        if not (k.isascii() and k.isdigit()):
            raise WeightFileError(f"{where}: unexpected variable name '{k}' (expected 0, 1, 2, ...)",
                                  field=f"{where}/{k}")
        items.append((int(k), k))
    items.sort()                      # by integer: "10" after "9"
    if [i for i, _ in items] != list(range(len(items))):
        raise WeightFileError(f"{where}: variable indices {[i for i, _ in items]} are not 0..n-1", field=where)
    out = []
    for _, k in items:
        ds = group[k]
        if not isinstance(ds, h5py.Dataset):
            raise WeightFileError(f"{where}/{k}: a group where a variable was expected", field=f"{where}/{k}")
        try:
            out.append(np.array(ds[()]))     # ints allowed here (a SeedGenerator's state); the importers
        except WeightFileError:
            raise
        except H5_ERRORS as e:                # take floating-point weights only
            raise WeightFileError(f"{where}/{k}: cannot read ({type(e).__name__}: {e})", field=f"{where}/{k}") from None
    return out


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
        check_h5_file(path_or_h5file, path_or_h5file.filename)
        return _read_keras3_open(path_or_h5file, path_or_h5file.filename)
    if isinstance(path_or_h5file, (str, os.PathLike)):
        path = check_exists(path_or_h5file)
        with _open_h5(path) as f:
            return _read_keras3_open(f, path)
    try:                                 # a binary file object, e.g. io.BytesIO
        f = h5py.File(path_or_h5file, "r")
    except WeightFileError:
        raise
    except H5_ERRORS as e:
        raise WeightFileError(f"{path_or_h5file!r}: not a readable HDF5 file ({e})") from None
    with f:
        check_h5_file(f, repr(path_or_h5file))
        return _read_keras3_open(f, repr(path_or_h5file))


def _read_keras3_open(f: h5py.File, where: str) -> dict:
    """The tree of an open file already checked by :func:`check_h5_file`."""
    try:
        if legacy_root(f) is not None:
            raise WeightFileError(f"{where}: this is a legacy Keras HDF5 file; use read_keras_h5")
        if "layers" not in f and "vars" not in f:
            raise WeightFileError(f"{where}: not a Keras 3 weights file (no 'layers' or 'vars' group)")
        return _keras3_node(f, where, skip=("optimizer",))
    except WeightFileError:
        raise
    except H5_ERRORS as e:
        raise WeightFileError(f"{where}: corrupt Keras 3 weights file ({e})") from None


def read_keras_archive(path, *, max_bytes=None) -> tuple[dict, dict]:
    """Open a Keras 3 ``.keras`` zip: return ``(config_dict, weights_tree)``.

    ``config_dict`` is ``config.json`` parsed; ``weights_tree`` is :func:`read_keras3_weights`
    of the ``model.weights.h5`` member, read from memory (nothing is extracted to disk). Member
    names and sizes are checked before anything is inflated (``check_zip_members``), the HDF5
    member walked by :func:`check_h5_file` before any dataset is read.
    """
    path = check_exists(path)
    with open_zip(path, "Keras archive") as zf:
        infos = {i.filename: i for i in check_zip_members(zf, path, max_bytes)}
        missing = [m for m in ("config.json", "model.weights.h5") if m not in infos]
        if missing:
            raise WeightFileError(f"{path}: not a Keras archive (missing {', '.join(missing)})", path=path)
        if infos["config.json"].file_size > MAX_CONFIG_BYTES:
            raise WeightFileError(f"{path}: config.json is {infos['config.json'].file_size:,} bytes, over "
                                  f"{MAX_CONFIG_BYTES:,}; not a genuine Keras config", path=path, field="config.json")
        raw = read_member(zf, infos["config.json"], path)
        h5bytes = read_member(zf, infos["model.weights.h5"], path)
    try:
        config = json.loads(raw.decode("utf8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise WeightFileError(f"{path}: config.json in the archive is not JSON ({type(e).__name__}: {e})",
                              path=path, field="config.json") from None
    where = f"{path}!model.weights.h5"
    try:
        f = h5py.File(io.BytesIO(h5bytes), "r")
    except WeightFileError:
        raise
    except H5_ERRORS as e:
        raise WeightFileError(f"{path}: model.weights.h5 in the archive is not readable HDF5 ({e})", path=path,
                              field="model.weights.h5") from None
    with f:
        check_h5_file(f, where, max_bytes=max_bytes, file_size=len(h5bytes))
        return config, _read_keras3_open(f, where)


def read_keras_h5_model(path) -> tuple[dict, list[KerasLayerWeights]]:
    """A full-model legacy ``.h5`` (``model.save('*.h5')``): ``(model_config, layers)``.

    ``model_config`` is the parsed ``model_config`` attribute (``None`` when the file holds weights
    only); ``layers`` is :func:`read_keras_h5` of the file.
    """
    path = check_exists(path)
    with _open_h5(path) as f:
        try:
            raw = f.attrs.get("model_config")
        except WeightFileError:
            raise
        except H5_ERRORS as e:
            raise WeightFileError(f"{path}: corrupt HDF5 attribute 'model_config' ({type(e).__name__}: {e})",
                                  path=path, field="model_config") from None
    config = None
    if raw is not None:
        try:
            config = json.loads(raw.decode("utf8") if isinstance(raw, (bytes, np.bytes_)) else str(raw))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, TypeError) as e:
            raise WeightFileError(f"{path}: the 'model_config' attribute is not JSON ({e})", path=path,
                                  field="model_config") from None
    return config, read_keras_h5(path)
