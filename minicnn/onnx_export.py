"""Export a minicnn model to ONNX: ``Graph.to_onnx(path)`` / ``minicnn export model.npz out.onnx``.

    model.to_onnx("model.onnx", opset=17)      # passes onnx.checker; onnxruntime reproduces predict()

* Every layer class in ``EXPORTERS`` has an ONNX equivalent (a few become two or three nodes:
  GlobalAvgPool2D is GlobalAveragePool + Flatten, Rescaling is Mul + Add, swish is x * Sigmoid(x));
  a model holding any other layer is an :class:`OnnxImportError` naming the nodes and classes.
* The graph input is ``[N, C, H, W]`` with a symbolic batch ``N``; ``H, W`` are the model's
  ``input_shape`` (needed to resolve ``padding='same'``), or give ``input_shape=``.
* The output activation (sigmoid/softmax) is part of the exported graph: onnxruntime returns what
  ``predict`` returns. ``meta`` (classes, thresholds, preprocessing) and the output activation are
  stored in ``metadata_props`` (``minicnn.meta`` as JSON, ``minicnn.output_activation``);
  :func:`minicnn.load_onnx` restores both and takes the activation node off again.
* Inference graph: Dropout exports as Identity, BatchNorm2D with its running statistics.
* The file is written atomically (``minicnn.fileio``). ``opset`` 13 to the newest the installed
  ``onnx`` knows; ``onnx`` is the optional extra ``pip install 'minicnn[onnx]'``.
"""
from __future__ import annotations

import json
import math
import os

import numpy as np

from . import fileio
from .errors import OnnxImportError, UsageError
from .layers import activation as A, conv as CV, dense as D, elementwise as E, norm as NO, onnx_ops as O, pool as P
from .layers import shape as S
from .readers.onnx import require_onnx

__all__ = ["to_onnx", "model_to_onnx", "EXPORTERS", "DEFAULT_OPSET"]

DEFAULT_OPSET = 17
MIN_OPSET = 13


class _Writer:
    def __init__(self, onnx, opset):
        self.onnx, self.opset = onnx, opset
        self.nodes, self.inits = [], []
        self.k = 0

    def const(self, name, value, dtype=np.float32):
        from onnx import numpy_helper
        self.k += 1
        full = f"{name}__c{self.k}"
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(np.asarray(value, dtype)), full))
        return full

    def node(self, op, inputs, output, name=None, **attrs):
        from onnx import helper
        self.nodes.append(helper.make_node(op, list(inputs), [output], name=name or output, **attrs))
        return output

    def tmp(self, base):
        self.k += 1
        return f"{base}__t{self.k}"


def _pads_onnx(p):
    t, b, l, r = p
    return [int(t), int(l), int(b), int(r)]


def _conv(w, name, layer, x, shape):
    pads = _pads_onnx(layer._pads(shape[2:]))
    common = dict(strides=list(layer.stride), dilations=list(layer.dilation), pads=pads)
    if type(layer) is CV.SeparableConv2D:
        k = list(layer.kernel_size)
        mid = w.node("Conv", [x, w.const(f"{name}.depthwise_W", layer.params["depthwise_W"])], w.tmp(name),
                     kernel_shape=k, group=layer.in_channels, **common)
        ins = [mid, w.const(f"{name}.pointwise_W", layer.params["pointwise_W"])]
        if layer.bias:
            ins.append(w.const(f"{name}.b", layer.params["b"]))
        return w.node("Conv", ins, name, kernel_shape=[1, 1])
    ins = [x, w.const(f"{name}.W", layer.params["W"])]
    if layer.bias:
        ins.append(w.const(f"{name}.b", layer.params["b"]))
    return w.node("Conv", ins, name, kernel_shape=list(layer.kernel_size), group=layer.groups, **common)


def _dense(w, name, layer, x, shape):
    ins = [x, w.const(f"{name}.W", layer.params["W"])]
    if layer.bias:
        ins.append(w.const(f"{name}.b", layer.params["b"]))
    return w.node("Gemm", ins, name)


def _batchnorm(w, name, layer, x, shape):
    C = layer.num_features
    g = layer.params.get("gamma", np.ones(C, np.float32))
    b = layer.params.get("beta", np.zeros(C, np.float32))
    ins = [x, w.const(f"{name}.gamma", g), w.const(f"{name}.beta", b),
           w.const(f"{name}.running_mean", layer.buffers["running_mean"]),
           w.const(f"{name}.running_var", layer.buffers["running_var"])]
    return w.node("BatchNormalization", ins, name, epsilon=layer.eps, momentum=1.0 - layer.momentum)


def _pool(w, name, layer, x, shape):
    (kh, kw), (sh, sw), pad, _ = layer._geometry(shape)
    attrs = dict(kernel_shape=[kh, kw], strides=[sh, sw], pads=_pads_onnx(pad))
    if type(layer) is P.MaxPool2D:
        return w.node("MaxPool", [x], name, **attrs)
    return w.node("AveragePool", [x], name, count_include_pad=int(layer.count_include_pad), **attrs)


def _global(w, name, layer, x, shape):
    op = "GlobalAveragePool" if type(layer) is P.GlobalAvgPool2D else "GlobalMaxPool"
    return w.node("Flatten", [w.node(op, [x], w.tmp(name))], name, axis=1)


def _adaptive(w, name, layer, x, shape):
    H, W = shape[2:]
    oh, ow = layer.output_size
    if (oh, ow) == (1, 1):
        return w.node("GlobalAveragePool", [x], name)
    if H % oh or W % ow:
        raise OnnxImportError(f"node {name!r}: AdaptiveAvgPool2D{layer.output_size} of a {H}x{W} map has unequal "
                              f"bins, which no ONNX pooling computes")
    return w.node("AveragePool", [x], name, kernel_shape=[H // oh, W // ow], strides=[H // oh, W // ow])


def _reshape_const(w, name, x, shape):
    return w.node("Reshape", [x, w.const(f"{name}.shape", np.array(shape, np.int64), np.int64)], name)


def _unary(op, **attrs):
    return lambda w, name, layer, x, shape: w.node(op, [x], name, **attrs)


def _softmax(w, name, layer, x, shape):
    return w.node("Softmax", [x], name, axis=layer.axis)


def _activation(w, name, layer, x, shape):
    f, a = layer.name, layer.alpha
    simple = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid", "softplus": "Softplus", "softsign": "Softsign",
              "exponential": "Exp", "linear": "Identity", "selu": "Selu"}
    if f in simple:
        return w.node(simple[f], [x], name)
    if f == "leaky_relu":
        return w.node("LeakyRelu", [x], name, alpha=a)
    if f == "elu":
        return w.node("Elu", [x], name, alpha=a)
    if f == "relu6":
        return w.node("Clip", [x, w.const(f"{name}.min", 0.0), w.const(f"{name}.max", 6.0)], name)
    if f == "swish":
        return w.node("Mul", [x, w.node("Sigmoid", [x], w.tmp(name))], name)
    if f == "gelu":      # 0.5 x (1 + erf(x / sqrt 2))
        e = w.node("Erf", [w.node("Div", [x, w.const(f"{name}.sqrt2", math.sqrt(2.0))], w.tmp(name))], w.tmp(name))
        h = w.node("Mul", [w.node("Add", [e, w.const(f"{name}.one", 1.0)], w.tmp(name)), w.const(f"{name}.half", 0.5)],
                   w.tmp(name))
        return w.node("Mul", [x, h], name)
    if f == "gelu_tanh":
        x3 = w.node("Mul", [w.node("Mul", [x, x], w.tmp(name)), x], w.tmp(name))
        u = w.node("Add", [x, w.node("Mul", [x3, w.const(f"{name}.c", 0.044715)], w.tmp(name))], w.tmp(name))
        t = w.node("Tanh", [w.node("Mul", [u, w.const(f"{name}.k", math.sqrt(2 / math.pi))], w.tmp(name))], w.tmp(name))
        h = w.node("Mul", [w.node("Add", [t, w.const(f"{name}.one", 1.0)], w.tmp(name)), w.const(f"{name}.half", 0.5)],
                   w.tmp(name))
        return w.node("Mul", [x, h], name)
    raise OnnxImportError(f"node {name!r}: Activation({f!r}) has no ONNX export")


def _rescaling(w, name, layer, x, shape):
    def c(v, what):
        a = np.asarray(v, np.float32)
        if a.ndim == 1:
            a = a.reshape((1, -1) + (1,) * (len(shape) - 2))
        return w.const(f"{name}.{what}", a)
    return w.node("Add", [w.node("Mul", [x, c(layer.scale, "scale")], w.tmp(name)), c(layer.offset, "offset")], name)


def _binary(w, name, layer, x, shape):
    op = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min", "pow": "Pow"}[layer.op]
    if layer.multi_input:
        return w.node(op, list(x), name)
    c = w.const(f"{name}.c", layer.buffers["c"])
    return w.node(op, [c, x] if layer.const_first else [x, c], name)


def _pad(w, name, layer, x, shape):
    return w.node("Pad", [x, w.const(f"{name}.pads", np.array(layer.pads, np.int64), np.int64),
                          w.const(f"{name}.value", layer.value)], name, mode=layer.mode)


def _zeropad(w, name, layer, x, shape):
    t, b, l, r = layer.padding
    return w.node("Pad", [x, w.const(f"{name}.pads", np.array([0, 0, t, l, 0, 0, b, r], np.int64), np.int64)], name)


def _clip(w, name, layer, x, shape):
    ins = [x, w.const(f"{name}.min", layer.min) if layer.min is not None else ""]
    if layer.max is not None:
        ins.append(w.const(f"{name}.max", layer.max))
    return w.node("Clip", ins, name)


def _onnx_softmax(w, name, layer, x, shape):
    op = "LogSoftmax" if layer.log else "Softmax"
    if not layer.coerce_2d:
        return w.node(op, [x], name, axis=layer.axis)
    s = w.node("Shape", [x], w.tmp(name))
    f = w.node("Flatten", [x], w.tmp(name), axis=layer.axis)
    return w.node("Reshape", [w.node(op, [f], w.tmp(name), axis=1), s], name)


def _hardsigmoid(w, name, layer, x, shape):
    if layer.swish and abs(layer.alpha - 1 / 6) < 1e-9 and layer.beta == 0.5:
        return w.node("HardSwish", [x], name)
    h = w.node("HardSigmoid", [x], w.tmp(name) if layer.swish else name, alpha=layer.alpha, beta=layer.beta)
    return w.node("Mul", [x, h], name) if layer.swish else h


def _unary_math(w, name, layer, x, shape):
    if layer.name == "pow":
        return w.node("Pow", [x, w.const(f"{name}.p", layer.p)], name)
    op = {"neg": "Neg", "abs": "Abs", "sqrt": "Sqrt", "reciprocal": "Reciprocal", "log": "Log", "erf": "Erf"}[layer.name]
    return w.node(op, [x], name)


def _reduce(w, name, layer, x, shape):
    op = {"mean": "ReduceMean", "sum": "ReduceSum", "max": "ReduceMax"}[layer.op]
    keep = int(layer.keepdims)
    if op == "ReduceSum" or w.opset >= 18:
        return w.node(op, [x, w.const(f"{name}.axes", np.array(layer.axes, np.int64), np.int64)], name, keepdims=keep)
    return w.node(op, [x], name, axes=list(layer.axes), keepdims=keep)


def _slice(w, name, layer, x, shape):
    arr = lambda v, k: w.const(f"{name}.{k}", np.array(v, np.int64), np.int64)
    return w.node("Slice", [x, arr(layer.starts, "starts"), arr(layer.ends, "ends"), arr(layer.axes, "axes"),
                            arr(layer.steps, "steps")], name)


def _resize(w, name, layer, x, shape):
    attrs = dict(mode=layer.mode, coordinate_transformation_mode=layer.coord, nearest_mode=layer.nearest)
    if layer.scales is not None:
        return w.node("Resize", [x, "", w.const(f"{name}.scales", [1.0, 1.0] + layer.scales)], name, **attrs)
    i64 = lambda v, k: w.const(f"{name}.{k}", np.array(v, np.int64), np.int64)
    nc = w.node("Slice", [w.node("Shape", [x], w.tmp(name)), i64([0], "zero"), i64([2], "two")], w.tmp(name))
    sizes = w.node("Concat", [nc, i64(layer.sizes, "hw")], w.tmp(name), axis=0)   # (N, C) of x, then (OH, OW)
    return w.node("Resize", [x, "", "", sizes], name, **attrs)


def _dilated_pool(w, name, layer, x, shape):
    attrs = dict(kernel_shape=list(layer.kernel_size), strides=list(layer.stride), pads=_pads_onnx(layer.padding),
                 dilations=list(layer.dilation))
    if layer.kind == "max":
        return w.node("MaxPool", [x], name, **attrs)
    if w.opset < 19:
        raise OnnxImportError(f"node {name!r}: an average pool with dilations needs opset >= 19 (AveragePool-19), "
                              f"got opset {w.opset}")
    return w.node("AveragePool", [x], name, count_include_pad=int(layer.count_include_pad), **attrs)


EXPORTERS = {
    CV.Conv2D: _conv, CV.DepthwiseConv2D: _conv, CV.SeparableConv2D: _conv, D.Dense: _dense,
    A.ReLU: _unary("Relu"), A.Sigmoid: _unary("Sigmoid"), A.Softmax: _softmax, A.Dropout: _unary("Identity"),
    NO.BatchNorm2D: _batchnorm, P.MaxPool2D: _pool, P.AvgPool2D: _pool, P.GlobalAvgPool2D: _global,
    P.GlobalMaxPool2D: _global, P.AdaptiveAvgPool2D: _adaptive, S.Flatten: _unary("Flatten", axis=1),
    S.ZeroPad2D: _zeropad, S.Add: lambda w, n, l, x, s: w.node("Sum", list(x), n),
    S.Concat: lambda w, n, l, x, s: w.node("Concat", list(x), n, axis=l.axis),
    S.BufferedConcat: lambda w, n, l, x, s: w.node("Concat", list(x), n, axis=l.axis),
    E.Activation: _activation, E.Rescaling: _rescaling, E.Identity: _unary("Identity"),
    O.Binary: _binary, O.Reshape: lambda w, n, l, x, s: _reshape_const(w, n, x, l.shape),
    O.Transpose: lambda w, n, l, x, s: w.node("Transpose", [x], n, perm=l.perm), O.Pad: _pad, O.Clip: _clip,
    O.MatMul: lambda w, n, l, x, s: w.node("MatMul", [x, w.const(f"{n}.W", l.params["W"])], n),
    O.OnnxSoftmax: _onnx_softmax, O.HardSigmoid: _hardsigmoid,
    O.PRelu: lambda w, n, l, x, s: w.node("PRelu", [x, w.const(f"{n}.slope", l.params["slope"])], n),
    O.Unary: _unary_math, O.Reduce: _reduce, O.Slice: _slice,
    O.ConvTranspose2D: lambda w, n, l, x, s: w.node(
        "ConvTranspose", [x, w.const(f"{n}.W", l.params["W"])] + ([w.const(f"{n}.b", l.params["b"])] if l.bias else []),
        n, kernel_shape=list(l.kernel_size), strides=list(l.stride), dilations=list(l.dilation), group=l.groups,
        pads=_pads_onnx(l.padding), output_padding=list(l.output_padding)),
    O.Resize: lambda w, n, l, x, s: _resize(w, n, l, x, s),
    O.BatchMatMul: lambda w, n, l, x, s: w.node("MatMul", list(x), n),
    O.Gather: lambda w, n, l, x, s: w.node("Gather", [x, w.const(f"{n}.indices", np.array(l.indices, np.int64),
                                                                 np.int64)], n, axis=l.axis),
    O.Expand: lambda w, n, l, x, s: w.node("Expand", [x, w.const(f"{n}.shape", np.array(l.shape, np.int64),
                                                                 np.int64)], n),
    O.DilatedPool2D: lambda w, n, l, x, s: _dilated_pool(w, n, l, x, s),
    O.Tile: lambda w, n, l, x, s: w.node("Tile", [x, w.const(f"{n}.repeats", np.array(l.repeats, np.int64),
                                                             np.int64)], n),
    O.LRN: lambda w, n, l, x, s: w.node("LRN", [x], n, size=l.size, alpha=l.alpha, beta=l.beta, bias=l.bias),
}


def model_to_onnx(model, opset: int = DEFAULT_OPSET, input_shape=None, doc: str | None = None):
    """The ``onnx.ModelProto`` of ``model`` (checked by ``onnx.checker``)."""
    onnx = require_onnx()
    from onnx import helper
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= int(opset) <= newest:
        raise UsageError(f"opset must be between {MIN_OPSET} and {newest} (the installed onnx's newest), got {opset}")
    if len(model.input_names) != 1:
        raise OnnxImportError(f"only single-input models export to ONNX, this one has {model.input_names}")
    missing = [f"{n.name} ({type(n.layer).__name__})" for n in model.nodes.values() if type(n.layer) not in EXPORTERS]
    if missing:
        raise OnnxImportError(f"{len(missing)} node(s) have no ONNX equivalent: {', '.join(missing[:10])}"
                              + (" ..." if len(missing) > 10 else ""))
    shape = tuple(input_shape or model.input_shape or ())
    if not shape:
        raise UsageError("the model has no input_shape; give input_shape=(C, H, W) to export it")
    shapes = model.output_shapes(shape)
    w = _Writer(onnx, int(opset))
    x_name = model.input_names[0]
    for n in model.nodes.values():
        ins = n.inputs if n.layer.multi_input else n.inputs[0]
        in_shape = [shapes[i] for i in n.inputs] if n.layer.multi_input else shapes[n.inputs[0]]
        EXPORTERS[type(n.layer)](w, n.name, n.layer, ins, in_shape)
    out = model.output_name
    act = model.output_activation
    if act == "sigmoid":
        out = w.node("Sigmoid", [out], f"{out}/sigmoid")
    elif act == "softmax":
        out = w.node("Softmax", [out], f"{out}/softmax", axis=1)
    elem = onnx.TensorProto.FLOAT
    batch = None if model.works_along_batch() else "N"    # rows along the batch axis: not one per input row
    out_shape = [batch] + [d if isinstance(d, int) else None for d in shapes[model.output_name][1:]]
    graph = helper.make_graph(w.nodes, model.name or "minicnn", [helper.make_tensor_value_info(x_name, elem, ["N", *shape])],
                              [helper.make_tensor_value_info(out, elem, out_shape)], w.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", int(opset))], producer_name="minicnn",
                              doc_string=doc or "")
    meta = {"minicnn.meta": json.dumps(model.meta), "minicnn.output_activation": act or ""}
    for k, v in meta.items():
        proto.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def to_onnx(model, path, opset: int = DEFAULT_OPSET, input_shape=None) -> str:
    """Write ``model`` to the ONNX file ``path`` (atomically); returns the path."""
    proto = model_to_onnx(model, opset=opset, input_shape=input_shape)
    path = os.fspath(path)
    fileio.write_bytes(path, proto.SerializeToString())
    return path
