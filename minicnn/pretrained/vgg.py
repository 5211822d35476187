"""VGG16 as a minicnn ``Graph``, named exactly like torchvision's modules, and its weight spec.

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
:func:`vgg16_keras_name`; :data:`VGG16_SPEC` describes the weight files.

Where the two sources differ (``source='torchvision'`` or ``'keras'``):

==================  ==========================================  ===========================================
                    torchvision                                 Keras
==================  ==========================================  ===========================================
before the head     AdaptiveAvgPool2d((7, 7)) (any input size)  none (include_top needs 224x224 in Keras)
flatten             NCHW: channel-major                         NHWC: fc1's kernel rows are permuted to
                                                                NCHW order once, at load
dropout             p=0.5 after fc1 and fc2                     none
output_activation   None (logits)                               'softmax' with include_top
preprocessing       'imagenet-torch'                            'imagenet-caffe' (BGR, minus the mean, no scaling)
==================  ==========================================  ===========================================
"""
from __future__ import annotations

import re

from ..data.preprocessing import Preprocessing
from ..init import rng_from
from ..layers.activation import Dropout, ReLU
from ..layers.conv import Conv2D
from ..layers.dense import Dense
from ..layers.pool import AdaptiveAvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D, MaxPool2D
from ..layers.shape import Flatten
from ..model import Graph
from ._common import check_builder_args
from .mapping import load_arch_weights, source_from_weights
from .spec import WeightSpec, WeightsEntry

#: torchvision's configuration 'D': conv widths, 'M' a 2x2/2 max-pool.
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
PREPROCESSING = {"torchvision": "imagenet-torch", "keras": "imagenet-caffe"}


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
                   "pooling": pooling, "num_classes": int(classes) if include_top else None,
                   "preprocessing": Preprocessing.for_weights(PREPROCESSING[source], g.input_shape).to_dict()})
    return g


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
    ('imagenet-torch' for torchvision weights, 'imagenet-caffe' for Keras weights).
    """
    path, source = source_from_weights(weights, source, VGG16_SPEC)
    model = vgg16_graph(include_top=include_top, pooling=pooling, classes=classes, source=source,
                        input_shape=input_shape, seed=seed)
    if path is not None:
        load_arch_weights(model, path, VGG16_SPEC)
    return model


_KA = "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
_TV_LICENCE = "BSD-3-Clause (torchvision); trained on ImageNet, whose terms restrict use to non-commercial research"
_VGG_LICENCE = "CC BY 4.0 (Oxford VGG); ImageNet terms"

#: Keras files: layers matched by name; fc1 reads Keras' NHWC flatten, so its rows are permuted to
#: NCHW order once, at load.
VGG16_SPEC = WeightSpec(
    architecture="vgg16",
    keras_names=(vgg16_keras_name,), keras_by_name=True,
    flatten_dense=("flatten", "classifier.0"),
    head_nodes=("classifier",), keras_head_layers=("predictions",),
    torch_signature="features.28.weight", torch_head_weight="classifier.6.weight",
    weights=(
        # md5 digests: keras.applications' ``file_hash`` values; torchvision: the SHA-256 prefix in the file name.
        WeightsEntry("vgg16-keras-imagenet", "vgg16", "keras", _KA + "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                     ("md5", "64373286793e3c8b2b4e3219cbf3544b"), True, "imagenet-caffe", _VGG_LICENCE),
        WeightsEntry("vgg16-keras-imagenet-notop", "vgg16", "keras",
                     _KA + "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                     ("md5", "6d6bbae143d832006294945121d1f1fc"), False, "imagenet-caffe", _VGG_LICENCE),
        WeightsEntry("vgg16-torchvision-imagenet", "vgg16", "torchvision",
                     "https://download.pytorch.org/models/vgg16-397923af.pth",
                     ("sha256", "397923af"), True, "imagenet-torch", _TV_LICENCE),
    ))
