"""Import an ONNX model (a CNN exported from PyTorch, TensorFlow, ...) as a minicnn ``Graph``.

    g = load_onnx("model.onnx")          # minicnn.load_onnx
    y = g.predict(x)                     # the first graph output, float32
    g.meta["onnx"]                       # input name and shape, outputs, opset, producer

What the import does
--------------------
* The file is parsed by :func:`minicnn.readers.onnx.read_onnx` (plain arrays and node records;
  external data only from inside the model's folder).
* Each node becomes minicnn layers: Conv -> ``Conv2D`` (the native fast kernels),
  BatchNormalization -> ``BatchNorm2D``, Dropout -> ``Dropout`` (so fine-tuning trains them as
  minicnn's own), Gemm with a constant B / 2-D MatMul -> ``Dense`` (Gemm's other forms, B or
  C computed at run time or a C of any broadcastable shape: ``BatchMatMul`` + ``Binary``),
  pools -> ``MaxPool2D`` / ``AvgPool2D`` / ``GlobalAvgPool2D`` (+ a keep-dims ``Reshape``), Add/Sub/Mul/Div/Max/Min/Sum/Mean -> ``Binary``
  (NumPy broadcasting; opset < 7's ``broadcast``/``axis`` too), and the rest as listed in
  ``SUPPORTED``. Identity (and Cast to a float type) only renames a value.
* Nodes whose inputs are all constants (Constant, Shape of an activation, Gather, Concat of
  shapes, Unsqueeze, Cast, ...) are evaluated at import by ``onnx.reference``: the shape
  computations torch exporters emit fold away. The batch size stays symbolic through the folding:
  a Shape reads it as a marker value, and a Reshape whose target holds the marker copies the batch
  (0) or infers it (-1); any other arithmetic on the batch size is refused.
* A graph whose input has a fixed batch size ``B`` records ``meta["fixed_batch"] = B`` and
  ``Graph.predict`` runs it in chunks of ``B``.
* Slice, Split, Gather and Tile along axis 0 (the batch) import with ONNX's semantics: the
  output's batch differs from the input's. Such a graph's samples are not independent, so
  ``Graph.predict`` runs it on the whole input at once (``Graph.works_along_batch``); with a fixed
  batch the input must have exactly that many rows. Training / ``fit`` minibatches are the caller's.
* An operator or attribute value minicnn does not support raises :class:`OnnxImportError` listing
  every unsupported operator type with its node names -- never a silent skip.
* A file written by ``Graph.to_onnx`` carries the model's ``meta`` and ``output_activation`` in
  ``metadata_props``: they are restored, and the exported output activation node is taken off again.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from itertools import zip_longest

import numpy as np

from ..errors import MinicnnError, OnnxImportError
from ..layers.activation import Dropout, ReLU, Sigmoid
from ..layers.conv import Conv2D
from ..layers.dense import Dense
from ..layers.elementwise import Activation
from ..layers.norm import BatchNorm2D
from ..layers.onnx_ops import (LRN, BatchMatMul, Binary, Clip, ConvTranspose2D, DilatedPool2D, Expand, Gather,
                               Resize, HardSigmoid, MatMul, OnnxSoftmax, Pad, PRelu, Reduce, Reshape, Slice,
                               Tile, Transpose, Unary)
from ..layers.pool import AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D, MaxPool2D
from ..layers.shape import Concat, Flatten
from ..model import Graph
from ..readers.onnx import read_onnx, require_onnx

__all__ = ["load_onnx", "graph_from_onnx", "SUPPORTED", "BATCH_MARKER"]

BATCH_MARKER = 2 ** 40 + 1      # the batch size as a folded Shape reads it (never a real size)
_BIG = 2 ** 31
#: The most elements a folded constant may have (as serialization's per-layer cap): a graph whose
#: ConstantOfShape / Expand / Tile / Range would build more is refused before the array exists.
MAX_FOLDED_ELEMENTS = 1 << 28


def _check_folded_size(node, consts, path):
    """Refuse a shape-making node whose constant inputs ask for more than MAX_FOLDED_ELEMENTS."""
    op = node.op_type
    if op not in ("ConstantOfShape", "Expand", "Tile", "Range"):
        return
    vals = [np.asarray(consts[i]) if i else None for i in node.inputs]
    try:
        if op == "ConstantOfShape":
            n = math.prod(int(d) for d in vals[0].reshape(-1))
        elif op == "Expand":
            shape = [int(d) for d in vals[1].reshape(-1)]
            n = math.prod(max(a, b) for a, b in zip_longest(reversed(vals[0].shape), reversed(shape), fillvalue=1))
        elif op == "Tile":
            n = vals[0].size * math.prod(max(int(r), 0) for r in vals[1].reshape(-1))
        else:
            start, limit, delta = (float(v.reshape(-1)[0]) for v in vals[:3])
            n = math.ceil((limit - start) / delta) if delta else 0
    except (TypeError, ValueError, IndexError, OverflowError, AttributeError):
        return                                  # malformed inputs: the reference evaluator says what is wrong
    if n > MAX_FOLDED_ELEMENTS:
        raise OnnxImportError(f"{path}: node {node.name!r} ({op}) would build a constant of {n:,} elements, over "
                              f"the limit of {MAX_FOLDED_ELEMENTS:,}; refused before allocating it", path=path,
                              field=node.name)
_FLOATS = ("float32", "float64", "float16")


class _Unsupported(Exception):
    """This node cannot be imported: ``str`` says why (an op or an attribute value)."""


def _pair(v, name):
    if len(v) != 2:
        raise _Unsupported(f"{name}={v} (only 2-D convolution and pooling)")
    return [int(t) for t in v]


class _Importer:
    def __init__(self, m, meta_json):
        self.m = m
        self.onnx = require_onnx()
        self.consts = {k: v for k, v in m.initializers.items()}
        self.acts = {}              # ONNX value name -> minicnn node name (or graph input name)
        self.dead = set()           # values of nodes that could not be imported
        self.unsupported = defaultdict(list)   # reason -> [node names]
        self.used = set()
        self.node_names = set()
        first = m.inputs
        if not first:
            raise OnnxImportError(f"{m.path}: the graph has no input (every input is an initializer)", path=m.path)
        odd = [v.name for v in list(first) + list(m.outputs) if v.dtype is None]
        if odd:
            raise OnnxImportError(f"{m.path}: graph inputs/outputs {odd} are not tensors (sequences, maps or "
                                  f"optionals); minicnn imports tensor graphs only", path=m.path)
        self.g = Graph(inputs=[v.name for v in first])
        for v in first:
            self.acts[v.name] = v.name
        shape0 = first[0].shape or []
        self.batch_symbol = shape0[0] if shape0 and not isinstance(shape0[0], int) else None
        self.fixed_batch = shape0[0] if shape0 and isinstance(shape0[0], int) else None
        for n in m.nodes:
            self.used.update(n.inputs)
        self.meta_json = meta_json

    # -- values --------------------------------------------------------------------------------
    def is_const(self, name):
        return name == "" or name in self.consts

    def const(self, name, what="input"):
        if name not in self.consts:
            raise _Unsupported(f"{what} {name!r} computed at run time (only a constant is supported there)")
        return self.consts[name]

    def opt_const(self, node, i, what="optional input"):
        """Input ``i`` as a constant, None when it is absent; computed at run time is unsupported."""
        if len(node.inputs) <= i or not node.inputs[i]:
            return None
        return self.const(node.inputs[i], what)

    def act(self, name):
        if name not in self.acts:
            raise _Unsupported(f"input {name!r} is a constant where an activation is expected")
        return self.acts[name]

    def shape(self, name):
        """The inferred shape of a value: ints, the batch symbol kept as the str/None ONNX gave."""
        s = self.m.shapes.get(name)
        if s is None and name in self.consts:
            return list(self.consts[name].shape)
        return s

    def rank(self, name):
        s = self.shape(name)
        if s is None:
            raise _Unsupported(f"the rank of {name!r} is unknown (ONNX shape inference gave none)")
        return len(s)

    def static_hw(self, name):
        s = self.shape(name)
        if s is None or len(s) != 4 or not all(isinstance(d, int) for d in s[2:]):
            raise _Unsupported(f"auto_pad/ceil_mode need the static height and width of {name!r}, got {s}")
        return s[2], s[3]

    def _is_batch_dim(self, d):
        return (not isinstance(d, int)) and (d == self.batch_symbol or d is None) or \
            (self.fixed_batch is None and d == BATCH_MARKER)

    # -- building -------------------------------------------------------------------------------
    def add(self, node, layer, inputs, out=None, suffix=""):
        base = (node.name + suffix) or (node.outputs[0] + suffix)
        name, k = base, 1
        while name in self.node_names or name in self.g.input_names:
            k += 1
            name = f"{base}_{k}"
        self.node_names.add(name)
        self.g.add(name, layer, inputs=list(inputs))
        if out is not None:
            self.acts[out] = name
        return name

    def reshape_to(self, node, x_name, out_shape, in_shape, out, suffix="", src=None):
        """A Reshape layer to the inferred ``out_shape`` (the batch copied with 0 or inferred with -1)
        of the value ``x_name`` (or of the minicnn node ``src``)."""
        target = []
        for i, d in enumerate(out_shape):
            if isinstance(d, int) and d != BATCH_MARKER:
                target.append(d)
            elif i < len(in_shape) and self._is_batch_dim(in_shape[i]) and (d == in_shape[i] or d == BATCH_MARKER):
                target.append(0)
            else:
                target.append(-1)
        if target.count(-1) > 1:
            raise _Unsupported(f"output shape {out_shape} has more than one dimension that is not static")
        return self.add(node, Reshape(target), [src or self.act(x_name)], out=out, suffix=suffix)

    # -- folding ---------------------------------------------------------------------------------
    def fold(self, node):
        onnx = self.onnx
        from onnx import helper, numpy_helper
        from onnx.reference import ReferenceEvaluator
        attrs = {}
        for k, v in node.attrs.items():
            attrs[k] = numpy_helper.from_array(v) if isinstance(v, np.ndarray) else v
        if node.op_type in ("ConstantOfShape", "Expand", "Range", "Tile") and any(
                np.any(np.abs(np.asarray(self.consts[i], dtype=np.float64)) >= _BIG)
                for i in node.inputs if i and np.issubdtype(np.asarray(self.consts[i]).dtype, np.integer)):
            raise _Unsupported("a tensor whose size depends on the batch size")
        _check_folded_size(node, self.consts, self.m.path)
        ins = [i for i in node.inputs]
        proto_node = helper.make_node(node.op_type, ins, node.outputs, domain=node.domain or None, **attrs)
        feeds = {i: self.consts[i] for i in ins if i}
        graph = helper.make_graph([proto_node], "fold",
                                  [helper.make_tensor_value_info(i, helper.np_dtype_to_tensor_dtype(feeds[i].dtype),
                                                                 feeds[i].shape) for i in feeds],
                                  [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None)
                                   for o in node.outputs if o])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid(node.domain or "", self.m.opset)])
        try:
            outs = ReferenceEvaluator(model).run(None, feeds)
        except Exception as e:
            raise _Unsupported(f"constant folding failed ({type(e).__name__}: {e})") from None
        for o, v in zip([o for o in node.outputs if o], outs):
            self.consts[o] = np.asarray(v)

    # -- the import -----------------------------------------------------------------------------
    def run(self):
        for node in self.m.nodes:
            if node.domain not in ("", "ai.onnx"):
                self.unsupported[f"{node.domain}.{node.op_type} (custom domain)"].append(node.name)
                self.dead.update(node.outputs)
                continue
            if any(i in self.dead for i in node.inputs if i):
                if node.op_type not in SUPPORTED and not all(self.is_const(i) for i in node.inputs):
                    self.unsupported[node.op_type].append(node.name)
                self.dead.update(node.outputs)
                continue
            try:
                handler = _HANDLERS.get(node.op_type)
                if node.op_type in ("Shape", "Size") and node.inputs[0] in self.acts:
                    handler(self, node)
                elif all(self.is_const(i) for i in node.inputs) and node.op_type not in _NEVER_FOLD:
                    self.fold(node)
                elif handler is None:
                    raise _Unsupported("")
                else:
                    handler(self, node)
            except _Unsupported as e:
                key = node.op_type + (f" ({e})" if str(e) else "")
                self.unsupported[key].append(node.name)
                self.dead.update(node.outputs)
            except (IndexError, KeyError, TypeError, ValueError, OverflowError, ZeroDivisionError) as e:   # inputs/attributes the op does not have
                if isinstance(e, MinicnnError):
                    raise
                self.unsupported[f"{node.op_type} (malformed node: {type(e).__name__}: {e})"].append(node.name)
                self.dead.update(node.outputs)
        if self.unsupported:
            lines = [f"  {op}: {', '.join(names[:8])}" + (f" ... ({len(names)} nodes)" if len(names) > 8 else "")
                     for op, names in sorted(self.unsupported.items())]
            raise OnnxImportError(f"{self.m.path}: {len(self.unsupported)} unsupported operator(s) or attribute "
                                  f"value(s):\n" + "\n".join(lines), path=self.m.path)
        return self.finish()

    def finish(self):
        m, g = self.m, self.g
        out = m.outputs[0].name
        if out in self.consts or out not in self.acts:
            raise OnnxImportError(f"{m.path}: the first graph output {out!r} is a constant, not computed from the "
                                  f"input", path=m.path)
        if self.acts[out] in g.input_names:
            from ..layers.elementwise import Identity
            self.g.add(out, Identity(), inputs=[self.acts[out]])
            self.acts[out] = out
        g.output_name = self.acts[out]
        in0 = m.inputs[0]
        shape = in0.shape
        if shape and all(isinstance(d, int) for d in shape[1:]):
            g.input_shape = tuple(shape[1:])
        g.meta["onnx"] = {"input": in0.name, "input_shape": shape, "inputs": [v.name for v in m.inputs],
                          "outputs": [{"name": v.name, "shape": v.shape} for v in m.outputs],
                          "opset": m.opset, "producer": m.producer}
        if self.fixed_batch is not None:
            g.meta["fixed_batch"] = int(self.fixed_batch)
        saved = m.metadata.get("minicnn.meta")
        if saved:
            try:
                g.meta.update(json.loads(saved))
            except ValueError:
                raise OnnxImportError(f"{m.path}: metadata 'minicnn.meta' is not JSON", path=m.path,
                                      field="minicnn.meta") from None
        act = m.metadata.get("minicnn.output_activation")
        if act in ("sigmoid", "softmax"):
            last = g.nodes[g.output_name]
            kind = {"sigmoid": Sigmoid, "softmax": OnnxSoftmax}[act]
            if isinstance(last.layer, kind) and len(last.inputs) == 1 and last.inputs[0] in g.nodes:
                uses = sum(last.inputs[0] in n.inputs for n in g.nodes.values())
                if uses == 1:
                    del g.nodes[g.output_name]
                    g.output_name = last.inputs[0]
                    g.output_activation = act
        return g

    # -- handlers ---------------------------------------------------------------------------------
    def conv(self, node):
        a = node.attrs
        W = self.const(node.inputs[1], "weight")
        B = self.opt_const(node, 2)
        if W.ndim != 4:
            raise _Unsupported(f"a {W.ndim - 2}-D kernel (only 2-D)")
        if len(node.inputs) > 2 and node.inputs[2] and B is None:
            raise _Unsupported("bias computed at run time")
        k = list(W.shape[2:])
        if "kernel_shape" in a and list(a["kernel_shape"]) != k:
            raise _Unsupported(f"kernel_shape={a['kernel_shape']} differs from the weight's {k}")
        s = _pair(a.get("strides", [1, 1]), "strides")
        d = _pair(a.get("dilations", [1, 1]), "dilations")
        G = int(a.get("group", 1))
        pads = self.pads(node, k, s, d)
        F, cg = W.shape[:2]
        layer = Conv2D(cg * G, F, k, stride=s, padding=pads, dilation=d, groups=G, bias=B is not None, init="assigned")
        layer.params["W"] = np.ascontiguousarray(W, np.float32)
        if B is not None:
            layer.params["b"] = np.ascontiguousarray(B, np.float32).reshape(F)
        self.add(node, layer, [self.act(node.inputs[0])], out=node.outputs[0])

    def conv_transpose(self, node):
        a = node.attrs
        W = self.const(node.inputs[1], "weight")
        B = self.opt_const(node, 2, "bias")
        if W.ndim != 4:
            raise _Unsupported(f"a {W.ndim - 2}-D kernel (only 2-D)")
        k = list(W.shape[2:])
        s = _pair(a.get("strides", [1, 1]), "strides")
        d = _pair(a.get("dilations", [1, 1]), "dilations")
        op = _pair(a.get("output_padding", [0, 0]), "output_padding")
        G = int(a.get("group", 1))
        auto = a.get("auto_pad", "NOTSET")
        if "output_shape" in a or auto in ("SAME_UPPER", "SAME_LOWER"):
            hw = self.static_hw(node.inputs[0])
            out = list(a["output_shape"])[-2:] if "output_shape" in a else [n * st for n, st in zip(hw, s)]
            pads = []
            for i, (n, st, o, dd, kk, want) in enumerate(zip(hw, s, op, d, k, out)):
                total = st * (n - 1) + o + (kk - 1) * dd + 1 - want
                if total < 0:          # a larger output_shape: the extra rows/columns come after the end
                    if -total >= st:
                        raise _Unsupported(f"output_shape={a.get('output_shape')} more than a stride larger "
                                           f"than the full output")
                    op[i] += -total
                    total = 0
                half = total // 2
                pads += [half, total - half] if auto == "SAME_UPPER" else [total - half, half]
            pads = tuple(pads)
        elif auto in ("NOTSET", "", "VALID"):
            p = [0, 0, 0, 0] if auto == "VALID" else [int(v) for v in a.get("pads", [0, 0, 0, 0])]
            pads = (p[0], p[2], p[1], p[3])
        else:
            raise _Unsupported(f"auto_pad={auto!r}")
        C, Fg = W.shape[:2]
        layer = ConvTranspose2D(C, Fg * G, k, s, pads, d, G, op, bias=B is not None)
        layer.params["W"] = np.ascontiguousarray(W, np.float32)
        if B is not None:
            layer.params["b"] = np.asarray(B, np.float32).reshape(-1).copy()
        self.add(node, layer, [self.act(node.inputs[0])], out=node.outputs[0])

    def resize(self, node):
        a = node.attrs
        if self.rank(node.inputs[0]) != 4:
            raise _Unsupported(f"a {self.rank(node.inputs[0])}-D input (only NCHW)")
        mode = a.get("mode", "nearest")
        if mode not in ("nearest", "linear"):
            raise _Unsupported(f"mode={mode!r}")
        if a.get("antialias", 0):
            raise _Unsupported("antialias=1")
        if a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
            raise _Unsupported(f"keep_aspect_ratio_policy={a['keep_aspect_ratio_policy']!r}")
        if "axes" in a:
            raise _Unsupported("axes")
        scales = sizes = None
        if node.op_type == "Upsample" or self.m.opset < 11:   # Upsample, Resize-10: asymmetric, floor
            coord, nearest = "asymmetric", "floor"
            scales = a.get("scales")
            if scales is None:
                scales = self.const(node.inputs[1], "scales")
        else:
            coord = a.get("coordinate_transformation_mode", "half_pixel")
            nearest = a.get("nearest_mode", "round_prefer_floor")
            sc, sz = self.opt_const(node, 2, "scales"), self.opt_const(node, 3, "sizes")
            if sz is not None and np.size(sz):
                sizes = [int(v) for v in np.asarray(sz).reshape(-1)]
            elif sc is not None and np.size(sc):
                scales = sc
            else:
                raise _Unsupported("neither scales nor sizes")
        if coord in ("tf_crop_and_resize", "tf_half_pixel_for_nn"):
            raise _Unsupported(f"coordinate_transformation_mode={coord!r}")
        if scales is not None:
            scales = [float(v) for v in np.asarray(scales).reshape(-1)]
            if len(scales) != 4 or scales[:2] != [1.0, 1.0]:
                raise _Unsupported(f"scales={scales} (only the spatial axes of NCHW)")
            layer = Resize(scales=scales[2:], mode=mode, coordinate_transformation_mode=coord, nearest_mode=nearest)
        else:
            ins = self.shape(node.inputs[0])
            if len(sizes) != 4 or sizes[1] != ins[1] or not (sizes[0] == ins[0] or self._is_batch_dim(ins[0])
                                                             or sizes[0] == BATCH_MARKER):
                raise _Unsupported(f"sizes={sizes} (only the spatial axes of NCHW)")
            layer = Resize(sizes=sizes[2:], mode=mode, coordinate_transformation_mode=coord, nearest_mode=nearest)
        self.add(node, layer, [self.act(node.inputs[0])], out=node.outputs[0])

    def gather(self, node):
        idx = np.asarray(self.const(node.inputs[1], "indices"))
        axis = int(node.attrs.get("axis", 0)) % self.rank(node.inputs[0])
        self.add(node, Gather(idx, axis), [self.act(node.inputs[0])], out=node.outputs[0])

    def expand(self, node):
        shape = [int(v) for v in np.asarray(self.const(node.inputs[1], "shape")).reshape(-1)]
        ins = self.shape(node.inputs[0]) or []
        out = []
        for i, v in enumerate(shape):
            k = i - (len(shape) - len(ins))          # the input axis this one lines up with
            if v == BATCH_MARKER and k >= 0 and self._is_batch_dim(ins[k]):
                out.append(1)                        # broadcasting 1 keeps the input's batch size
            elif abs(v) >= _BIG:
                raise _Unsupported("a shape computed from the batch size")
            else:
                if k == 0 and v != 1 and self._is_batch_dim(ins[0]):
                    raise _Unsupported("an expansion of the batch axis")
                out.append(v)
        self.add(node, Expand(out), [self.act(node.inputs[0])], out=node.outputs[0])

    def tile(self, node):
        repeats = [int(v) for v in np.asarray(self.const(node.inputs[1], "repeats")).reshape(-1)]
        if any(abs(v) >= _BIG for v in repeats):
            raise _Unsupported("repeats computed from the batch size")
        self.add(node, Tile(repeats), [self.act(node.inputs[0])], out=node.outputs[0])

    def depth_to_space(self, node):
        b = int(node.attrs["blocksize"])
        s = self.shape(node.inputs[0])
        if s is None or len(s) != 4 or not all(isinstance(v, int) for v in s[1:]):
            raise _Unsupported("an input without a static (C, H, W)")
        _, C, H, W = s
        x = self.act(node.inputs[0])
        if node.op_type == "SpaceToDepth":
            crd = node.attrs.get("mode", "DCR") == "CRD"
            r = self.add(node, Reshape([0, C, H // b, b, W // b, b]), [x], suffix="/split")
            t = self.add(node, Transpose([0, 1, 3, 5, 2, 4] if crd else [0, 3, 5, 1, 2, 4]), [r], suffix="/move")
            self.add(node, Reshape([0, C * b * b, H // b, W // b]), [t], out=node.outputs[0])
            return
        mode = node.attrs.get("mode", "DCR")
        if mode == "DCR":
            r = self.add(node, Reshape([0, b, b, C // (b * b), H, W]), [x], suffix="/split")
            t = self.add(node, Transpose([0, 3, 4, 1, 5, 2]), [r], suffix="/move")
        elif mode == "CRD":
            r = self.add(node, Reshape([0, C // (b * b), b, b, H, W]), [x], suffix="/split")
            t = self.add(node, Transpose([0, 1, 4, 2, 5, 3]), [r], suffix="/move")
        else:
            raise _Unsupported(f"mode={mode!r}")
        self.add(node, Reshape([0, C // (b * b), H * b, W * b]), [t], out=node.outputs[0])

    def normalization(self, node):
        """Instance/Layer/GroupNormalization composed of Reduce, Binary and Unary layers (their
        backward is the composition's): (x - mean) / sqrt(var + eps) * scale + bias."""
        a = node.attrs
        r = self.rank(node.inputs[0])
        eps = float(a.get("epsilon", 1e-5))
        scale = np.asarray(self.const(node.inputs[1], "scale"), np.float32)
        bias = self.opt_const(node, 2, "bias")
        x = self.act(node.inputs[0])
        shape = self.shape(node.inputs[0])
        if node.op_type == "InstanceNormalization":
            axes, pshape = list(range(2, r)), (1, -1) + (1,) * (r - 2)
        elif node.op_type == "LayerNormalization":
            if a.get("stash_type", 1) != 1 or any(o in self.used for o in node.outputs[1:] if o):
                raise _Unsupported("the Mean / InvStdDev outputs")
            axis = int(a.get("axis", -1)) % r
            if axis == 0:
                raise _Unsupported("axis=0 (a normalisation over the batch axis)")
            axes, pshape = list(range(axis, r)), scale.shape
        else:   # GroupNormalization (opset 18/21): per group of channels, then per-channel scale
            G = int(a["num_groups"])
            if not all(isinstance(v, int) for v in shape[1:]):
                raise _Unsupported("an input without static channel and spatial sizes")
            C = shape[1]
            x = self.add(node, Reshape([0, G, -1]), [x], suffix="/groups")
            axes, pshape = [2], None
        step = lambda layer, ins, suffix: self.add(node, layer, ins, suffix=suffix)
        mean = step(Reduce("mean", axes, True), [x], "/mean")
        xc = step(Binary("sub"), [x, mean], "/center")
        sq = step(Binary("mul"), [xc, xc], "/square")
        var = step(Reduce("mean", axes, True), [sq], "/var")
        ve = Binary("add", const_shape=())
        ve.buffers["c"] = np.asarray(eps, np.float32)
        std = step(Unary("sqrt"), [step(ve, [var], "/eps")], "/std")
        y = step(Binary("div"), [xc, std], "/normalized")
        if node.op_type == "GroupNormalization":
            y = step(Reshape([0, C] + list(shape[2:])), [y], "/channels")
            pshape = (1, C) + (1,) * (r - 2)
            if scale.size == G and C != G:       # opset 18: one scale per group
                scale = np.repeat(scale, C // G)
                bias = None if bias is None else np.repeat(np.asarray(bias), C // G)
        sc = Binary("mul", const_shape=np.reshape(scale, pshape).shape)
        sc.buffers["c"] = np.reshape(scale, pshape).astype(np.float32)
        y = self.add(node, sc, [y], out=None if bias is not None else node.outputs[0], suffix="/scale")
        if bias is not None:
            bb = np.reshape(np.asarray(bias, np.float32), np.reshape(scale, pshape).shape)
            bl = Binary("add", const_shape=bb.shape)
            bl.buffers["c"] = bb
            self.add(node, bl, [y], out=node.outputs[0], suffix="/bias")

    def pads(self, node, k, s, d, ceil=False):
        """(top, bottom, left, right) from ONNX pads [t, l, b, r] or auto_pad (and ceil_mode)."""
        a = node.attrs
        auto = a.get("auto_pad", "NOTSET")
        if auto in ("NOTSET", ""):
            p = [int(v) for v in a.get("pads", [0, 0, 0, 0])]
            if len(p) != 4:
                raise _Unsupported(f"pads={p} (only 2-D)")
            pads = [p[0], p[2], p[1], p[3]]
        elif auto == "VALID":
            pads = [0, 0, 0, 0]
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            hw = self.static_hw(node.inputs[0])
            pads = []
            for size, kk, ss, dd in zip(hw, k, s, d):
                o = -(-size // ss)
                total = max((o - 1) * ss + (kk - 1) * dd + 1 - size, 0)
                small, big = total // 2, total - total // 2
                pads += [small, big] if auto == "SAME_UPPER" else [big, small]
        else:
            raise _Unsupported(f"auto_pad={auto!r}")
        if ceil:
            hw = self.static_hw(node.inputs[0])
            for i, (size, kk, ss, dd) in enumerate(zip(hw, k, s, d)):
                lo, hi = pads[2 * i], pads[2 * i + 1]
                kk = (kk - 1) * dd + 1                       # the dilated window's extent
                span = size + lo + hi - kk
                o = -(-span // ss) + 1
                if (o - 1) * ss >= size + lo:
                    o -= 1
                extra = max((o - 1) * ss + kk - (size + lo + hi), 0)
                pads[2 * i + 1] += extra
        return tuple(pads)

    def pool(self, node):
        a = node.attrs
        if len(node.outputs) > 1 and node.outputs[1] in self.used:
            raise _Unsupported("the Indices output")
        if self.rank(node.inputs[0]) != 4:
            raise _Unsupported(f"a {self.rank(node.inputs[0])}-D input (only NCHW)")
        k = _pair(a["kernel_shape"], "kernel_shape")
        s = _pair(a.get("strides", [1, 1]), "strides")
        d = _pair(a.get("dilations", [1, 1]), "dilations")
        ceil = bool(a.get("ceil_mode", 0))
        pads = self.pads(node, k, s, d, ceil=ceil)
        x = self.act(node.inputs[0])
        if d != [1, 1]:
            cip = bool(a.get("count_include_pad", 0))
            if node.op_type == "AveragePool" and ceil and cip and pads != self.pads(node, k, s, d):
                raise _Unsupported("ceil_mode=1 with count_include_pad=1 where the last window overhangs")
            layer = DilatedPool2D("max" if node.op_type == "MaxPool" else "avg", k, s, pads, d, cip)
            self.add(node, layer, [x], out=node.outputs[0])
            return
        if node.op_type == "MaxPool":
            if a.get("storage_order", 0) not in (0, 1):
                raise _Unsupported(f"storage_order={a['storage_order']}")
            layer = MaxPool2D(k, s, padding=pads)
        else:
            cip = bool(a.get("count_include_pad", 0))
            if ceil and cip and pads != self.pads(node, k, s, (1, 1)):
                raise _Unsupported("ceil_mode=1 with count_include_pad=1 where the last window overhangs")
            layer = AvgPool2D(k, s, padding=pads, count_include_pad=cip)
        if max(pads[0], pads[1]) >= k[0] or max(pads[2], pads[3]) >= k[1]:
            raise _Unsupported(f"pads {pads} not smaller than the window {k}")
        self.add(node, layer, [x], out=node.outputs[0])

    def global_pool(self, node):
        if self.rank(node.inputs[0]) != 4:
            raise _Unsupported(f"a {self.rank(node.inputs[0])}-D input (only NCHW)")
        layer = GlobalAvgPool2D() if node.op_type in ("GlobalAveragePool", "ReduceMean") else GlobalMaxPool2D()
        name = self.add(node, layer, [self.act(node.inputs[0])])
        keep = node.op_type.startswith("Global") or node.attrs.get("keepdims", 1)
        if keep:
            self.add(node, Reshape([0, 0, 1, 1]), [name], out=node.outputs[0], suffix="/keepdims")
        else:
            self.acts[node.outputs[0]] = name

    def reduce(self, node):
        a = node.attrs
        axes = a.get("axes")
        if axes is None and len(node.inputs) > 1 and node.inputs[1]:
            axes = list(self.const(node.inputs[1], "axes"))
        r = self.rank(node.inputs[0])
        axes = sorted(int(v) % r for v in (axes or []))
        if not axes:
            if a.get("noop_with_empty_axes", 0):
                self.acts[node.outputs[0]] = self.act(node.inputs[0])
                return
            axes = list(range(r))
        keep = bool(a.get("keepdims", 1))
        if node.op_type in ("ReduceMean", "ReduceMax") and r == 4 and axes == [2, 3] and 0 not in axes:
            return self.global_pool(node)
        if 0 in axes:
            raise _Unsupported(f"axes={axes} (a reduction over the batch axis)")
        op = {"ReduceMean": "mean", "ReduceSum": "sum", "ReduceMax": "max"}[node.op_type]
        self.add(node, Reduce(op, axes, keep), [self.act(node.inputs[0])], out=node.outputs[0])

    def unary_math(self, node):
        name = {"Neg": "neg", "Abs": "abs", "Sqrt": "sqrt", "Reciprocal": "reciprocal", "Log": "log", "Erf": "erf",
                "Pow": "pow"}[node.op_type]
        p = None
        if name == "pow" and not self.is_const(node.inputs[1]):
            return self.binary(node)
        if name == "pow":
            e = np.asarray(self.const(node.inputs[1], "exponent"))
            if e.size != 1:                     # a tensor of exponents: x ** c, broadcast
                return self.binary(node)
            p = float(e.reshape(-1)[0])
        self.add(node, Unary(name, p), [self.act(node.inputs[0])], out=node.outputs[0])

    def slice(self, node):
        a = node.attrs
        r = self.rank(node.inputs[0])
        if self.m.opset < 10:
            starts, ends = a["starts"], a["ends"]
            axes = a.get("axes", list(range(len(starts))))
            steps = None
        else:
            starts = [int(v) for v in np.asarray(self.const(node.inputs[1], "starts")).reshape(-1)]
            ends = [int(v) for v in np.asarray(self.const(node.inputs[2], "ends")).reshape(-1)]
            ax = self.opt_const(node, 3)
            st = self.opt_const(node, 4)
            axes = list(range(len(starts))) if ax is None else [int(v) for v in np.asarray(ax).reshape(-1)]
            steps = None if st is None else [int(v) for v in np.asarray(st).reshape(-1)]
        axes = [int(v) % r for v in axes]
        if any(abs(v) >= _BIG and abs(v) < 2 ** 62 for v in list(starts) + list(ends)):
            raise _Unsupported("bounds computed from the batch size")
        self.add(node, Slice(starts, ends, axes, steps), [self.act(node.inputs[0])], out=node.outputs[0])

    def split(self, node):
        a = node.attrs
        r = self.rank(node.inputs[0])
        axis = int(a.get("axis", 0)) % r
        size = self.shape(node.inputs[0])[axis]
        parts = a.get("split")
        if parts is None and len(node.inputs) > 1 and node.inputs[1]:
            parts = [int(v) for v in np.asarray(self.const(node.inputs[1], "split")).reshape(-1)]
        if parts is None and not isinstance(size, int):
            raise _Unsupported(f"an equal split of the symbolic axis {axis} (give split sizes or a fixed size)")
        if parts is None:
            n = int(a.get("num_outputs", len(node.outputs)))
            step = -(-size // n)
            parts = [min(step, size - k * step) for k in range(n)]
        start = 0
        for k, (out, p) in enumerate(zip(node.outputs, parts)):
            if out:
                self.add(node, Slice([start], [start + p], [axis]), [self.act(node.inputs[0])], out=out, suffix=f"/{k}")
            start += p

    def lrn(self, node):
        a = node.attrs
        if self.rank(node.inputs[0]) < 3:
            raise _Unsupported("an input without spatial axes")
        layer = LRN(a["size"], a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0))
        self.add(node, layer, [self.act(node.inputs[0])], out=node.outputs[0])

    def batchnorm(self, node):
        a = node.attrs
        if a.get("training_mode", 0):
            raise _Unsupported("training_mode=1")
        if a.get("spatial", 1) != 1:
            raise _Unsupported(f"spatial={a['spatial']}")
        if any(o in self.used for o in node.outputs[1:] if o):
            raise _Unsupported("the training outputs (running statistics)")
        r = self.rank(node.inputs[0])
        if r != 4:
            raise _Unsupported(f"a {r}-D input (only NCHW)")
        scale, bias, mean, var = (self.const(i, "statistic") for i in node.inputs[1:5])
        C = scale.size
        layer = BatchNorm2D(C, eps=a.get("epsilon", 1e-5), momentum=1.0 - float(a.get("momentum", 0.9)))
        layer.params["gamma"] = np.asarray(scale, np.float32).reshape(C).copy()
        layer.params["beta"] = np.asarray(bias, np.float32).reshape(C).copy()
        layer.buffers["running_mean"] = np.asarray(mean, np.float32).reshape(C).copy()
        layer.buffers["running_var"] = np.asarray(var, np.float32).reshape(C).copy()
        self.add(node, layer, [self.act(node.inputs[0])], out=node.outputs[0])

    def unary(self, node):
        a = node.attrs
        op = node.op_type
        if op == "Relu":
            layer = ReLU()
        elif op == "Sigmoid":
            layer = Sigmoid()
        elif op == "LeakyRelu":
            layer = Activation("leaky_relu", alpha=a.get("alpha", 0.01))
        elif op == "Elu":
            layer = Activation("elu", alpha=a.get("alpha", 1.0))
        elif op == "Selu":
            alpha, gamma = a.get("alpha", 1.67326319217681884765625), a.get("gamma", 1.05070102214813232421875)
            if abs(alpha - 1.67326319) > 1e-6 or abs(gamma - 1.05070102) > 1e-6:   # gamma * elu(x, alpha)
                name = self.add(node, Activation("elu", alpha=alpha), [self.act(node.inputs[0])], suffix="/elu")
                layer = Binary("mul", const_shape=())
                layer.buffers["c"] = np.asarray(gamma, np.float32)
                self.add(node, layer, [name], out=node.outputs[0])
                return
            layer = Activation("selu")
        elif op == "Gelu":
            appr = a.get("approximate", "none")
            if appr not in ("none", "tanh"):
                raise _Unsupported(f"approximate={appr!r}")
            layer = Activation("gelu" if appr == "none" else "gelu_tanh")
        elif op == "HardSigmoid":
            layer = HardSigmoid(a.get("alpha", 0.2), a.get("beta", 0.5))
        elif op == "HardSwish":
            layer = HardSigmoid(1 / 6, 0.5, swish=True)
        else:
            layer = Activation({"Tanh": "tanh", "Softplus": "softplus", "Softsign": "softsign", "Exp": "exponential",
                                }[op])
        self.add(node, layer, [self.act(node.inputs[0])], out=node.outputs[0])

    def prelu(self, node):
        slope = np.asarray(self.const(node.inputs[1], "slope"), np.float32)
        r = self.rank(node.inputs[0])
        if self.m.opset < 7 and slope.ndim == 1 and slope.size > 1 and r >= 3:
            slope = slope.reshape((-1,) + (1,) * (r - 2))     # opset 6: one slope per channel
        layer = PRelu(slope.shape)
        layer.params["slope"] = slope.copy()
        self.add(node, layer, [self.act(node.inputs[0])], out=node.outputs[0])

    def softmax(self, node):
        old = self.m.opset < 13
        r = self.rank(node.inputs[0])
        axis = int(node.attrs.get("axis", 1 if old else -1)) % r
        layer = OnnxSoftmax(axis, log=node.op_type == "LogSoftmax", coerce_2d=old and axis != r - 1)
        self.add(node, layer, [self.act(node.inputs[0])], out=node.outputs[0])

    def identity(self, node):
        if node.op_type == "Cast":
            to = self.onnx.helper.tensor_dtype_to_np_dtype(node.attrs["to"]).name
            if to not in _FLOATS:
                raise _Unsupported(f"to={to} on an activation")
        self.acts[node.outputs[0]] = self.act(node.inputs[0])

    def dropout(self, node):
        if len(node.outputs) > 1 and node.outputs[1] in self.used:
            raise _Unsupported("the mask output")
        ratio = node.attrs.get("ratio", 0.5)
        r = self.opt_const(node, 1)
        if r is not None:
            ratio = float(r)
        t = self.opt_const(node, 2)
        if t is not None and bool(t):
            raise _Unsupported("training_mode=True")
        self.add(node, Dropout(ratio), [self.act(node.inputs[0])], out=node.outputs[0])

    def binary(self, node):
        op = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Max": "max", "Min": "min",
              "Sum": "add", "Mean": "add", "Pow": "pow"}[node.op_type]
        ins = [i for i in node.inputs if i]
        if not ins:
            raise _Unsupported("no inputs")
        if len(ins) == 1:
            if node.op_type in ("Sum", "Max", "Min", "Mean"):
                self.acts[node.outputs[0]] = self.act(ins[0])
                return
        legacy_axis = None
        if self.m.opset < 7 and node.op_type in ("Add", "Sub", "Mul", "Div") and node.attrs.get("broadcast", 0):
            legacy_axis = node.attrs.get("axis")
        cur = ins[0]
        cur_node = self.acts.get(cur)
        for k, other in enumerate(ins[1:]):
            last = k == len(ins) - 2 and node.op_type != "Mean"
            out = node.outputs[0] if last else None
            suffix = "" if k == 0 else f"/{k}"
            a_c, b_c = (cur_node is None), self.is_const(other)
            if a_c and b_c:
                raise _Unsupported("two constants")
            if not a_c and not b_c:
                name = self.add(node, Binary(op), [cur_node, self.act(other)], out=out, suffix=suffix)
            else:
                c = np.asarray(self.consts[cur] if a_c else self.consts[other])
                if not np.issubdtype(c.dtype, np.floating):
                    c = c.astype(np.float32)
                x_val = other if a_c else cur
                if legacy_axis is not None and not a_c:
                    r = self.rank(x_val)
                    ax = int(legacy_axis) % r
                    c = c.reshape((1,) * ax + c.shape + (1,) * (r - ax - c.ndim))
                layer = Binary(op, const_shape=c.shape, const_first=a_c)
                layer.buffers["c"] = np.asarray(c, np.float32).copy()
                name = self.add(node, layer, [self.acts[x_val] if a_c else cur_node], out=out, suffix=suffix)
            cur, cur_node = None, name
        if node.op_type == "Mean":
            layer = Binary("mul", const_shape=(), const_first=False)
            layer.buffers["c"] = np.asarray(1.0 / len(ins), np.float32)
            self.add(node, layer, [cur_node], out=node.outputs[0], suffix="/mean")

    def gemm(self, node):
        """Gemm: y = alpha * A' @ B' + beta * C. A constant B with a bias of 1 or N values (or none)
        becomes one ``Dense``; any other form (B or C computed at run time, a C of any shape that
        broadcasts to (M, N)) is composed: Transpose for transA/transB of activations, ``BatchMatMul``
        (or ``MatMul`` for a constant B), then ``Binary`` mul/add for alpha, beta and C."""
        a = node.attrs
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        ta, tb = bool(a.get("transA", 0)), bool(a.get("transB", 0))
        has_c = len(node.inputs) > 2 and bool(node.inputs[2])
        c_const = has_c and self.is_const(node.inputs[2])
        C = np.asarray(self.consts[node.inputs[2]]) if c_const else None
        x = self.act(node.inputs[0])
        if ta:
            x = self.add(node, Transpose([1, 0]), [x], suffix="/transA")
        if self.is_const(node.inputs[1]):
            B = np.asarray(self.const(node.inputs[1], "B"), np.float32)
            W = (B.T if tb else B) * alpha
            K, N = W.shape
            if not has_c or (c_const and (C.size == 1 or (C.size == N and C.shape[-1:] == (N,) and C.ndim <= 2))):
                layer = Dense(K, N, bias=has_c, init="assigned")
                layer.params["W"] = np.ascontiguousarray(W, np.float32)
                if has_c:
                    layer.params["b"] = np.broadcast_to(np.asarray(C, np.float32).reshape(-1) * beta, (N,)).copy()
                self.add(node, layer, [x], out=node.outputs[0])
                return
            layer = Dense(K, N, bias=False, init="assigned")
            layer.params["W"] = np.ascontiguousarray(W, np.float32)
            y = self.add(node, layer, [x], suffix="/matmul")
        else:
            b = self.act(node.inputs[1])
            if tb:
                b = self.add(node, Transpose([1, 0]), [b], suffix="/transB")
            y = self.add(node, BatchMatMul(), [x, b], suffix="/matmul")
            if alpha != 1.0:
                y = self.scale(node, y, alpha, "/alpha")
        if not has_c:
            self.acts[node.outputs[0]] = y
            return
        if c_const:
            layer = Binary("add", const_shape=C.shape)
            layer.buffers["c"] = (np.asarray(C, np.float32) * beta).astype(np.float32)
            self.add(node, layer, [y], out=node.outputs[0], suffix="/C")
            return
        c = self.act(node.inputs[2])
        if beta != 1.0:
            c = self.scale(node, c, beta, "/beta")
        self.add(node, Binary("add"), [y, c], out=node.outputs[0], suffix="/C")

    def scale(self, node, x, factor, suffix):
        """A ``Binary`` mul by the constant ``factor``."""
        layer = Binary("mul", const_shape=())
        layer.buffers["c"] = np.asarray(factor, np.float32)
        return self.add(node, layer, [x], suffix=suffix)

    def matmul(self, node):
        if node.inputs[0] in self.acts and node.inputs[1] in self.acts:
            a, b = self.act(node.inputs[0]), self.act(node.inputs[1])
            one_d = self.rank(node.inputs[0]) == 1 or self.rank(node.inputs[1]) == 1
            if self.rank(node.inputs[0]) == 1:        # NumPy's rule: (K,) is (1, K), the 1 dropped after
                a = self.add(node, Reshape([1, -1]), [a], suffix="/row")
            if self.rank(node.inputs[1]) == 1:        # (K,) is (K, 1), the 1 dropped after
                b = self.add(node, Reshape([-1, 1]), [b], suffix="/column")
            if not one_d:
                self.add(node, BatchMatMul(), [a, b], out=node.outputs[0])
                return
            y = self.add(node, BatchMatMul(), [a, b], suffix="/matmul")
            out = self.shape(node.outputs[0])
            if out is None:
                raise _Unsupported("a 1-D operand with an output shape ONNX shape inference does not give")
            # the product's shape is ``out`` with the 1s put back at the end: the leading axes line up
            self.reshape_to(node, None, out, out, node.outputs[0], src=y)
            return
        if not self.is_const(node.inputs[1]) or node.inputs[0] not in self.acts:
            raise _Unsupported("a constant @ activation product (only activation @ constant or activation @ activation)")
        W = np.asarray(self.const(node.inputs[1]), np.float32)
        if W.ndim != 2:
            raise _Unsupported(f"a {W.ndim}-D right operand (only a 2-D constant)")
        r = self.rank(node.inputs[0])
        layer = Dense(*W.shape, bias=False, init="assigned") if r == 2 else MatMul(*W.shape, init="assigned")
        layer.params["W"] = np.ascontiguousarray(W)
        self.add(node, layer, [self.act(node.inputs[0])], out=node.outputs[0])

    def concat(self, node):
        ins = [i for i in node.inputs if i]
        if any(self.is_const(i) for i in ins):
            raise _Unsupported("an activation concatenated with a constant")
        r = self.rank(ins[0])
        layer = Concat(axis=int(node.attrs["axis"]) % r)
        if len(ins) == 1:
            self.acts[node.outputs[0]] = self.act(ins[0])
            return
        self.add(node, layer, [self.act(i) for i in ins], out=node.outputs[0])

    def flatten(self, node):
        axis = int(node.attrs.get("axis", 1))
        x = node.inputs[0]
        r = self.rank(x)
        axis %= r if axis < 0 else r + 1
        if axis == 1 and r >= 2:
            self.add(node, Flatten(), [self.act(x)], out=node.outputs[0])
            return
        self.shape_op(node)

    def shape_op(self, node):
        """Squeeze / Unsqueeze / Flatten (axis != 1) of an activation: a Reshape to the inferred shape."""
        out = self.shape(node.outputs[0])
        ins = self.shape(node.inputs[0])
        if out is None or ins is None:
            raise _Unsupported("the output shape is unknown to ONNX shape inference")
        self.reshape_to(node, node.inputs[0], out, ins, node.outputs[0])

    def reshape(self, node):
        if node.attrs.get("allowzero", 0):
            t = self.const(node.inputs[1], "shape") if len(node.inputs) > 1 else None
            if t is not None and np.any(np.asarray(t) == 0):
                raise _Unsupported("allowzero=1 with a 0 in the shape")
        if self.m.opset < 5 or "shape" in node.attrs:
            target = list(node.attrs["shape"])
        else:
            target = [int(v) for v in np.asarray(self.const(node.inputs[1], "shape")).reshape(-1)]
        ins = self.shape(node.inputs[0]) or []
        out = []
        for i, v in enumerate(target):
            if v == BATCH_MARKER:
                if i < len(ins) and self._is_batch_dim(ins[i]):
                    out.append(0)
                elif -1 not in target:
                    out.append(-1)
                else:
                    raise _Unsupported(f"a shape {target} holding the batch size and -1 away from axis 0")
            elif abs(v) >= _BIG:
                raise _Unsupported("a shape computed from the batch size by arithmetic")
            else:
                out.append(v)
        self.add(node, Reshape(out), [self.act(node.inputs[0])], out=node.outputs[0])

    def transpose(self, node):
        r = self.rank(node.inputs[0])
        perm = node.attrs.get("perm", list(range(r))[::-1])
        self.add(node, Transpose(perm), [self.act(node.inputs[0])], out=node.outputs[0])

    def clip(self, node):
        a = node.attrs
        if self.m.opset < 11:
            lo, hi = a.get("min"), a.get("max")
        else:
            lo, hi = self.opt_const(node, 1), self.opt_const(node, 2)
            for i in (1, 2):
                if len(node.inputs) > i and node.inputs[i] and not self.is_const(node.inputs[i]):
                    raise _Unsupported("bounds computed at run time")
        for v in (lo, hi):
            if v is not None and np.size(v) != 1:
                raise _Unsupported(f"a bound of shape {np.shape(v)} (only one number)")
        lo = None if lo is None or np.size(lo) == 0 else float(np.asarray(lo).reshape(-1)[0])
        hi = None if hi is None or np.size(hi) == 0 else float(np.asarray(hi).reshape(-1)[0])
        lo = None if lo is not None and lo <= -3.4e38 else lo
        hi = None if hi is not None and hi >= 3.4e38 else hi
        self.add(node, Clip(lo, hi), [self.act(node.inputs[0])], out=node.outputs[0])

    def pad(self, node):
        a = node.attrs
        mode = a.get("mode", "constant")
        if mode not in Pad.MODES:
            raise _Unsupported(f"mode={mode!r}")
        r = self.rank(node.inputs[0])
        if self.m.opset < 11:
            pads, value = list(a.get("pads", a.get("paddings", []))), float(a.get("value", 0.0))
        else:
            pads = [int(v) for v in np.asarray(self.const(node.inputs[1], "pads")).reshape(-1)]
            v = self.opt_const(node, 2)
            value = 0.0 if v is None or np.size(v) == 0 else float(np.asarray(v).reshape(-1)[0])
            axes = self.opt_const(node, 3)
            if axes is not None:
                axes = [int(t) % r for t in np.asarray(axes).reshape(-1)]
                full = [0] * (2 * r)
                for j, ax in enumerate(axes):
                    full[ax], full[r + ax] = pads[j], pads[len(axes) + j]
                pads = full
        self.add(node, Pad(pads, mode, value), [self.act(node.inputs[0])], out=node.outputs[0])

    def shape_of(self, node):
        s = self.shape(node.inputs[0])
        if s is None:
            raise _Unsupported(f"the shape of {node.inputs[0]!r} is unknown")
        dims = []
        for i, d in enumerate(s):
            if isinstance(d, int):
                dims.append(d)
            elif i == 0 and self._is_batch_dim(d):
                dims.append(BATCH_MARKER)
            else:
                raise _Unsupported(f"dimension {i} of {node.inputs[0]!r} is symbolic ({d!r}); give input_shape=")
        arr = np.array(dims, np.int64)
        if node.op_type == "Size":
            self.consts[node.outputs[0]] = np.array(np.prod(arr), np.int64)
            return
        start, end = node.attrs.get("start", 0), node.attrs.get("end")
        self.consts[node.outputs[0]] = arr[start:end]


_NEVER_FOLD = {"Dropout", "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial"}

_HANDLERS = {
    "Conv": _Importer.conv, "ConvTranspose": _Importer.conv_transpose,
    "Gather": _Importer.gather, "Expand": _Importer.expand, "Tile": _Importer.tile,
    "DepthToSpace": _Importer.depth_to_space, "Resize": _Importer.resize, "Upsample": _Importer.resize, "SpaceToDepth": _Importer.depth_to_space,
    "InstanceNormalization": _Importer.normalization, "LayerNormalization": _Importer.normalization,
    "GroupNormalization": _Importer.normalization, "MaxPool": _Importer.pool, "AveragePool": _Importer.pool,
    "GlobalAveragePool": _Importer.global_pool, "GlobalMaxPool": _Importer.global_pool,
    "ReduceMean": _Importer.reduce, "ReduceMax": _Importer.reduce, "ReduceSum": _Importer.reduce,
    "Neg": _Importer.unary_math, "Abs": _Importer.unary_math, "Sqrt": _Importer.unary_math,
    "Reciprocal": _Importer.unary_math, "Log": _Importer.unary_math, "Erf": _Importer.unary_math,
    "Pow": _Importer.unary_math, "Slice": _Importer.slice, "Split": _Importer.split, "LRN": _Importer.lrn,
    "BatchNormalization": _Importer.batchnorm,
    "Relu": _Importer.unary, "Sigmoid": _Importer.unary, "LeakyRelu": _Importer.unary, "Elu": _Importer.unary,
    "Selu": _Importer.unary, "Tanh": _Importer.unary, "Softplus": _Importer.unary, "Softsign": _Importer.unary,
    "Exp": _Importer.unary, "Gelu": _Importer.unary, "HardSigmoid": _Importer.unary, "HardSwish": _Importer.unary,
    "PRelu": _Importer.prelu, "Softmax": _Importer.softmax, "LogSoftmax": _Importer.softmax,
    "Identity": _Importer.identity, "Cast": _Importer.identity, "Dropout": _Importer.dropout,
    "Add": _Importer.binary, "Sub": _Importer.binary, "Mul": _Importer.binary, "Div": _Importer.binary,
    "Max": _Importer.binary, "Min": _Importer.binary, "Sum": _Importer.binary, "Mean": _Importer.binary,
    "Gemm": _Importer.gemm, "MatMul": _Importer.matmul, "Concat": _Importer.concat,
    "Flatten": _Importer.flatten, "Squeeze": _Importer.shape_op, "Unsqueeze": _Importer.shape_op,
    "Reshape": _Importer.reshape, "Transpose": _Importer.transpose, "Clip": _Importer.clip, "Pad": _Importer.pad,
    "Shape": _Importer.shape_of, "Size": _Importer.shape_of,
}
#: The operator types the importer maps onto layers (any operator folds when its inputs are constants).
SUPPORTED = tuple(sorted(_HANDLERS) + ["Constant"])


def graph_from_onnx(m) -> Graph:
    """A Graph from a parsed :class:`minicnn.readers.onnx.OnnxModel`."""
    return _Importer(m, m.metadata.get("minicnn.meta")).run()


def load_onnx(path, input_shape=None) -> Graph:
    """Import the ONNX model file ``path`` as a minicnn ``Graph`` (see the module docstring).

    ``input_shape``: the first input's full shape (e.g. ``[None, 3, 224, 224]``) for files whose
    spatial size is symbolic; None/str entries stay symbolic.
    """
    return graph_from_onnx(read_onnx(path, input_shape=input_shape))
