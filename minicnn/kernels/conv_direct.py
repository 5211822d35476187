"""Conv method ``direct``: one input channel per group (Cg == 1, depthwise), as plain Numba loops.

The per-group matrix products of the other methods would be tiny here (K = KH*KW terms), so each
output row is accumulated directly: for every kernel offset (i, j), ``y[n, f, oh, lo:hi] +=
W[f, 0, i, j] * x[n, c, h, <columns>]`` over the row segment that lies inside the input
(``conv_common.valid_range``), one output row at a time so the KH*KW passes over it stay in L1.

Geometry ``g`` is a ``minicnn.kernels.conv.ConvGeometry``; the arguments are checked there.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ..runtime import njit

from .conv_common import valid_range


def forward(x, W, b, g):
    """y (N, F, OH, OW) = depthwise conv2d(x, W) + b; output channel f reads input channel f // (F / G)."""
    N, F = x.shape[0], W.shape[0]
    bias = np.zeros(F, x.dtype) if b is None else b
    y = np.empty((N, F, g.OH, g.OW), x.dtype)
    _direct_forward(x, W, bias, g.sh, g.sw, g.pt, g.pl, g.dh, g.dw, g.G, y)
    return y


def backward(dy, x, W, g, need_dx, need_dW):
    """``(dx or None, dW or None)``: dx parallel over (sample, input channel), dW over output channels."""
    dW = dx = None
    if need_dW:
        dW = np.empty(W.shape, x.dtype)
        _direct_backward_weight(dy, x, g.sh, g.sw, g.pt, g.pl, g.dh, g.dw, g.G, dW)
    if need_dx:
        dx = np.zeros(x.shape, x.dtype)
        _direct_backward_input(dy, W, g.sh, g.sw, g.pt, g.pl, g.dh, g.dw, g.G, dx)
    return dx, dW


@njit(cache=True, parallel=True)
def _direct_forward(x, W, b, sh, sw, pt, pl, dh, dw, G, y):
    """y[n, f] = b[f] + sum_{i,j} W[f, 0, i, j] * xp[n, f // Fg, ...]   (Cg == 1). Parallel over (n, f).

    One output row at a time, so the KH*KW passes over it stay in L1.
    """
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    OH, OW = y.shape[2], y.shape[3]
    Fg = F // G
    for t in prange(N * F):
        n = t // F
        f = t % F
        c = f // Fg
        for oh in range(OH):
            yr = y[n, f, oh]
            yr[:] = b[f]
            for i in range(KH):
                h = oh * sh - pt + i * dh
                if h < 0 or h >= H:
                    continue
                for j in range(KW):
                    wv = W[f, 0, i, j]
                    lo, hi = valid_range(OW, sw, pl, j * dw, Wd)
                    w0 = lo * sw + j * dw - pl
                    m = hi - lo
                    ys = yr[lo:hi]
                    if sw == 1:
                        xs = x[n, c, h, w0:w0 + m]
                        for k in range(m):
                            ys[k] += wv * xs[k]
                    else:
                        xr = x[n, c, h]
                        for k in range(m):
                            ys[k] += wv * xr[w0 + k * sw]


@njit(cache=True, parallel=True)
def _direct_backward_input(dy, W, sh, sw, pt, pl, dh, dw, G, dx):
    """dxp[n, c, ...] += dy[n, f, oh, ow] * W[f, 0, i, j] for the Fg outputs f of input c. Parallel over (n, c)."""
    N, C, H, Wd = dx.shape
    F, _, KH, KW = W.shape
    OH, OW = dy.shape[2], dy.shape[3]
    Fg = F // G
    for t in prange(N * C):
        n = t // C
        c = t % C
        for f in range(c * Fg, (c + 1) * Fg):
            for oh in range(OH):
                dr = dy[n, f, oh]
                for i in range(KH):
                    h = oh * sh - pt + i * dh
                    if h < 0 or h >= H:
                        continue
                    for j in range(KW):
                        wv = W[f, 0, i, j]
                        lo, hi = valid_range(OW, sw, pl, j * dw, Wd)
                        w0 = lo * sw + j * dw - pl
                        m = hi - lo
                        ds = dr[lo:hi]
                        if sw == 1:
                            xs = dx[n, c, h, w0:w0 + m]
                            for k in range(m):
                                xs[k] += wv * ds[k]
                        else:
                            xr = dx[n, c, h]
                            for k in range(m):
                                xr[w0 + k * sw] += wv * ds[k]


@njit(cache=True, parallel=True)
def _direct_backward_weight(dy, x, sh, sw, pt, pl, dh, dw, G, dW):
    """dW[f, 0, i, j] = sum_{n, oh, ow} dy[n, f, oh, ow] * xp[n, f // Fg, ...]. Parallel over f.

    Each sum runs into a row of OW partial sums (elementwise, so it vectorises without reordering
    any single float sum), added up at the end.
    """
    N, C, H, Wd = x.shape
    F, _, KH, KW = dW.shape
    OH, OW = dy.shape[2], dy.shape[3]
    Fg = F // G
    for f in prange(F):
        c = f // Fg
        acc = np.empty(OW, dW.dtype)
        for i in range(KH):
            for j in range(KW):
                lo, hi = valid_range(OW, sw, pl, j * dw, Wd)
                w0 = lo * sw + j * dw - pl
                m = hi - lo
                acc[:] = 0
                a = acc[lo:hi]
                for n in range(N):
                    for oh in range(OH):
                        h = oh * sh - pt + i * dh
                        if h < 0 or h >= H:
                            continue
                        ds = dy[n, f, oh, lo:hi]
                        if sw == 1:
                            xs = x[n, c, h, w0:w0 + m]
                            for k in range(m):
                                a[k] += ds[k] * xs[k]
                        else:
                            xr = x[n, c, h]
                            for k in range(m):
                                a[k] += ds[k] * xr[w0 + k * sw]
                s = acc[0]
                for ow in range(1, OW):
                    s += acc[ow]
                dW[f, 0, i, j] = s
