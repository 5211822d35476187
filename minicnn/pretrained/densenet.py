"""DenseNet121 as a minicnn ``Graph``, named exactly like torchvision's modules.

References (read, not copied): torchvision ``torchvision/models/densenet.py`` and Keras
``keras/src/applications/densenet.py``; Huang et al., "Densely Connected Convolutional Networks"
(CVPR 2017).

The graph, for a 224x224 input (shapes without the batch axis N)::

    features.conv0      7x7/2 conv, 3 -> 64                        (64, 112, 112)
    features.norm0, features.relu0
    features.pool0      3x3/2 max-pool                              (64, 56, 56)
    features.denseblock{B}.denselayer{L}    B = 1..4, L = 1..(6, 12, 24, 16)
        .norm1 .relu1 .conv1 (1x1 -> 128)  .norm2 .relu2 .conv2 (3x3 -> 32)
        .concat  [block input so far, conv2]                        (C + 32, H, W)
    features.transition{B}                  B = 1..3
        .norm .relu .conv (1x1, C -> C/2) .pool (2x2/2 average)
    features.norm5                                                  (1024, 7, 7)
    relu                the final ReLU (torchvision applies it in ``forward``, Keras names it ``relu``)
    pool                global average (or max) pool                (1024,)
    classifier          Dense 1024 -> classes

Where the two sources differ (``source='torchvision'`` or ``'keras'``):

==================  ==========================================  ===========================================
                    torchvision                                 Keras
==================  ==========================================  ===========================================
batch-norm eps      1e-5                                        1.001e-5
stem                conv0 with padding=3                        ``features.pad0`` ZeroPad2D(3) + valid conv0
max-pool            pool0 padding=1 (pads with -inf)            ``features.pad1`` ZeroPad2D(1) + valid pool0
                                                                (pads zeros: equal after the ReLU)
output_activation   None (logits)                               'softmax' with include_top
preprocessing       'imagenet-torch'                            'imagenet-torch'
==================  ==========================================  ===========================================
"""
from __future__ import annotations

import re

import numpy as np

from ..data.preprocessing import Preprocessing
from ..init import rng_from
from ..layers.activation import ReLU
from ..layers.conv import Conv2D
from ..layers.dense import Dense
from ..layers.norm import BatchNorm2D
from ..layers.pool import AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D, MaxPool2D
from ..layers.shape import Concat, ZeroPad2D
from ..model import Graph
from ..rewrite import fold_batchnorm, use_concat_buffers
from ._common import check_builder_args
from .mapping import load_arch_weights, source_from_weights
from .spec import WeightSpec, WeightsEntry

BN_EPS = {"torchvision": 1e-5, "keras": 1.001e-5}
DENSENET121_BLOCKS = (6, 12, 24, 16)


def _he_conv(in_ch, out_ch, k, rng, **kwargs):
    """A bias-free conv with He-normal weights drawn from ``rng`` (torchvision's kaiming_normal_)."""
    return Conv2D(in_ch, out_ch, k, bias=False, init="he", seed=rng, **kwargs)


def dense_layer(g: Graph, name: str, x: str, in_ch: int, growth_rate: int, bn_size: int, eps: float, rng) -> str:
    """One bottleneck layer ``norm1-relu1-conv1(1x1)-norm2-relu2-conv2(3x3)`` and its concatenation.

    Returns the name of the concat node: ``in_ch + growth_rate`` channels.
    """
    mid = bn_size * growth_rate
    g.add(f"{name}.norm1", BatchNorm2D(in_ch, eps=eps), inputs=x)
    g.add(f"{name}.relu1", ReLU())
    g.add(f"{name}.conv1", _he_conv(in_ch, mid, 1, rng))
    g.add(f"{name}.norm2", BatchNorm2D(mid, eps=eps))
    g.add(f"{name}.relu2", ReLU())
    g.add(f"{name}.conv2", _he_conv(mid, growth_rate, 3, rng, padding=1))
    return g.add(f"{name}.concat", Concat(axis=1), inputs=[x, f"{name}.conv2"])


def transition(g: Graph, name: str, x: str, in_ch: int, out_ch: int, eps: float, rng) -> str:
    """``norm-relu-conv(1x1, in_ch -> out_ch)-avgpool(2x2/2)``; returns the pool node's name."""
    g.add(f"{name}.norm", BatchNorm2D(in_ch, eps=eps), inputs=x)
    g.add(f"{name}.relu", ReLU())
    g.add(f"{name}.conv", _he_conv(in_ch, out_ch, 1, rng))
    return g.add(f"{name}.pool", AvgPool2D(2, stride=2))


def densenet_graph(blocks=DENSENET121_BLOCKS, growth_rate: int = 32, num_init_features: int = 64,
                   bn_size: int = 4, include_top: bool = True, pooling=None, classes: int = 1000,
                   source: str = "torchvision", input_shape=(3, 224, 224), seed=None,
                   name: str = "densenet") -> Graph:
    """Build a DenseNet-BC graph with random He-initialised convs (BN and biases at their defaults).

    ``blocks``: dense layers per block (DenseNet121: 6, 12, 24, 16). ``source`` picks the
    framework's conventions (see the module docstring). ``seed``: an int or Generator for the
    conv and classifier weights.
    """
    input_shape = check_builder_args(source, pooling, include_top, input_shape, 32)
    rng = rng_from(seed)
    eps = BN_EPS[source]
    g = Graph(input_shape=input_shape, name=name)

    # stem: 7x7/2 conv, BN, ReLU, 3x3/2 max-pool
    if source == "keras":
        g.add("features.pad0", ZeroPad2D(3))
        g.add("features.conv0", _he_conv(input_shape[0], num_init_features, 7, rng, stride=2))
    else:
        g.add("features.conv0", _he_conv(input_shape[0], num_init_features, 7, rng, stride=2, padding=3))
    g.add("features.norm0", BatchNorm2D(num_init_features, eps=eps))
    g.add("features.relu0", ReLU())
    if source == "keras":
        g.add("features.pad1", ZeroPad2D(1))
        x = g.add("features.pool0", MaxPool2D(3, stride=2))
    else:
        x = g.add("features.pool0", MaxPool2D(3, stride=2, padding=1))

    channels = num_init_features
    for b, n_layers in enumerate(blocks, start=1):
        for l in range(1, n_layers + 1):
            x = dense_layer(g, f"features.denseblock{b}.denselayer{l}", x, channels, growth_rate, bn_size, eps, rng)
            channels += growth_rate
        if b != len(blocks):
            x = transition(g, f"features.transition{b}", x, channels, channels // 2, eps, rng)
            channels //= 2
    g.add("features.norm5", BatchNorm2D(channels, eps=eps), inputs=x)
    g.add("relu", ReLU())                        # the output of include_top=False, pooling=None

    if include_top or pooling == "avg":
        g.add("pool", GlobalAvgPool2D())
    elif pooling == "max":
        g.add("pool", GlobalMaxPool2D())
    if include_top:
        fc = Dense(channels, classes)
        bound = 1.0 / np.sqrt(channels)              # torch Linear's default weight init; bias zero (torchvision)
        fc.params["W"] = rng.uniform(-bound, bound, size=(channels, classes)).astype(np.float32)
        g.add("classifier", fc)
        g.output_activation = "softmax" if source == "keras" else None
    g.meta.update({"architecture": name, "source": source, "include_top": bool(include_top),
                   "pooling": pooling, "num_classes": int(classes) if include_top else None,
                   "preprocessing": Preprocessing.for_weights("imagenet-torch", g.input_shape).to_dict()})
    return g


def densenet121(weights=None, include_top: bool = True, pooling=None, classes: int = 1000, source=None,
                input_shape=(3, 224, 224), seed=None) -> Graph:
    """DenseNet121 (torchvision node names) with random or loaded weights.

    weights      None (random He-normal convs; batch-norm at gamma=1, beta=0, mean=0, var=1),
                 a weight file (``.h5`` / ``.weights.h5`` Keras, ``.pth`` / ``.pt`` / ``.pth.tar`` /
                 ``.safetensors`` torchvision, minicnn ``.npz``) or a registry name
                 (``DENSENET121_SPEC.weights``, ``minicnn.pretrained.registry.names()``), fetched
                 into ``$MINICNN_HOME``.
    include_top  end in the classifier (``(N, classes)``); otherwise the feature map after the final
                 norm and ReLU, ``(N, 1024, 7, 7)`` at 224x224, or ``(N, 1024)`` with ``pooling``.
    pooling      None, 'avg' or 'max' (include_top=False only).
    source       'torchvision' or 'keras' semantics (eps, padding, output activation); read from the
                 weight file when there is one. Default 'torchvision'.

    ``model.predict(x)`` takes NCHW float32 preprocessed with ``model.meta['preprocessing']``.
    """
    path, source = source_from_weights(weights, source, DENSENET121_SPEC)
    model = densenet_graph(DENSENET121_BLOCKS, include_top=include_top, pooling=pooling, classes=classes,
                           source=source, input_shape=input_shape, seed=seed, name="densenet121")
    if path is not None:
        load_arch_weights(model, path, DENSENET121_SPEC)
    return model


def fast_densenet(model: Graph) -> Graph:
    """``use_concat_buffers(fold_batchnorm(model))``: the inference form of a DenseNet (outputs equal
    within float32 rounding; see :mod:`minicnn.rewrite`)."""
    return use_concat_buffers(fold_batchnorm(model))


# ------------------------------------------------------------------------------------------------
# weights
# ------------------------------------------------------------------------------------------------
_DENSE_LAYER_NODE = re.compile(r"features\.denseblock(\d+)\.denselayer(\d+)\.(norm1|conv1|norm2|conv2)")
_TRANSITION_NODE = re.compile(r"features\.transition(\d+)\.(norm|conv)")


def densenet_keras_name(node: str) -> str | None:
    """The Keras DenseNet layer name of a torchvision-named node (``features.norm0`` -> ``conv1_bn``)."""
    fixed = {"features.conv0": "conv1_conv", "features.norm0": "conv1_bn", "features.norm5": "bn",
             "classifier": "predictions"}
    if node in fixed:
        return fixed[node]
    m = _DENSE_LAYER_NODE.fullmatch(node)
    if m:
        b, l, part = int(m.group(1)), int(m.group(2)), m.group(3)
        suffix = {"norm1": "0_bn", "conv1": "1_conv", "norm2": "1_bn", "conv2": "2_conv"}[part]
        return f"conv{b + 1}_block{l}_{suffix}"
    m = _TRANSITION_NODE.fullmatch(node)
    if m:
        return f"pool{int(m.group(1)) + 1}_{'bn' if m.group(2) == 'norm' else 'conv'}"
    return None


_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/densenet/"
_KERAS_LICENCE = ("BSD-3-Clause (keras-applications README: DenseNet weights); trained on ImageNet, "
                  "whose terms restrict use to non-commercial research")
_TV_LICENCE = "BSD-3-Clause (torchvision); trained on ImageNet, whose terms restrict use to non-commercial research"

#: Keras files are assigned by position (their layer order is the node order); the names explain a mismatch.
DENSENET121_SPEC = WeightSpec(
    architecture="densenet121",
    keras_names=(densenet_keras_name,),          # Keras 2 ``conv1/conv`` and Keras 3 ``conv1_conv`` normalise equal
    head_nodes=("classifier",), keras_head_layers=("predictions",),
    torch_signature="features.denseblock4.denselayer16.conv2.weight", torch_head_weight="classifier.weight",
    weights=(
        WeightsEntry("densenet121-keras-imagenet", "densenet121", "keras",
                     _KERAS + "densenet121_weights_tf_dim_ordering_tf_kernels.h5",
                     ("md5", "9d60b8095a5708f2dcce2bca79d332c7"), True, "imagenet-torch", _KERAS_LICENCE),
        WeightsEntry("densenet121-keras-imagenet-notop", "densenet121", "keras",
                     _KERAS + "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
                     ("md5", "30ee3e1110167f948a6b9946edeeb738"), False, "imagenet-torch", _KERAS_LICENCE),
        WeightsEntry("densenet121-torchvision-imagenet", "densenet121", "torchvision",
                     "https://download.pytorch.org/models/densenet121-a639ec97.pth",
                     ("sha256", "a639ec97"), True, "imagenet-torch", _TV_LICENCE),
    ))
