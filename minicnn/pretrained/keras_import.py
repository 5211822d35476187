"""Import a Keras model file (architecture + weights) as a minicnn ``Graph`` -- without Keras.

    g = load_keras("model.keras")        # Keras 3 archive: config.json + model.weights.h5
    g = load_keras("model.h5")           # Keras 2 / tf-keras full model: model_config + model_weights
    probs = g.predict(x_nchw)            # what keras' model(x_nhwc, training=False) returns

What the import does
--------------------
* **Layout.** Keras tensors are NHWC, minicnn's NCHW. Conv kernels HWIO -> OIHW
  (``transpose(3, 2, 0, 1)``); depthwise kernels ``(kh, kw, C, dm)`` -> ``(C*dm, 1, kh, kw)`` with
  output channel ``c*dm + m`` (Keras' order); separable pointwise ``(1, 1, C*dm, F)`` ->
  ``(F, C*dm, 1, 1)``; ``Concatenate(axis=-1)`` -> ``Concat(axis=1)``. A ``Flatten`` of an
  (H, W, C) map lists values in NHWC order, minicnn's ``Flatten`` in NCHW order, so the rows of the
  ``Dense`` kernel that consumes it are permuted once (through Dropout/elementwise layers in
  between); any other use of such a flattened tensor raises :class:`KerasImportError`.
* **Graph.** Functional and Sequential models; a nested model (e.g. a frozen ``xception``
  backbone used as a layer) is flattened into the outer graph with its nodes named
  ``"<model>/<layer>"``. A tensor used by several layers and merge layers with several inputs are
  plain graph edges. A *layer* called more than once (shared weights) is not supported.
* **Activations.** ``activation=`` inside Conv2D / DepthwiseConv2D / SeparableConv2D / Dense becomes
  an extra node ``"<layer>/<activation>"``. If the model's output is a softmax or sigmoid node
  nobody else reads, that node is dropped and becomes ``Graph.output_activation``, so the graph
  ends at the logits and ``predict`` returns exactly what Keras returns.
* **Inference mode.** A layer with ``trainable: false`` in the config is frozen
  (``Layer.freeze()``); a frozen ``BatchNorm2D`` always uses its running statistics, even in
  ``forward(training=True)`` -- Keras' rule for frozen batch-norm. A call with ``training=False``
  (e.g. ``backbone(x, training=False)``, Keras' idiom for fine-tuning on top of a frozen
  backbone) keeps every BatchNormalization under it in inference mode: those BatchNorm2D layers
  are frozen too (in minicnn this also freezes their gamma/beta, which Keras would still train
  if the layer were trainable) and a ``Dropout`` under it becomes an ``Identity``. A
  ``Dropout`` layer itself called with ``training=False`` becomes an ``Identity`` in a Keras 2
  file, where that argument is explicit and binding; a Keras 3 file records ``training=False``
  for *every* functional Dropout call (the default of its signature) and Keras 3 overrides it
  with the outer ``training`` at run time, so there the Dropout is kept. (Keras 3 also overrides
  a nested model's recorded ``training=False`` during ``fit``; its BN still runs in inference
  mode when the backbone is frozen, as in the usual transfer-learning setup. minicnn follows the
  recorded intent and freezes the BN in both formats.) ``training=True`` in a call, or any other
  call keyword than ``training``/``mask=None``, is refused.
* **Weights.** Keras 3: ``layers/<key>/vars/<i>``, ``<key>`` = snake_case class name with
  ``_1, _2, ...`` in the container's config order (docs/weight-formats); Keras 2: the
  ``model_weights/<layer>`` groups, a nested model's weights by their ``<layer>/<var>:0`` names.
  Every array's shape is checked and every stored array must be used.

Anything not covered -- an unknown layer class, ``data_format='channels_first'``, ``padding='causal'``,
a regularised-away option such as ``noise_shape`` -- raises :class:`KerasImportError` naming the
layer class, the layer name and the option: never a silently different network.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter

import numpy as np

from ..errors import KerasImportError, MinicnnError
from ..layers.activation import Dropout, ReLU, Sigmoid, Softmax
from ..layers.conv import Conv2D, DepthwiseConv2D, SeparableConv2D
from ..layers.dense import Dense
from ..layers.elementwise import ACTIVATIONS, Activation, Identity, Rescaling
from ..layers.norm import BatchNorm2D
from ..layers.pool import AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D, MaxPool2D
from ..layers.shape import Add, Concat, Flatten, ZeroPad2D
from ..model import Graph
from ..readers.detect import detect_format
from ..readers.keras import read_keras_archive, read_keras_h5_model
from .keras_config import (Keras2Weights, Keras3Weights, entry_name, fail, layer_calls, layer_entries, pair,
                           tensor_refs)
from .layout import depthwise_to_oihw, hwio_to_oihw, nhwc_flatten_rows_to_nchw

__all__ = ["KerasImportError", "load_keras", "SUPPORTED_LAYERS"]


MODEL_CLASSES = ("Functional", "Model", "Sequential")
SUPPORTED_LAYERS = (
    "InputLayer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "BatchNormalization", "Activation",
    "ReLU", "LeakyReLU", "ELU", "Softmax", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
    "GlobalMaxPooling2D", "Dense", "Dropout", "Flatten", "Add", "Concatenate", "ZeroPadding2D",
    "Rescaling", "Identity") + MODEL_CLASSES
_ALIASES = {"Convolution2D": "Conv2D", "SeparableConvolution2D": "SeparableConv2D", "MaxPool2D": "MaxPooling2D",
            "AvgPool2D": "AveragePooling2D", "GlobalAvgPool2D": "GlobalAveragePooling2D",
            "GlobalMaxPool2D": "GlobalMaxPooling2D"}

# Options that only matter for training a Keras model (initialisers, regularisers, constraints,
# dtype policy, build info) or that this importer reads itself; anything else is checked.
_IGNORED = re.compile(r"^(name|trainable|dtype|.*_initializer|.*_regularizer|.*_constraint|"
                      r"build_config|registered_name|module|synchronized|fused|ragged|sparse|optional|"
                      r"seed|input_dtype|batch_size|data_format|batch_shape|batch_input_shape|input_shape)$")


# ------------------------------------------------------------------------------------------ builder
class _Builder:
    """Collects nodes (name, layer, inputs) and the NCHW shape (without N) of every value."""

    def __init__(self):
        self.nodes = []                  # [name, layer, inputs]
        self.shapes = {}                 # value name -> (C, H, W) or (D,), None for unknown H/W
        self.flat = {}                   # value name -> (C, H, W) when it is an NCHW-order flatten of that map
        self.names = set()
        self.inputs = []

    def add_input(self, name, shape):
        self._claim(name)
        self.inputs.append(name)
        self.shapes[name] = shape

    def _claim(self, name):
        if name in self.names:
            raise KerasImportError(f"two nodes would be called '{name}'; rename one of the Keras layers")
        self.names.add(name)

    def add(self, name, layer, inputs, shape, flat=None):
        self._claim(name)
        self.nodes.append([name, layer, list(inputs)])
        self.shapes[name] = shape
        if flat is not None:
            self.flat[name] = flat
        return name


def _conv_len(size, k, s, d, padding):
    if size is None:
        return None
    if padding == "same":
        return -(-size // s)
    return (size - d * (k - 1) - 1) // s + 1


class _Importer:
    def __init__(self, source: str, keras3: bool):
        self.source, self.keras3 = source, keras3
        self.b = _Builder()
        self.where = "the model config"        # the entry being imported, for error messages

    # -- containers -------------------------------------------------------------------------------
    def model(self, entry, weights, prefix, input_values, frozen, inference):
        """Add a Functional/Sequential model's nodes; returns its output value names."""
        if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
            raise KerasImportError(f"a model entry must be an object with a 'class_name' string, got {str(entry)[:60]!r}")
        cls = entry["class_name"]
        self.where = f"Keras model {cls} '{entry_name(entry)}'"
        if cls == "Sequential":
            return self._sequential(entry, weights, prefix, input_values, frozen, inference)
        if cls not in ("Functional", "Model"):
            fail(cls, entry_name(entry), "model class", "only Functional and Sequential models can be imported")
        cfg = entry["config"]
        frozen = frozen or cfg.get("trainable") is False
        # Values by (layer, tensor index). Each layer is called once (checked below), so the node
        # index of a reference is not needed -- and Keras 2 numbers a nested model's first call 1.
        tensors = {}
        in_refs = tensor_refs(cfg["input_layers"])
        for e in cfg["layers"]:
            ecls, name = _ALIASES.get(e["class_name"], e["class_name"]), entry_name(e)
            if ecls == "InputLayer":
                k = [r[0] for r in in_refs].index(name) if name in [r[0] for r in in_refs] else None
                if k is None:
                    fail(ecls, name, "input not listed in the model's input_layers")
                tensors[(name, 0)] = self._input(e, prefix, input_values, k)
                continue
            calls = layer_calls(e)
            if len(calls) != 1:
                fail(ecls, name, f"called {len(calls)} times",
                      "shared layers (one layer applied to several tensors) are not supported")
            refs, kwargs, as_list = calls[0]
            try:
                ins = [tensors[(r[0], r[2])] for r in refs]
            except KeyError as err:
                raise KerasImportError(f"Keras layer {ecls} '{name}': input {err} is not produced by an earlier "
                                       f"layer (config not in topological order?)") from None
            outs = self.layer(e, weights, prefix, ins, kwargs, as_list, frozen, inference)
            for t, v in enumerate(outs):
                tensors[(name, t)] = v
        weights.check_all_used()
        out_refs = tensor_refs(cfg["output_layers"])
        try:
            return [tensors[(r[0], r[2])] for r in out_refs]
        except KeyError as err:
            raise KerasImportError(f"model '{cfg.get('name')}': output {err} is not produced by any layer") from None

    def _sequential(self, entry, weights, prefix, input_values, frozen, inference):
        cfg = entry["config"] if isinstance(entry["config"], dict) else {"layers": entry["config"]}
        frozen = frozen or cfg.get("trainable") is False
        layers = list(layer_entries(entry))
        value = None
        if layers and layers[0]["class_name"] == "InputLayer":
            value = self._input(layers.pop(0), prefix, input_values, 0)
        elif input_values is not None:
            value = input_values[0]
        for e in layers:
            if value is None:                      # the first layer carries the input shape
                shape = e["config"].get("batch_shape") or e["config"].get("batch_input_shape") or \
                    cfg.get("build_input_shape")
                if shape is None:
                    fail(e["class_name"], entry_name(e), "no input shape",
                          "the Sequential model was never built; save it after building it")
                value = self._input({"class_name": "InputLayer", "config": {"name": "input", "batch_shape": shape}},
                                    prefix, None, 0)
            value, = self.layer(e, weights, prefix, [value], {}, False, frozen, inference)
        weights.check_all_used()
        return [value]

    def _input(self, entry, prefix, input_values, k):
        name = entry_name(entry)
        if input_values is not None:               # a nested model's input: the value passed in
            if k >= len(input_values):
                fail("InputLayer", name, "nested model input", f"got {len(input_values)} input(s)")
            return input_values[k]
        c = entry["config"]
        shape = c.get("batch_shape") or c.get("batch_input_shape")
        if shape is None:
            fail("InputLayer", name, "no batch_shape / batch_input_shape")
        dims = list(shape)[1:]
        if len(dims) == 3:
            h, w, ch = dims
            if ch is None:
                fail("InputLayer", name, f"batch_shape={shape}", "the channel count must be known")
            nchw = (int(ch), h, w)
        elif len(dims) == 1 and dims[0] is not None:
            nchw = (int(dims[0]),)
        else:
            fail("InputLayer", name, f"batch_shape={shape}", "only image (H, W, C) and vector inputs are supported")
        if c.get("sparse") or c.get("ragged"):
            fail("InputLayer", name, "sparse/ragged input")
        self.b.add_input(prefix + name, nchw)
        return prefix + name

    # -- one layer --------------------------------------------------------------------------------
    def layer(self, e, weights, prefix, ins, kwargs, as_list, frozen, inference):
        if not isinstance(e, dict) or not isinstance(e.get("class_name"), str):
            raise KerasImportError(f"a layer entry must be an object with a 'class_name' string, got {str(e)[:60]!r}")
        cls, name = _ALIASES.get(e["class_name"], e["class_name"]), entry_name(e)
        self.where = f"Keras layer {cls} '{name}'"
        c = e.get("config") or {}
        if not isinstance(c, dict) or not isinstance(kwargs, dict):
            fail(cls, name, "config", "must be a JSON object")
        node_inference = inference
        for k, v in kwargs.items():
            if k == "training":
                if v is True:
                    fail(cls, name, "called with training=True",
                          "a layer forced into training mode at inference is not reproduced")
                if v is False and not (cls == "Dropout" and self.keras3):
                    node_inference = True
            elif k == "mask":
                if v is not None:
                    fail(cls, name, f"called with mask={v!r}", "masks are not supported")
            else:
                fail(cls, name, f"call keyword {k}={v!r}", "not supported")
        if cls in MODEL_CLASSES:
            sub = weights.child(e)
            return self.model(e, sub, f"{prefix}{name}/", ins, frozen or c.get("trainable") is False, node_inference)
        if cls not in SUPPORTED_LAYERS:
            fail(cls, name, "layer class not supported",
                  f"supported: {', '.join(s for s in SUPPORTED_LAYERS if s not in MODEL_CLASSES)}")
        self._check_options(cls, name, c)
        frozen_here = frozen or c.get("trainable") is False
        return [self._map(cls, name, c, weights, prefix + name, ins, as_list, frozen_here, node_inference)]

    def _check_options(self, cls, name, c):
        df = c.get("data_format")
        if df not in (None, "channels_last"):
            fail(cls, name, f"data_format={df!r}", "only channels_last is supported")
        if c.get("dtype") not in (None, "float32") and not isinstance(c.get("dtype"), dict):
            fail(cls, name, f"dtype={c.get('dtype')!r}", "only float32 layers are supported")
        if isinstance(c.get("dtype"), dict):
            policy = (c["dtype"].get("config") or {}).get("name")
            if policy not in (None, "float32"):
                fail(cls, name, f"dtype policy {policy!r}", "only float32 layers are supported")

    def _one_input(self, cls, name, ins, as_list):
        if len(ins) != 1 or as_list:
            fail(cls, name, f"{len(ins)} inputs", "this layer takes one tensor")
        v = ins[0]
        if v in self.b.flat and cls not in ("Dense", "Dropout", "Activation", "ReLU", "LeakyReLU", "ELU",
                                            "Identity", "Rescaling", "Flatten"):
            fail(cls, name, "input is a Flatten of an image tensor",
                  "only Dense (and elementwise layers before it) can follow Flatten")
        return v, self.b.shapes[v]

    def _need_image(self, cls, name, shape):
        if len(shape) != 3:
            fail(cls, name, f"input of rank {len(shape) + 1}", "this layer needs an (N, H, W, C) image tensor")

    def _keys(self, c, cls, name, allowed):
        extra = sorted(k for k in c if k not in allowed and not _IGNORED.match(k)
                       and c[k] not in (None, False))     # an option switched off changes nothing
        if extra:
            fail(cls, name, f"option {extra[0]}={c[extra[0]]!r}", "not supported by the importer")

    def _map(self, cls, name, c, weights, node, ins, as_list, frozen, inference):
        b = self.b
        if cls in ("Add", "Concatenate"):
            if len(ins) < 2:
                fail(cls, name, f"{len(ins)} input(s)", "merge layers need at least 2")
            for v in ins:
                if v in b.flat:
                    fail(cls, name, "input is a Flatten of an image tensor", "only Dense can follow Flatten")
            shapes = [b.shapes[v] for v in ins]
            if cls == "Add":
                self._keys(c, cls, name, set())
                if any(len(s) != len(shapes[0]) or any(x is not None and y is not None and x != y
                                                      for x, y in zip(s, shapes[0])) for s in shapes):
                    fail(cls, name, f"input shapes {shapes}", "Add needs equal shapes (no broadcasting)")
                return b.add(node, Add(), ins, shapes[0])
            self._keys(c, cls, name, {"axis"})
            rank = len(shapes[0]) + 1
            axis = c.get("axis", -1)
            if axis not in (-1, rank - 1):
                fail(cls, name, f"axis={axis}", "only the channel (last) axis is supported")
            out = (sum(s[0] for s in shapes),) + tuple(shapes[0][1:])
            return b.add(node, Concat(axis=1), ins, out)

        v, shape = self._one_input(cls, name, ins, as_list)
        flat = b.flat.get(v)

        if cls in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D"):
            return self._conv(cls, name, c, weights, node, v, shape, frozen)
        if cls == "Dense":
            return self._dense(cls, name, c, weights, node, v, shape, flat, frozen)
        if cls == "BatchNormalization":
            return self._batch_norm(cls, name, c, weights, node, v, shape, frozen or inference)
        if cls in ("Flatten", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "MaxPooling2D", "AveragePooling2D",
                   "ZeroPadding2D"):
            return self._spatial(cls, name, c, node, v, shape, flat)
        return self._elementwise(cls, name, c, node, v, shape, flat, inference)

    def _dense(self, cls, name, c, weights, node, v, shape, flat, frozen):
        b = self.b
        self._keys(c, cls, name, {"units", "activation", "use_bias", "lora_rank", "lora_alpha"})
        if c.get("lora_rank"):
            fail(cls, name, f"lora_rank={c['lora_rank']}")
        if len(shape) != 1:
            fail(cls, name, f"input of rank {len(shape) + 1}", "Dense is only supported on (N, D) tensors")
        units, bias = int(c["units"]), bool(c.get("use_bias", True))
        w = weights.get(cls, name, ["kernel", "bias"] if bias else ["kernel"])
        kernel = self._shaped(w["kernel"], (shape[0], units), cls, name, "kernel")
        layer = Dense(shape[0], units, bias=bias)
        # rows in NHWC-flatten order -> NCHW-flatten order
        layer.params["W"] = kernel if flat is None else nhwc_flatten_rows_to_nchw(kernel, flat)
        if bias:
            layer.params["b"] = self._shaped(w["bias"], (units,), cls, name, "bias")
        out = b.add(node, self._freeze(layer, frozen), [v], (units,))
        return self._activation(c.get("activation"), cls, name, out, node, (units,))

    def _batch_norm(self, cls, name, c, weights, node, v, shape, frozen):
        """A BatchNormalization; ``frozen`` also when it runs in inference mode (``training=False``)."""
        b = self.b
        self._keys(c, cls, name, {"axis", "momentum", "epsilon", "center", "scale", "renorm",
                                  "renorm_clipping", "renorm_momentum", "virtual_batch_size", "adjustment"})
        for opt in ("renorm", "virtual_batch_size", "adjustment"):
            if c.get(opt):
                fail(cls, name, f"{opt}={c[opt]!r}")
        self._need_image(cls, name, shape)
        axis = c.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        if axis not in (-1, 3):
            fail(cls, name, f"axis={c.get('axis')!r}", "only the channel (last) axis is supported")
        center, scale = bool(c.get("center", True)), bool(c.get("scale", True))
        names = (["gamma"] if scale else []) + (["beta"] if center else []) + ["moving_mean", "moving_variance"]
        w = weights.get(cls, name, names)
        C = shape[0]
        layer = BatchNorm2D(C, eps=float(c.get("epsilon", 1e-3)), momentum=float(f"{1.0 - float(c.get('momentum', 0.99)):.12g}"),
                            center=center, scale=scale)
        if scale:
            layer.params["gamma"] = self._shaped(w["gamma"], (C,), cls, name, "gamma")
        if center:
            layer.params["beta"] = self._shaped(w["beta"], (C,), cls, name, "beta")
        layer.buffers["running_mean"] = self._shaped(w["moving_mean"], (C,), cls, name, "moving_mean")
        layer.buffers["running_var"] = self._shaped(w["moving_variance"], (C,), cls, name, "moving_variance")
        return b.add(node, self._freeze(layer, frozen), [v], shape)

    def _elementwise(self, cls, name, c, node, v, shape, flat, inference):
        """Activations, Identity, Dropout, Rescaling: one input, the same shape out."""
        b = self.b
        if cls == "Activation":
            self._keys(c, cls, name, {"activation"})
            act = _act_name(c.get("activation"))
            layer = self._act_layer(act, cls, name, shape)
            return b.add(node, layer or Identity(), [v], shape, flat)
        if cls == "ReLU":
            self._keys(c, cls, name, {"max_value", "negative_slope", "threshold"})
            mx, slope, th = c.get("max_value"), float(c.get("negative_slope") or 0.0), float(c.get("threshold") or 0.0)
            if th != 0.0:
                fail(cls, name, f"threshold={th}")
            if mx is None and slope == 0.0:
                layer = ReLU()
            elif mx is not None and float(mx) == 6.0 and slope == 0.0:
                layer = Activation("relu6")
            elif mx is None:
                layer = Activation("leaky_relu", alpha=slope)
            else:
                fail(cls, name, f"max_value={mx}, negative_slope={slope}", "only ReLU, ReLU6 and leaky ReLU")
            return b.add(node, layer, [v], shape, flat)
        if cls == "LeakyReLU":
            self._keys(c, cls, name, {"negative_slope", "alpha"})
            alpha = c.get("negative_slope", c.get("alpha", 0.3))
            return b.add(node, Activation("leaky_relu", alpha=float(alpha)), [v], shape, flat)
        if cls == "ELU":
            self._keys(c, cls, name, {"alpha"})
            return b.add(node, Activation("elu", alpha=float(c.get("alpha", 1.0))), [v], shape, flat)
        if cls == "Softmax":
            self._keys(c, cls, name, {"axis"})
            axis = c.get("axis", -1)
            axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
            if axis not in (-1, len(shape)):
                fail(cls, name, f"axis={c.get('axis')!r}", "only the last axis is supported")
            return b.add(node, Softmax(axis=1), [v], shape, flat)
        if cls == "Identity":
            self._keys(c, cls, name, set())
            return b.add(node, Identity(), [v], shape, flat)
        if cls == "Dropout":
            self._keys(c, cls, name, {"rate", "noise_shape"})
            if c.get("noise_shape") is not None:
                fail(cls, name, f"noise_shape={c['noise_shape']!r}")
            rate = float(c.get("rate", 0.0))
            layer = Identity() if (inference or rate == 0.0) else Dropout(rate)
            return b.add(node, layer, [v], shape, flat)
        if cls == "Rescaling":
            self._keys(c, cls, name, {"scale", "offset"})
            scale, offset = c.get("scale", 1.0), c.get("offset", 0.0)
            for what, val in (("scale", scale), ("offset", offset)):
                if isinstance(val, dict):
                    fail(cls, name, f"{what}={val!r}", "only numbers or per-channel lists")
                if isinstance(val, list) and len(val) not in (1, shape[0]):
                    fail(cls, name, f"{what} with {len(val)} values", f"the input has {shape[0]} channels")
            if flat is not None and (isinstance(scale, list) or isinstance(offset, list)):
                fail(cls, name, "per-channel values after Flatten")
            unwrap = lambda t: t[0] if isinstance(t, list) and len(t) == 1 else t   # noqa: E731
            return b.add(node, Rescaling(unwrap(scale), unwrap(offset)), [v], shape, flat)


    def _spatial(self, cls, name, c, node, v, shape, flat):
        """Flatten, global and windowed pooling, zero padding."""
        b = self.b
        if cls == "Flatten":
            self._keys(c, cls, name, set())
            if len(shape) == 1:
                return b.add(node, Identity(), [v], shape, flat)
            if any(s is None for s in shape):
                fail(cls, name, f"input of unknown size {shape}", "Flatten needs a fixed input size")
            C, H, W = shape
            return b.add(node, Flatten(), [v], (C * H * W,), flat=(C, H, W) if H * W > 1 else None)
        if cls in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
            self._keys(c, cls, name, {"keepdims"})
            if c.get("keepdims"):
                fail(cls, name, "keepdims=True")
            self._need_image(cls, name, shape)
            layer = GlobalAvgPool2D() if cls == "GlobalAveragePooling2D" else GlobalMaxPool2D()
            return b.add(node, layer, [v], (shape[0],))
        if cls in ("MaxPooling2D", "AveragePooling2D"):
            self._keys(c, cls, name, {"pool_size", "strides", "padding"})
            self._need_image(cls, name, shape)
            k = pair(c.get("pool_size", 2))
            s = pair(c["strides"]) if c.get("strides") is not None else k
            pad = str(c.get("padding", "valid")).lower()
            if pad not in ("same", "valid"):
                fail(cls, name, f"padding={pad!r}")
            layer = MaxPool2D(k, s, pad) if cls == "MaxPooling2D" else AvgPool2D(k, s, pad, count_include_pad=False)
            out = (shape[0], _conv_len(shape[1], k[0], s[0], 1, pad), _conv_len(shape[2], k[1], s[1], 1, pad))
            return b.add(node, layer, [v], out)
        if cls == "ZeroPadding2D":
            self._keys(c, cls, name, {"padding"})
            self._need_image(cls, name, shape)
            p = c.get("padding", 1)
            if isinstance(p, int):
                t = bt = l = r = p
            elif isinstance(p[0], int):
                t = bt = int(p[0])
                l = r = int(p[1])
            else:
                (t, bt), (l, r) = p
            add = lambda s, a: None if s is None else s + a   # noqa: E731
            return b.add(node, ZeroPad2D((t, bt, l, r)), [v], (shape[0], add(shape[1], t + bt), add(shape[2], l + r)))
        fail(cls, name, "layer class not supported")       # pragma: no cover (listed but unmapped)

    def _conv(self, cls, name, c, weights, node, v, shape, frozen):
        allowed = {"filters", "kernel_size", "strides", "padding", "dilation_rate", "groups", "activation",
                   "use_bias", "depth_multiplier", "data_format", "lora_rank", "lora_alpha"}
        self._keys(c, cls, name, allowed)
        if c.get("lora_rank"):
            fail(cls, name, f"lora_rank={c['lora_rank']}")
        self._need_image(cls, name, shape)
        C = shape[0]
        k, s, d = pair(c["kernel_size"]), pair(c.get("strides", 1)), pair(c.get("dilation_rate", 1))
        pad = str(c.get("padding", "valid")).lower()
        if pad not in ("same", "valid"):
            fail(cls, name, f"padding={pad!r}", "only 'same' and 'valid'")
        bias = bool(c.get("use_bias", True))
        if cls == "Conv2D":
            F, G = int(c["filters"]), int(c.get("groups", 1) or 1)
            w = weights.get(cls, name, ["kernel", "bias"] if bias else ["kernel"])
            kernel = self._shaped(w["kernel"], (k[0], k[1], C // G, F), cls, name, "kernel")
            layer = Conv2D(C, F, k, stride=s, padding=pad, dilation=d, groups=G, bias=bias)
            layer.params["W"] = hwio_to_oihw(kernel)
        elif cls == "DepthwiseConv2D":
            dm = int(c.get("depth_multiplier", 1))
            F = C * dm
            w = weights.get(cls, name, ["depthwise_kernel", "bias"] if bias else ["depthwise_kernel"])
            kernel = self._shaped(w["depthwise_kernel"], (k[0], k[1], C, dm), cls, name, "depthwise kernel")
            layer = DepthwiseConv2D(C, k, stride=s, padding=pad, dilation=d, depth_multiplier=dm, bias=bias)
            layer.params["W"] = depthwise_to_oihw(kernel)
        else:
            dm, F = int(c.get("depth_multiplier", 1)), int(c["filters"])
            names = ["depthwise_kernel", "pointwise_kernel"] + (["bias"] if bias else [])
            w = weights.get(cls, name, names)
            dk = self._shaped(w["depthwise_kernel"], (k[0], k[1], C, dm), cls, name, "depthwise kernel")
            pk = self._shaped(w["pointwise_kernel"], (1, 1, C * dm, F), cls, name, "pointwise kernel")
            layer = SeparableConv2D(C, F, k, stride=s, padding=pad, dilation=d, depth_multiplier=dm, bias=bias)
            layer.params["depthwise_W"] = depthwise_to_oihw(dk)
            layer.params["pointwise_W"] = hwio_to_oihw(pk)
        if bias:
            layer.params["b"] = self._shaped(w["bias"], (F,), cls, name, "bias")
        out_shape = (F, _conv_len(shape[1], k[0], s[0], d[0], pad), _conv_len(shape[2], k[1], s[1], d[1], pad))
        out = self.b.add(node, self._freeze(layer, frozen), [v], out_shape)
        return self._activation(c.get("activation"), cls, name, out, node, out_shape)

    # -- helpers ----------------------------------------------------------------------------------
    @staticmethod
    def _freeze(layer, frozen):
        return layer.freeze() if frozen else layer

    @staticmethod
    def _shaped(a, shape, cls, name, what):
        a = np.asarray(a)
        if tuple(a.shape) != tuple(shape):
            fail(cls, name, f"{what} of shape {tuple(a.shape)}", f"the config implies {tuple(shape)}")
        if not np.issubdtype(a.dtype, np.floating):
            fail(cls, name, f"{what} of dtype {a.dtype}", "expected floating-point weights")
        return np.ascontiguousarray(a, dtype=np.float32)

    def _act_layer(self, act, cls, name, shape):
        """A Layer for a Keras activation name (None for linear)."""
        if act in ("linear", None):
            return None
        if act == "relu":
            return ReLU()
        if act == "sigmoid":
            return Sigmoid()
        if act == "softmax":
            return Softmax(axis=1)
        key = {"silu": "swish"}.get(act, act)
        if key not in ACTIVATIONS:
            fail(cls, name, f"activation={act!r}",
                  f"supported: linear, relu, sigmoid, softmax, {', '.join(a for a in ACTIVATIONS if a != 'gelu_tanh')}")
        return Activation(key)

    def _activation(self, act, cls, name, out, node, shape):
        layer = self._act_layer(_act_name(act), cls, name, shape)
        if layer is None:
            return out
        return self.b.add(f"{node}/{_act_name(act)}", layer, [out], shape)


def _act_name(act):
    """A Keras activation as saved: a string, or (Keras 3) a serialized function dict."""
    if act is None or isinstance(act, str):
        return act
    if isinstance(act, dict):
        inner = act.get("config")
        if isinstance(inner, str):
            return inner
        if isinstance(inner, dict) and isinstance(inner.get("name"), str):
            return inner["name"]
    return json.dumps(act)[:80]


# ------------------------------------------------------------------------------------------ entry point
def _read(path):
    fmt = detect_format(path)
    if fmt == "keras_archive":
        config, tree = read_keras_archive(path)
        return config, lambda entry: Keras3Weights(tree, layer_entries(entry), f"{path}!model.weights.h5"), True
    if fmt == "keras_h5_model":
        config, layers = read_keras_h5_model(path)
        if config is None:
            raise KerasImportError(f"{path}: a Keras HDF5 file without a 'model_config' attribute "
                                   f"(weights only): build the architecture in code and load the weights instead",
                                   path=path)
        groups = {g.name: g for g in layers}
        return config, lambda entry: Keras2Weights(groups, path), False
    if fmt == "keras_h5":
        raise KerasImportError(f"{path}: a Keras weights-only HDF5 file (no model config inside); "
                               f"load_keras needs a full model (model.save(...)) or a .keras archive")
    raise KerasImportError(f"{path}: a {fmt} file, not a Keras model (.keras archive or full-model .h5)")


def load_keras(path) -> Graph:
    """Import a Keras model file (``.keras`` or full-model ``.h5``) as a minicnn ``Graph``.

    The graph takes NCHW float32 input (``x_nhwc.transpose(0, 3, 1, 2)``), preprocessed as the
    Keras model expects (a ``.keras`` file carries no preprocessing unless it has a Rescaling
    layer). ``predict`` returns what ``keras_model(x, training=False)`` returns. ``model.meta``
    records ``source='keras'``, the file name, ``input_layout='NCHW'`` and the ``input_shape``.
    Raises :class:`KerasImportError` (a ``ValueError``) for anything it cannot reproduce exactly.
    """
    path = os.fspath(path)
    config, make_weights, keras3 = _read(path)
    if not isinstance(config, dict) or "class_name" not in config:
        raise KerasImportError(f"{path}: the model config has no 'class_name'", path=path)
    imp = _Importer(path, keras3=keras3)
    try:
        outputs = imp.model(config, make_weights(config), "", None, False, False)
        return _finish(path, config, imp, outputs)
    except MinicnnError as e:
        if str(e).startswith(path):
            raise
        raise KerasImportError(f"{path}: {e}", path=path, field=getattr(e, "field", None)) from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError, RecursionError) as e:
        # the config is untrusted JSON: any other shape than Keras writes ends here, named
        raise KerasImportError(f"{path}: {imp.where}: malformed config ({type(e).__name__}: {e})", path=path,
                               field=imp.where) from None


def _finish(path, config, imp, outputs) -> Graph:
    if len(outputs) != 1:
        raise KerasImportError(f"{path}: the model has {len(outputs)} outputs; minicnn graphs have one")
    b = imp.b
    out = outputs[0]
    if out in b.inputs:
        raise KerasImportError(f"{path}: the model's output is its input (no layers)")
    if out in b.flat:
        raise KerasImportError(f"{path}: the model's output is a Flatten of an image tensor (NHWC order); "
                               f"not supported")
    output_activation = None
    consumers = Counter(i for _, _, ins in b.nodes for i in ins)
    by_name = {n[0]: n for n in b.nodes}
    last = by_name[out]
    if isinstance(last[1], (Sigmoid, Softmax)) and consumers[out] == 0 and last[2][0] not in b.inputs \
            and (isinstance(last[1], Sigmoid) or last[1].axis == 1):
        output_activation = "sigmoid" if isinstance(last[1], Sigmoid) else "softmax"
        b.nodes.remove(last)
        out = last[2][0]
    # keep only the nodes the output needs (the dropped softmax/sigmoid node is no longer needed)
    needed, stack = set(), [out]
    while stack:
        n = stack.pop()
        if n in needed or n in b.inputs:
            continue
        needed.add(n)
        stack.extend(by_name[n][2])
    shape = b.shapes[b.inputs[0]] if len(b.inputs) == 1 else None
    known = shape is not None and all(s is not None for s in shape)
    g = Graph(inputs=tuple(b.inputs), input_shape=shape if known else None, output_activation=output_activation,
              name=config.get("config", {}).get("name") if isinstance(config.get("config"), dict) else None)
    for name, layer, ins in b.nodes:
        if name in needed:
            g.add(name, layer, ins)
    g.output_name = out
    g.meta.update({"source": "keras", "keras_file": os.path.basename(path), "input_layout": "NCHW",
                   "input_shape": list(shape) if shape is not None else [list(b.shapes[i]) for i in b.inputs]})
    return g
