"""Models: a named-node ``Graph`` (DenseNet, ResNet, Inception) and ``Sequential`` (a chain).

A Graph is a list of named nodes in topological order (a node may only name inputs that already
exist). ``forward`` runs them in order; ``backward`` runs them in reverse, *summing* the
gradients of an output that feeds several nodes (DenseNet's concatenations do this a lot).

Parameters are exposed with dotted names ``"<node>.<param>"`` (node names may hold dots themselves,
like torchvision's ``features.denseblock1.denselayer1.conv1``; param names never do): ``params()`` (trainable: what an
optimizer takes), ``grads()`` (same keys, after ``backward``) and ``state_dict()`` (all params and
buffers, what ``save`` writes). ``save(path)`` writes one ``.npz``: arrays plus the architecture
as JSON (no pickle); ``minicnn.load(path)`` (``minicnn.serialization``) rebuilds the model from it.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

import numpy as np

from . import fileio
from .errors import UsageError, WeightFileError
from .kernels.activation import sigmoid_forward, softmax_forward
from .layers.base import Layer
from .losses import WeightedBCE
from .readers.npz import read_npz
from .runtime import blas_single_thread

FORMAT_VERSION = 2   # 2: meta['preprocessing'] is always Preprocessing.to_dict() (1 is upgraded on read)
OUTPUT_ACTIVATIONS = (None, "sigmoid", "softmax")


@dataclass
class Node:
    name: str
    layer: Layer
    inputs: list = field(default_factory=list)


def apply_activation(z: np.ndarray, activation):
    """Apply a model's ``output_activation`` (None, 'sigmoid' or 'softmax' over axis 1)."""
    if activation is None:
        return z
    if activation == "sigmoid":
        return sigmoid_forward(z)
    if activation == "softmax":
        return softmax_forward(z, axis=1)
    raise UsageError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {activation!r}")


def _stats(a) -> str:
    a = np.asarray(a, dtype=np.float64)
    return f"{a.mean():+.3e} {a.std():.3e} {a.min():+.3e} {a.max():+.3e}"


class Graph:
    """A network of named nodes.

    >>> g = Graph(input_shape=(3, 32, 32))
    >>> g.add("conv", layers.Conv2D(3, 8, 3, padding=1))     # input: the graph input
    >>> g.add("relu", layers.ReLU())                          # input: the previous node
    >>> g.add("skip", layers.Add(), inputs=["conv", "relu"])  # several inputs
    """

    def __init__(self, inputs=("input",), input_shape=None, output_activation=None, name: str | None = None):
        self.input_names = [inputs] if isinstance(inputs, str) else list(inputs)
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)
        self.nodes: dict[str, Node] = {}
        self.output_name: str | None = None
        self.output_activation = output_activation
        self.name = name
        self.meta: dict = {}  # JSON-able facts saved with the model: classes, preprocessing, threshold, ...
        self.activations: dict[str, np.ndarray] = {}
        self.compiled = None  # what compile() recorded (loss, optimizer, metrics); never saved

    # -- building ---------------------------------------------------------------------------------
    @property
    def output_activation(self):
        return self._output_activation

    @output_activation.setter
    def output_activation(self, value):
        if value not in OUTPUT_ACTIVATIONS:
            raise UsageError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {value!r}")
        self._output_activation = value

    def add(self, name: str, layer: Layer, inputs=None) -> str:
        """Add node ``name`` computing ``layer(inputs)``; ``inputs`` defaults to the last node (or the input)."""
        if not isinstance(layer, Layer):
            raise TypeError(f"node {name!r}: expected a Layer, got {type(layer).__name__}")
        if name in self.nodes or name in self.input_names:
            raise UsageError(f"node name {name!r} is already used")
        if inputs is None:
            inputs = [self.output_name or self.input_names[0]]
        elif isinstance(inputs, str):
            inputs = [inputs]
        for i in inputs:
            if i not in self.nodes and i not in self.input_names:
                raise UsageError(f"node {name!r}: unknown input {i!r} (add nodes in topological order)")
        if len(inputs) > 1 and not layer.multi_input:
            raise UsageError(f"node {name!r}: {type(layer).__name__} takes one input, got {inputs}")
        self.nodes[name] = Node(name, layer, list(inputs))
        self.output_name = name
        return name

    def __getitem__(self, name: str) -> Layer:
        return self.nodes[name].layer

    def __len__(self):
        return len(self.nodes)

    @property
    def layers(self) -> list[Layer]:
        return [n.layer for n in self.nodes.values()]

    # -- parameters ---------------------------------------------------------------------------
    def params(self) -> dict[str, np.ndarray]:
        """Trainable params by dotted name (the arrays themselves, for in-place updates)."""
        return {f"{n.name}.{k}": v for n in self.nodes.values() if n.layer.trainable
                for k, v in n.layer.params.items()}

    def grads(self) -> dict[str, np.ndarray]:
        return {f"{n.name}.{k}": v for n in self.nodes.values() if n.layer.trainable
                for k, v in n.layer.grads.items()}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every param (trainable or frozen) and buffer, by dotted name."""
        sd = {}
        for n in self.nodes.values():
            for k, v in n.layer.params.items():
                sd[f"{n.name}.{k}"] = v
            for k, v in n.layer.buffers.items():
                sd[f"{n.name}.{k}"] = v
        return sd

    def load_state_dict(self, sd: dict, strict: bool = True) -> None:
        """Copy arrays in by name, into the model's existing arrays (so an optimizer built before
        still updates the model's real parameters), cast to their dtype.

        strict: names and shapes must match exactly (all problems listed); nothing is copied then.
        A floating-point array of another precision is cast; an int, bool, complex or text array
        for a floating-point weight is refused (``WeightFileError`` naming the keys), never cast.
        """
        own = self.state_dict()
        wrong = sorted(f"{k} ({np.asarray(sd[k]).dtype})" for k in set(own) & set(sd)
                       if own[k].dtype.kind == "f" and np.asarray(sd[k]).dtype.kind != "f")
        if wrong:
            src = getattr(sd, "path", None)
            raise WeightFileError(f"{src + ': ' if src else ''}weights {', '.join(wrong[:20])} are not floating "
                                  "point; refused rather than cast (save them as float32)", path=src,
                                  field=wrong[0].split(" ")[0])
        missing = sorted(set(own) - set(sd))
        unexpected = sorted(set(sd) - set(own))
        misshaped = sorted(f"{k}: file {tuple(np.shape(sd[k]))} vs model {own[k].shape}"
                           for k in set(own) & set(sd) if tuple(np.shape(sd[k])) != own[k].shape)
        if misshaped or (strict and (missing or unexpected)):
            lines = []
            for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
                if items:
                    lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:20]) + (" ..." if len(items) > 20 else ""))
            raise UsageError("weights do not match the model:\n" + "\n".join(lines))
        for n in self.nodes.values():
            for d in (n.layer.params, n.layer.buffers):
                for k in d:
                    key = f"{n.name}.{k}"
                    if key in sd:
                        np.copyto(d[k], np.asarray(sd[key]), casting="unsafe")

    def parameters(self):
        """The trainable arrays, like PyTorch's ``module.parameters()`` (the arrays themselves)."""
        return iter(self.params().values())

    def named_parameters(self):
        """``(dotted name, array)`` of each trainable parameter, like PyTorch's ``named_parameters()``."""
        return iter(self.params().items())

    def num_params(self, trainable_only: bool = False) -> int:
        return int(sum(l.num_params for l in self.layers if l.trainable or not trainable_only))

    def freeze(self, names=None) -> "Graph":
        """Freeze every node, or the nodes named ``names`` and those below them (``"features"`` covers
        ``"features.conv0"``; ``"xception"`` covers ``"xception/block1_conv1"``)."""
        for n in self._select(names):
            n.layer.freeze()
        return self

    def unfreeze(self, names=None) -> "Graph":
        for n in self._select(names):
            n.layer.unfreeze()
        return self

    def _select(self, names):
        if names is None:
            return list(self.nodes.values())
        names = [names] if isinstance(names, str) else list(names)
        def inside(name, p):  # the node itself, or a node below it ("features" -> "features.conv0", "xception/...")
            return name == p or name.startswith(p if p.endswith((".", "/")) else (p + ".", p + "/"))
        chosen = [n for n in self.nodes.values() if any(inside(n.name, p) for p in names)]
        unknown = [p for p in names if not any(inside(n, p) for n in self.nodes)]
        if unknown:
            raise UsageError(f"no node is named {unknown} or lies below it (node names look like {list(self.nodes)[:3]})")
        return chosen

    def astype(self, dtype) -> "Graph":
        for l in self.layers:
            l.astype(dtype)
        return self

    def set_kernel_method(self, method: str) -> "Graph":
        """Run every kernel-backed layer by ``method``: ``"reference"`` (the readable plain loops of
        ``minicnn.kernels``, slow: to step through or check a model) or ``"auto"`` (the fast kernels,
        the default). Sets each such layer's ``method`` (saved with the model when not "auto")."""
        if method not in ("auto", "reference"):
            raise UsageError(f"Graph.set_kernel_method takes 'auto' or 'reference', got {method!r} "
                             f"(a conv strategy is set per layer: Conv2D(..., method=...))")
        for l in self.layers:
            if l.kernel_methods:
                l.set_kernel_method(method)
        return self

    # -- running -------------------------------------------------------------------------------
    def _consumers(self) -> dict[str, int]:
        uses = {name: 0 for name in list(self.input_names) + list(self.nodes)}
        for n in self.nodes.values():
            for i in n.inputs:
                uses[i] += 1
        uses[self.output_name] += 1
        return uses

    def forward(self, x, training: bool = False, keep=(), rngs: dict | None = None, _cache: bool = True,
                timer=None):
        """Run every node; returns the output node's value (before ``output_activation``).

        ``keep``: node names whose outputs are stored in ``self.activations`` (Grad-CAM, traces).
        ``rngs``: ``{node name: np.random.Generator}`` for the layers that draw random numbers in
        training (``layer.uses_rng``, e.g. Dropout); a layer not named uses its own seeded generator.
        ``_cache=False`` with ``training=False`` is the inference path ``predict`` takes: each layer's
        ``infer`` runs (no caches, so no ``backward`` after it), intermediate arrays nobody else
        reads may be overwritten (never the inputs or kept activations).
        BLAS is held at one thread for every pass, forward and backward: the kernels thread in
        Numba, and an idle multi-threaded BLAS spins on the cores they need (a DenseNet121
        training backward at batch 8 measured 1.47 s with BLAS threads free, 1.08 s held).
        ``timer``: a callable ``timer(node, x, y, seconds)`` called after each node's layer call with
        its input(s), its output and the wall time of that call alone (``minicnn.profile``).
        """
        if self.output_name is None:
            raise UsageError("the model has no nodes")
        xs = x if isinstance(x, (list, tuple)) else [x]
        if len(xs) != len(self.input_names):
            raise UsageError(f"model expects {len(self.input_names)} input(s) {self.input_names}, got {len(xs)}")
        values = dict(zip(self.input_names, xs))
        uses = self._consumers()
        keep = set(keep)
        self.activations = {}
        # the threads are Numba's, BLAS runs one per caller (see minicnn.runtime), in every pass
        with blas_single_thread():
            return self._run_nodes(values, uses, keep, training, _cache, xs, rngs or {}, timer)

    def _run_nodes(self, values, uses, keep, training, _cache, inputs, rngs, timer=None):
        infer = not (training or _cache)                   # inference: Layer.infer, no caches
        for node in self.nodes.values():
            args = [values[i] for i in node.inputs]
            x = args if node.layer.multi_input else args[0]
            if timer is not None:
                t0 = time.perf_counter()
            try:
                if infer:
                    y = node.layer.infer(x, overwrite=self._may_overwrite(node, args[0], values, uses, inputs))
                elif node.layer.uses_rng and node.name in rngs:
                    y = node.layer.forward(x, training=training, rng=rngs[node.name])
                else:
                    y = node.layer.forward(x, training=training)
            except ValueError as e:
                raise UsageError(f"node {node.name!r}: {e}") from None
            if timer is not None:
                timer(node, x, y, time.perf_counter() - t0)
            if not _cache:
                node.layer.clear_cache()
            values[node.name] = y
            if node.name in keep:
                self.activations[node.name] = y
            for i in node.inputs:  # free values nobody needs any more
                uses[i] -= 1
                if uses[i] == 0:
                    del values[i]
        return values[self.output_name]

    __call__ = forward

    def _may_overwrite(self, node, x, values, uses, inputs) -> bool:
        """May ``node``'s layer write its output over its (first) input ``x`` (``Layer.infer``)?

        Yes when ``x`` is a float array that owns its memory (not a view, e.g. of a concatenation
        buffer), no later node reads it, and no memory of it is reachable any other way: no other
        live value (the node's other inputs included), caller's input or kept activation is ``x``
        itself (Identity passes arrays through) or a view into it (Flatten returns one).
        """
        name = node.inputs[0]
        if not (isinstance(x, np.ndarray) and x.base is None and x.flags.writeable and x.flags.c_contiguous
                and x.dtype in (np.float32, np.float64) and uses[name] == 1):
            return False
        others = [v for k, v in values.items() if k != name] + list(inputs) + list(self.activations.values())
        return not any(isinstance(v, np.ndarray) and np.may_share_memory(x, v) for v in others)

    def _gradient_flow(self, input_grad: bool, wrt):
        """Which nodes run backward and which must return dx (skip everything below the lowest trainable node)."""
        reach = {name: input_grad for name in self.input_names}  # is dL/d(value) wanted?
        need_dx = {}
        for n in self.nodes.values():
            need_dx[n.name] = any(reach[i] for i in n.inputs)
            wants_grads = n.layer.trainable and bool(n.layer.params)
            reach[n.name] = need_dx[n.name] or wants_grads or n.name == wrt
        return need_dx, reach

    def backward(self, dy, input_grad: bool = True, wrt: str | None = None, record: dict | None = None,
                 timer=None):
        """Backpropagate ``dy`` (gradient w.r.t. the output node's value) through the graph.

        Fills every trainable layer's ``grads``. Returns dL/dx for the graph input (a list for
        several inputs) when ``input_grad``; with ``wrt=NODE`` returns dL/d(NODE's output) and stops there.
        ``record``: a dict that receives dL/d(output) of every node the gradient reaches (``trace``).
        ``timer``: a callable ``timer(node, dy, dx, seconds)`` called after each node's ``backward``
        (``dx`` is None when the node returns none), as in ``forward``.
        """
        need_dx, reach = self._gradient_flow(input_grad, wrt)
        if wrt is not None and wrt not in self.nodes:
            raise UsageError(f"wrt={wrt!r} is not a node of this model")
        with blas_single_thread():                     # as in forward
            return self._backward(dy, input_grad, wrt, record, timer, need_dx, reach)

    def _backward(self, dy, input_grad, wrt, record, timer, need_dx, reach):
        grads = {self.output_name: dy}
        for node in reversed(list(self.nodes.values())):
            g = grads.pop(node.name, None)
            if record is not None and g is not None:
                record[node.name] = g
            if node.name == wrt:
                return g
            if g is None or not reach[node.name]:
                node.layer.clear_cache()
                continue
            if timer is not None:
                t0 = time.perf_counter()
            dx = node.layer.backward(g, need_dx=need_dx[node.name])
            if timer is not None:
                timer(node, g, dx, time.perf_counter() - t0)
            if not need_dx[node.name]:
                continue
            dxs = dx if node.layer.multi_input else [dx]
            for i, d in zip(node.inputs, dxs):
                if d is not None and reach[i]:
                    grads[i] = d if i not in grads else grads[i] + d
        if not input_grad:
            return None
        out = [grads.get(i) for i in self.input_names]
        return out[0] if len(out) == 1 else out

    def works_along_batch(self) -> bool:
        """True when a layer slices, gathers or tiles along axis 0 (its ``batch_axis()``): the output's
        rows then are not one per input row, and ``predict`` cannot run the input in chunks."""
        return any(getattr(n.layer, "batch_axis", lambda: 0)() for n in self.nodes.values())

    def predict(self, x, batch_size: int = 32, *, logits: bool = False, keep=(), timer=None) -> np.ndarray:
        """Inference in batches (no caches kept), then ``output_activation``; returns a NumPy array.

        ``logits=True`` returns the output node's values before ``output_activation`` (for a loss).
        ``keep``: node names whose outputs (of the last batch) are left in ``self.activations``.
        ``meta["fixed_batch"] = B`` (an ONNX graph exported for batch B) runs chunks of exactly B.
        A graph with a layer that works along the batch axis (``works_along_batch``: a Slice,
        Gather or Tile of axis 0, so its output rows are not one per input row) runs the whole input
        in one forward, ``batch_size`` ignored; with a fixed batch B the input must have exactly B rows.
        ``timer``: passed to ``forward`` for every chunk (per-node timings, ``minicnn.profile``).
        """
        x = np.asarray(x)
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float32)
        outs = []
        fixed = self.meta.get("fixed_batch")   # an imported graph built for one batch size runs in chunks of it
        if self.works_along_batch():           # samples are not independent: chunks would change the answer
            if fixed and len(x) != int(fixed):
                raise UsageError(f"this model works along the batch axis and was built for a batch of {fixed}; "
                                 f"predict needs exactly {fixed} rows, got {len(x)}")
            fixed, batch_size = None, max(len(x), 1)
        elif fixed:
            batch_size = int(fixed)
        for start in range(0, len(x), batch_size):
            chunk = x[start:start + batch_size]
            if fixed and len(chunk) < batch_size:     # pad the last chunk, keep its real rows
                pad = np.zeros((batch_size - len(chunk),) + chunk.shape[1:], chunk.dtype)
                z = self.forward(np.concatenate([chunk, pad]), training=False, keep=keep, _cache=False,
                                 timer=timer)[:len(chunk)]
                outs.append(z if logits else apply_activation(z, self.output_activation))
                continue
            z = self.forward(chunk, training=False, keep=keep, _cache=False, timer=timer)
            outs.append(z if logits else apply_activation(z, self.output_activation))
        if not outs:
            raise UsageError("predict got an empty batch")
        return np.concatenate(outs, axis=0)

    def predict_proba(self, x, batch_size: int = 32) -> np.ndarray:
        """The same array as ``predict`` (probabilities after ``output_activation``), scikit-learn's name."""
        return self.predict(x, batch_size)

    def predict_classes(self, x, batch_size: int = 32, threshold=None) -> np.ndarray:
        """Labels: softmax -> the argmax class index (N,); one sigmoid output -> 0/1 (N,) by
        ``threshold`` (default the saved ``meta['threshold']``, else 0.5); several sigmoid outputs ->
        0/1 (N, K), each by its own threshold."""
        p = self.predict(x, batch_size)
        if self.output_activation == "softmax":
            return p.argmax(axis=1)
        thr = self.meta.get("threshold", 0.5) if threshold is None else threshold
        thr = np.broadcast_to(np.asarray(thr, dtype=np.float64).reshape(-1), (p.shape[1],))
        labels = (p >= thr).astype(np.int64)
        return labels[:, 0] if p.shape[1] == 1 else labels

    # -- Keras-style training: the one model -> training dependency (ARCHITECTURE.md) -------------
    def compile(self, loss=None, optimizer="adam", metrics=(), learning_rate=None):
        """Record ``loss`` ("binary_crossentropy", "categorical_crossentropy" or a ``minicnn.losses``
        object), ``optimizer`` ("adam", "adamw", "sgd" or a ``minicnn.optim`` optimizer) and
        ``metrics`` ("auc", "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "pr_auc" or
        ``f(y_true, y_prob)``) for ``fit``/``evaluate``. See ``minicnn.fitting.compile``."""
        from . import fitting
        fitting.compile(self, loss, optimizer, metrics, learning_rate)
        return self

    def fit(self, x, y=None, **kwargs):
        """Train with the one training loop (``minicnn.train.fit``); returns a ``History``.

        ``x``: an array (N, C, H, W) with labels ``y`` (N,) / (N, K) (class indices for softmax), a
        loader (``minicnn.data.ArrayLoader`` / ``BatchLoader``) or a ``minicnn.data.Dataset`` (with
        ``preprocessing=``). Keywords: ``epochs, batch_size, validation_split`` (the last fraction, as
        Keras) or ``validation_data`` ((x, y), a loader or a Dataset), ``class_weight`` (None,
        "balanced" or {class: weight}), ``callbacks`` (``minicnn.callbacks``), ``seed``, ``shuffle``,
        ``verbose``, ``initial_epoch``, and ``loss``/``optimizer``/``metrics`` instead of ``compile``."""
        from . import fitting
        return fitting.fit(self, x, y, **kwargs)

    def evaluate(self, x, y=None, **kwargs) -> dict:
        """The clinical metrics (``minicnn.metrics.evaluate_predictions``: ROC-AUC with its CI,
        sensitivity, specificity, PPV, NPV with Wilson CIs, confusion, ...) at the saved threshold,
        plus ``loss`` when compiled. See ``minicnn.fitting.evaluate``."""
        from . import fitting
        return fitting.evaluate(self, x, y, **kwargs)

    # -- describing ---------------------------------------------------------------------------
    def output_shapes(self, input_shape=None) -> dict[str, tuple]:
        shape = input_shape or self.input_shape
        if shape is None:
            raise UsageError("give input_shape=(C, H, W) (the model has none recorded)")
        shape = tuple(shape)
        shapes = {name: (None,) + (shape if len(self.input_names) == 1 else tuple(shape[k]))
                  for k, name in enumerate(self.input_names)}
        for n in self.nodes.values():
            ins = [shapes[i] for i in n.inputs]
            try:
                shapes[n.name] = tuple(n.layer.output_shape(ins if n.layer.multi_input else ins[0]))
            except NotImplementedError:
                shapes[n.name] = ("?",)
        return shapes

    def summary(self, input_shape=None) -> str:
        """A table of nodes: name, layer, output shape, parameter count; totals at the end."""
        try:
            shapes = self.output_shapes(input_shape)
        except ValueError:
            shapes = {}
        rows = [("node", "layer", "output shape", "params")]
        for n in self.nodes.values():
            inp = "" if n.inputs == [self._previous(n)] else f" <- {', '.join(n.inputs)}"
            rows.append((n.name, repr(n.layer) + inp + ("" if n.layer.trainable or not n.layer.params else " [frozen]"),
                         str(shapes.get(n.name, "?")), f"{n.layer.num_params:,}"))
        widths = [min(max(len(r[i]) for r in rows), 70) for i in range(4)]
        line = "-" * (sum(widths) + 6)
        out = [f"{type(self).__name__}" + (f" '{self.name}'" if self.name else ""), line]
        for k, r in enumerate(rows):
            out.append("  ".join(c[:70].ljust(w) for c, w in zip(r, widths)))
            if k == 0:
                out.append(line)
        out += [line, f"total params: {self.num_params():,}   trainable: {self.num_params(True):,}   "
                      f"output_activation: {self.output_activation}"]
        return "\n".join(out)

    def _previous(self, node: Node):
        names = list(self.nodes)
        k = names.index(node.name)
        return names[k - 1] if k else self.input_names[0]

    def trace(self, x, y=None, loss=None, training: bool = False) -> "Trace":
        """One forward (and backward when ``y`` is given) recording every node's shapes and statistics.

        For learners: ``print(model.trace(x, y))``. ``loss`` defaults to an unweighted
        ``WeightedBCE`` from logits. Returns a ``Trace`` with ``rows`` (dicts) and a table ``str``.
        """
        names = list(self.nodes)
        out = self.forward(x, training=training, keep=names)
        acts = dict(self.activations)
        rows = []
        for n in self.nodes.values():
            ins = [x if i in self.input_names else acts[i] for i in n.inputs]
            rows.append({"node": n.name, "layer": repr(n.layer), "in": [tuple(np.shape(a)) for a in ins],
                         "out": tuple(np.shape(acts[n.name])), "out_stats": _stats(acts[n.name])})
        loss_value = None
        if y is not None:
            if loss is None:
                loss = WeightedBCE()
            loss_value = loss.forward(out, y)
            dy = loss.backward()
            grads_at = {}
            self.backward(dy, record=grads_at)
            for r in rows:
                g = grads_at.get(r["node"])
                r["grad_stats"] = _stats(g) if g is not None else "-"
                layer = self.nodes[r["node"]].layer
                r["param_grads"] = {k: float(np.linalg.norm(v)) for k, v in layer.grads.items()}
        return Trace(rows, loss_value)

    # -- saving --------------------------------------------------------------------------------
    def to_config(self) -> dict:
        return {"format_version": FORMAT_VERSION, "class": type(self).__name__, "name": self.name,
                "inputs": self.input_names, "input_shape": self.input_shape, "output": self.output_name,
                "output_activation": self.output_activation, "meta": self.meta,
                "nodes": [{"name": n.name, "class": type(n.layer).__name__, "config": n.layer.get_config(),
                           "inputs": n.inputs, "trainable": n.layer.trainable} for n in self.nodes.values()]}

    def to_arrays(self) -> dict:
        """What a ``.npz`` holds: ``w:<name>`` weights and buffers, the architecture JSON, the format version."""
        arrays = {f"w:{k}": v for k, v in self.state_dict().items()}
        arrays["architecture"] = np.array(json.dumps(self.to_config()))
        arrays["format_version"] = np.array(FORMAT_VERSION)
        return arrays

    def save(self, path) -> str:
        """Write weights, buffers and the architecture (JSON) to one ``.npz``, atomically."""
        path = os.fspath(path)
        fileio.savez(path, self.to_arrays())
        return path

    def to_onnx(self, path, opset: int | None = None, input_shape=None) -> str:
        """Write the model as an ONNX file (``minicnn.onnx_export``; needs ``pip install 'minicnn[onnx]'``)."""
        from .onnx_export import DEFAULT_OPSET, to_onnx
        return to_onnx(self, path, opset=opset or DEFAULT_OPSET, input_shape=input_shape)

    def load_weights(self, path) -> "Graph":
        """Load weights from a minicnn ``.npz`` strictly (names and shapes must match)."""
        arrays, _ = read_npz(path)
        self.load_state_dict({k[2:]: v for k, v in arrays.items() if k.startswith("w:")})
        return self

    def __repr__(self):
        return f"{type(self).__name__}({len(self.nodes)} nodes, {self.num_params():,} params)"


class Sequential(Graph):
    """A chain of layers; nodes are named ``"0"``, ``"1"``, ... unless given as ``(name, layer)`` pairs."""

    def __init__(self, layers=(), input_shape=None, output_activation=None, name=None):
        super().__init__(input_shape=input_shape, output_activation=output_activation, name=name)
        for item in layers:
            self.append(item)

    def append(self, item) -> "Sequential":
        name, layer = item if isinstance(item, tuple) else (str(len(self.nodes)), item)
        super().add(name, layer)
        return self

    def add(self, name_or_layer, layer=None, inputs=None):
        if isinstance(name_or_layer, Layer):
            return self.append(name_or_layer)
        if inputs not in (None, [self.output_name or self.input_names[0]]):
            raise UsageError("Sequential nodes take the previous node as input; use Graph for branches")
        return self.append((name_or_layer, layer))


class Trace:
    """What ``Graph.trace`` recorded; ``str(trace)`` is a table a learner can read on one screen."""

    def __init__(self, rows, loss):
        self.rows, self.loss = rows, loss

    def __str__(self):
        hdr = f"{'node':<14}{'layer':<34}{'in -> out':<34}{'out mean/std/min/max':<46}"
        has_grad = self.rows and "grad_stats" in self.rows[0]
        if has_grad:
            hdr += "grad mean/std/min/max"
        lines = [hdr, "-" * len(hdr)]
        for r in self.rows:
            shapes = f"{','.join(str(s) for s in r['in'])} -> {r['out']}"
            line = f"{r['node'][:13]:<14}{r['layer'][:33]:<34}{shapes[:33]:<34}{r['out_stats']:<46}"
            if has_grad:
                line += r["grad_stats"]
            lines.append(line)
        if self.loss is not None:
            lines.append(f"loss = {self.loss:.6f}")
        return "\n".join(lines)

    __repr__ = __str__


# -- files ---------------------------------------------------------------------------------------
