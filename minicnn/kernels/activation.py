"""Elementwise activations, softmax and inverted dropout (any shape).

Each forward returns an array of the input's shape and dtype; each backward takes the upstream
gradient ``dy`` (same shape) plus what the forward produced, and returns ``dx`` without changing
``dy``.

    relu      y = max(x, 0)                     dx = dy * [x > 0]     (the kink x = 0 gets 0)
    sigmoid   y = 1 / (1 + exp(-x))             dx = dy * y * (1 - y)
    softmax   y = exp(x - max) / sum exp(...)   dx = y * (dy - sum(dy * y))      (sums over ``axis``)
    dropout   y = x * mask / (1 - p)            dx = dy * mask / (1 - p)
              mask = rng.random(x.shape) >= p   (each value kept with probability 1 - p)
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ..errors import UsageError
from ..runtime import ensure_configured, njit
from .methods import check_method

# ReLU runs ~120 times per DenseNet121 pass: NumPy's single-threaded ufuncs took 1.27 ms on
# (8, 128, 56, 56) float32, the parallel Numba loop 0.30 ms (0.10 ms in place). Below this many
# values the plain NumPy expression is used (no thread hand-off for tiny arrays).
_PARALLEL_MIN = 1 << 15


def _use_kernel(method, *arrays) -> bool:
    """Run the Numba ReLU? "auto": for big float arrays of one dtype and shape, contiguous;
    "fast": always (such arrays required); "reference": never."""
    a = arrays[0]
    fits = (a.dtype in (np.float32, np.float64)
            and all(b.dtype == a.dtype and b.shape == a.shape and b.flags.c_contiguous for b in arrays))
    if check_method(method) == "reference" or (method == "auto" and not (fits and a.size >= _PARALLEL_MIN)):
        return False
    if not fits:
        raise UsageError(f"the fast ReLU kernel needs contiguous float32/float64 arrays of one dtype and shape, "
                         f"got {[(b.dtype.name, b.shape) for b in arrays]}")
    ensure_configured()
    return True


def relu_forward(x, out=None, method="auto"):
    """``y = max(x, 0)``; NaN stays NaN. ``out``: the array to write (may be ``x`` itself: in place).
    ``method``: "auto" | "fast" | "reference" (``minicnn.kernels.methods``)."""
    x = np.asarray(x)
    if out is None:
        out = np.empty(x.shape, x.dtype)
    if _use_kernel(method, x, out):
        _relu_kernel(x.reshape(-1), out.reshape(-1))
    else:
        out[...] = relu_forward_reference(x)
    return out


def relu_backward(dy, x, method="auto"):
    """``dx = dy where x > 0, else 0`` (the subgradient at 0 is 0, as in torch)."""
    dy, x = np.asarray(dy), np.asarray(x)
    if _use_kernel(method, dy, x):
        dx = np.empty(dy.shape, dy.dtype)
        _relu_backward_kernel(dy.reshape(-1), x.reshape(-1), dx.reshape(-1))
        return dx
    return relu_backward_reference(dy, x)


def relu_forward_reference(x):
    """Plain NumPy ``relu_forward``."""
    return np.maximum(x, 0).astype(x.dtype, copy=False)


def relu_backward_reference(dy, x):
    """Plain NumPy ``relu_backward``."""
    return np.where(x > 0, dy, 0).astype(dy.dtype, copy=False)


@njit(parallel=True, cache=True)
def _relu_kernel(x, y):
    for i in prange(x.size):
        v = x[i]
        y[i] = v if not v <= 0 else 0                                  # "not <=": NaN passes through


@njit(parallel=True, cache=True)
def _relu_backward_kernel(dy, x, dx):
    for i in prange(x.size):
        dx[i] = dy[i] if x[i] > 0 else 0


def sigmoid_forward(x):
    """Numerically stable logistic: with ``e = exp(-|x|)`` (never overflows),
    ``y = 1 / (1 + e)`` for ``x >= 0`` and ``e / (1 + e)`` for ``x < 0``."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def softplus(x):
    """``log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))`` without overflow; ``-softplus(-x)`` is log-sigmoid."""
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def sigmoid_backward(dy, y):
    """``dx = dy * y * (1 - y)`` from the forward's output ``y``."""
    return dy * y * (1 - y)


def softmax_forward(x, axis=1):
    """``y = exp(x - max) / sum(exp(x - max))`` along ``axis`` (subtracting the max: no overflow)."""
    z = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return z / np.sum(z, axis=axis, keepdims=True)


def softmax_backward(dy, y, axis=1):
    """``dx = y * (dy - sum(dy * y, axis))``: the softmax Jacobian ``diag(y) - y y^T`` times ``dy``."""
    return y * (dy - np.sum(dy * y, axis=axis, keepdims=True))


def dropout_forward(x, p, rng):
    """Inverted dropout: returns ``(y, mask)`` with ``mask = rng.random(x.shape) >= p`` (bool) and
    ``y = x * mask / (1 - p)``, so the expected value of ``y`` is ``x`` and inference is the identity.

    ``rng`` is an explicit ``np.random.Generator`` (no global state); ``0 <= p < 1``.
    """
    if not 0.0 <= p < 1.0:
        raise UsageError(f"dropout probability p must be in [0, 1), got {p!r}")
    mask = rng.random(x.shape) >= p
    return x * mask * (1.0 / (1.0 - p)), mask


def dropout_backward(dy, mask, p):
    """``dx = dy * mask / (1 - p)`` with the forward's ``mask``."""
    return dy * mask * (1.0 / (1.0 - p))
