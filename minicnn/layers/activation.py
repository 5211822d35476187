"""Activation layers and dropout (any input rank; math in ``minicnn.kernels.activation``).

    ReLU       y = max(x, 0)                       dx = dy * [x > 0]
    Sigmoid    y = 1 / (1 + exp(-x))               dx = dy * y * (1 - y)
    Softmax    y = softmax(x) along ``axis``       dx = y * (dy - sum(dy * y, axis))
    Dropout    training: y = x * mask / (1 - p)    dx = dy * mask / (1 - p);  otherwise identity
"""
from __future__ import annotations

import numpy as np

from ..errors import UsageError
from ..shapes import check_input
from ..kernels import activation as K
from ..kernels.methods import KERNEL_METHODS
from .base import Layer


def _any_rank(layer, x):
    """Validate dtype only (these layers accept any rank)."""
    return check_input(layer, x, ndim=np.ndim(x))


class ReLU(Layer):
    """``ReLU(method="auto")``: ``y = max(x, 0)``; the gradient at exactly 0 is 0.
    ``method``: "auto" | "fast" | "reference" kernel (``minicnn.kernels.activation``)."""
    kernel_methods = KERNEL_METHODS

    def __init__(self, method: str = "auto"):
        super().__init__()
        self.set_kernel_method(method)

    def forward(self, x, training: bool = False):
        x = _any_rank(self, x)
        self._cache = x
        return K.relu_forward(x, method=self.method)

    def infer(self, x, overwrite: bool = False):
        if not self._own_infer(ReLU):
            return super().infer(x, overwrite)
        x = _any_rank(self, x)
        return K.relu_forward(x, out=x if overwrite else None, method=self.method)

    def backward(self, dy, need_dx: bool = True):
        x = self._pop_cache()
        return K.relu_backward(dy, x, method=self.method) if need_dx else None

    def get_config(self):
        return self._method_config()


class Sigmoid(Layer):
    """``Sigmoid()``: the logistic function, stable for large ``|x|`` (no overflow warnings)."""

    def forward(self, x, training: bool = False):
        x = _any_rank(self, x)
        y = K.sigmoid_forward(x)
        self._cache = y
        return y

    def backward(self, dy, need_dx: bool = True):
        y = self._pop_cache()
        return K.sigmoid_backward(dy, y) if need_dx else None


class Softmax(Layer):
    """``Softmax(axis=1)``: normalised exponentials along ``axis`` (the max is subtracted first)."""

    def __init__(self, axis: int = 1):
        super().__init__()
        self.axis = int(axis)

    def forward(self, x, training: bool = False):
        x = _any_rank(self, x)
        if not -x.ndim <= self.axis < x.ndim:
            raise UsageError(f"{self!r}: axis {self.axis} is out of range for x.shape={x.shape}")
        y = K.softmax_forward(x, self.axis)
        self._cache = y
        return y

    def backward(self, dy, need_dx: bool = True):
        y = self._pop_cache()
        return K.softmax_backward(dy, y, self.axis) if need_dx else None

    def get_config(self):
        return {"axis": self.axis}


class Dropout(Layer):
    """``Dropout(p=0.5, seed=None)``: inverted dropout.

    In training each value is zeroed with probability ``p`` and the survivors are scaled by
    ``1 / (1 - p)``; otherwise (``training=False``) the layer is the identity. The mask is drawn
    from the generator passed as ``forward(..., rng=)`` (the training loop passes one per batch,
    derived from its seed, so a resumed run draws the same masks); without one, from the layer's
    own generator, created once from ``seed``.
    """
    uses_rng = True

    def __init__(self, p: float = 0.5, seed=None):
        super().__init__()
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise UsageError(f"Dropout probability p must be in [0, 1), got {p!r}")
        self.p = p
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def forward(self, x, training: bool = False, rng: np.random.Generator | None = None):
        x = _any_rank(self, x)
        if not training or self.p == 0.0:
            self._cache = (None,)
            return x
        y, mask = K.dropout_forward(x, self.p, self.rng if rng is None else rng)
        self._cache = (mask,)
        return y

    def backward(self, dy, need_dx: bool = True):
        (mask,) = self._pop_cache()
        if not need_dx:
            return None
        if mask is None:  # identity in the forward
            return np.array(dy, copy=True)
        return K.dropout_backward(dy, mask, self.p)

    def get_config(self):
        return {"p": self.p, "seed": self.seed}
