"""Conv method ``pointwise``: a 1x1 conv, stride 1, no padding, groups=1, needs no columns at all.

Forward: ``y[n, f-chunk] = W[f-chunk] @ x[n] + b`` (x[n] viewed as (C, H*W)), parallel over
(sample, chunk of output channels), one single-threaded BLAS GEMM each. Backward: the im2col
path (``conv_im2col.backward``), whose columns are then x itself, transposed: per-sample GEMMs
with only OH*OW = 49..784 terms measured slower than its few big GEMMs.

Geometry ``g`` is a ``minicnn.kernels.conv.ConvGeometry``; the arguments are checked there.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ..runtime import blas_single_thread, njit
from . import conv_im2col
from .conv_common import split_rows


def forward(x, W, b, g):
    """y (N, F, H, W) = W @ x[n] + b for every sample n."""
    N, C, H, Wd = x.shape
    F = W.shape[0]
    bias = np.zeros(F, x.dtype) if b is None else b
    y = np.empty((N, F, H, Wd), x.dtype)
    with blas_single_thread():
        _pointwise_forward(x.reshape(N, C, H * Wd), W.reshape(F, C), bias, split_rows(F, N), y.reshape(N, F, H * Wd))
    return y


def backward(dy, x, W, g, need_dx, need_dW):
    """``(dx or None, dW or None)`` by the im2col path (its 1x1 case: x transposed, no im2col)."""
    return conv_im2col.backward(dy, x, W, g, need_dx, need_dW)


@njit(cache=True, parallel=True)
def _pointwise_forward(x, W, bias, fs, y):
    """1x1 conv: y[n, f0:f1] = W[f0:f1] @ x[n] + b (x (N, C, P), y (N, F, P)). Parallel over (n, f-chunk)."""
    N = x.shape[0]
    F = W.shape[0]
    nf = (F + fs - 1) // fs
    for t in prange(N * nf):
        n = t // nf
        f0 = (t % nf) * fs
        f1 = min(F, f0 + fs)
        o = y[n, f0:f1]
        np.dot(W[f0:f1], x[n], o)
        for f in range(f0, f1):
            yr = y[n, f]
            bf = bias[f]
            for k in range(yr.shape[0]):
                yr[k] += bf
