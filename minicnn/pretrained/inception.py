"""InceptionV3 as a minicnn ``Graph``, named exactly like torchvision's modules.

References (read, not copied): torchvision ``torchvision/models/inception.py`` (``Inception3``,
``BasicConv2d``, ``InceptionA``..``InceptionE``) and Keras ``keras/src/applications/inception_v3.py``
(``conv2d_bn``, ``mixed0``..``mixed10``); Szegedy et al., "Rethinking the Inception Architecture
for Computer Vision" (CVPR 2016).

Every conv is a "basic conv" ``<name>.conv`` (no bias) + ``<name>.bn`` (eps 1e-3) + ``<name>.relu``.
For a 299x299 input (shapes without the batch axis N)::

    transform_input                 torchvision only, optional: per-channel affine (see below)
    Conv2d_1a_3x3 3x3/2, Conv2d_2a_3x3 3x3, Conv2d_2b_3x3 3x3 pad 1, maxpool1 3x3/2
    Conv2d_3b_1x1, Conv2d_4a_3x3 3x3, maxpool2 3x3/2                                (192, 35, 35)
    Mixed_5b, Mixed_5c, Mixed_5d    InceptionA (Keras mixed0-2)                      (288, 35, 35)
    Mixed_6a                        InceptionB (mixed3)                              (768, 17, 17)
    Mixed_6b .. Mixed_6e            InceptionC (mixed4-7)                            (768, 17, 17)
    Mixed_7a                        InceptionD (mixed8)                              (1280, 8, 8)
    Mixed_7b, Mixed_7c              InceptionE (mixed9, mixed10)                     (2048, 8, 8)
    avgpool (global), dropout (torchvision only), fc 2048 -> classes

Each ``Mixed_*`` ends in ``<name>.concat`` over its branches (``branch1x1``, ``branch5x5_1``, ...:
torchvision's names), in torchvision's (= Keras') order. The weighted nodes are added in Keras'
creation order (``conv2d_bn`` calls), which is the order of the numbers in Keras' auto-generated
layer names (``conv2d_12``, ``batch_normalization_12``); a Keras file is put in that order before
the by-position assignment (:func:`keras_creation_order`). torchvision's auxiliary classifier
(``AuxLogits.*``, used only in training) is not built: its tensors are dropped and listed in
``model.meta['dropped']``.

Where the two sources differ (``source='torchvision'`` or ``'keras'``):

==================  ==========================================  ===========================================
                    torchvision                                 Keras
==================  ==========================================  ===========================================
batch-norm          eps 1e-3, gamma and beta                    eps 1e-3, beta only (``scale=False``)
3x3/1 average pool  padding 1, counts the padding (divides      'same', divides by the real cells only
in the branches     by 9 everywhere)                            (``count_include_pad=False``)
input               ``transform_input``: x_c * std_c / 0.5 +    none
                    (mean_c - 0.5) / 0.5 (ImageNet weights)
dropout             p=0.5 before fc                             none
output_activation   None (logits)                               'softmax' with include_top
preprocessing       'imagenet-torch' with transform_input, else 'tf'   'tf' (x / 127.5 - 1)
==================  ==========================================  ===========================================

``transform_input`` turns torch-normalised inputs ((x/255 - mean) / std) into ``x/127.5 - 1``,
the scaling the network was trained with. torchvision switches it on when it loads its ImageNet
weights; ``transform_input=None`` does the same here: on for torchvision weights from a file,
off for a random network (torchvision's ``Inception3`` default).
"""
from __future__ import annotations

import re

from ..data.preprocessing import Preprocessing
from ..errors import UsageError
from ..init import rng_from
from ..layers.activation import Dropout, ReLU
from ..layers.conv import Conv2D
from ..layers.dense import Dense
from ..layers.elementwise import Rescaling
from ..layers.norm import BatchNorm2D
from ..layers.pool import AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D, MaxPool2D
from ..layers.shape import Concat
from ..model import Graph
from ..readers.npz import read_npz
from ..readers.detect import detect_format
from ._common import check_builder_args
from .keras3_weights import keras3_auto_names
from .mapping import load_arch_weights, source_from_weights
from .spec import WeightSpec, WeightsEntry

BN_EPS = 1e-3
#: torchvision's ``Inception3._transform_input`` (constants written into its model code, the ImageNet
#: mean and std): per channel ``x * std_c / 0.5 + (mean_c - 0.5) / 0.5``.
_TV_MEAN, _TV_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TRANSFORM_SCALE = [s / 0.5 for s in _TV_STD]
TRANSFORM_OFFSET = [(m - 0.5) / 0.5 for m in _TV_MEAN]
#: What a torchvision state_dict holds that this graph does not build (dropped and listed).
TORCH_DROPPED_PREFIXES = ("AuxLogits.",)


class _Builder:
    """Adds basic convs and pools with the source's semantics, tracking channel counts by node."""

    def __init__(self, g: Graph, source: str, rng):
        self.g, self.source, self.rng = g, source, rng
        self.channels = {}

    def conv(self, name, x, cin, cout, kernel, stride=1, padding=0):
        """``name.conv`` (no bias) + ``name.bn`` + ``name.relu``; returns the ReLU's node name."""
        g = self.g
        g.add(f"{name}.conv", Conv2D(cin, cout, kernel, stride=stride, padding=padding, bias=False,
                                     init="he", seed=self.rng), inputs=x)
        g.add(f"{name}.bn", BatchNorm2D(cout, eps=BN_EPS, scale=self.source == "torchvision"))
        return g.add(f"{name}.relu", ReLU())

    def avg_pool_3x3(self, name, x):
        """The branches' 3x3/1 average pool: torch counts the padding, Keras 'same' does not."""
        if self.source == "torchvision":
            return self.g.add(name, AvgPool2D(3, stride=1, padding=1, count_include_pad=True), inputs=x)
        return self.g.add(name, AvgPool2D(3, stride=1, padding="same", count_include_pad=False), inputs=x)

    def max_pool_3x3_2(self, name, x):
        return self.g.add(name, MaxPool2D(3, stride=2), inputs=x)

    def concat(self, name, branches):
        return self.g.add(f"{name}.concat", Concat(axis=1), inputs=branches)


def inception_a(b: _Builder, name, x, cin, pool_features):
    c = b.conv
    b1 = c(f"{name}.branch1x1", x, cin, 64, 1)
    b5 = c(f"{name}.branch5x5_1", x, cin, 48, 1)
    b5 = c(f"{name}.branch5x5_2", b5, 48, 64, 5, padding=2)
    b3 = c(f"{name}.branch3x3dbl_1", x, cin, 64, 1)
    b3 = c(f"{name}.branch3x3dbl_2", b3, 64, 96, 3, padding=1)
    b3 = c(f"{name}.branch3x3dbl_3", b3, 96, 96, 3, padding=1)
    bp = b.avg_pool_3x3(f"{name}.branch_pool_avg", x)
    bp = c(f"{name}.branch_pool", bp, cin, pool_features, 1)
    return b.concat(name, [b1, b5, b3, bp]), 64 + 64 + 96 + pool_features


def inception_b(b: _Builder, name, x, cin):
    c = b.conv
    b3 = c(f"{name}.branch3x3", x, cin, 384, 3, stride=2)
    bd = c(f"{name}.branch3x3dbl_1", x, cin, 64, 1)
    bd = c(f"{name}.branch3x3dbl_2", bd, 64, 96, 3, padding=1)
    bd = c(f"{name}.branch3x3dbl_3", bd, 96, 96, 3, stride=2)
    bp = b.max_pool_3x3_2(f"{name}.branch_pool", x)
    return b.concat(name, [b3, bd, bp]), 384 + 96 + cin


def inception_c(b: _Builder, name, x, cin, c7):
    c = b.conv
    b1 = c(f"{name}.branch1x1", x, cin, 192, 1)
    b7 = c(f"{name}.branch7x7_1", x, cin, c7, 1)
    b7 = c(f"{name}.branch7x7_2", b7, c7, c7, (1, 7), padding=(0, 3))
    b7 = c(f"{name}.branch7x7_3", b7, c7, 192, (7, 1), padding=(3, 0))
    bd = c(f"{name}.branch7x7dbl_1", x, cin, c7, 1)
    bd = c(f"{name}.branch7x7dbl_2", bd, c7, c7, (7, 1), padding=(3, 0))
    bd = c(f"{name}.branch7x7dbl_3", bd, c7, c7, (1, 7), padding=(0, 3))
    bd = c(f"{name}.branch7x7dbl_4", bd, c7, c7, (7, 1), padding=(3, 0))
    bd = c(f"{name}.branch7x7dbl_5", bd, c7, 192, (1, 7), padding=(0, 3))
    bp = b.avg_pool_3x3(f"{name}.branch_pool_avg", x)
    bp = c(f"{name}.branch_pool", bp, cin, 192, 1)
    return b.concat(name, [b1, b7, bd, bp]), 4 * 192


def inception_d(b: _Builder, name, x, cin):
    c = b.conv
    b3 = c(f"{name}.branch3x3_1", x, cin, 192, 1)
    b3 = c(f"{name}.branch3x3_2", b3, 192, 320, 3, stride=2)
    b7 = c(f"{name}.branch7x7x3_1", x, cin, 192, 1)
    b7 = c(f"{name}.branch7x7x3_2", b7, 192, 192, (1, 7), padding=(0, 3))
    b7 = c(f"{name}.branch7x7x3_3", b7, 192, 192, (7, 1), padding=(3, 0))
    b7 = c(f"{name}.branch7x7x3_4", b7, 192, 192, 3, stride=2)
    bp = b.max_pool_3x3_2(f"{name}.branch_pool", x)
    return b.concat(name, [b3, b7, bp]), 320 + 192 + cin


def inception_e(b: _Builder, name, x, cin):
    c, g = b.conv, b.g
    b1 = c(f"{name}.branch1x1", x, cin, 320, 1)
    b3 = c(f"{name}.branch3x3_1", x, cin, 384, 1)
    b3a = c(f"{name}.branch3x3_2a", b3, 384, 384, (1, 3), padding=(0, 1))
    b3b = c(f"{name}.branch3x3_2b", b3, 384, 384, (3, 1), padding=(1, 0))
    b3 = g.add(f"{name}.branch3x3.concat", Concat(axis=1), inputs=[b3a, b3b])
    bd = c(f"{name}.branch3x3dbl_1", x, cin, 448, 1)
    bd = c(f"{name}.branch3x3dbl_2", bd, 448, 384, 3, padding=1)
    bda = c(f"{name}.branch3x3dbl_3a", bd, 384, 384, (1, 3), padding=(0, 1))
    bdb = c(f"{name}.branch3x3dbl_3b", bd, 384, 384, (3, 1), padding=(1, 0))
    bd = g.add(f"{name}.branch3x3dbl.concat", Concat(axis=1), inputs=[bda, bdb])
    bp = b.avg_pool_3x3(f"{name}.branch_pool_avg", x)
    bp = c(f"{name}.branch_pool", bp, cin, 192, 1)
    return b.concat(name, [b1, b3, bd, bp]), 320 + 768 + 768 + 192


def inception_v3_graph(include_top: bool = True, pooling=None, classes: int = 1000, source: str = "torchvision",
                       transform_input: bool = False, input_shape=(3, 299, 299), seed=None) -> Graph:
    """Build InceptionV3 with random He-normal convs (see the module docstring)."""
    input_shape = check_builder_args(source, pooling, include_top, input_shape, 75)
    if transform_input and source != "torchvision":
        raise UsageError("transform_input is torchvision's; Keras InceptionV3 has no such step "
                         "(preprocess with mode 'tf' instead)")
    if transform_input and input_shape[0] != 3:
        raise UsageError(f"transform_input needs 3 input channels, got input_shape={input_shape}")
    g = Graph(input_shape=input_shape, name="inception_v3")
    b = _Builder(g, source, rng_from(seed))
    x = g.add("transform_input", Rescaling(TRANSFORM_SCALE, TRANSFORM_OFFSET)) if transform_input else "input"
    x = b.conv("Conv2d_1a_3x3", x, input_shape[0], 32, 3, stride=2)
    x = b.conv("Conv2d_2a_3x3", x, 32, 32, 3)
    x = b.conv("Conv2d_2b_3x3", x, 32, 64, 3, padding=1)
    x = b.max_pool_3x3_2("maxpool1", x)
    x = b.conv("Conv2d_3b_1x1", x, 64, 80, 1)
    x = b.conv("Conv2d_4a_3x3", x, 80, 192, 3)
    x = b.max_pool_3x3_2("maxpool2", x)
    x, ch = inception_a(b, "Mixed_5b", x, 192, 32)
    x, ch = inception_a(b, "Mixed_5c", x, ch, 64)
    x, ch = inception_a(b, "Mixed_5d", x, ch, 64)
    x, ch = inception_b(b, "Mixed_6a", x, ch)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        x, ch = inception_c(b, name, x, ch, c7)
    x, ch = inception_d(b, "Mixed_7a", x, ch)
    x, ch = inception_e(b, "Mixed_7b", x, ch)
    x, ch = inception_e(b, "Mixed_7c", x, ch)
    if include_top or pooling == "avg":
        g.add("avgpool", GlobalAvgPool2D(), inputs=x)
    elif pooling == "max":
        g.add("maxpool_global", GlobalMaxPool2D(), inputs=x)
    if include_top:
        if source == "torchvision":
            g.add("dropout", Dropout(0.5))
        g.add("fc", Dense(ch, classes, seed=b.rng))
        g.output_activation = "softmax" if source == "keras" else None
    preprocessing = Preprocessing.for_weights("imagenet-torch" if transform_input else "tf", g.input_shape).to_dict()
    g.meta.update({"architecture": "inception_v3", "source": source, "include_top": bool(include_top),
                   "pooling": pooling, "num_classes": int(classes) if include_top else None,
                   "transform_input": bool(transform_input), "preprocessing": preprocessing})
    return g


_AUTO_NAME = re.compile(r"(conv2d|batch_normalization)(?:_(\d+))?")


def keras_creation_order(layers):
    """Sort a Keras InceptionV3 file's layers into creation order (conv, its batch-norm, next conv, ...).

    Keras writes ``layer_names`` in its own topological order, which interleaves the branches; the
    number in the auto-generated names (``conv2d``, ``conv2d_1``, ... or ``conv2d_1``, ... in Keras 2)
    counts creation. A file with other names is left as it is (positional loading, as Keras does).
    """
    convs, bns, rest = [], [], []
    for layer in layers:
        m = _AUTO_NAME.fullmatch(layer.name.split("/")[-1])
        if m is None:
            rest.append(layer)
            continue
        (convs if m.group(1) == "conv2d" else bns).append((int(m.group(2) or 0), layer))
    if len(convs) != len(bns) or any(l.name not in ("predictions", "fc") for l in rest) or \
            (rest and layers[-1] is not rest[-1]):
        return list(layers)
    convs.sort(key=lambda t: t[0])
    bns.sort(key=lambda t: t[0])
    return [l for pair in zip(convs, bns) for _, l in pair] + rest


def _saved_meta(path) -> dict:
    """``meta`` of a minicnn ``.npz`` model file ({} for any other file)."""
    if path is None or detect_format(path) != "npz":
        return {}
    _, config = read_npz(path)
    return (config or {}).get("meta") or {}


def inception_v3(weights=None, include_top: bool = True, pooling=None, classes: int = 1000, source=None,
                 input_shape=(3, 299, 299), transform_input=None, seed=None) -> Graph:
    """InceptionV3 (torchvision node names) with random or loaded weights.

    weights          None (random), a weight file (``.h5`` Keras, ``.pth`` / ``.pt`` / ``.safetensors``
                     torchvision, minicnn ``.npz``) or a registry name.
    include_top      end in the classifier (``(N, classes)``); otherwise ``Mixed_7c``'s output,
                     ``(N, 2048, 8, 8)`` at 299x299, or ``(N, 2048)`` with ``pooling``.
    pooling          None, 'avg' or 'max' (include_top=False only).
    source           'torchvision' or 'keras' semantics; read from the weight file when there is one.
    transform_input  torchvision's input re-normalisation node (see the module docstring). None: on
                     for torchvision weights loaded from a file, off otherwise. Must be off for Keras.
    input_shape      (C, H, W), H and W >= 75.

    ``model.predict(x)`` takes NCHW float32 preprocessed with ``model.meta['preprocessing']``
    ('imagenet-torch' with transform_input, 'tf' without).
    """
    path, source = source_from_weights(weights, source, INCEPTION_V3_SPEC)
    if transform_input is None:
        transform_input = source == "torchvision" and path is not None
        saved = _saved_meta(path)
        if "transform_input" in saved:                     # a minicnn .npz records what it was built with
            transform_input = bool(saved["transform_input"])
    model = inception_v3_graph(include_top=include_top, pooling=pooling, classes=classes, source=source,
                               transform_input=transform_input, input_shape=input_shape, seed=seed)
    if path is not None:
        load_arch_weights(model, path, INCEPTION_V3_SPEC)
    return model


def _keras3_names(model):
    """Keras InceptionV3's auto-generated names (``conv2d_k``, ``batch_normalization_k``) in a fresh
    session: the graph adds its nodes in Keras' creation order; only the classifier has a fixed name."""
    return keras3_auto_names(model, {"fc": "predictions"}).get


_KA = "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
_TV_LICENCE = "BSD-3-Clause (torchvision); trained on ImageNet, whose terms restrict use to non-commercial research"

#: A Keras file is put in creation order before the by-position assignment (its names are
#: auto-generated); torchvision's ``AuxLogits.*`` tensors are dropped and listed in ``model.meta['dropped']``.
INCEPTION_V3_SPEC = WeightSpec(
    architecture="inception_v3",
    keras_order=keras_creation_order, keras3_names=_keras3_names,
    torch_drop_prefixes=TORCH_DROPPED_PREFIXES,
    head_nodes=("fc",), keras_head_layers=("predictions",),
    torch_signature="Mixed_7c.branch_pool.conv.weight", torch_head_weight="fc.weight",
    weights=(
        WeightsEntry("inception_v3-keras-imagenet", "inception_v3", "keras",
                     _KA + "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
                     ("md5", "9a0d58056eeedaa3f26cb7ebd46da564"), True, "tf", "Apache-2.0 (TensorFlow); ImageNet terms"),
        WeightsEntry("inception_v3-keras-imagenet-notop", "inception_v3", "keras",
                     _KA + "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
                     ("md5", "bcbd6486424b2319ff4ef7d526e38f63"), False, "tf", "Apache-2.0 (TensorFlow); ImageNet terms"),
        WeightsEntry("inception_v3-torchvision-imagenet", "inception_v3", "torchvision",
                     "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth", ("sha256", "0cc3c7bd"),
                     True, "imagenet-torch", _TV_LICENCE),
    ))
