"""Small elementwise layers: Rescaling, Activation, Identity (the Keras importer), OperatingPoints.

    Rescaling        y = x * scale + offset            dx = dy * scale
    Activation       y = f(x) for a named f            dx = dy * f'(x)
    Identity         y = x                             dx = dy
    OperatingPoints  y = p / (2 t)            p <  t   dx = dy / (2 t)
                     y = 1 - (1 - p)/(2(1-t)) p >= t   dx = dy / (2 (1 - t))
                     y = 0.5                  t NaN    dx = 0

``OperatingPoints`` is torchxrayvision's ``op_norm``: per-output calibration of probabilities ``p``
(N, K) so that each output's operating point ``t`` maps to 0.5 (piecewise linear, continuous at
``t``); an output without a threshold (NaN: not trained) is 0.5. The thresholds are a buffer
(``op_threshs``), saved with the model.

``scale`` and ``offset`` of Rescaling are a number or one value per channel (axis 1 of an
NCHW tensor, or the last axis of an (N, D) tensor). They are constants, not parameters (Keras
``Rescaling`` has no weights either).

``Activation(name, alpha=None)`` knows the functions below (``alpha`` only for ``elu`` and
``leaky_relu``; Keras defaults: elu 1.0, leaky_relu 0.2 -- the Keras *layer* ``LeakyReLU``
defaults to 0.3, the importer passes it explicitly)::

    linear       x
    relu         max(x, 0)
    relu6        min(max(x, 0), 6)
    leaky_relu   x if x > 0 else alpha * x
    elu          x if x > 0 else alpha * (exp(x) - 1)
    selu         scale * elu(x, alpha=1.6732632...), scale = 1.0507009...
    tanh         tanh(x)
    sigmoid      1 / (1 + exp(-x))
    softplus     log(1 + exp(x))
    softsign     x / (1 + |x|)
    swish        x * sigmoid(x)                (also called silu)
    gelu         x * Phi(x), Phi the standard normal CDF (exact, erf-based; Keras' default)
    gelu_tanh    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))   (Keras gelu(approximate=True))
    exponential  exp(x)

Softmax is not here: it normalises along an axis (``minicnn.layers.activation.Softmax``).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import erf

from ..errors import UsageError
from ..shapes import check_input
from ..kernels.activation import sigmoid_forward, softplus
from .base import Layer

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946
_SQRT_2_PI = math.sqrt(2.0 / math.pi)


def _any_rank(layer, x):
    return check_input(layer, x, ndim=np.ndim(x))


def _elu(x, a):
    return np.where(x > 0, x, a * np.expm1(np.minimum(x, 0)))


def _elu_grad(x, a):
    return np.where(x > 0, 1.0, a * np.exp(np.minimum(x, 0)))


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(_SQRT_2_PI * (x + 0.044715 * x ** 3)))


def _gelu_tanh_grad(x):
    u = _SQRT_2_PI * (x + 0.044715 * x ** 3)
    t = np.tanh(u)
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_PI * (1 + 3 * 0.044715 * x * x)


# name -> (f(x, alpha), f'(x, alpha)); alpha is None for functions without one
_FUNCTIONS = {
    "linear": (lambda x, a: x, lambda x, a: np.ones_like(x)),
    "relu": (lambda x, a: np.maximum(x, 0), lambda x, a: (x > 0).astype(x.dtype)),
    "relu6": (lambda x, a: np.clip(x, 0, 6), lambda x, a: ((x > 0) & (x < 6)).astype(x.dtype)),
    "leaky_relu": (lambda x, a: np.where(x > 0, x, a * x), lambda x, a: np.where(x > 0, 1.0, a)),
    "elu": (_elu, _elu_grad),
    "selu": (lambda x, a: _SELU_SCALE * _elu(x, _SELU_ALPHA),
             lambda x, a: _SELU_SCALE * _elu_grad(x, _SELU_ALPHA)),
    "tanh": (lambda x, a: np.tanh(x), lambda x, a: 1 - np.tanh(x) ** 2),
    "sigmoid": (lambda x, a: sigmoid_forward(x), lambda x, a: sigmoid_forward(x) * (1 - sigmoid_forward(x))),
    "softplus": (lambda x, a: softplus(x), lambda x, a: sigmoid_forward(x)),
    "softsign": (lambda x, a: x / (1 + np.abs(x)), lambda x, a: 1 / (1 + np.abs(x)) ** 2),
    "swish": (lambda x, a: x * sigmoid_forward(x),
              lambda x, a: sigmoid_forward(x) * (1 + x * (1 - sigmoid_forward(x)))),
    "gelu": (lambda x, a: 0.5 * x * (1 + erf(x / math.sqrt(2))),
             lambda x, a: 0.5 * (1 + erf(x / math.sqrt(2))) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)),
    "gelu_tanh": (lambda x, a: _gelu_tanh(x), lambda x, a: _gelu_tanh_grad(x)),
    "exponential": (lambda x, a: np.exp(x), lambda x, a: np.exp(x)),
}
_ALIASES = {"silu": "swish", "identity": "linear"}
_DEFAULT_ALPHA = {"elu": 1.0, "leaky_relu": 0.2}
ACTIVATIONS = tuple(sorted(_FUNCTIONS))


class Activation(Layer):
    """``Activation(name, alpha=None)``: an elementwise function by name (see the module docstring)."""

    def __init__(self, name: str, alpha=None):
        super().__init__()
        key = _ALIASES.get(str(name).lower(), str(name).lower())
        if key not in _FUNCTIONS:
            raise UsageError(f"Activation: unknown function {name!r}; known: {', '.join(ACTIVATIONS)} "
                             f"(and aliases {', '.join(_ALIASES)})")
        if alpha is not None and key not in _DEFAULT_ALPHA:
            raise UsageError(f"Activation({key!r}) takes no alpha, got alpha={alpha!r}")
        self.name = key
        self.alpha = None if key not in _DEFAULT_ALPHA else float(_DEFAULT_ALPHA[key] if alpha is None else alpha)

    def forward(self, x, training: bool = False):
        x = _any_rank(self, x)
        self._cache = x
        f, _ = _FUNCTIONS[self.name]
        return np.asarray(f(x, self.alpha), dtype=x.dtype)

    def backward(self, dy, need_dx: bool = True):
        x = self._pop_cache()
        if not need_dx:
            return None
        _, df = _FUNCTIONS[self.name]
        return (dy * df(x, self.alpha)).astype(dy.dtype, copy=False)

    def get_config(self):
        cfg = {"name": self.name}
        if self.alpha is not None:
            cfg["alpha"] = self.alpha
        return cfg


class Rescaling(Layer):
    """``Rescaling(scale=1.0, offset=0.0)``: ``y = x * scale + offset`` (e.g. ``1/127.5, -1``)."""

    def __init__(self, scale=1.0, offset=0.0):
        super().__init__()
        self.scale = self._check(scale, "scale")
        self.offset = self._check(offset, "offset")

    @staticmethod
    def _check(v, what):
        a = np.asarray(v, dtype=np.float64)
        if a.ndim > 1 or not np.all(np.isfinite(a)):
            raise UsageError(f"Rescaling: {what} must be a finite number or a list (one per channel), got {v!r}")
        return float(a) if a.ndim == 0 else [float(t) for t in a]

    def _broadcast(self, v, x):
        a = np.asarray(v, dtype=x.dtype)
        if a.ndim == 0:
            return a
        if x.ndim < 2 or x.shape[1] != a.size:
            raise UsageError(f"{self!r}: {a.size} per-channel values do not match x.shape={x.shape} (channels on axis 1)")
        return a.reshape((1, -1) + (1,) * (x.ndim - 2))

    def forward(self, x, training: bool = False):
        x = _any_rank(self, x)
        self._cache = x.shape
        return x * self._broadcast(self.scale, x) + self._broadcast(self.offset, x)

    def backward(self, dy, need_dx: bool = True):
        self._pop_cache()
        if not need_dx:
            return None
        return (dy * self._broadcast(self.scale, dy)).astype(dy.dtype, copy=False)

    def get_config(self):
        return {"scale": self.scale, "offset": self.offset}


class Identity(Layer):
    """``Identity()``: ``y = x`` (a Keras ``Dropout`` called with ``training=False``, a linear ``Activation``)."""

    def forward(self, x, training: bool = False):
        x = _any_rank(self, x)
        self._cache = True
        return x

    def backward(self, dy, need_dx: bool = True):
        self._pop_cache()
        return np.array(dy, copy=True) if need_dx else None


def operating_points_reference(p, thresholds) -> np.ndarray:
    """``op_norm`` element by element, as torchxrayvision writes it (the plain reference of the layer)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, 0.5)
    for i in range(p.shape[0]):
        for k in range(p.shape[1]):
            t = float(thresholds[k])
            if math.isnan(t):
                continue
            out[i, k] = p[i, k] / (t * 2) if p[i, k] < t else 1.0 - (1.0 - p[i, k]) / ((1 - t) * 2)
    return out


class OperatingPoints(Layer):
    """``OperatingPoints(thresholds)``: each output's threshold maps to 0.5 (torchxrayvision's ``op_norm``).

    ``thresholds``: one per output (K), each in (0, 1) or NaN (the output is not calibrated: 0.5).
    Input (N, K) probabilities (after a sigmoid); no trainable parameters.
    """

    def __init__(self, thresholds):
        super().__init__()
        t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
        ok = np.isnan(t) | ((t > 0) & (t < 1))
        if t.size == 0 or not ok.all():
            raise UsageError(f"OperatingPoints: thresholds must be in (0, 1) or NaN, got {list(t)}")
        self.buffers["op_threshs"] = t.astype(np.float32)
        self.trainable = False

    @property
    def thresholds(self) -> np.ndarray:
        return self.buffers["op_threshs"]

    def _slopes(self, x):
        t = self.thresholds.astype(x.dtype)
        if x.ndim != 2 or x.shape[1] != t.size:
            raise UsageError(f"{self!r}: expects (N, {t.size}) probabilities, got shape {x.shape}")
        nan = np.isnan(t)
        below = x < t
        safe = np.where(nan, 0.5, t)
        slope = np.where(below, 0.5 / safe, 0.5 / (1 - safe))
        return np.where(nan, 0, slope).astype(x.dtype), below, safe, nan

    def forward(self, x, training: bool = False):
        x = _any_rank(self, x)
        slope, below, t, nan = self._slopes(x)
        y = np.where(below, x * slope, 1 - (1 - x) * slope)
        self._cache = slope
        return np.where(nan, 0.5, y).astype(x.dtype)

    def backward(self, dy, need_dx: bool = True):
        slope = self._pop_cache()
        return (dy * slope).astype(dy.dtype, copy=False) if need_dx else None

    def get_config(self):
        return {"thresholds": [None if math.isnan(v) else float(v) for v in self.thresholds]}


EXTRA_LAYERS = {"Activation": Activation, "Rescaling": Rescaling, "Identity": Identity,
                "OperatingPoints": OperatingPoints}
