"""Layers for the ONNX operators minicnn had no layer for (any input rank, NumPy broadcasting).

    Binary(op)      y = a (op) b, op in add/sub/mul/div/max/min/pow (d/db of pow is taken as 0 where a <= 0); NumPy broadcasting at any rank.
                    Both operands are activations (two inputs), or one is a constant buffer ``c``
                    (``const_first``: c op x instead of x op c). dx reduces dy over the broadcast axes.
    Reshape(shape)  ONNX Reshape: 0 copies the input's size on that axis, -1 is inferred.
    Transpose(perm) y = x.transpose(perm)                      dx = dy.transpose(argsort(perm))
    Pad(pads, mode, value)  pads (begin..., end...) per axis, mode constant/reflect/edge; negative = crop
    Clip(min, max)  y = min(max(x, min), max)                  dx = dy where min < x < max
    MatMul(in, out) y = x @ W for x (..., in), W (in, out) param    dW = sum over leading axes of x^T dy
    OnnxSoftmax(axis, log, coerce_2d)   (log-)softmax along axis; coerce_2d: opset < 13's rule, the
                    input flattened to 2-D at ``axis`` (softmax over all axes from ``axis`` on)
    HardSigmoid(alpha, beta) y = max(0, min(1, alpha x + beta))  HardSwish: x * HardSigmoid(1/6, 1/2)(x)
    PRelu(slope)    y = x if x > 0 else slope * x, slope a param broadcast against x
    Unary(name, p)  neg, abs, sqrt, reciprocal, log, erf, pow (x ** p, p a constant)
    Reduce(op, axes, keepdims)  mean / sum / max over ``axes``
    Slice(starts, ends, axes, steps)   x[start:end:step] on the given axes; dx scatters dy back
    LRN(size, alpha, beta, bias)        local response normalisation across channels
    Resize(...)     ONNX Resize / Upsample on H, W: nearest (every nearest_mode) or linear, every
                    coordinate_transformation_mode but tf_crop_and_resize and tf_half_pixel_for_nn; y = M_h x M_w^T with one
                    (out x in) interpolation matrix per axis, dx = M_h^T dy M_w
    BatchMatMul     y = a @ b for two activations (NumPy matmul broadcasting, rank >= 2 each)
    Gather(indices, axis)   y = take(x, indices, axis) with constant indices; dx scatters dy back (add.at)
    Expand(shape)   y = broadcast_to(x, shape) (ONNX bidirectional rule); dx reduces the broadcast axes
    Tile(repeats)   y = np.tile(x, repeats)                     dx = dy summed over the tiles
    DilatedPool2D   max / average pooling with dilated windows (plain NumPy over the KH*KW window taps)
    ConvTranspose2D  the adjoint of a Conv2D: y = conv2d_backward's dx with x as dy (the native kernels)

Every layer's backward is the plain NumPy derivative of its forward (gradient-checked in
``tests/onnx/test_onnx_layers.py``).
"""
from __future__ import annotations

import numpy as np

from ..errors import UsageError
from .. import init as _init
from .base import Layer

_BINARY = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "max": np.maximum, "min": np.minimum, "pow": np.power,
}


def _float(x):
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"expected a float32 or float64 input, got dtype {x.dtype}")
    return x


def _shape_by_running(layer, input_shape):
    """Output shape from a forward on zeros (the batch axis run as 1 and reported as given). A layer
    that works along axis 0 (``batch_axis()`` > 0: a Slice / Gather / Tile of the batch, the value
    the smallest batch it can run) runs a fixed batch as it is and reports its output's size there;
    a symbolic (None) batch is probed with that smallest batch and reported as None."""
    multi = bool(input_shape) and isinstance(input_shape[0], (tuple, list))
    shapes = input_shape if multi else [input_shape]
    along = getattr(layer, "batch_axis", lambda: 0)()
    xs = [np.zeros([(along or 1) if d is None else d for d in sh], np.float32) for sh in shapes]
    y = layer.forward(xs if multi else xs[0])
    layer.clear_cache()
    if along:
        return (None if shapes[0][0] is None else y.shape[0],) + tuple(y.shape[1:])
    return (shapes[0][0],) + tuple(y.shape[1:])


def unbroadcast(g: np.ndarray, shape) -> np.ndarray:
    """Sum ``g`` over the axes NumPy broadcasting added or stretched to reach it from ``shape``."""
    shape = tuple(shape)
    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


class Binary(Layer):
    """``Binary(op, const_shape=None, const_first=False)``: elementwise ``op`` with broadcasting.

    Without ``const_shape`` the layer takes two inputs ``[a, b]``; with it, one input ``x`` and the
    buffer ``c`` (set it with ``layer.buffers['c'][...] = value`` or ``load_state_dict``).
    """

    def __init__(self, op: str, const_shape=None, const_first: bool = False):
        super().__init__()
        if op not in _BINARY:
            raise UsageError(f"Binary: unknown op {op!r}; known: {', '.join(_BINARY)}")
        self.op, self.const_first = op, bool(const_first)
        self.const_shape = None if const_shape is None else [int(s) for s in const_shape]
        self.multi_input = const_shape is None
        if const_shape is not None:
            self.buffers["c"] = np.zeros(self.const_shape, np.float32)

    def _operands(self, xs):
        if self.multi_input:
            if len(xs) != 2:
                raise UsageError(f"{self!r} takes two inputs, got {len(xs)}")
            return _float(xs[0]), _float(xs[1])
        x = _float(xs)
        c = self.buffers["c"].astype(x.dtype, copy=False)
        return (c, x) if self.const_first else (x, c)

    def forward(self, xs, training: bool = False):
        a, b = self._operands(xs)
        try:
            y = _BINARY[self.op](a, b)
        except ValueError:
            raise UsageError(f"{self!r}: shapes {a.shape} and {b.shape} do not broadcast") from None
        self._cache = (a, b)
        return y.astype(np.result_type(a, b), copy=False)

    def backward(self, dy, need_dx: bool = True):
        a, b = self._pop_cache()
        if not need_dx:
            return None
        if self.op == "add":
            da, db = dy, dy
        elif self.op == "sub":
            da, db = dy, -dy
        elif self.op == "mul":
            da, db = dy * b, dy * a
        elif self.op == "div":
            da, db = dy / b, -dy * a / (b * b)
        elif self.op == "pow":
            y = np.power(a, b)
            da = dy * b * np.power(a, b - 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                db = np.where(a > 0, dy * y * np.log(np.where(a > 0, a, 1)), 0)
        else:   # max / min: the gradient goes to the selected operand (ties: to the first)
            pick_a = (a >= b) if self.op == "max" else (a <= b)
            da, db = dy * pick_a, dy * ~pick_a
        da, db = unbroadcast(np.asarray(da), a.shape), unbroadcast(np.asarray(db), b.shape)
        if self.multi_input:
            return [da.astype(dy.dtype, copy=False), db.astype(dy.dtype, copy=False)]
        return (db if self.const_first else da).astype(dy.dtype, copy=False)

    def output_shape(self, input_shape):
        if self.multi_input:
            shapes = [tuple(1 if s is None else s for s in sh) for sh in input_shape]
            return (input_shape[0][0],) + np.broadcast_shapes(*shapes)[1:]
        shape = tuple(1 if s is None else s for s in input_shape)
        return (input_shape[0],) + np.broadcast_shapes(shape, tuple(self.const_shape))[1:]

    def get_config(self):
        return {"op": self.op, "const_shape": self.const_shape, "const_first": self.const_first}


class Reshape(Layer):
    """``Reshape(shape)``: ONNX Reshape (allowzero=0): 0 keeps the input's size on that axis, -1 is inferred."""

    def __init__(self, shape):
        super().__init__()
        self.shape = [int(s) for s in shape]
        if sum(s == -1 for s in self.shape) > 1 or min(self.shape, default=0) < -1:
            raise UsageError(f"Reshape: shape may hold one -1 and no other negative value, got {self.shape}")

    def _target(self, in_shape):
        out = [in_shape[i] if s == 0 else s for i, s in enumerate(self.shape)]
        if any(s == 0 for s in self.shape) and len(self.shape) > len(in_shape):
            if any(s == 0 and i >= len(in_shape) for i, s in enumerate(self.shape)):
                raise UsageError(f"{self!r}: 0 on axis beyond the input rank {tuple(in_shape)}")
        return out

    def forward(self, x, training: bool = False):
        x = np.asarray(x)
        target = self._target(x.shape)
        try:
            y = x.reshape(target)
        except ValueError:
            raise UsageError(f"{self!r} cannot reshape x.shape={x.shape} to {target}") from None
        self._cache = x.shape
        return y

    def backward(self, dy, need_dx: bool = True):
        shape = self._pop_cache()
        return dy.reshape(shape) if need_dx else None

    def output_shape(self, input_shape):
        out = self._target(input_shape)
        if -1 in out:
            known = [s for s in input_shape if s is not None]
            if len(known) == len(input_shape) and None not in out:
                rest = int(np.prod([s for s in out if s != -1]))
                out = [int(np.prod(input_shape)) // rest if s == -1 else s for s in out]
            else:
                out = [None if s == -1 else s for s in out]
        return tuple(out)

    def get_config(self):
        return {"shape": list(self.shape)}


class Transpose(Layer):
    """``Transpose(perm)``: ``y = x.transpose(perm)``."""

    def __init__(self, perm):
        super().__init__()
        self.perm = [int(p) for p in perm]
        if sorted(self.perm) != list(range(len(self.perm))):
            raise UsageError(f"Transpose: perm must be a permutation of 0..{len(self.perm) - 1}, got {self.perm}")

    def forward(self, x, training: bool = False):
        x = np.asarray(x)
        if x.ndim != len(self.perm):
            raise UsageError(f"{self!r} expects a {len(self.perm)}-D input, got x.shape={x.shape}")
        self._cache = True
        return np.ascontiguousarray(x.transpose(self.perm))

    def backward(self, dy, need_dx: bool = True):
        self._pop_cache()
        return np.ascontiguousarray(dy.transpose(np.argsort(self.perm))) if need_dx else None

    def output_shape(self, input_shape):
        return tuple(input_shape[p] for p in self.perm)

    def get_config(self):
        return {"perm": list(self.perm)}


class Pad(Layer):
    """``Pad(pads, mode="constant", value=0.0)``: ``pads`` = begins of every axis, then ends (ONNX order).

    Negative pads crop. ``mode``: constant (``value``), reflect (mirror without the edge), edge (repeat it).
    """

    MODES = ("constant", "reflect", "edge")

    def __init__(self, pads, mode: str = "constant", value: float = 0.0):
        super().__init__()
        self.pads = [int(p) for p in pads]
        if len(self.pads) % 2:
            raise UsageError(f"Pad: pads must hold a begin and an end per axis, got {self.pads}")
        if mode not in self.MODES:
            raise UsageError(f"Pad: mode must be one of {self.MODES}, got {mode!r}")
        self.mode, self.value = mode, float(value)

    def _split(self, ndim):
        r = len(self.pads) // 2
        if r != ndim:
            raise UsageError(f"{self!r} has pads for {r} axes, got a {ndim}-D input")
        return self.pads[:r], self.pads[r:]

    def forward(self, x, training: bool = False):
        x = _float(x)
        begin, end = self._split(x.ndim)
        crop = tuple(slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(zip(begin, end)))
        xc = x[crop]
        widths = [(max(b, 0), max(e, 0)) for b, e in zip(begin, end)]
        if self.mode == "constant":
            y = np.pad(xc, widths, mode="constant", constant_values=self.value)
        else:
            y = np.pad(xc, widths, mode="reflect" if self.mode == "reflect" else "edge")
        self._cache = (x.shape, crop, xc.shape, widths)
        return y.astype(x.dtype, copy=False)

    def backward(self, dy, need_dx: bool = True):
        x_shape, crop, xc_shape, widths = self._pop_cache()
        if not need_dx:
            return None
        if self.mode == "constant":
            dxc = dy[tuple(slice(b, b + n) for (b, _), n in zip(widths, xc_shape))]
        else:
            dxc = self._fold(dy, xc_shape, widths)
        dx = np.zeros(x_shape, dy.dtype)
        dx[crop] = dxc
        return dx

    def _fold(self, dy, xc_shape, widths):
        """Adjoint of reflect/edge padding: add each padded cell's gradient to the cell it copied."""
        g = dy
        for axis, ((b, e), n) in enumerate(zip(widths, xc_shape)):
            if b == 0 and e == 0:
                continue
            idx = np.arange(-b, n + e)
            if self.mode == "edge":
                src = np.clip(idx, 0, n - 1)
            else:
                period = 2 * (n - 1) if n > 1 else 1
                m = np.mod(idx, period)
                src = np.where(m < n, m, period - m) if n > 1 else np.zeros_like(idx)
            out = np.zeros(g.shape[:axis] + (n,) + g.shape[axis + 1:], g.dtype)
            np.add.at(out, (slice(None),) * axis + (src,), g)
            g = out
        return g

    def output_shape(self, input_shape):
        begin, end = self._split(len(input_shape))
        return tuple(None if s is None else s + b + e for s, b, e in zip(input_shape, begin, end))

    def get_config(self):
        return {"pads": list(self.pads), "mode": self.mode, "value": self.value}


class Clip(Layer):
    """``Clip(min=None, max=None)``: ``y = min(max(x, min), max)`` (ReLU6 is Clip(0, 6))."""

    def __init__(self, min=None, max=None):
        super().__init__()
        self.min = None if min is None else float(min)
        self.max = None if max is None else float(max)

    def forward(self, x, training: bool = False):
        x = _float(x)
        self._cache = x
        lo = -np.inf if self.min is None else self.min
        hi = np.inf if self.max is None else self.max
        return np.minimum(np.maximum(x, lo), hi).astype(x.dtype, copy=False)

    def backward(self, dy, need_dx: bool = True):
        x = self._pop_cache()
        if not need_dx:
            return None
        inside = np.ones(x.shape, bool)
        if self.min is not None:
            inside &= x > self.min
        if self.max is not None:
            inside &= x < self.max
        return dy * inside

    def get_config(self):
        return {"min": self.min, "max": self.max}


class MatMul(Layer):
    """``MatMul(in_features, out_features)``: ``y = x @ W`` for ``x`` of any rank >= 1 (..., in); ``W`` (in, out)."""

    def __init__(self, in_features: int, out_features: int, init: str = "glorot", seed=None):
        super().__init__()
        self.in_features, self.out_features, self.init = int(in_features), int(out_features), init
        self.params["W"] = _init.initialize((self.in_features, self.out_features), self.in_features,
                                            self.out_features, init, _init.rng_from(seed))

    def forward(self, x, training: bool = False):
        x = _float(x)
        if x.shape[-1] != self.in_features:
            raise UsageError(f"{self!r} expects {self.in_features} features on the last axis, got x.shape={x.shape}")
        self._cache = x
        return x @ self.params["W"].astype(x.dtype, copy=False)

    def backward(self, dy, need_dx: bool = True):
        x = self._pop_cache()
        W = self.params["W"]
        if self.trainable:
            self.grads["W"] = (x.reshape(-1, x.shape[-1]).T @ dy.reshape(-1, dy.shape[-1])).astype(W.dtype)
        return dy @ W.T.astype(dy.dtype, copy=False) if need_dx else None

    def output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.out_features,)

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features}


class OnnxSoftmax(Layer):
    """``OnnxSoftmax(axis=-1, log=False, coerce_2d=False)``: ONNX Softmax / LogSoftmax."""

    def __init__(self, axis: int = -1, log: bool = False, coerce_2d: bool = False):
        super().__init__()
        self.axis, self.log, self.coerce_2d = int(axis), bool(log), bool(coerce_2d)

    def _view(self, x):
        axis = self.axis % x.ndim
        if self.coerce_2d:
            return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1), 1
        return x, axis

    def forward(self, x, training: bool = False):
        x = _float(x)
        v, axis = self._view(x)
        z = v - v.max(axis=axis, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=axis, keepdims=True))
        y = z - lse if self.log else np.exp(z - lse)
        self._cache = (x.shape, y, axis)
        return y.reshape(x.shape)

    def backward(self, dy, need_dx: bool = True):
        shape, y, axis = self._pop_cache()
        if not need_dx:
            return None
        g = dy.reshape(y.shape)
        if self.log:
            dx = g - np.exp(y) * g.sum(axis=axis, keepdims=True)
        else:
            dx = y * (g - (g * y).sum(axis=axis, keepdims=True))
        return dx.reshape(shape)

    def get_config(self):
        return {"axis": self.axis, "log": self.log, "coerce_2d": self.coerce_2d}


class HardSigmoid(Layer):
    """``HardSigmoid(alpha=0.2, beta=0.5, swish=False)``: ``max(0, min(1, alpha x + beta))``; with
    ``swish``: ``x * that`` (ONNX HardSwish is ``HardSigmoid(1/6, 0.5, swish=True)``)."""

    def __init__(self, alpha: float = 0.2, beta: float = 0.5, swish: bool = False):
        super().__init__()
        self.alpha, self.beta, self.swish = float(alpha), float(beta), bool(swish)

    def forward(self, x, training: bool = False):
        x = _float(x)
        self._cache = x
        h = np.clip(self.alpha * x + self.beta, 0, 1)
        return (x * h if self.swish else h).astype(x.dtype, copy=False)

    def backward(self, dy, need_dx: bool = True):
        x = self._pop_cache()
        if not need_dx:
            return None
        u = self.alpha * x + self.beta
        inside = (u > 0) & (u < 1)
        dh = self.alpha * inside
        d = (np.clip(u, 0, 1) + x * dh) if self.swish else dh
        return (dy * d).astype(dy.dtype, copy=False)

    def get_config(self):
        return {"alpha": self.alpha, "beta": self.beta, "swish": self.swish}


class PRelu(Layer):
    """``PRelu(slope_shape)``: ``y = x if x > 0 else slope * x``; param ``slope`` broadcast against ``x``."""

    def __init__(self, slope_shape=(1,)):
        super().__init__()
        self.slope_shape = [int(s) for s in slope_shape]
        self.params["slope"] = np.full(self.slope_shape, 0.25, np.float32)

    def forward(self, x, training: bool = False):
        x = _float(x)
        self._cache = x
        s = self.params["slope"].astype(x.dtype, copy=False)
        return np.where(x > 0, x, s * x).astype(x.dtype, copy=False)

    def backward(self, dy, need_dx: bool = True):
        x = self._pop_cache()
        s = self.params["slope"]
        if self.trainable:
            self.grads["slope"] = unbroadcast(np.where(x > 0, 0, dy * x), s.shape).astype(s.dtype)
        return (dy * np.where(x > 0, 1, s)).astype(dy.dtype, copy=False) if need_dx else None

    def get_config(self):
        return {"slope_shape": list(self.slope_shape)}


_UNARY = {
    "neg": (lambda x, p: -x, lambda x, p: -np.ones_like(x)),
    "abs": (lambda x, p: np.abs(x), lambda x, p: np.sign(x)),
    "sqrt": (lambda x, p: np.sqrt(x), lambda x, p: 0.5 / np.sqrt(x)),
    "reciprocal": (lambda x, p: 1.0 / x, lambda x, p: -1.0 / (x * x)),
    "log": (lambda x, p: np.log(x), lambda x, p: 1.0 / x),
    "erf": (lambda x, p: _erf(x), lambda x, p: 2.0 / np.sqrt(np.pi) * np.exp(-x * x)),
    "pow": (lambda x, p: np.power(x, p), lambda x, p: p * np.power(x, p - 1)),
}


def _erf(x):
    from scipy.special import erf
    return erf(x)


class Unary(Layer):
    """``Unary(name, p=None)``: an elementwise function of ``_UNARY`` (``p``: the exponent of pow)."""

    def __init__(self, name: str, p=None):
        super().__init__()
        if name not in _UNARY:
            raise UsageError(f"Unary: unknown function {name!r}; known: {', '.join(_UNARY)}")
        self.name, self.p = name, None if p is None else float(p)

    def forward(self, x, training: bool = False):
        x = _float(x)
        self._cache = x
        return np.asarray(_UNARY[self.name][0](x, self.p), x.dtype)

    def backward(self, dy, need_dx: bool = True):
        x = self._pop_cache()
        return (dy * _UNARY[self.name][1](x, self.p)).astype(dy.dtype, copy=False) if need_dx else None

    def get_config(self):
        return {"name": self.name, "p": self.p}


class Reduce(Layer):
    output_shape = _shape_by_running
    """``Reduce(op, axes, keepdims=True)``: mean / sum / max over ``axes`` (max: ties share the gradient)."""

    def __init__(self, op: str, axes, keepdims: bool = True):
        super().__init__()
        if op not in ("mean", "sum", "max"):
            raise UsageError(f"Reduce: op must be mean, sum or max, got {op!r}")
        self.op, self.axes, self.keepdims = op, [int(a) for a in axes], bool(keepdims)

    def forward(self, x, training: bool = False):
        x = _float(x)
        axes = tuple(a % x.ndim for a in self.axes)
        y = (np.max(x, axis=axes, keepdims=True, initial=-np.inf) if self.op == "max"
             else getattr(np, self.op)(x, axis=axes, keepdims=True))
        self._cache = (x, y, axes)
        return y if self.keepdims else y.reshape([s for i, s in enumerate(x.shape) if i not in axes])

    def backward(self, dy, need_dx: bool = True):
        x, y, axes = self._pop_cache()
        if not need_dx:
            return None
        g = dy.reshape(y.shape)
        if self.op == "sum":
            return np.broadcast_to(g, x.shape).copy()
        if self.op == "mean":
            return np.broadcast_to(g / np.prod([x.shape[a] for a in axes]), x.shape).copy()
        hit = (x == y)
        return (g * hit / hit.sum(axis=axes, keepdims=True)).astype(dy.dtype, copy=False)

    def get_config(self):
        return {"op": self.op, "axes": list(self.axes), "keepdims": self.keepdims}


class Slice(Layer):
    output_shape = _shape_by_running
    """``Slice(starts, ends, axes, steps=None)``: ONNX Slice with constant bounds (clamped like NumPy)."""

    def __init__(self, starts, ends, axes, steps=None):
        super().__init__()
        self.starts, self.ends, self.axes = [int(v) for v in starts], [int(v) for v in ends], [int(v) for v in axes]
        self.steps = [1] * len(self.axes) if steps is None else [int(v) for v in steps]
        if 0 in self.steps:
            raise UsageError("Slice: steps must not be 0")

    def _index(self, ndim):
        idx = [slice(None)] * ndim
        for s, e, a, st in zip(self.starts, self.ends, self.axes, self.steps):
            big = 2 ** 62
            e = None if (st < 0 and e <= -big) else (None if e >= big else e)
            idx[a % ndim] = slice(s if abs(s) < 2 ** 62 else (None), e, st)
        return tuple(idx)

    def batch_axis(self):
        """1 when this slice works along axis 0 (see ``_shape_by_running``), else 0."""
        return int(any(a == 0 for a in self.axes))

    def forward(self, x, training: bool = False):
        x = _float(x)
        idx = self._index(x.ndim)
        self._cache = (x.shape, idx)
        return np.ascontiguousarray(x[idx])

    def backward(self, dy, need_dx: bool = True):
        shape, idx = self._pop_cache()
        if not need_dx:
            return None
        dx = np.zeros(shape, dy.dtype)
        dx[idx] = dy
        return dx

    def get_config(self):
        return {"starts": self.starts, "ends": self.ends, "axes": self.axes, "steps": self.steps}


class LRN(Layer):
    """``LRN(size, alpha=1e-4, beta=0.75, bias=1.0)``: ONNX LocalResponseNormalization over channels::

        s_c = bias + alpha / size * sum_{c' in [c - floor((size-1)/2), c + ceil((size-1)/2)]} x_c'^2
        y = x / s_c ** beta
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, bias: float = 1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.bias = int(size), float(alpha), float(beta), float(bias)

    def _window_sum(self, a, mirrored: bool = False):
        """Sum of ``a`` over each channel's window; ``mirrored``: its transpose (for the backward)."""
        lo, hi = (self.size - 1) // 2, -(-(self.size - 1) // 2)
        if mirrored:
            lo, hi = hi, lo
        C = a.shape[1]
        cs = np.concatenate([np.zeros_like(a[:, :1]), np.cumsum(a, axis=1)], axis=1)
        top = np.minimum(np.arange(C) + hi + 1, C)
        bot = np.maximum(np.arange(C) - lo, 0)
        return cs[:, top] - cs[:, bot]

    def forward(self, x, training: bool = False):
        x = _float(x)
        s = self.bias + self.alpha / self.size * self._window_sum(x * x)
        y = x * s ** -self.beta
        self._cache = (x, s)
        return y.astype(x.dtype, copy=False)

    def backward(self, dy, need_dx: bool = True):
        x, s = self._pop_cache()
        if not need_dx:
            return None
        t = dy * x * (-self.beta) * s ** (-self.beta - 1)
        dx = dy * s ** -self.beta + 2 * self.alpha / self.size * x * self._window_sum(t, mirrored=True)
        return dx.astype(dy.dtype)

    def get_config(self):
        return {"size": self.size, "alpha": self.alpha, "beta": self.beta, "bias": self.bias}


class ConvTranspose2D(Layer):
    """``ConvTranspose2D(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
    output_padding, bias)``: ONNX ConvTranspose / torch ConvTranspose2d.

    ``W`` (C, F/G, KH, KW), ``b`` (F,). ``y`` is the gradient a Conv2D with weight ``W`` (C outputs
    from F inputs) sends back to its input when ``x`` is the gradient at its output, so the native
    conv kernels compute it: ``OH = SH (H - 1) + OPH + DH (KH - 1) + 1 - top - bottom``. Backward:
    ``dx`` is that Conv2D's forward of ``dy``, ``dW`` its weight gradient with ``dy`` as input.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 output_padding=0, bias=True, init="he", seed=None):
        super().__init__()
        from ..shapes import as_pair, normalize_padding
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size, self.stride = as_pair(kernel_size, "kernel_size"), as_pair(stride, "stride")
        self.dilation, self.output_padding = as_pair(dilation, "dilation"), as_pair(output_padding, "output_padding")
        self.padding = normalize_padding(padding)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise UsageError(f"ConvTranspose2D: channels {in_channels}->{out_channels} not divisible by groups={groups}")
        KH, KW = self.kernel_size
        Fg = self.out_channels // self.groups
        self.params["W"] = _init.initialize((self.in_channels, Fg, KH, KW), Fg * KH * KW, self.in_channels * KH * KW,
                                            init, _init.rng_from(seed))
        self.bias, self.init = bool(bias), init
        if self.bias:
            self.params["b"] = np.zeros(self.out_channels, np.float32)

    def _out_hw(self, hw):
        t, b, l, r = self.padding
        return tuple(s * (n - 1) + op + d * (k - 1) + 1 - p0 - p1 for n, s, op, d, k, p0, p1 in
                     zip(hw, self.stride, self.output_padding, self.dilation, self.kernel_size, (t, l), (b, r)))

    def forward(self, x, training: bool = False):
        from ..kernels.conv import conv2d_backward
        x = _float(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise UsageError(f"{self!r} expects (N, {self.in_channels}, H, W), got x.shape={x.shape}")
        OH, OW = self._out_hw(x.shape[2:])
        if min(OH, OW) < 1:
            raise UsageError(f"{self!r}: output size {(OH, OW)} for x.shape={x.shape}")
        u = np.zeros((x.shape[0], self.out_channels, OH, OW), x.dtype)
        W = self.params["W"].astype(x.dtype, copy=False)
        y, _, _ = conv2d_backward(x, u, W, self.stride, self.padding, self.dilation, self.groups,
                                  need_dx=True, need_dW=False)
        if self.bias:
            y = y + self.params["b"].astype(x.dtype).reshape(1, -1, 1, 1)
        self._cache = x
        return y

    def backward(self, dy, need_dx: bool = True):
        from ..kernels.conv import conv2d_backward, conv2d_forward
        x = self._pop_cache()
        W = self.params["W"].astype(dy.dtype, copy=False)
        if self.trainable:
            _, dW, _ = conv2d_backward(x, dy, W, self.stride, self.padding, self.dilation, self.groups,
                                       need_dx=False, need_dW=True)
            self.grads["W"] = dW.astype(self.params["W"].dtype, copy=False)
            if self.bias:
                self.grads["b"] = dy.sum(axis=(0, 2, 3)).astype(self.params["b"].dtype)
        if not need_dx:
            return None
        return conv2d_forward(dy, W, None, self.stride, self.padding, self.dilation, self.groups)

    def output_shape(self, input_shape):
        return (input_shape[0], self.out_channels) + self._out_hw(input_shape[2:])

    def get_config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding),
                "dilation": list(self.dilation), "groups": self.groups, "output_padding": list(self.output_padding),
                "bias": self.bias}


RESIZE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def resize_matrix(n_in: int, n_out: int, scale: float, mode: str, coord: str, nearest: str) -> np.ndarray:
    """The (n_out, n_in) matrix of one axis of ONNX Resize (``scale`` = n_out / n_in unless given)."""
    i = np.arange(n_out, dtype=np.float64)
    if coord == "half_pixel":
        x = (i + 0.5) / scale - 0.5
    elif coord == "half_pixel_symmetric":
        adj = n_out / (scale * n_in)
        x = n_in / 2 * (1 - adj) + (i + 0.5) / scale - 0.5
    elif coord == "pytorch_half_pixel":
        x = (i + 0.5) / scale - 0.5 if n_out > 1 else np.zeros_like(i)
    elif coord == "align_corners":
        out_f = scale * n_in            # ONNX divides by the unrounded output length
        x = i * (n_in - 1) / (out_f - 1) if n_out > 1 else np.zeros_like(i)
    elif coord == "asymmetric":
        x = i / scale
    else:
        raise UsageError(f"Resize: coordinate_transformation_mode {coord!r} is not supported")
    M = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    if mode == "nearest":
        idx = {"round_prefer_floor": np.ceil(x - 0.5), "round_prefer_ceil": np.floor(x + 0.5),
               "floor": np.floor(x), "ceil": np.ceil(x)}[nearest]
        M[rows, np.clip(idx, 0, n_in - 1).astype(int)] = 1.0
        return M
    x = np.clip(x, 0, n_in - 1)
    i0 = np.floor(x).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = x - i0
    np.add.at(M, (rows, i0), 1 - w1)
    np.add.at(M, (rows, i1), w1)
    return M


class Resize(Layer):
    """``Resize(scales=None, sizes=None, mode="nearest", coordinate_transformation_mode="half_pixel",
    nearest_mode="round_prefer_floor")``: resize H, W of NCHW by ``scales`` (sh, sw) or to ``sizes`` (OH, OW)."""

    def __init__(self, scales=None, sizes=None, mode="nearest", coordinate_transformation_mode="half_pixel",
                 nearest_mode="round_prefer_floor"):
        super().__init__()
        if (scales is None) == (sizes is None):
            raise UsageError("Resize: give scales or sizes")
        if mode not in ("nearest", "linear"):
            raise UsageError(f"Resize: mode must be nearest or linear, got {mode!r}")
        if coordinate_transformation_mode not in RESIZE_MODES or nearest_mode not in NEAREST_MODES:
            raise UsageError(f"Resize: unsupported coordinate_transformation_mode={coordinate_transformation_mode!r}"
                             f" or nearest_mode={nearest_mode!r}")
        self.scales = None if scales is None else [float(v) for v in scales]
        self.sizes = None if sizes is None else [int(v) for v in sizes]
        self.mode, self.coord, self.nearest = mode, coordinate_transformation_mode, nearest_mode

    def _matrices(self, hw, dtype):
        out = []
        for k, n in enumerate(hw):
            if self.sizes is not None:
                m, sc = self.sizes[k], self.sizes[k] / n
            else:
                sc = self.scales[k]
                m = int(np.floor(n * sc))
            out.append(resize_matrix(n, m, sc, self.mode, self.coord, self.nearest).astype(dtype))
        return out

    def forward(self, x, training: bool = False):
        x = _float(x)
        if x.ndim != 4:
            raise UsageError(f"{self!r} expects an NCHW input, got x.shape={x.shape}")
        Mh, Mw = self._matrices(x.shape[2:], x.dtype)
        self._cache = (Mh, Mw)
        return np.ascontiguousarray(np.einsum("oh,nchw,pw->ncop", Mh, x, Mw, optimize=True))

    def backward(self, dy, need_dx: bool = True):
        Mh, Mw = self._pop_cache()
        return np.ascontiguousarray(np.einsum("oh,ncop,pw->nchw", Mh, dy, Mw, optimize=True)) if need_dx else None

    def output_shape(self, input_shape):
        n, c, h, w = input_shape
        if self.sizes is not None:
            return (n, c, *self.sizes)
        return (n, c, int(np.floor(h * self.scales[0])), int(np.floor(w * self.scales[1])))

    def get_config(self):
        return {"scales": self.scales, "sizes": self.sizes, "mode": self.mode,
                "coordinate_transformation_mode": self.coord, "nearest_mode": self.nearest}


class BatchMatMul(Layer):
    output_shape = _shape_by_running
    """``BatchMatMul()``: ``[a, b] -> a @ b`` (both rank >= 2; leading axes broadcast)."""
    multi_input = True

    def forward(self, xs, training: bool = False):
        a, b = (_float(v) for v in xs)
        if a.ndim < 2 or b.ndim < 2:
            raise UsageError(f"{self!r} needs operands of rank >= 2, got {a.shape} and {b.shape}")
        self._cache = (a, b)
        return np.matmul(a, b)

    def backward(self, dy, need_dx: bool = True):
        a, b = self._pop_cache()
        if not need_dx:
            return None
        da = unbroadcast(np.matmul(dy, np.swapaxes(b, -1, -2)), a.shape)
        db = unbroadcast(np.matmul(np.swapaxes(a, -1, -2), dy), b.shape)
        return [da.astype(dy.dtype, copy=False), db.astype(dy.dtype, copy=False)]


class Gather(Layer):
    output_shape = _shape_by_running
    """``Gather(indices, axis)``: ``np.take(x, indices, axis)`` with constant (possibly negative) indices."""

    def __init__(self, indices, axis: int = 0):
        super().__init__()
        self.indices = np.asarray(indices, np.int64).tolist()
        self.axis = int(axis)

    def batch_axis(self):
        """For a gather along axis 0: the smallest batch the indices fit (see ``_shape_by_running``)."""
        if self.axis != 0:
            return 0
        idx = np.asarray(self.indices, np.int64).reshape(-1)
        return int(max(idx.max() + 1, -idx.min(), 1)) if idx.size else 1

    def forward(self, x, training: bool = False):
        x = _float(x)
        axis = self.axis % x.ndim
        idx = np.asarray(self.indices, np.int64)
        if idx.size and (idx.max() >= x.shape[axis] or idx.min() < -x.shape[axis]):
            raise UsageError(f"{self!r}: an index is out of range for axis {axis} of x.shape={x.shape}")
        self._cache = (x.shape, axis)
        return np.take(x, idx, axis=axis)

    def backward(self, dy, need_dx: bool = True):
        shape, axis = self._pop_cache()
        if not need_dx:
            return None
        idx = np.asarray(self.indices, np.int64) % shape[axis]
        dx = np.zeros(shape, dy.dtype)
        moved = np.moveaxis(dx, axis, 0)
        g = np.moveaxis(dy, list(range(axis, axis + idx.ndim)), list(range(idx.ndim)))
        np.add.at(moved, idx, g)
        return dx

    def get_config(self):
        return {"indices": self.indices, "axis": self.axis}


class Expand(Layer):
    output_shape = _shape_by_running
    """``Expand(shape)``: ONNX Expand, ``x`` broadcast with ``shape`` both ways (a 1 keeps x's size)."""

    def __init__(self, shape):
        super().__init__()
        self.shape = [int(v) for v in shape]

    def forward(self, x, training: bool = False):
        x = _float(x)
        try:
            out = np.broadcast_shapes(x.shape, tuple(self.shape))
        except ValueError:
            raise UsageError(f"{self!r} cannot broadcast x.shape={x.shape}") from None
        self._cache = x.shape
        return np.ascontiguousarray(np.broadcast_to(x, out))

    def backward(self, dy, need_dx: bool = True):
        shape = self._pop_cache()
        return unbroadcast(dy, shape).astype(dy.dtype, copy=False) if need_dx else None

    def get_config(self):
        return {"shape": list(self.shape)}


class Tile(Layer):
    output_shape = _shape_by_running
    """``Tile(repeats)``: ONNX Tile, ``y = np.tile(x, repeats)`` (one count per axis of ``x``).

    Backward sums ``dy`` over the tiles: viewed as (r0, n0, r1, n1, ...) it is summed over every r axis.
    """

    def __init__(self, repeats):
        super().__init__()
        self.repeats = [int(r) for r in repeats]
        if min(self.repeats, default=0) < 0:
            raise UsageError(f"Tile: repeats must be >= 0, got {self.repeats}")

    def batch_axis(self):
        """1 when axis 0 is repeated (see ``_shape_by_running``), else 0."""
        return int(bool(self.repeats) and self.repeats[0] != 1)

    def forward(self, x, training: bool = False):
        x = _float(x)
        if x.ndim != len(self.repeats):
            raise UsageError(f"{self!r} has {len(self.repeats)} repeats, got a {x.ndim}-D input x.shape={x.shape}")
        self._cache = x.shape
        return np.tile(x, self.repeats)

    def backward(self, dy, need_dx: bool = True):
        shape = self._pop_cache()
        if not need_dx:
            return None
        split = [d for r, n in zip(self.repeats, shape) for d in (r, n)]
        return dy.reshape(split).sum(axis=tuple(range(0, 2 * len(shape), 2))).astype(dy.dtype, copy=False)

    def get_config(self):
        return {"repeats": list(self.repeats)}


class DilatedPool2D(Layer):
    """``DilatedPool2D(kind, kernel_size, stride, padding, dilation, count_include_pad=False)``: ONNX
    MaxPool / AveragePool with ``dilations`` (the native pool kernels have none). Readable NumPy: one
    strided slice of the padded input per window tap ``(i, j)``; max keeps the first maximal tap."""

    def __init__(self, kind, kernel_size, stride=1, padding=0, dilation=1, count_include_pad: bool = False):
        super().__init__()
        from ..shapes import as_pair, normalize_padding
        if kind not in ("max", "avg"):
            raise UsageError(f"DilatedPool2D: kind must be max or avg, got {kind!r}")
        self.kind, self.count_include_pad = kind, bool(count_include_pad)
        self.kernel_size, self.stride = as_pair(kernel_size, "kernel_size"), as_pair(stride, "stride")
        self.dilation, self.padding = as_pair(dilation, "dilation"), normalize_padding(padding)

    def _taps(self, shape):
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        t, b, l, r = self.padding
        H, W = shape[2] + t + b, shape[3] + l + r
        OH, OW = (H - dh * (kh - 1) - 1) // sh + 1, (W - dw * (kw - 1) - 1) // sw + 1
        if min(OH, OW) < 1:
            raise UsageError(f"{self!r}: the window does not fit an input of shape {tuple(shape)}")
        return [(slice(i * dh, i * dh + sh * (OH - 1) + 1, sh), slice(j * dw, j * dw + sw * (OW - 1) + 1, sw))
                for i in range(kh) for j in range(kw)]

    def _pad(self, x, value):
        t, b, l, r = self.padding
        return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=value)

    def forward(self, x, training: bool = False):
        x = _float(x)
        taps = self._taps(x.shape)
        if self.kind == "max":
            xp = self._pad(x, -np.inf)
            stack = np.stack([xp[:, :, rs, cs] for rs, cs in taps])
            arg = stack.argmax(axis=0)
            self._cache = (x.shape, taps, arg, None)
            return np.take_along_axis(stack, arg[None], 0)[0]
        xp = self._pad(x, 0)
        total = sum(xp[:, :, rs, cs] for rs, cs in taps)
        if self.count_include_pad:
            div = np.full(total.shape[2:], float(len(taps)), x.dtype)
        else:
            ones = self._pad(np.ones((1, 1) + x.shape[2:], x.dtype), 0)
            div = sum(ones[0, 0, rs, cs] for rs, cs in taps)
        self._cache = (x.shape, taps, None, div)
        return (total / div).astype(x.dtype, copy=False)

    def backward(self, dy, need_dx: bool = True):
        shape, taps, arg, div = self._pop_cache()
        if not need_dx:
            return None
        t, b, l, r = self.padding
        dxp = np.zeros((shape[0], shape[1], shape[2] + t + b, shape[3] + l + r), dy.dtype)
        for k, (rs, cs) in enumerate(taps):
            dxp[:, :, rs, cs] += dy * (arg == k) if self.kind == "max" else dy / div
        return dxp[:, :, t:t + shape[2], l:l + shape[3]].copy()

    def output_shape(self, input_shape):
        taps = self._taps(tuple(1 if d is None else d for d in input_shape))
        rs, cs = taps[0]
        n_rows = len(range(*rs.indices(10 ** 9)))
        n_cols = len(range(*cs.indices(10 ** 9)))
        return (input_shape[0], input_shape[1], n_rows, n_cols)

    def get_config(self):
        return {"kind": self.kind, "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "dilation": list(self.dilation),
                "count_include_pad": self.count_include_pad}


ONNX_LAYERS = {"Binary": Binary, "Reshape": Reshape, "Transpose": Transpose, "Pad": Pad, "Clip": Clip,
               "MatMul": MatMul, "OnnxSoftmax": OnnxSoftmax, "HardSigmoid": HardSigmoid, "PRelu": PRelu,
               "Unary": Unary, "Reduce": Reduce, "Slice": Slice, "LRN": LRN,
               "ConvTranspose2D": ConvTranspose2D, "Resize": Resize,
               "BatchMatMul": BatchMatMul, "Gather": Gather, "Expand": Expand, "DilatedPool2D": DilatedPool2D,
               "Tile": Tile}
