"""Put the arrays of a weight file into a minicnn model: names, layouts, and every check on the way.

The template is nanoGPT's ``from_pretrained``: list the keys that are dropped on purpose, check the
key *counts* and every *shape* before copying anything, and keep the layout transforms in one
explicit place. Nothing is skipped silently: a mismatch raises ``ValueError`` listing every
missing, unexpected and mis-shaped tensor; what is dropped on purpose is listed in
``model.meta['dropped']``.

Layout transforms (done once, here):

===============================  =======================  ==============================
file                             file layout              minicnn layout
===============================  =======================  ==============================
torch Conv2d ``weight``          (F, C/G, KH, KW)         Conv2D ``W`` as is
torch Linear ``weight``          (out, in)                Dense ``W`` (in, out): ``.T``
torch BatchNorm2d                weight, bias, running_*  gamma, beta, running_mean/var
Keras Conv2D ``kernel``          HWIO (KH, KW, C, F)      ``transpose(3, 2, 0, 1)``
Keras Dense ``kernel``           (in, out)                as is
Keras BatchNormalization         gamma, beta, mean, var   the same, minus switched-off ones
===============================  =======================  ==============================

Keras legacy ``.h5`` files are assigned **by position** (as Keras does): the file's layers that
have weights, in ``layer_names`` order, go to the model's nodes that have weights, in node order.
Names are compared too (through a name table when the architecture has one) to explain a
mismatch, but positions decide.

Keras 3 ``.weights.h5`` files hold no layer names: a layer's arrays sit at ``layers/<key>/vars/<i>``
with ``<key>`` the snake_case class name numbered per class in the model's layer order
(``conv2d``, ``conv2d_1``, ...). :func:`keras3_layers` derives that order from the graph
(:func:`keras_layer_order`, Keras' own rule), so it knows which key belongs to which node, and
hands on the same list of :class:`KerasLayerWeights` a legacy file gives.
"""
from __future__ import annotations

import importlib
import os
import re

import numpy as np

from ..errors import WeightFileError
from ..layers.dense import Dense
from ..layers.norm import BatchNorm2D
from ..layers.shape import Add
from .readers import (KerasLayerWeights, detect_format, num_batches_tracked_keys, read_keras3_weights, read_keras_h5,
                      read_npz_weights, read_torch_state_dict)

TORCH_FORMATS = ("torch_zip", "torch_legacy", "safetensors")
KERAS_FORMATS = ("keras_h5", "keras_h5_model")
KERAS3_WEIGHTS = "keras3_weights"
#: Torch state_dict suffix -> minicnn param/buffer name, per layer kind.
TORCH_NAMES = {
    "conv": {"weight": "W", "bias": "b"},
    "dense": {"weight": "W", "bias": "b"},
    "bn": {"weight": "gamma", "bias": "beta", "running_mean": "running_mean", "running_var": "running_var"},
}
#: Nodes of a classification head: their tensors may be dropped (and listed) when the model has no head.
HEAD_NODES = ("classifier", "fc")
KERAS_HEAD_LAYERS = ("fc1000", "predictions", "fc")


def _kind(layer) -> str | None:
    if isinstance(layer, BatchNorm2D):
        return "bn"
    if isinstance(layer, Dense):
        return "dense"
    if "W" in layer.params and layer.params["W"].ndim == 4:
        return "conv"
    return None


def weighted_nodes(model) -> list:
    """The model's nodes that hold params or buffers, in node (topological) order."""
    return [n for n in model.nodes.values() if n.layer.params or n.layer.buffers]


def _mismatch_error(what: str, missing, unexpected, misshaped, hint: str = "") -> ValueError:
    lines = [f"{what} do not match the model:"]
    for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if items:
            shown = list(items[:25]) + ([f"... and {len(items) - 25} more"] if len(items) > 25 else [])
            lines.append(f"  {title} ({len(items)}):\n" + "\n".join(f"    {s}" for s in shown))
    if hint:
        lines.append(hint)
    return ValueError("\n".join(lines))


# ------------------------------------------------------------------------------------------------
# torch state_dicts
# ------------------------------------------------------------------------------------------------
def convert_torch_state_dict(model, sd: dict, source: str = "<state_dict>") -> tuple[dict, list[str]]:
    """Rename and transpose a torch state_dict for ``model``; returns ``(minicnn_sd, dropped_keys)``.

    ``num_batches_tracked`` counters are dropped (and returned); so are the head's tensors
    (``classifier.*``) when the model has no such node (``include_top=False``). Everything else
    must map one to one: otherwise ``ValueError`` lists the missing, unexpected and mis-shaped keys.
    """
    dropped = num_batches_tracked_keys(sd)
    expected = {}                      # torch key -> (minicnn key, target shape, transposed?)
    for node in weighted_nodes(model):
        kind = _kind(node.layer)
        if kind is None:
            raise WeightFileError(f"node {node.name!r}: no torch mapping for {type(node.layer).__name__}")
        own = {**node.layer.params, **node.layer.buffers}
        for tkey, mkey in TORCH_NAMES[kind].items():
            if mkey in own:
                expected[f"{node.name}.{tkey}"] = (f"{node.name}.{mkey}", own[mkey].shape,
                                                   kind == "dense" and mkey == "W")
    has_head = any(n.split(".")[0] in HEAD_NODES for n in model.nodes)
    if not has_head:
        dropped += [k for k in sd if k.split(".")[0] in HEAD_NODES]
    keys = [k for k in sd if k not in set(dropped)]
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in keys if k not in expected]
    misshaped, out = [], {}
    transposed = [k for k, (_, _, t) in expected.items() if t]      # torch Linear (out, in) -> Dense (in, out)
    for k in keys:
        if k not in expected:
            continue
        mkey, shape, _ = expected[k]
        a = np.asarray(sd[k])
        if k in transposed:
            if a.shape[::-1] != shape:
                misshaped.append(f"{k}: file {a.shape} (out, in) vs model {shape[::-1]} (out, in)")
                continue
            a = a.T
        elif a.shape != shape:
            misshaped.append(f"{k}: file {a.shape} vs model {shape}")
            continue
        if not np.issubdtype(a.dtype, np.floating):
            misshaped.append(f"{k}: file dtype {a.dtype} is not floating point")
            continue
        out[mkey] = np.ascontiguousarray(a, dtype=np.float32)
    if missing or unexpected or misshaped:
        raise _mismatch_error(f"tensors of {source}", missing, unexpected, misshaped,
                              hint="Check the architecture (and include_top / classes) matches the file.")
    assert len(out) == len(expected), f"mismatched keys: {len(out)} != {len(expected)}"
    return out, dropped


def load_torch_state_dict(model, sd: dict, source: str = "<state_dict>") -> list[str]:
    """Load a (normalised) torch state_dict into ``model``; returns the keys dropped on purpose."""
    converted, dropped = convert_torch_state_dict(model, sd, source)
    model.load_state_dict(converted, strict=True)
    return dropped


# ------------------------------------------------------------------------------------------------
# Keras legacy HDF5
# ------------------------------------------------------------------------------------------------
def _keras_expected(layer) -> list[tuple[str, str, tuple]]:
    """The arrays a Keras layer stores for this minicnn layer: ``[(keras role, minicnn key, minicnn shape)]``."""
    kind = _kind(layer)
    if kind == "bn":
        roles = [("gamma", "gamma"), ("beta", "beta"), ("moving_mean", "running_mean"),
                 ("moving_variance", "running_var")]
        own = {**layer.params, **layer.buffers}
        return [(r, k, own[k].shape) for r, k in roles if k in own]
    if kind in ("conv", "dense"):
        out = [("kernel", "W", layer.params["W"].shape)]
        if "b" in layer.params:
            out.append(("bias", "b", layer.params["b"].shape))
        return out
    raise WeightFileError(f"no Keras mapping for {type(layer).__name__}")


def _keras_shape(role: str, kind: str, shape: tuple) -> tuple:
    """The shape the Keras file stores for a minicnn array of ``shape``."""
    if role == "kernel" and kind == "conv":
        F, C, KH, KW = shape
        return (KH, KW, C, F)                                         # HWIO
    return shape


def normalize_keras_name(name: str) -> str:
    """``conv1/conv`` (Keras 2) and ``conv1_conv`` (Keras 3) compare equal."""
    return name.replace("/", "_")


def densenet_keras_name(node: str) -> str | None:
    """The Keras DenseNet layer name of a torchvision-named node (``features.norm0`` -> ``conv1_bn``)."""
    fixed = {"features.conv0": "conv1_conv", "features.norm0": "conv1_bn", "features.norm5": "bn",
             "classifier": "predictions"}
    if node in fixed:
        return fixed[node]
    m = re.fullmatch(r"features\.denseblock(\d+)\.denselayer(\d+)\.(norm1|conv1|norm2|conv2)", node)
    if m:
        b, l, part = int(m.group(1)), int(m.group(2)), m.group(3)
        suffix = {"norm1": "0_bn", "conv1": "1_conv", "norm2": "1_bn", "conv2": "2_conv"}[part]
        return f"conv{b + 1}_block{l}_{suffix}"
    m = re.fullmatch(r"features\.transition(\d+)\.(norm|conv)", node)
    if m:
        return f"pool{int(m.group(1)) + 1}_{'bn' if m.group(2) == 'norm' else 'conv'}"
    return None


KERAS_NAME_TABLES = {"densenet121": densenet_keras_name}
# Architectures whose weight files need more than the generic mapping (module, function).
ARCH_LOADERS = {"vgg16": (".vgg", "load_vgg16_weights"), "resnet50": (".resnet", "load_resnet50_weights"),
                "inception_v3": (".inception", "load_inception_v3_weights")}


def convert_keras_layers(model, layers, source: str = "<keras file>", name_of=None) -> tuple[dict, list[str]]:
    """Assign Keras layer weights (``read_keras_h5`` output) to ``model`` by position.

    ``name_of(node_name) -> keras name or None`` (a name table) is used to explain mismatches and to
    drop a trailing classifier layer when the model has none. Returns ``(minicnn_sd, dropped)``.
    """
    if name_of is None:
        name_of = KERAS_NAME_TABLES.get(model.meta.get("architecture"), lambda n: None)
    nodes = weighted_nodes(model)
    layers = list(layers)
    dropped = []
    if len(layers) == len(nodes) + 1 and not any(n.name in HEAD_NODES for n in nodes) \
            and normalize_keras_name(layers[-1].name) in KERAS_HEAD_LAYERS:
        head = layers.pop()
        dropped = [f"{head.name}/{w}" for w in head.weight_names]
    if len(layers) != len(nodes):
        file_names = [normalize_keras_name(l.name) for l in layers]
        want = [name_of(n.name) or n.name for n in nodes]
        missing = [f"{w} (model node {n.name})" for w, n in zip(want, nodes) if w not in file_names]
        unexpected = [f"{l.name}" for l, f in zip(layers, file_names) if f not in want]
        raise _mismatch_error(
            f"the {len(layers)} layers with weights in {source} (model: {len(nodes)})", missing, unexpected, [],
            hint="Keras assigns layers by position, so the counts must agree: check include_top and the architecture.")
    out, misshaped, misnamed = {}, [], []
    for pos, (kl, node) in enumerate(zip(layers, nodes)):
        kind = _kind(node.layer)
        want_name = name_of(node.name)
        if want_name is not None and normalize_keras_name(kl.name) != want_name:
            misnamed.append(f"position {pos}: file layer '{kl.name}' vs model node {node.name} (Keras '{want_name}')")
        expected = _keras_expected(node.layer)
        label = f"position {pos}: file layer '{kl.name}' -> {node.name}"
        if len(kl.arrays) != len(expected):
            misshaped.append(f"{label}: file has {len(kl.arrays)} arrays {[a.shape for a in kl.arrays]}, model "
                             f"expects {len(expected)} ({', '.join(r for r, _, _ in expected)})")
            continue
        for a, (role, mkey, shape) in zip(kl.arrays, expected):
            want = _keras_shape(role, kind, shape)
            if a.shape != want:
                misshaped.append(f"{label}.{mkey} ({role}): file {a.shape} vs expected {want}")
                continue
            if role == "kernel" and kind == "conv":
                a = a.transpose(3, 2, 0, 1)                           # HWIO -> OIHW
            out[f"{node.name}.{mkey}"] = np.ascontiguousarray(a, dtype=np.float32)
    if misshaped:
        raise _mismatch_error(f"the layers of {source}", [], [], misshaped + misnamed,
                              hint="Names disagreeing as well usually means a different architecture.")
    return out, dropped   # names that disagree while every shape fits: positions decide, as in Keras


def load_keras_h5(model, path) -> list[str]:
    """Load a Keras ``.h5`` (legacy or Keras 3 ``.weights.h5``) into ``model`` (by position); returns
    the arrays dropped on purpose."""
    converted, dropped = convert_keras_layers(model, read_keras_layers(model, path), source=os.fspath(path))
    model.load_state_dict(converted, strict=True)
    return dropped


def read_keras_layers(model, path) -> list[KerasLayerWeights]:
    """The layers with weights of a Keras weight file, in Keras' layer order: a legacy ``.h5`` as
    :func:`read_keras_h5` reads it, a Keras 3 ``.weights.h5`` through :func:`keras3_layers`."""
    path = os.fspath(path)
    if detect_format(path) == KERAS3_WEIGHTS:
        return keras3_layers(model, read_keras3_weights(path), source=path)
    return read_keras_h5(path)


# ------------------------------------------------------------------------------------------------
# Keras 3 .weights.h5
# ------------------------------------------------------------------------------------------------
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


def _inception_auto_names(model):
    """Keras InceptionV3's auto-generated names in a fresh session: the k-th Conv2D (BatchNormalization)
    created is ``conv2d_k`` (``batch_normalization_k``), the first one bare; minicnn adds the nodes in
    that creation order (see ``inception.keras_creation_order``)."""
    names, count = {}, {}
    for node in weighted_nodes(model):
        kind = _kind(node.layer)
        if node.name == "fc":
            names[node.name] = "predictions"
            continue
        k = count.get(kind, 0)
        count[kind] = k + 1
        names[node.name] = KERAS3_CLASS_KEYS[kind] + (f"_{k}" if k else "")
    return names.get


def _keras3_arch(model):
    """``(call_inputs, name_of)`` for an architecture whose Keras layer order is known, else ``ValueError``."""
    arch = model.meta.get("architecture")
    if model.meta.get("source") != "keras":
        raise WeightFileError(f"Keras 3 weights need a model built with source='keras' (this one: "
                         f"{model.meta.get('source')!r})")
    if arch == "densenet121":
        return None, densenet_keras_name
    if arch == "vgg16":
        from .vgg import vgg16_keras_name
        return None, vgg16_keras_name
    if arch == "resnet50":
        from .resnet import resnet50_keras_name
        # keras.applications.resnet adds ``layers.Add()([shortcut, x])``; minicnn's add node is [main, shortcut]
        return (lambda node: node.inputs[::-1] if isinstance(node.layer, Add) else node.inputs), resnet50_keras_name
    if arch == "inception_v3":
        return None, _inception_auto_names(model)
    raise WeightFileError(f"Keras 3 .weights.h5 files name layers only by class and position; minicnn knows the "
                     f"Keras layer order of densenet121, vgg16, resnet50 and inception_v3, not of {arch!r}. "
                     "For another model load its .keras archive with minicnn.pretrained.keras_import.load_keras.")


def _tree_arrays(node, where: str):
    """``(path, array)`` of every array in a Keras 3 weights subtree."""
    out = [(f"{where}/vars/{i}", a) for i, a in enumerate(node["vars"])]
    for key, sub in node["layers"].items():
        out += _tree_arrays(sub, f"{where}/layers/{key}")
    for key, sub in node["children"].items():
        out += _tree_arrays(sub, f"{where}/{key}")
    return out


def keras3_layers(model, tree: dict, source: str = "<keras 3 weights>") -> list[KerasLayerWeights]:
    """Turn a Keras 3 weights tree (:func:`~minicnn.pretrained.readers.read_keras3_weights`) of a
    ``keras.applications`` model into the list a legacy file gives: one :class:`KerasLayerWeights`
    per layer with weights, in Keras' layer order, arrays in variable order, named like the Keras
    layer (``weight_names`` are the file paths ``layers/<key>/vars/<i>``).

    The key of each weighted node follows from :func:`keras_layer_order`: the k-th Conv2D in that
    order is ``conv2d_k`` (the first ``conv2d``), likewise ``batch_normalization``, ``dense``. Every
    array must be used and have the model's shape; otherwise ``ValueError`` lists the missing,
    unexpected and mis-shaped tensors. A head the model lacks (one trailing ``dense`` group) is
    passed on as ``predictions`` for :func:`convert_keras_layers` to drop and list. Only the plain
    application model is read: a file from a model that wraps it (``layers/functional/...``) is refused.
    """
    call_inputs, name_of = _keras3_arch(model)
    if tree["vars"] or tree["children"]:
        raise WeightFileError(f"{source}: the root holds variables or sub-objects {sorted(tree['children'])}: "
                         "not the weights of a Keras application model")
    nested = sorted(k for k, sub in tree["layers"].items() if sub["layers"])
    if nested:
        raise WeightFileError(f"{source}: holds a model that wraps another one ({', '.join(f'layers/{k}/' for k in nested)}"
                         f"); minicnn reads the weights of the plain keras.applications model. Save those with "
                         f"the inner model's save_weights (e.g. outer.get_layer('densenet121').save_weights(...)), "
                         f"or import the whole .keras archive with minicnn.pretrained.keras_import.load_keras.")
    weighted = {n.name for n in weighted_nodes(model)}
    order = [n for n in keras_layer_order(model, call_inputs) if n in weighted]
    if len(order) != len(weighted):                # pragma: no cover (a weighted node the output ignores)
        raise WeightFileError(f"nodes {sorted(weighted - set(order))} do not lead to the model's output")
    count, expected = {}, []                       # [(node, key)] in Keras order
    for name in order:
        cls = KERAS3_CLASS_KEYS[_kind(model.nodes[name].layer)]
        k = count.get(cls, 0)
        count[cls] = k + 1
        expected.append((name, cls + (f"_{k}" if k else "")))
    groups = tree["layers"]
    used = {key for _, key in expected}
    extra = [k for k in groups if k not in used and _tree_arrays(groups[k], f"layers/{k}")]
    head = None
    if "dense" not in count and extra == ["dense"] and len(groups["dense"]["vars"]) in (1, 2) \
            and not groups["dense"]["children"]:
        head, extra = "dense", []                 # a top the model does not have: dropped downstream
    missing, unexpected, misshaped, out = [], [], [], []
    for pos, (name, key) in enumerate(expected):
        node = model.nodes[name]
        kind = _kind(node.layer)
        roles = _keras_expected(node.layer)
        what = f"{node.name} (Keras '{name_of(name) or '?'}')"
        if key not in groups:
            missing.append(f"layers/{key}/ -> {what}: {len(roles)} arrays "
                           f"({', '.join(r for r, _, _ in roles)})")
            continue
        g = groups[key]
        arrays = g["vars"]
        for i, (role, mkey, shape) in enumerate(roles):
            path, want = f"layers/{key}/vars/{i}", _keras_shape(role, kind, shape)
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
        out.append(KerasLayerWeights(name_of(name) or key, [f"layers/{key}/vars/{i}" for i in range(len(arrays))],
                                     list(arrays)))
    for k in extra:
        unexpected += [f"{p} {a.shape}" for p, a in _tree_arrays(groups[k], f"layers/{k}")]
    if missing or unexpected or misshaped:
        raise _mismatch_error(f"the Keras 3 weights in {source} ({model.meta.get('architecture')}, "
                              f"include_top={model.meta.get('include_top')})", missing, unexpected, misshaped,
                              hint="Keys count layers of one class in Keras' layer order, so a file of another "
                                   "architecture or include_top shifts them: check both match the file.")
    if head is not None:
        out.append(KerasLayerWeights("predictions", [f"layers/dense/vars/{i}" for i in range(len(groups['dense']['vars']))],
                                     list(groups["dense"]["vars"])))
    return out


# ------------------------------------------------------------------------------------------------
# any file
# ------------------------------------------------------------------------------------------------
def source_of(path) -> str | None:
    """'keras', 'torchvision', or the ``source`` recorded in a minicnn ``.npz`` (None if unknown)."""
    fmt = detect_format(path)
    if fmt in KERAS_FORMATS or fmt in ("keras3_weights", "keras_archive"):
        return "keras"
    if fmt in TORCH_FORMATS:
        return "torchvision"
    from ..model import read_npz
    _, config = read_npz(path)
    return ((config or {}).get("meta") or {}).get("source")


def load_weights(model, path):
    """Detect the weight file's format, load it strictly into ``model`` and record where it came from.

    Sets ``model.meta['source']`` ('keras' / 'torchvision' / the file's own for ``.npz``),
    ``model.meta['weights']`` (the file name) and ``model.meta['dropped']`` (what was left out on
    purpose: ``num_batches_tracked`` counters, a head the model does not have). Returns the model.
    """
    path = os.fspath(path)
    fmt = detect_format(path)
    arch = model.meta.get("architecture")
    if arch in ARCH_LOADERS and (fmt in KERAS_FORMATS or fmt in TORCH_FORMATS or fmt == KERAS3_WEIGHTS):
        # name matching (ResNet50), Keras creation order (InceptionV3), fc1 row permutation (VGG16),
        # AuxLogits dropped and listed (InceptionV3): each architecture's own loader
        module, function = ARCH_LOADERS[arch]
        return getattr(importlib.import_module(module, __package__), function)(model, path)
    built_for, file_source = model.meta.get("source"), source_of(path)
    if built_for and file_source and built_for != file_source:
        raise WeightFileError(f"{path} holds {file_source} weights but the model was built with source={built_for!r} "
                         f"(batch-norm eps and padding differ); build it with source={file_source!r}")
    if fmt in KERAS_FORMATS or fmt == KERAS3_WEIGHTS:
        dropped = load_keras_h5(model, path)
        source = "keras"
    elif fmt in TORCH_FORMATS:
        dropped = load_torch_state_dict(model, read_torch_state_dict(path), source=path)
        source = "torchvision"
    elif fmt == "npz":
        arrays = read_npz_weights(path)
        sd = {k[2:] if k.startswith("w:") else k: v for k, v in arrays.items()
              if k not in ("architecture", "format_version")}
        model.load_state_dict(sd, strict=True)
        dropped, source = [], source_of(path) or model.meta.get("source")
    else:
        hint = ("it is a whole Keras model (architecture + weights): import it with "
                "minicnn.pretrained.load_keras(path) or `minicnn convert`" if fmt == "keras_archive"
                else "see pretrained/README.md for the supported weight files")
        raise WeightFileError(f"{path}: load_weights reads weight files into a built architecture, not {fmt} files; {hint}")
    model.meta.update({"source": source, "weights": os.path.basename(path), "dropped": dropped})
    return model
