"""Layer classes. Every layer follows ``base.Layer``: ``params``/``grads``/``buffers`` dicts,
``forward(x, training=False)`` and ``backward(dy)`` (and ``infer(x)``, the cache-free inference
forward that ``Graph.predict`` runs; see ``base.py``).

Reading order for a learner: ``base.py`` -> ``dense.py`` -> ``activation.py`` -> ``conv.py``
(and its kernels in ``minicnn/kernels/conv.py``) -> ``pool.py`` -> ``norm.py`` -> ``shape.py``.
"""
from .activation import Dropout, ReLU, Sigmoid, Softmax
from .base import Layer
from .conv import Conv2D, DepthwiseConv2D, SeparableConv2D
from .dense import Dense
from .elementwise import Activation, Identity, OperatingPoints, Rescaling
from .norm import BatchNorm2D
from .onnx_ops import (LRN, BatchMatMul, Binary, Clip, ConvTranspose2D, DilatedPool2D, Expand, Gather, Resize, HardSigmoid, MatMul, OnnxSoftmax, Pad, PRelu, Reduce, Reshape, Slice,
                       Tile, Transpose, Unary)
from .pool import AdaptiveAvgPool2D, AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D, MaxPool2D
from .shape import Add, BufferedConcat, Concat, Flatten, ZeroPad2D

__all__ = ["Layer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense", "ReLU", "Sigmoid", "Softmax",
           "Dropout", "BatchNorm2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D", "GlobalMaxPool2D",
           "AdaptiveAvgPool2D", "Flatten", "ZeroPad2D", "Concat", "BufferedConcat", "Add", "Activation", "Rescaling", "Identity",
           "Binary", "Reshape", "Transpose", "Pad", "Clip", "MatMul", "OnnxSoftmax", "HardSigmoid", "PRelu",
           "Unary", "Reduce", "Slice", "LRN", "ConvTranspose2D", "Resize",
           "BatchMatMul", "Gather", "Expand", "DilatedPool2D", "Tile",
           "OperatingPoints"]

# The classes a saved model may name (``minicnn.load`` rebuilds only these; nothing is imported by name).
LAYER_CLASSES = {name: globals()[name] for name in __all__ if name != "Layer"}
