"""Keras 3 ``.weights.h5`` files of ``keras.applications`` models -> the layer list a legacy file gives.

Keras 3 ``.weights.h5`` files hold no layer names: a layer's arrays sit at ``layers/<key>/vars/<i>``
with ``<key>`` the snake_case class name numbered per class in the model's layer order
(``conv2d``, ``conv2d_1``, ...). :func:`keras3_layers` derives that order from the graph
(:func:`keras_layer_order`, Keras' own rule), so it knows which key belongs to which node, and
hands on the same list of :class:`~minicnn.readers.keras.KerasLayerWeights` a legacy file gives.
What differs per architecture (ResNet50's call order, InceptionV3's auto-generated names) comes
from its :class:`~minicnn.pretrained.spec.WeightSpec`.
"""
from __future__ import annotations

import numpy as np

from ..errors import WeightFileError
from ..readers.keras import KerasLayerWeights
from ._common import keras_file_shape, keras_roles, layer_kind, mismatch_error, weighted_nodes
from .spec import WeightSpec

#: Keras class of each weighted minicnn layer kind, as its snake_case storage key.
KERAS3_CLASS_KEYS = {"conv": "conv2d", "bn": "batch_normalization", "dense": "dense"}


def keras_layer_order(model, call_inputs=None) -> list[str]:
    """The model's node names in the order a Keras 3 Functional model lists the same layers.

    Keras (``keras/src/ops/function.py``, ``map_graph``) sorts the layers by depth -- the longest
    path from a layer to the output, deepest first -- and breaks ties by the order in which a
    depth-first walk from the output, over each layer's inputs in call order, first reaches them.
    The graph must have the Keras model's topology (``source='keras'``); ``call_inputs(node)``
    gives a node's inputs in the order the Keras code passes them, when that differs from the
    node's. Only nodes the output depends on are listed.
    """
    inputs_of = call_inputs or (lambda node: node.inputs)
    nodes = model.nodes
    first_seen, stack = {}, [model.output_name]
    while stack:                                   # iterative pre-order == Keras' recursive walk
        name = stack.pop()
        if name in first_seen or name not in nodes:
            continue
        first_seen[name] = len(first_seen)
        stack.extend(reversed(inputs_of(nodes[name])))
    depth = {model.output_name: 0}
    for node in reversed(list(nodes.values())):   # consumers before producers: longest path to the output
        if node.name in depth:
            for i in node.inputs:
                depth[i] = max(depth.get(i, 0), depth[node.name] + 1)
    return sorted(first_seen, key=lambda n: (-depth[n], first_seen[n]))


def keras3_auto_names(model, fixed: dict) -> dict:
    """Keras' auto-generated names in a fresh session for a graph built in Keras' creation order: the
    k-th Conv2D (BatchNormalization, Dense) created is ``conv2d_k`` (``batch_normalization_k``, ...),
    the first one bare; ``fixed`` names some nodes explicitly (e.g. ``{'fc': 'predictions'}``)."""
    names, count = {}, {}
    for node in weighted_nodes(model):
        if node.name in fixed:
            names[node.name] = fixed[node.name]
            continue
        kind = layer_kind(node.layer)
        k = count.get(kind, 0)
        count[kind] = k + 1
        names[node.name] = KERAS3_CLASS_KEYS[kind] + (f"_{k}" if k else "")
    return names


def _keras3_naming(model, spec: WeightSpec):
    """``(call_inputs, name_of)`` for the model's architecture, or ``WeightFileError``."""
    if model.meta.get("source") != "keras":
        raise WeightFileError(f"Keras 3 weights need a model built with source='keras' (this one: "
                              f"{model.meta.get('source')!r})")
    if not spec.keras3_layer_order:
        raise WeightFileError(f"Keras 3 .weights.h5 files name layers only by class and position; minicnn knows the "
                              f"Keras layer order of the architectures in minicnn.pretrained.registry, not of "
                              f"{model.meta.get('architecture')!r}. For another model load its .keras archive "
                              "with minicnn.pretrained.keras_import.load_keras.")
    name_of = spec.keras3_names(model) if spec.keras3_names is not None else spec.keras_name
    return spec.keras3_call_inputs, name_of


def _tree_arrays(node, where: str):
    """``(path, array)`` of every array in a Keras 3 weights subtree."""
    out = [(f"{where}/vars/{i}", a) for i, a in enumerate(node["vars"])]
    for key, sub in node["layers"].items():
        out += _tree_arrays(sub, f"{where}/layers/{key}")
    for key, sub in node["children"].items():
        out += _tree_arrays(sub, f"{where}/{key}")
    return out


def _check_plain_application(tree: dict, source: str) -> None:
    """Refuse a tree that is not the plain application model (root variables, a wrapped model)."""
    if tree["vars"] or tree["children"]:
        raise WeightFileError(f"{source}: the root holds variables or sub-objects {sorted(tree['children'])}: "
                              "not the weights of a Keras application model", path=source)
    nested = sorted(k for k, sub in tree["layers"].items() if sub["layers"])
    if nested:
        raise WeightFileError(f"{source}: holds a model that wraps another one ({', '.join(f'layers/{k}/' for k in nested)}"
                              f"); minicnn reads the weights of the plain keras.applications model. Save those with "
                              f"the inner model's save_weights (e.g. outer.get_layer('densenet121').save_weights(...)), "
                              f"or import the whole .keras archive with minicnn.pretrained.keras_import.load_keras.",
                              path=source)


def _expected_keys(model, call_inputs) -> tuple[list, dict]:
    """``([(node, key)] in Keras order, {class key: count})``: the storage key of each weighted node."""
    weighted = {n.name for n in weighted_nodes(model)}
    order = [n for n in keras_layer_order(model, call_inputs) if n in weighted]
    if len(order) != len(weighted):                # pragma: no cover (a weighted node the output ignores)
        raise WeightFileError(f"nodes {sorted(weighted - set(order))} do not lead to the model's output")
    count, expected = {}, []
    for name in order:
        cls = KERAS3_CLASS_KEYS[layer_kind(model.nodes[name].layer)]
        k = count.get(cls, 0)
        count[cls] = k + 1
        expected.append((name, cls + (f"_{k}" if k else "")))
    return expected, count


def _check_group(node, key: str, g: dict, what: str, missing: list, unexpected: list, misshaped: list) -> None:
    """Compare one ``layers/<key>`` group with the arrays ``node`` needs; append every problem found."""
    kind, roles, arrays = layer_kind(node.layer), keras_roles(node.layer), g["vars"]
    for i, (role, mkey, shape) in enumerate(roles):
        path, want = f"layers/{key}/vars/{i}", keras_file_shape(role, kind, shape)
        if i >= len(arrays):
            missing.append(f"{path} -> {what}.{mkey} ({role}, {want})")
        elif arrays[i].shape != want:
            misshaped.append(f"{path} -> {what}.{mkey} ({role}): file {arrays[i].shape} vs expected {want}")
        elif not np.issubdtype(arrays[i].dtype, np.floating):
            misshaped.append(f"{path} -> {what}.{mkey} ({role}): file dtype {arrays[i].dtype} "
                             "is not floating point")
    unexpected += [f"layers/{key}/vars/{i} {arrays[i].shape} (beyond the {len(roles)} arrays of {what})"
                   for i in range(len(roles), len(arrays))]
    unexpected += [f"{p} {a.shape}" for p, a in
                   _tree_arrays({"vars": [], "layers": {}, "children": g["children"]}, f"layers/{key}")]


def keras3_layers(model, tree: dict, spec: WeightSpec, source: str = "<keras 3 weights>") -> list[KerasLayerWeights]:
    """Turn a Keras 3 weights tree (:func:`~minicnn.readers.keras.read_keras3_weights`) of a
    ``keras.applications`` model into the list a legacy file gives: one :class:`KerasLayerWeights`
    per layer with weights, in Keras' layer order, arrays in variable order, named like the Keras
    layer (``weight_names`` are the file paths ``layers/<key>/vars/<i>``).

    The key of each weighted node follows from :func:`keras_layer_order`: the k-th Conv2D in that
    order is ``conv2d_k`` (the first ``conv2d``), likewise ``batch_normalization``, ``dense``. Every
    array must be used and have the model's shape; otherwise ``WeightFileError`` lists the missing,
    unexpected and mis-shaped tensors. A head the model lacks (one trailing ``dense`` group) is
    passed on as ``predictions`` for the converter to drop and list. Only the plain application
    model is read: a file from a model that wraps it (``layers/functional/...``) is refused.
    """
    call_inputs, name_of = _keras3_naming(model, spec)
    _check_plain_application(tree, source)
    expected, count = _expected_keys(model, call_inputs)
    groups = tree["layers"]
    used = {key for _, key in expected}
    extra = [k for k in groups if k not in used and _tree_arrays(groups[k], f"layers/{k}")]
    head = None
    if "dense" not in count and extra == ["dense"] and len(groups["dense"]["vars"]) in (1, 2) \
            and not groups["dense"]["children"]:
        head, extra = "dense", []                 # a top the model does not have: dropped downstream
    missing, unexpected, misshaped, out = [], [], [], []
    for name, key in expected:
        node = model.nodes[name]
        what = f"{node.name} (Keras '{name_of(name) or '?'}')"
        if key not in groups:
            roles = keras_roles(node.layer)
            missing.append(f"layers/{key}/ -> {what}: {len(roles)} arrays ({', '.join(r for r, _, _ in roles)})")
            continue
        arrays = groups[key]["vars"]
        _check_group(node, key, groups[key], what, missing, unexpected, misshaped)
        out.append(KerasLayerWeights(name_of(name) or key, [f"layers/{key}/vars/{i}" for i in range(len(arrays))],
                                     list(arrays)))
    for k in extra:
        unexpected += [f"{p} {a.shape}" for p, a in _tree_arrays(groups[k], f"layers/{k}")]
    if missing or unexpected or misshaped:
        raise mismatch_error(f"the Keras 3 weights in {source} ({model.meta.get('architecture')}, "
                             f"include_top={model.meta.get('include_top')})", missing, unexpected, misshaped,
                             hint="Keys count layers of one class in Keras' layer order, so a file of another "
                                  "architecture or include_top shifts them: check both match the file.", path=source)
    if head is not None:
        out.append(KerasLayerWeights("predictions", [f"layers/dense/vars/{i}" for i in range(len(groups['dense']['vars']))],
                                     list(groups["dense"]["vars"])))
    return out
