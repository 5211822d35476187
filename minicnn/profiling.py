"""``minicnn.profile``: where the time of a pass goes, per node and per layer type, time, FLOPs, GFLOP/s and share.

    >>> p = minicnn.profile(model, x)                   # inference: Graph.predict, one batch
    >>> print(p)                                        # by layer type, then the slowest nodes
    >>> p = minicnn.profile(model, x, training=True)    # + training forward and backward

The times are measured inside the one general loop (``Graph.predict`` / ``forward`` / ``backward``
with their ``timer=`` hook): each node's layer call is timed on its own, so the profile sees exactly
the kernels a normal pass runs (there is no second forward implementation). Each node's time is
the median over ``repeats`` passes after ``warmup`` untimed ones (Numba compiles on the first).
A node's *share* is its time over the sum of all nodes' times; the pass's wall time (what
``predict`` took) is reported beside it, the difference being the loop's own bookkeeping.

FLOPs are counted from each layer's geometry and the shapes seen in the pass (multiply and add
count as two):

    conv          2 * N * OH * OW * F * C/G * KH * KW   (separable: depthwise + pointwise)
    dense/matmul  2 * rows * in * out
    batch norm    2 per output value (a scale and a shift)
    activation    1 per output value; add: (inputs - 1) per output value
    window pool   KH * KW per output value; global / adaptive pool: 1 per input value
    layers that only move data (concat, flatten, reshape, pad, identity, dropout at inference): 0

The backward of a layer with weights costs its forward once for dW and once more for dx (when the
node returns dx); any other layer's backward is counted as its forward. These counts are what
GFLOP/s means here; compare them with the machine's float32 matmul rate to see how far a kernel is
from the ceiling.

A training profile runs ``forward(training=True)`` and ``backward`` of ``sum(output) / N`` (the
loss does not change the time), and puts the model's parameters and buffers (batch-norm running
statistics) back afterwards; the layers' ``grads`` hold the last pass's gradients.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .errors import UsageError
from .layers.base import Layer
from .model import Graph

__all__ = ["profile", "Profile", "NodeProfile", "TypeProfile", "layer_flops", "layer_kind"]

_MOVES_DATA = {"Concat", "BufferedConcat", "Flatten", "Reshape", "Transpose", "Slice", "Pad", "ZeroPad2D",
               "Identity", "Dropout"}


def _shape(a):
    return tuple(int(s) for s in np.shape(a))


def _size(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def layer_kind(layer: Layer) -> str:
    """The group a node is counted in: the layer class, with the kernel size for convs
    (``"Conv2D 3x3"``, ``"Conv2D 1x1"``, ``"Conv2D 7x7 s2"``) and window pools."""
    name = type(layer).__name__
    k = getattr(layer, "kernel_size", None)
    if k is None:
        return name
    stride = tuple(getattr(layer, "stride", (1, 1)))
    s = "" if stride == (1, 1) else f" s{stride[0]}" if stride[0] == stride[1] else f" s{stride[0]}x{stride[1]}"
    return f"{name} {k[0]}x{k[1]}{s}"


def layer_flops(layer: Layer, in_shapes: list[tuple], out_shape: tuple) -> int:
    """Forward FLOPs of ``layer`` for inputs of ``in_shapes`` giving ``out_shape`` (module doc)."""
    name = type(layer).__name__
    out = _size(out_shape)
    if "W" in layer.params and layer.params["W"].ndim == 4 or name == "SeparableConv2D":
        N, F, OH, OW = out_shape
        KH, KW = layer.kernel_size
        if name == "SeparableConv2D":
            mid = layer.params["depthwise_W"].shape[0]
            return 2 * N * OH * OW * (mid * KH * KW + F * mid)
        return 2 * N * OH * OW * F * (layer.in_channels // layer.groups) * KH * KW
    if name in ("Dense", "MatMul"):
        rows = out // max(layer.out_features, 1)
        return 2 * rows * layer.in_features * layer.out_features
    if name in _MOVES_DATA:
        return 0
    if name == "BatchNorm2D":
        return 2 * out
    if name in ("MaxPool2D", "AvgPool2D"):
        return out * layer.kernel_size[0] * layer.kernel_size[1]
    if name in ("GlobalAvgPool2D", "GlobalMaxPool2D", "AdaptiveAvgPool2D", "Reduce"):
        return _size(in_shapes[0])
    if layer.multi_input:
        return (len(in_shapes) - 1) * out
    return out                                                  # an element-wise layer


def _backward_flops(layer: Layer, forward_flops: int, returned_dx: bool) -> int:
    if "W" in layer.params or "pointwise_W" in layer.params:
        return forward_flops * (1 + int(returned_dx))
    return forward_flops if returned_dx else 0


@dataclass
class NodeProfile:
    """One node: its layer, shapes, FLOPs and median seconds (inference; training when profiled)."""
    node: str
    kind: str
    layer: str
    in_shapes: list
    out_shape: tuple
    flops: int
    seconds: float
    share: float = 0.0
    train_forward_seconds: float | None = None
    backward_seconds: float | None = None
    backward_flops: int | None = None
    train_share: float | None = None

    @property
    def gflops_per_s(self) -> float:
        return self.flops / self.seconds / 1e9 if self.seconds > 0 else 0.0


@dataclass
class TypeProfile:
    """The nodes of one kind, summed."""
    kind: str
    count: int
    flops: int
    seconds: float
    share: float
    train_seconds: float | None = None          # training forward + backward
    train_flops: int | None = None
    train_share: float | None = None

    @property
    def gflops_per_s(self) -> float:
        return self.flops / self.seconds / 1e9 if self.seconds > 0 else 0.0


@dataclass
class Profile:
    """What :func:`profile` measured. ``nodes`` follow the graph's order; ``by_type()`` sums them."""
    model: str
    input_shape: tuple
    repeats: int
    nodes: list = field(default_factory=list)
    wall_seconds: float = 0.0                     # the median predict() call
    train_wall_seconds: float | None = None       # the median forward(training=True) + backward

    @property
    def seconds(self) -> float:
        return float(sum(n.seconds for n in self.nodes))

    @property
    def flops(self) -> int:
        return int(sum(n.flops for n in self.nodes))

    @property
    def training(self) -> bool:
        return self.train_wall_seconds is not None

    def by_type(self) -> list[TypeProfile]:
        """Per layer kind, slowest first (by the inference time)."""
        groups: dict[str, list[NodeProfile]] = {}
        for n in self.nodes:
            groups.setdefault(n.kind, []).append(n)
        out = []
        for kind, ns in groups.items():
            t = TypeProfile(kind, len(ns), int(sum(n.flops for n in ns)), float(sum(n.seconds for n in ns)),
                            float(sum(n.share for n in ns)))
            if self.training:
                t.train_seconds = float(sum(n.train_forward_seconds + n.backward_seconds for n in ns))
                t.train_flops = int(sum(n.flops + n.backward_flops for n in ns))
                t.train_share = float(sum(n.train_share for n in ns))
            out.append(t)
        return sorted(out, key=lambda t: -t.seconds)

    def to_dict(self) -> dict:
        """JSON-able: totals, per type and per node."""
        def row(obj):
            d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(obj).items()}
            d["gflops_per_s"] = obj.gflops_per_s
            return d
        return {"model": self.model, "input_shape": list(self.input_shape), "repeats": self.repeats,
                "wall_seconds": self.wall_seconds, "node_seconds": self.seconds, "flops": self.flops,
                "gflops_per_s": self.flops / self.wall_seconds / 1e9 if self.wall_seconds else 0.0,
                "train_wall_seconds": self.train_wall_seconds,
                "by_type": [row(t) for t in self.by_type()], "nodes": [row(n) for n in self.nodes]}

    def table(self, top: int | None = 25) -> str:
        """The per-type table, then the ``top`` slowest nodes (all with ``top=None``)."""
        gf = self.flops / 1e9
        lines = [f"profile of {self.model}, input {self.input_shape}, median of {self.repeats} pass(es)",
                 f"inference (Graph.predict): {self.wall_seconds * 1e3:.1f} ms per pass "
                 f"(nodes {self.seconds * 1e3:.1f} ms), {gf:.2f} GFLOP, "
                 f"{gf / self.wall_seconds if self.wall_seconds else 0:.1f} GFLOP/s"]
        if self.training:
            tflops = sum(n.flops + n.backward_flops for n in self.nodes) / 1e9
            fwd = sum(n.train_forward_seconds for n in self.nodes)
            bwd = sum(n.backward_seconds for n in self.nodes)
            lines.append(f"training forward + backward: {self.train_wall_seconds * 1e3:.1f} ms "
                         f"(forward {fwd * 1e3:.1f}, backward {bwd * 1e3:.1f} ms in nodes), {tflops:.2f} GFLOP, "
                         f"{tflops / self.train_wall_seconds:.1f} GFLOP/s")
        lines.append("")
        hdr = f"{'layer type':<22}{'nodes':>6}{'ms':>10}{'GFLOP':>9}{'GFLOP/s':>9}{'share':>8}"
        if self.training:
            hdr += f"{'train ms':>11}{'GFLOP/s':>9}{'share':>8}"
        lines += [hdr, "-" * len(hdr)]
        for t in self.by_type():
            line = (f"{t.kind[:21]:<22}{t.count:>6}{t.seconds * 1e3:>10.2f}{t.flops / 1e9:>9.3f}"
                    f"{t.gflops_per_s:>9.1f}{t.share * 100:>7.1f}%")
            if self.training:
                rate = t.train_flops / t.train_seconds / 1e9 if t.train_seconds else 0.0
                line += f"{t.train_seconds * 1e3:>11.2f}{rate:>9.1f}{t.train_share * 100:>7.1f}%"
            lines.append(line)
        ranked = sorted(self.nodes, key=lambda n: -n.seconds)
        shown = ranked if top is None else ranked[:top]
        lines += ["", f"{'slowest nodes' if top is not None and top < len(ranked) else 'nodes'} "
                      f"({len(shown)} of {len(ranked)}, inference)"]
        hdr = f"{'node':<42}{'layer':<34}{'output':<20}{'ms':>9}{'GFLOP/s':>9}{'share':>8}"
        lines += [hdr, "-" * len(hdr)]
        for n in shown:
            name = n.node if len(n.node) <= 41 else "..." + n.node[-38:]
            lines.append(f"{name:<42}{n.layer[:33]:<34}{str(n.out_shape)[:19]:<20}{n.seconds * 1e3:>9.3f}"
                         f"{n.gflops_per_s:>9.1f}{n.share * 100:>7.1f}%")
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    __repr__ = __str__


class _Recorder:
    """The ``timer=`` callable: seconds per node per pass, and the shapes of the first pass."""

    def __init__(self):
        self.times: dict[str, list[float]] = {}
        self.shapes: dict[str, tuple] = {}
        self.returned_dx: dict[str, bool] = {}

    def forward(self, node, x, y, seconds):
        self.times.setdefault(node.name, []).append(seconds)
        if node.name not in self.shapes:
            xs = x if node.layer.multi_input else [x]
            self.shapes[node.name] = ([_shape(a) for a in xs], _shape(y))

    def backward(self, node, dy, dx, seconds):
        self.times.setdefault(node.name, []).append(seconds)
        self.returned_dx[node.name] = dx is not None

    def median(self, name: str, passes: int) -> float:
        t = self.times.get(name, [])
        t = t + [0.0] * (passes - len(t))          # a node backward skipped (frozen, below the trainables)
        return float(np.median(t)) if t else 0.0


def profile(model: Graph, x, repeats: int = 3, warmup: int = 1, training: bool = False) -> Profile:
    """Profile one batch ``x`` (N, C, H, W) through ``model`` (module doc). Returns a :class:`Profile`.

    ``repeats`` timed passes (the median per node) after ``warmup`` untimed ones; ``training=True``
    also times ``forward(training=True)`` + ``backward`` (the model's state is restored after).
    """
    if not isinstance(model, Graph):
        raise UsageError(f"profile takes a minicnn Graph (minicnn.load gives one), got {type(model).__name__}")
    if int(repeats) < 1 or int(warmup) < 0:
        raise UsageError(f"profile: repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    batch = len(x)
    rec = _Recorder()
    walls = []
    for k in range(warmup + repeats):
        timed = k >= warmup
        t0 = time.perf_counter()
        model.predict(x, batch_size=batch, logits=True, timer=rec.forward if timed else None)
        if timed:
            walls.append(time.perf_counter() - t0)
    nodes = []
    for name, node in model.nodes.items():
        if name not in rec.shapes:
            raise UsageError(f"node {name!r} did not run in predict (is meta['fixed_batch'] another batch size?)")
        in_shapes, out_shape = rec.shapes[name]
        if len(rec.times[name]) != repeats:     # a fixed-batch graph runs several chunks per pass
            raise UsageError(f"profile: node {name!r} ran {len(rec.times[name]) // repeats} times per pass; give "
                             f"a batch of the model's meta['fixed_batch'] = {model.meta.get('fixed_batch')}")
        nodes.append(NodeProfile(name, layer_kind(node.layer), repr(node.layer), in_shapes, out_shape,
                                 layer_flops(node.layer, in_shapes, out_shape), rec.median(name, repeats)))
    total = sum(n.seconds for n in nodes) or 1.0
    for n in nodes:
        n.share = n.seconds / total
    result = Profile(model.name or type(model).__name__, _shape(x), int(repeats), nodes, float(np.median(walls)))
    if training:
        _profile_training(model, x, int(repeats), int(warmup), result)
    return result


def _profile_training(model: Graph, x, repeats: int, warmup: int, result: Profile) -> None:
    saved = {k: v.copy() for k, v in model.state_dict().items()}
    rngs = {name: np.random.default_rng(k) for k, (name, n) in enumerate(model.nodes.items()) if n.layer.uses_rng}
    fwd, bwd = _Recorder(), _Recorder()
    walls = []
    try:
        for k in range(warmup + repeats):
            timed = k >= warmup
            t0 = time.perf_counter()
            out = model.forward(x, training=True, rngs=rngs, timer=fwd.forward if timed else None)
            dy = np.full(out.shape, 1.0 / len(out), dtype=out.dtype)
            model.backward(dy, input_grad=False, timer=bwd.backward if timed else None)
            if timed:
                walls.append(time.perf_counter() - t0)
    finally:
        model.load_state_dict(saved)
    fwd_total = bwd_total = 0.0
    for n in result.nodes:
        n.train_forward_seconds = fwd.median(n.node, repeats)
        n.backward_seconds = bwd.median(n.node, repeats)
        n.backward_flops = (_backward_flops(model.nodes[n.node].layer, n.flops, bwd.returned_dx.get(n.node, False))
                            if n.node in bwd.times else 0)
        fwd_total += n.train_forward_seconds
        bwd_total += n.backward_seconds
    total = (fwd_total + bwd_total) or 1.0
    for n in result.nodes:
        n.train_share = (n.train_forward_seconds + n.backward_seconds) / total
    result.train_wall_seconds = float(np.median(walls))
