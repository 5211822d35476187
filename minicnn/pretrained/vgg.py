"""VGG16 as a minicnn ``Graph``, named exactly like torchvision's modules; and the weight loader that
VGG16, ResNet50 and InceptionV3 share (:func:`load_arch_weights`).

References (read, not copied): torchvision ``torchvision/models/vgg.py`` (configuration 'D') and Keras
``keras/src/applications/vgg16.py``; Simonyan & Zisserman, "Very Deep Convolutional Networks for
Large-Scale Image Recognition" (ICLR 2015).

The graph, for a 224x224 input (shapes without the batch axis N)::

    features.{i}     i = 0..30, torchvision's ``nn.Sequential`` indices:
                     3x3 conv (pad 1) and ReLU pairs, a 2x2/2 max-pool after each of the 5 blocks
                     64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M   (512, 7, 7)
    avgpool          AdaptiveAvgPool2D((7, 7))            torchvision only          (512, 7, 7)
    flatten                                                                       (25088,)
    classifier.0     Dense 25088 -> 4096   (.1 ReLU, .2 Dropout: torchvision only)
    classifier.3     Dense 4096 -> 4096    (.4 ReLU, .5 Dropout: torchvision only)
    classifier.6     Dense 4096 -> classes

Keras layer names (``block{b}_conv{c}``, ``fc1``, ``fc2``, ``predictions``) are given by
:func:`vgg16_keras_name`.

Where the two sources differ (``source='torchvision'`` or ``'keras'``):

==================  ==========================================  ===========================================
                    torchvision                                 Keras
==================  ==========================================  ===========================================
before the head     AdaptiveAvgPool2d((7, 7)) (any input size)  none (include_top needs 224x224 in Keras)
flatten             NCHW: channel-major                         NHWC: fc1's kernel rows are permuted to
                                                                NCHW order once, at load
dropout             p=0.5 after fc1 and fc2                     none
output_activation   None (logits)                               'softmax' with include_top
preprocessing       'torch'                                     'caffe' (BGR, minus the mean, no scaling)
==================  ==========================================  ===========================================
"""
from __future__ import annotations

import os
import re

import numpy as np

from ..errors import UsageError
from ..init import rng_from
from ..layers.activation import Dropout, ReLU
from ..layers.conv import Conv2D
from ..layers.dense import Dense
from ..layers.pool import AdaptiveAvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D, MaxPool2D
from ..layers.shape import Flatten
from ..model import Graph

SOURCES = ("torchvision", "keras")
#: torchvision's configuration 'D': conv widths, 'M' a 2x2/2 max-pool.
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
PREPROCESSING = {"torchvision": "torch", "keras": "caffe"}


# ------------------------------------------------------------------------------------------------
# shared by vgg.py, resnet.py, inception.py
# ------------------------------------------------------------------------------------------------
def check_builder_args(source, pooling, include_top, input_shape, min_size: int) -> tuple:
    """Validate the builder arguments every architecture shares; returns ``input_shape`` as ints."""
    if source not in SOURCES:
        raise UsageError(f"source must be one of {SOURCES}, got {source!r}")
    if pooling not in (None, "avg", "max"):
        raise UsageError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    if include_top and pooling == "max":
        raise UsageError("include_top=True ends in global *average* pooling (or Flatten) and the classifier; "
                         "pooling='max' is only for include_top=False")
    input_shape = tuple(int(s) for s in input_shape)
    if len(input_shape) != 3 or min(input_shape[1:]) < min_size:
        raise UsageError(f"input_shape must be (C, H, W) with H, W >= {min_size}, got {input_shape}")
    return input_shape


def source_from_weights(weights, source):
    """``(path or None, source)``: the weight file (a registry name is fetched) and the source it implies."""
    from .densenet import _resolve_weights
    from .mapping import source_of

    if weights is None:
        return None, source or "torchvision"
    path = _resolve_weights(weights)
    file_source = source_of(path)
    if source is not None and file_source is not None and source != file_source:
        raise UsageError(f"source={source!r} but {path} holds {file_source} weights; "
                         f"leave source=None to take it from the file")
    return path, file_source or source or "torchvision"


def reorder_by_names(model, layers, name_tables):
    """Put the Keras file's layers in the model's weighted-node order when their names say where they go.

    ``name_tables``: functions ``node name -> Keras layer name`` (one per naming generation, e.g.
    Keras 3 ``conv2_block1_1_conv`` and keras-applications ``res2a_branch2a``). The first table whose
    names are all in the file wins; layers it does not name (a head the model lacks) go last, in file
    order. Returns ``(layers, table)``; with no table matching, the file order is kept (positional
    loading, as Keras does) and the first table is returned to explain mismatches.
    """
    from .mapping import normalize_keras_name, weighted_nodes

    nodes = weighted_nodes(model)
    by_name = {normalize_keras_name(l.name): l for l in layers}
    for table in name_tables:
        want = [table(n.name) for n in nodes]
        if None not in want and all(w in by_name for w in want):
            used = set(want)
            return [by_name[w] for w in want] + [l for l in layers if normalize_keras_name(l.name) not in used], table
    return list(layers), name_tables[0]


def load_arch_weights(model, path, *, keras_names=(), keras_order=None, keras_fix=None,
                      torch_drop_prefixes=()):
    """Load a weight file into a VGG16 / ResNet50 / InceptionV3 graph, strictly; returns the model.

    keras_names          name tables (node -> Keras layer name), see :func:`reorder_by_names`
    keras_order          ``layers -> layers``: put a Keras file's layers in the model's node order
                         (InceptionV3: by the creation counter in its auto-generated names)
    keras_fix            ``(model, converted) -> converted``: a layout fix after the generic mapping
                         (VGG16: fc1's rows from NHWC to NCHW flatten order)
    torch_drop_prefixes  state_dict key prefixes with no counterpart in minicnn (InceptionV3's
                         ``AuxLogits.``): dropped and listed in ``model.meta['dropped']``, never silently

    Other formats (minicnn ``.npz``) go to :func:`minicnn.pretrained.mapping.load_weights`. Sets
    ``model.meta['source']``, ``['weights']`` and ``['dropped']`` like it.
    """
    from .mapping import (KERAS3_WEIGHTS, KERAS_FORMATS, TORCH_FORMATS, convert_keras_layers,
                          convert_torch_state_dict, load_weights, read_keras_layers, source_of)
    from .readers import detect_format, read_torch_state_dict

    path = os.fspath(path)
    fmt = detect_format(path)
    keras = fmt in KERAS_FORMATS or fmt == KERAS3_WEIGHTS
    if not keras and fmt not in TORCH_FORMATS:
        return load_weights(model, path)
    built_for, file_source = model.meta.get("source"), source_of(path)
    if built_for and file_source and built_for != file_source:
        raise UsageError(f"{path} holds {file_source} weights but the model was built with source={built_for!r} "
                         f"(batch-norm eps, padding and pooling differ); build it with source={file_source!r}")
    if keras:
        layers = read_keras_layers(model, path)    # a Keras 3 .weights.h5: the same list, in Keras' layer order
        name_of = None
        if keras_names:
            layers, name_of = reorder_by_names(model, layers, keras_names)
        if keras_order is not None:
            layers = keras_order(layers)
        converted, dropped = convert_keras_layers(model, layers, source=path, name_of=name_of or (lambda n: None))
        if keras_fix is not None:
            converted = keras_fix(model, converted)
    else:
        sd = read_torch_state_dict(path)
        aux = [k for k in sd if k.startswith(tuple(torch_drop_prefixes))] if torch_drop_prefixes else []
        sd = {k: v for k, v in sd.items() if k not in set(aux)}
        converted, dropped = convert_torch_state_dict(model, sd, source=path)
        dropped = aux + dropped
    model.load_state_dict(converted, strict=True)
    model.meta.update({"source": file_source, "weights": os.path.basename(path), "dropped": dropped})
    return model


# ------------------------------------------------------------------------------------------------
# VGG16
# ------------------------------------------------------------------------------------------------
def vgg16_keras_name(node: str) -> str | None:
    """The Keras VGG16 layer name of a torchvision-named node (``features.0`` -> ``block1_conv1``)."""
    fixed = {"classifier.0": "fc1", "classifier.3": "fc2", "classifier.6": "predictions"}
    if node in fixed:
        return fixed[node]
    m = re.fullmatch(r"features\.(\d+)", node)
    if m is None:
        return None
    idx, block, conv = int(m.group(1)), 1, 0
    for i, v in enumerate(_feature_indices()):
        if v == "M":
            block, conv = block + 1, 0
            continue
        if v == "relu":
            continue
        conv += 1
        if i == idx:
            return f"block{block}_conv{conv}"
    return None


def _feature_indices() -> list:
    """torchvision's ``features`` entries in order: a conv width (conv at i, ReLU at i + 1) or 'M'."""
    out = []
    for v in VGG16_CFG:
        out += ["M"] if v == "M" else [v, "relu"]
    return out


def keras_flatten_to_nchw(model, converted: dict) -> dict:
    """Permute the rows of the first Dense after a Keras Flatten (NHWC order) into NCHW order.

    Keras flattens (H, W, C) with C fastest: row ``(h * W + w) * C + c``; minicnn flattens (C, H, W):
    row ``c * H * W + h * W + w``.
    """
    key = "classifier.0.W"
    if key not in converted:
        return converted
    _, C, H, W = model.output_shapes()[model.nodes["flatten"].inputs[0]]
    w = converted[key]
    out = dict(converted)
    out[key] = np.ascontiguousarray(w.reshape(H, W, C, -1).transpose(2, 0, 1, 3).reshape(H * W * C, -1))
    return out


def vgg16_graph(include_top: bool = True, pooling=None, classes: int = 1000, source: str = "torchvision",
                input_shape=(3, 224, 224), seed=None) -> Graph:
    """Build VGG16 with random weights (He-normal convs, Glorot-uniform dense layers, biases zero)."""
    input_shape = check_builder_args(source, pooling, include_top, input_shape, 32)
    rng = rng_from(seed)
    g = Graph(input_shape=input_shape, name="vgg16")
    ch = input_shape[0]
    for i, v in enumerate(_feature_indices()):
        if v == "M":
            g.add(f"features.{i}", MaxPool2D(2, stride=2))
        elif v == "relu":
            g.add(f"features.{i}", ReLU())
        else:
            g.add(f"features.{i}", Conv2D(ch, v, 3, padding=1, init="he", seed=rng))
            ch = v
    if include_top:
        if source == "torchvision":
            g.add("avgpool", AdaptiveAvgPool2D((7, 7)))
            flat = ch * 7 * 7
        else:
            flat = ch * (input_shape[1] // 32) * (input_shape[2] // 32)
        g.add("flatten", Flatten())
        for i, (n_in, n_out) in zip((0, 3, 6), ((flat, 4096), (4096, 4096), (4096, classes))):
            g.add(f"classifier.{i}", Dense(n_in, n_out, seed=rng))
            if i != 6:
                g.add(f"classifier.{i + 1}", ReLU())
                if source == "torchvision":
                    g.add(f"classifier.{i + 2}", Dropout(0.5))
        g.output_activation = "softmax" if source == "keras" else None
    elif pooling == "avg":
        g.add("pool", GlobalAvgPool2D())
    elif pooling == "max":
        g.add("pool", GlobalMaxPool2D())
    g.meta.update({"architecture": "vgg16", "source": source, "include_top": bool(include_top),
                   "pooling": pooling, "classes": int(classes) if include_top else None,
                   "preprocessing": PREPROCESSING[source]})
    return g


def load_vgg16_weights(model, path):
    """Load a VGG16 weight file (Keras ``.h5``, torchvision ``.pth``/``.safetensors``, ``.npz``) into ``model``."""
    return load_arch_weights(model, path, keras_names=(vgg16_keras_name,), keras_fix=keras_flatten_to_nchw)


def vgg16(weights=None, include_top: bool = True, pooling=None, classes: int = 1000, source=None,
          input_shape=(3, 224, 224), seed=None) -> Graph:
    """VGG16 (torchvision node names) with random or loaded weights.

    weights      None (random), a weight file (``.h5`` Keras, ``.pth`` / ``.pt`` / ``.safetensors``
                 torchvision, minicnn ``.npz``) or a registry name.
    include_top  end in the classifier (``(N, classes)``); otherwise the last max-pool's feature
                 map, ``(N, 512, 7, 7)`` at 224x224, or ``(N, 512)`` with ``pooling``.
    pooling      None, 'avg' or 'max' (include_top=False only).
    source       'torchvision' or 'keras' semantics (see the module docstring); read from the weight
                 file when there is one. Default 'torchvision'.

    ``model.predict(x)`` takes NCHW float32 preprocessed with ``model.meta['preprocessing']``
    ('torch' for torchvision weights, 'caffe' for Keras weights).
    """
    path, source = source_from_weights(weights, source)
    model = vgg16_graph(include_top=include_top, pooling=pooling, classes=classes, source=source,
                        input_shape=input_shape, seed=seed)
    if path is not None:
        load_vgg16_weights(model, path)
    return model
