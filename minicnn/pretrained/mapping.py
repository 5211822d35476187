"""Put the arrays of a weight file into a minicnn model: names, layouts, and every check on the way.

The generic converter: it knows no architecture. What differs per architecture (Keras names,
layout quirks, dropped keys, head names) comes from the :class:`~minicnn.pretrained.spec.WeightSpec`
its file declares; the registry hands the right one to :func:`load_arch_weights`.

The template is nanoGPT's ``from_pretrained``: list the keys that are dropped on purpose, check the
key *counts* and every *shape* before copying anything, and keep the layout transforms in one
place (:mod:`minicnn.pretrained.layout`). Nothing is skipped silently: a mismatch raises
``WeightFileError`` (a ``ValueError``) listing every missing, unexpected and mis-shaped tensor;
what is dropped on purpose is listed in ``model.meta['dropped']``.

===============================  =======================  ==============================
file                             file layout              minicnn layout
===============================  =======================  ==============================
torch Conv2d ``weight``          (F, C/G, KH, KW)         Conv2D ``W`` as is
torch Linear ``weight``          (out, in)                Dense ``W`` (in, out)
torch BatchNorm2d                weight, bias, running_*  gamma, beta, running_mean/var
Keras Conv2D ``kernel``          HWIO (KH, KW, C, F)      OIHW
Keras Dense ``kernel``           (in, out)                as is (rows permuted after a Flatten)
Keras BatchNormalization         gamma, beta, mean, var   the same, minus switched-off ones
===============================  =======================  ==============================

Keras legacy ``.h5`` files are assigned **by position** (as Keras does): the file's layers that
have weights, in ``layer_names`` order, go to the model's nodes that have weights, in node order
(after the spec's reordering by names or creation order). Names are compared too (through the
spec's name table) to explain a mismatch, but positions decide. Keras 3 ``.weights.h5`` files are
first turned into the same layer list (:mod:`minicnn.pretrained.keras3_weights`).
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import UsageError, WeightFileError
from ..readers.detect import detect_format
from ..readers.keras import KerasLayerWeights, read_keras3_weights, read_keras_h5
from ..readers.npz import read_npz, read_npz_arrays
from ..readers.torch import read_torch_state_dict
from ._common import (TORCH_NAMES, keras_file_shape, keras_roles, layer_kind, mismatch_error, normalize_keras_name,
                      weighted_nodes)
from .download import download
from .keras3_weights import keras3_layers
from .layout import hwio_to_oihw, linear_to_dense, nhwc_flatten_rows_to_nchw
from .spec import WeightSpec

TORCH_FORMATS = ("torch_zip", "torch_legacy", "safetensors")
KERAS_FORMATS = ("keras_h5", "keras_h5_model")
KERAS3_WEIGHTS = "keras3_weights"
#: The spec of a graph that is none of the known architectures: generic names, no layout quirks.
GENERIC = WeightSpec(keras3_layer_order=False)


# ------------------------------------------------------------------------------------------------
# torch state_dicts
# ------------------------------------------------------------------------------------------------
def _torch_expected(model) -> dict:
    """torch key -> (minicnn key, minicnn shape, is a torch Linear weight) for every weighted node."""
    expected = {}
    for node in weighted_nodes(model):
        kind = layer_kind(node.layer)
        if kind is None:
            raise WeightFileError(f"node {node.name!r}: no torch mapping for {type(node.layer).__name__}")
        own = {**node.layer.params, **node.layer.buffers}
        for tkey, mkey in TORCH_NAMES[kind].items():
            if mkey in own:
                expected[f"{node.name}.{tkey}"] = (f"{node.name}.{mkey}", own[mkey].shape,
                                                   kind == "dense" and mkey == "W")
    return expected


def convert_torch_state_dict(model, sd: dict, source: str = "<state_dict>",
                             spec: WeightSpec = GENERIC) -> tuple[dict, list[str]]:
    """Rename and transpose a torch state_dict for ``model``; returns ``(minicnn_sd, dropped_keys)``.

    Counters (``spec.dropped_suffixes``: ``num_batches_tracked``) are dropped (and returned); so are
    the spec's ``torch_drop_prefixes`` and the head's tensors (``spec.head_nodes``) when the model has
    no such node (``include_top=False``). Everything else must map one to one: otherwise
    ``WeightFileError`` lists the missing, unexpected and mis-shaped keys.
    """
    dropped = [k for k in sd if spec.torch_drop_prefixes and k.startswith(spec.torch_drop_prefixes)]
    rest = [k for k in sd if k not in set(dropped)]
    dropped += [k for k in rest if k.endswith(spec.dropped_suffixes)]
    expected = _torch_expected(model)
    if not any(n.split(".")[0] in spec.head_nodes for n in model.nodes):
        dropped += [k for k in rest if k.split(".")[0] in spec.head_nodes]
    keys = [k for k in sd if k not in set(dropped)]
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in keys if k not in expected]
    misshaped, out = [], {}
    for k in keys:
        if k not in expected:
            continue
        mkey, shape, linear = expected[k]
        a = np.asarray(sd[k])
        got = a.shape[::-1] if linear else a.shape         # torch Linear (out, in) -> Dense (in, out)
        if got != shape:
            misshaped.append(f"{k}: file {a.shape} (out, in) vs model {shape[::-1]} (out, in)" if linear
                             else f"{k}: file {a.shape} vs model {shape}")
        elif not np.issubdtype(a.dtype, np.floating):
            misshaped.append(f"{k}: file dtype {a.dtype} is not floating point")
        else:
            out[mkey] = linear_to_dense(a) if linear else np.ascontiguousarray(a, dtype=np.float32)
    if missing or unexpected or misshaped:
        raise mismatch_error(f"tensors of {source}", missing, unexpected, misshaped,
                             hint="Check the architecture (and include_top / classes) matches the file.",
                             path=None if source.startswith("<") else source)
    assert len(out) == len(expected), f"mismatched keys: {len(out)} != {len(expected)}"
    return out, dropped


# ------------------------------------------------------------------------------------------------
# Keras HDF5 (legacy .h5 and Keras 3 .weights.h5)
# ------------------------------------------------------------------------------------------------
def _check_keras_counts(model, nodes, layers, source, name_of) -> None:
    if len(layers) != len(nodes):
        file_names = [normalize_keras_name(l.name) for l in layers]
        want = [name_of(n.name) or n.name for n in nodes]
        missing = [f"{w} (model node {n.name})" for w, n in zip(want, nodes) if w not in file_names]
        unexpected = [f"{l.name}" for l, f in zip(layers, file_names) if f not in want]
        raise mismatch_error(
            f"the {len(layers)} layers with weights in {source} (model: {len(nodes)})", missing, unexpected, [],
            hint="Keras assigns layers by position, so the counts must agree: check include_top and the architecture.")


def convert_keras_layers(model, layers, source: str = "<keras file>", name_of=None,
                         spec: WeightSpec = GENERIC) -> tuple[dict, list[str]]:
    """Assign Keras layer weights (``read_keras_h5`` output) to ``model`` by position.

    ``name_of(node_name) -> keras name or None`` (default: the spec's first name table) is used to
    explain mismatches; a trailing head layer (``spec.keras_head_layers``) is dropped when the model
    has none. Returns ``(minicnn_sd, dropped)``.
    """
    name_of = name_of or spec.keras_name
    nodes = weighted_nodes(model)
    layers = list(layers)
    dropped = []
    if len(layers) == len(nodes) + 1 and not any(n.name in spec.head_nodes for n in nodes) \
            and normalize_keras_name(layers[-1].name) in spec.keras_head_layers:
        head = layers.pop()
        dropped = [f"{head.name}/{w}" for w in head.weight_names]
    _check_keras_counts(model, nodes, layers, source, name_of)
    out, misshaped, misnamed = {}, [], []
    for pos, (kl, node) in enumerate(zip(layers, nodes)):
        kind = layer_kind(node.layer)
        want_name = name_of(node.name)
        if want_name is not None and normalize_keras_name(kl.name) != want_name:
            misnamed.append(f"position {pos}: file layer '{kl.name}' vs model node {node.name} (Keras '{want_name}')")
        expected = keras_roles(node.layer)
        label = f"position {pos}: file layer '{kl.name}' -> {node.name}"
        if len(kl.arrays) != len(expected):
            misshaped.append(f"{label}: file has {len(kl.arrays)} arrays {[a.shape for a in kl.arrays]}, model "
                             f"expects {len(expected)} ({', '.join(r for r, _, _ in expected)})")
            continue
        for a, (role, mkey, shape) in zip(kl.arrays, expected):
            want = keras_file_shape(role, kind, shape)
            if a.shape != want:
                misshaped.append(f"{label}.{mkey} ({role}): file {a.shape} vs expected {want}")
                continue
            conv_kernel = role == "kernel" and kind == "conv"
            out[f"{node.name}.{mkey}"] = hwio_to_oihw(a) if conv_kernel else np.ascontiguousarray(a, dtype=np.float32)
    if misshaped:
        raise mismatch_error(f"the layers of {source}", [], [], misshaped + misnamed,
                             hint="Names disagreeing as well usually means a different architecture.")
    return out, dropped   # names that disagree while every shape fits: positions decide, as in Keras


def read_keras_layers(model, path, spec: WeightSpec = GENERIC) -> list[KerasLayerWeights]:
    """The layers with weights of a Keras weight file, in Keras' layer order: a legacy ``.h5`` as
    :func:`~minicnn.readers.keras.read_keras_h5` reads it, a Keras 3 ``.weights.h5`` through
    :func:`~minicnn.pretrained.keras3_weights.keras3_layers`."""
    path = os.fspath(path)
    if detect_format(path) == KERAS3_WEIGHTS:
        return keras3_layers(model, read_keras3_weights(path), spec, source=path)
    return read_keras_h5(path)


def reorder_by_names(model, layers, name_tables):
    """Put the Keras file's layers in the model's weighted-node order when their names say where they go.

    ``name_tables``: functions ``node name -> Keras layer name`` (one per naming generation, e.g.
    Keras 3 ``conv2_block1_1_conv`` and keras-applications ``res2a_branch2a``). The first table whose
    names are all in the file wins; layers it does not name (a head the model lacks) go last, in file
    order. Returns ``(layers, table)``; with no table matching, the file order is kept (positional
    loading, as Keras does) and the first table is returned to explain mismatches.
    """
    nodes = weighted_nodes(model)
    by_name = {normalize_keras_name(l.name): l for l in layers}
    for table in name_tables:
        want = [table(n.name) for n in nodes]
        if None not in want and all(w in by_name for w in want):
            used = set(want)
            return [by_name[w] for w in want] + [l for l in layers if normalize_keras_name(l.name) not in used], table
    return list(layers), name_tables[0]


def permute_flatten_rows(model, converted: dict, spec: WeightSpec) -> dict:
    """The spec's Dense after a Keras Flatten: its kernel rows from NHWC to NCHW flatten order."""
    flatten, dense = spec.flatten_dense
    key = f"{dense}.W"
    if key not in converted:
        return converted
    _, C, H, W = model.output_shapes()[model.nodes[flatten].inputs[0]]
    return {**converted, key: nhwc_flatten_rows_to_nchw(converted[key], (C, H, W))}


def convert_keras_file(model, path: str, spec: WeightSpec) -> tuple[dict, list[str]]:
    """A Keras weight file's arrays for ``model``: read, put in node order, converted, layout fixed."""
    layers = read_keras_layers(model, path, spec)    # a Keras 3 .weights.h5: the same list, in Keras' layer order
    name_of = spec.keras_name
    if spec.keras_by_name and spec.keras_names:
        layers, name_of = reorder_by_names(model, layers, spec.keras_names)
    if spec.keras_order is not None:
        layers = spec.keras_order(layers)
    converted, dropped = convert_keras_layers(model, layers, source=path, name_of=name_of, spec=spec)
    if spec.flatten_dense is not None:
        converted = permute_flatten_rows(model, converted, spec)
    return converted, dropped


# ------------------------------------------------------------------------------------------------
# any file
# ------------------------------------------------------------------------------------------------
def source_of(path) -> str | None:
    """'keras', 'torchvision', or the ``source`` recorded in a minicnn ``.npz`` (None if unknown)."""
    fmt = detect_format(path)
    if fmt in KERAS_FORMATS or fmt in (KERAS3_WEIGHTS, "keras_archive"):
        return "keras"
    if fmt in TORCH_FORMATS:
        return "torchvision"
    _, config = read_npz(path)
    return ((config or {}).get("meta") or {}).get("source")


def _npz_state_dict(path: str) -> dict:
    """The weights of a minicnn ``.npz`` (``w:`` entries or plain names); a weight that is not floating
    point (int, bool, complex, text) is refused, never cast."""
    arrays = read_npz_arrays(path)
    out = {k[2:] if k.startswith("w:") else k: v for k, v in arrays.items()
           if k not in ("architecture", "format_version")}
    for k, v in arrays.items():
        weight = k.startswith("w:") or (":" not in k and k not in ("architecture", "format_version", "train_state"))
        if weight and v.dtype.kind != "f":
            raise WeightFileError(f"{path}: weight '{k[2:] if k.startswith('w:') else k}' has dtype {v.dtype}; "
                                  "minicnn weights are floating point (refused rather than cast)", path=path, field=k)
    return out


def load_arch_weights(model, path, spec: WeightSpec = GENERIC):
    """Detect the weight file's format, load it strictly into ``model`` (as ``spec`` says) and record
    where it came from; returns the model.

    Sets ``model.meta['source']`` ('keras' / 'torchvision' / the file's own for ``.npz``),
    ``model.meta['weights']`` (the file name) and ``model.meta['dropped']`` (what was left out on
    purpose: ``num_batches_tracked`` counters, a head the model does not have, the spec's
    ``torch_drop_prefixes``).
    """
    path = os.fspath(path)
    fmt = detect_format(path)
    built_for, file_source = model.meta.get("source"), source_of(path)
    if built_for and file_source and built_for != file_source:
        raise WeightFileError(f"{path} holds {file_source} weights but the model was built with source={built_for!r} "
                              f"(batch-norm eps, padding and pooling differ); build it with source={file_source!r}",
                              path=path)
    if fmt in KERAS_FORMATS or fmt == KERAS3_WEIGHTS:
        converted, dropped = convert_keras_file(model, path, spec)
        source = "keras"
    elif fmt in TORCH_FORMATS:
        converted, dropped = convert_torch_state_dict(model, read_torch_state_dict(path), source=path, spec=spec)
        source = "torchvision"
    elif fmt == "npz":
        converted, dropped, source = _npz_state_dict(path), [], file_source or built_for
    else:
        hint = ("it is a whole Keras model (architecture + weights): import it with "
                "minicnn.pretrained.load_keras(path) or `minicnn convert`" if fmt == "keras_archive"
                else "see pretrained/README.md for the supported weight files")
        raise WeightFileError(f"{path}: load_weights reads weight files into a built architecture, not {fmt} "
                              f"files; {hint}", path=path)
    model.load_state_dict(converted, strict=True)
    model.meta.update({"source": source, "weights": os.path.basename(path), "dropped": dropped})
    return model


def resolve_weights(weights, spec: WeightSpec) -> str:
    """A path as given, or the name of one of ``spec.weights`` fetched (or found) in the cache."""
    if isinstance(weights, (str, os.PathLike)) and os.path.exists(weights):
        return os.fspath(weights)
    entries = {e.name: e for e in spec.weights}
    if isinstance(weights, str) and weights in entries:
        return download(entries[weights])
    raise UsageError(f"weights must be None, an existing weight file or the name of known "
                     f"{spec.architecture} weights ({', '.join(sorted(entries))}); got {weights!r} (no such file)")


def source_from_weights(weights, source, spec: WeightSpec):
    """``(path or None, source)``: the weight file (a known name is fetched) and the source it implies."""
    if weights is None:
        return None, source or "torchvision"
    path = resolve_weights(weights, spec)
    file_source = source_of(path)
    if source is not None and file_source is not None and source != file_source:
        raise UsageError(f"source={source!r} but {path} holds {file_source} weights; "
                         f"leave source=None to take it from the file")
    return path, file_source or source or "torchvision"
