"""ResNet50 as a minicnn ``Graph``, named exactly like torchvision's modules.

References (read, not copied): torchvision ``torchvision/models/resnet.py`` (``Bottleneck``, ResNet
v1.5) and Keras ``keras/src/applications/resnet.py`` (``residual_block_v1``), with the older
``keras-applications`` ``resnet50.py`` for its layer names; He et al., "Deep Residual Learning for
Image Recognition" (CVPR 2016).

The graph, for a 224x224 input (shapes without the batch axis N)::

    conv1 7x7/2, bn1, relu, maxpool 3x3/2                                  (64, 56, 56)
    layer{S}.{B}     S = 1..4, B = 0..(3, 4, 6, 3) - 1, bottleneck blocks of width w = 64 * 2**(S-1)
        .conv1 1x1 -> w, .bn1, .relu1
        .conv2 3x3 -> w (pad 1), .bn2, .relu2
        .conv3 1x1 -> 4w, .bn3
        .downsample.0 1x1 -> 4w, .downsample.1 (batch-norm)      block 0 of each stage only
        .add  [bn3, shortcut], .relu                                        (2048, 7, 7) at the end
    avgpool          global average pool                                    (2048,)
    fc               Dense 2048 -> classes

Keras layer names come from :func:`resnet50_keras_name` (Keras 3 / tf-keras ``conv2_block1_1_conv``)
and :func:`resnet50_keras2_name` (keras-applications' ``res2a_branch2a``, ``bn2a_branch2a``).

Where the two sources differ (``source='torchvision'`` or ``'keras'``):

==================  ==========================================  ===========================================
                    torchvision                                 Keras
==================  ==========================================  ===========================================
batch-norm eps      1e-5                                        1.001e-5
conv bias           none                                        every conv has one
stem                conv1 padding=3                             ``pad0`` ZeroPad2D(3) + valid conv1
max-pool            padding=1 (pads with -inf)                  ``pad1`` ZeroPad2D(1) + valid maxpool
                                                                (zeros: equal after the ReLU)
stride 2 in block   on the 3x3 ``conv2`` (ResNet v1.5)          on the first 1x1 ``conv1`` (ResNet v1)
output_activation   None (logits)                               'softmax' with include_top
preprocessing       'imagenet-torch'                            'imagenet-caffe' (BGR, minus the mean, no scaling)
==================  ==========================================  ===========================================

The keras-applications ResNet50 code that went with the ``res2a_branch2a``-named file
(fchollet/deep-learning-models v0.2) used Keras' default batch-norm eps 1e-3 (and, in some
versions, no padding before the max-pool); this module reproduces today's ``keras.applications``
(eps 1.001e-5, padded max-pool) and only reads that file's names.
"""
from __future__ import annotations

import re

from ..data.preprocessing import Preprocessing
from ..init import rng_from
from ..layers.activation import ReLU
from ..layers.conv import Conv2D
from ..layers.dense import Dense
from ..layers.norm import BatchNorm2D
from ..layers.pool import GlobalAvgPool2D, GlobalMaxPool2D, MaxPool2D
from ..layers.shape import Add, ZeroPad2D
from ..model import Graph
from ._common import check_builder_args
from .mapping import load_arch_weights, source_from_weights
from .spec import WeightSpec, WeightsEntry

BN_EPS = {"torchvision": 1e-5, "keras": 1.001e-5}
RESNET50_BLOCKS = (3, 4, 6, 3)
PREPROCESSING = {"torchvision": "imagenet-torch", "keras": "imagenet-caffe"}
_KERAS3_SUFFIX = {"conv1": "1_conv", "bn1": "1_bn", "conv2": "2_conv", "bn2": "2_bn", "conv3": "3_conv",
              "bn3": "3_bn", "downsample.0": "0_conv", "downsample.1": "0_bn"}
_KERAS2_SUFFIX = {"conv1": ("res", "2a"), "bn1": ("bn", "2a"), "conv2": ("res", "2b"), "bn2": ("bn", "2b"),
                  "conv3": ("res", "2c"), "bn3": ("bn", "2c"), "downsample.0": ("res", "1"),
                  "downsample.1": ("bn", "1")}
_BLOCK_NODE = re.compile(r"layer(\d)\.(\d+)\.(conv[123]|bn[123]|downsample\.[01])")


def resnet50_keras_name(node: str) -> str | None:
    """Keras 3 / tf-keras name of a torchvision-named node (``layer1.0.conv1`` -> ``conv2_block1_1_conv``)."""
    fixed = {"conv1": "conv1_conv", "bn1": "conv1_bn", "fc": "predictions"}
    if node in fixed:
        return fixed[node]
    m = _BLOCK_NODE.fullmatch(node)
    if m is None:
        return None
    return f"conv{int(m.group(1)) + 1}_block{int(m.group(2)) + 1}_{_KERAS3_SUFFIX[m.group(3)]}"


def resnet50_keras2_name(node: str) -> str | None:
    """keras-applications' name of a node (``layer1.0.conv1`` -> ``res2a_branch2a``, ``bn1`` -> ``bn_conv1``)."""
    fixed = {"conv1": "conv1", "bn1": "bn_conv1", "fc": "fc1000"}
    if node in fixed:
        return fixed[node]
    m = _BLOCK_NODE.fullmatch(node)
    if m is None:
        return None
    kind, branch = _KERAS2_SUFFIX[m.group(3)]
    return f"{kind}{int(m.group(1)) + 1}{'abcdefghijklmnopqrstuvwxyz'[int(m.group(2))]}_branch{branch}"


def _conv(g, name, cin, cout, k, stride, padding, source, rng, inputs=None):
    return g.add(name, Conv2D(cin, cout, k, stride=stride, padding=padding, bias=source == "keras",
                              init="he", seed=rng), inputs=inputs)


def bottleneck(g: Graph, name: str, x: str, cin: int, width: int, stride: int, source: str, rng) -> str:
    """One bottleneck block (see the module docstring); returns the name of its final ReLU."""
    eps = BN_EPS[source]
    s1, s2 = (stride, 1) if source == "keras" else (1, stride)
    _conv(g, f"{name}.conv1", cin, width, 1, s1, 0, source, rng, inputs=x)
    g.add(f"{name}.bn1", BatchNorm2D(width, eps=eps))
    g.add(f"{name}.relu1", ReLU())
    _conv(g, f"{name}.conv2", width, width, 3, s2, 1, source, rng)
    g.add(f"{name}.bn2", BatchNorm2D(width, eps=eps))
    g.add(f"{name}.relu2", ReLU())
    _conv(g, f"{name}.conv3", width, 4 * width, 1, 1, 0, source, rng)
    main = g.add(f"{name}.bn3", BatchNorm2D(4 * width, eps=eps))
    shortcut = x
    if stride != 1 or cin != 4 * width:
        _conv(g, f"{name}.downsample.0", cin, 4 * width, 1, stride, 0, source, rng, inputs=x)
        shortcut = g.add(f"{name}.downsample.1", BatchNorm2D(4 * width, eps=eps))
    g.add(f"{name}.add", Add(), inputs=[main, shortcut])
    return g.add(f"{name}.relu", ReLU())


def resnet_graph(blocks=RESNET50_BLOCKS, include_top: bool = True, pooling=None, classes: int = 1000,
                 source: str = "torchvision", input_shape=(3, 224, 224), seed=None, name: str = "resnet50") -> Graph:
    """Build a bottleneck ResNet (ResNet50: blocks 3, 4, 6, 3) with random He-normal convs."""
    input_shape = check_builder_args(source, pooling, include_top, input_shape, 32)
    rng = rng_from(seed)
    eps = BN_EPS[source]
    g = Graph(input_shape=input_shape, name=name)
    if source == "keras":
        g.add("pad0", ZeroPad2D(3))
        _conv(g, "conv1", input_shape[0], 64, 7, 2, 0, source, rng)
    else:
        _conv(g, "conv1", input_shape[0], 64, 7, 2, 3, source, rng)
    g.add("bn1", BatchNorm2D(64, eps=eps))
    g.add("relu", ReLU())
    if source == "keras":
        g.add("pad1", ZeroPad2D(1))
        x = g.add("maxpool", MaxPool2D(3, stride=2))
    else:
        x = g.add("maxpool", MaxPool2D(3, stride=2, padding=1))
    cin = 64
    for s, n_blocks in enumerate(blocks, start=1):
        width = 64 * 2 ** (s - 1)
        for b in range(n_blocks):
            x = bottleneck(g, f"layer{s}.{b}", x, cin, width, 2 if (b == 0 and s > 1) else 1, source, rng)
            cin = 4 * width
    if include_top or pooling == "avg":
        g.add("avgpool", GlobalAvgPool2D())
    elif pooling == "max":
        g.add("maxpool_global", GlobalMaxPool2D())
    if include_top:
        g.add("fc", Dense(cin, classes, seed=rng))
        g.output_activation = "softmax" if source == "keras" else None
    g.meta.update({"architecture": name, "source": source, "include_top": bool(include_top),
                   "pooling": pooling, "num_classes": int(classes) if include_top else None,
                   "preprocessing": Preprocessing.for_weights(PREPROCESSING[source], g.input_shape).to_dict()})
    return g


def resnet50(weights=None, include_top: bool = True, pooling=None, classes: int = 1000, source=None,
             input_shape=(3, 224, 224), seed=None) -> Graph:
    """ResNet50 (torchvision node names) with random or loaded weights.

    weights      None (random), a weight file (``.h5`` Keras, ``.pth`` / ``.pt`` / ``.safetensors``
                 torchvision, minicnn ``.npz``) or a registry name.
    include_top  end in the classifier (``(N, classes)``); otherwise the last block's output,
                 ``(N, 2048, 7, 7)`` at 224x224, or ``(N, 2048)`` with ``pooling``.
    pooling      None, 'avg' or 'max' (include_top=False only).
    source       'torchvision' (v1.5: stride on the 3x3) or 'keras' (v1: stride on the first 1x1,
                 conv biases, eps 1.001e-5); read from the weight file when there is one.

    ``model.predict(x)`` takes NCHW float32 preprocessed with ``model.meta['preprocessing']``.
    """
    path, source = source_from_weights(weights, source, RESNET50_SPEC)
    model = resnet_graph(RESNET50_BLOCKS, include_top=include_top, pooling=pooling, classes=classes,
                         source=source, input_shape=input_shape, seed=seed)
    if path is not None:
        load_arch_weights(model, path, RESNET50_SPEC)
    return model


def _keras_call_inputs(node):
    """keras.applications.resnet adds ``layers.Add()([shortcut, x])``; minicnn's add node is [main, shortcut]."""
    return node.inputs[::-1] if isinstance(node.layer, Add) else node.inputs


_KA = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
_TV_LICENCE = "BSD-3-Clause (torchvision); trained on ImageNet, whose terms restrict use to non-commercial research"

#: A Keras file's layers are matched to the nodes by name (Keras 3 names, then keras-applications'
#: names); a file with other names is assigned by position, as Keras does.
RESNET50_SPEC = WeightSpec(
    architecture="resnet50",
    keras_names=(resnet50_keras_name, resnet50_keras2_name), keras_by_name=True,
    keras3_call_inputs=_keras_call_inputs,
    head_nodes=("fc",), keras_head_layers=("fc1000", "predictions"),
    torch_signature="layer4.2.conv3.weight", torch_head_weight="fc.weight",
    weights=(
        WeightsEntry("resnet50-keras-imagenet", "resnet50", "keras", _KA + "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
                     ("md5", "2cb95161c43110f7111970584f804107"), True, "imagenet-caffe", "MIT (Kaiming He); ImageNet terms"),
        WeightsEntry("resnet50-keras-imagenet-notop", "resnet50", "keras",
                     _KA + "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                     ("md5", "4d473c1dd8becc155b73f8504c6f6626"), False, "imagenet-caffe", "MIT (Kaiming He); ImageNet terms"),
        WeightsEntry("resnet50-torchvision-imagenet", "resnet50", "torchvision",
                     "https://download.pytorch.org/models/resnet50-0676ba61.pth", ("sha256", "0676ba61"), True,
                     "imagenet-torch", _TV_LICENCE),
    ))
