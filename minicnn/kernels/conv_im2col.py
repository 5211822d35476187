"""Conv method ``im2col``: columns of a chunk of samples, then one BLAS GEMM per group.

Forward: im2col (Numba) writes the columns (C*KH*KW, n*OH*OW) of a chunk of n samples side by
side, then ``y_g = W_g @ columns_g`` is one BLAS GEMM per group for the whole chunk (on BLAS's
own threads). Backward: ``dW_g += dy_g @ columns_g.T`` over the chunks, the column gradient
``W_g.T @ dy_g``, and col2im scatter-adds it into dx. Chunks keep the column buffer below
``COLS_BYTES``. A 1x1 stride-1 conv without padding needs no im2col: its columns are x
transposed (this is also the backward of method ``pointwise``).

Geometry ``g`` is a ``minicnn.kernels.conv.ConvGeometry``; the arguments are checked there.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ..runtime import njit

from .conv_common import is_pointwise, valid_range

# Upper bound on the im2col buffer (bytes); samples are processed in chunks that fit in it.
COLS_BYTES = 64 * 2**20


def forward(x, W, b, g, cols_bytes: int = COLS_BYTES):
    """y (N, F, OH, OW) = conv2d(x, W) + b, chunk by chunk (``cols_bytes``: the column buffer bound)."""
    N, C = x.shape[:2]
    F, Cg, KH, KW = W.shape
    G, Fg, K, P = g.G, F // g.G, Cg * KH * KW, g.OH * g.OW
    W3 = W.reshape(G, Fg, K)                                          # (G, Fg, Cg*KH*KW)
    pointwise = is_pointwise(KH, KW, g.sh, g.sw, g.pt, g.pb, g.pl, g.pr)
    y = np.empty((N, F, P), x.dtype)
    step = _chunk(N, C * KH * KW * P * x.itemsize, cols_bytes)
    cols = np.empty((C * KH * KW, step * P), x.dtype)                 # columns of `step` samples side by side
    out = np.empty((F, step * P), x.dtype)
    for n0 in range(0, N, step):
        nb = min(step, N - n0)
        c, o = cols[:, :nb * P], out[:, :nb * P]
        _fill_columns(x[n0:n0 + nb], c, pointwise, KH, KW, g)
        for gi in range(G):                                           # (Fg, K) @ (K, nb*P): one GEMM per group
            np.matmul(W3[gi], c[gi * K:(gi + 1) * K], out=o[gi * Fg:(gi + 1) * Fg])
        o3 = o.reshape(F, nb, P).transpose(1, 0, 2)                   # (nb, F, P) view
        if b is None:
            y[n0:n0 + nb] = o3
        else:
            np.add(o3, b.reshape(1, F, 1), out=y[n0:n0 + nb])
    return y.reshape(N, F, g.OH, g.OW)


def backward(dy, x, W, g, need_dx, need_dW, cols_bytes: int = COLS_BYTES):
    """``(dx or None, dW or None)`` chunk by chunk; db is the caller's (a sum over dy)."""
    N, C, H, Wd = x.shape
    F, Cg, KH, KW = W.shape
    G, Fg, K, P = g.G, F // g.G, Cg * KH * KW, g.OH * g.OW
    pointwise = is_pointwise(KH, KW, g.sh, g.sw, g.pt, g.pb, g.pl, g.pr)
    W3t = np.ascontiguousarray(W.reshape(G, Fg, K).transpose(0, 2, 1))   # (G, K, Fg)
    # dx is accumulated into (zeros) except for a pointwise conv, whose transpose writes every element
    dx = (np.empty if pointwise else np.zeros)(x.shape, x.dtype) if need_dx else None
    dW3 = np.zeros((G, Fg, K), x.dtype) if need_dW else None
    tmp = np.empty((Fg, K), x.dtype)
    step = _chunk(N, C * KH * KW * P * x.itemsize, cols_bytes)
    cols = np.empty((C * KH * KW, step * P), x.dtype)
    dyT = np.empty((F, step * P), x.dtype)
    for n0 in range(0, N, step):
        nb = min(step, N - n0)
        c, d = cols[:, :nb * P], dyT[:, :nb * P]
        d.reshape(F, nb, P)[...] = dy[n0:n0 + nb].reshape(nb, F, P).transpose(1, 0, 2)   # (F, nb*P)
        if need_dW:
            _fill_columns(x[n0:n0 + nb], c, pointwise, KH, KW, g)
            for gi in range(G):                                       # dW_g += dy_g (Fg, nb*P) @ cols_g.T
                np.matmul(d[gi * Fg:(gi + 1) * Fg], c[gi * K:(gi + 1) * K].T, out=tmp)
                dW3[gi] += tmp
        if need_dx:
            for gi in range(G):                                       # column gradient W_g.T @ dy_g
                np.matmul(W3t[gi], d[gi * Fg:(gi + 1) * Fg], out=c[gi * K:(gi + 1) * K])
            if pointwise:
                dx[n0:n0 + nb] = c.reshape(C, nb, H, Wd).transpose(1, 0, 2, 3)
            else:
                _col2im(c, KH, KW, g.sh, g.sw, g.pt, g.pl, g.dh, g.dw, g.OH, g.OW, dx[n0:n0 + nb])
    return dx, (dW3.reshape(W.shape) if need_dW else None)


def _fill_columns(x, cols, pointwise, KH, KW, g):
    """cols (C*KH*KW, n*OH*OW) from x (n, C, H, W); a 1x1 stride-1 conv only needs x transposed."""
    if pointwise:
        n, C = x.shape[:2]
        cols.reshape(C, n, g.OH * g.OW)[...] = x.reshape(n, C, g.OH * g.OW).transpose(1, 0, 2)
    else:
        _im2col(x, KH, KW, g.sh, g.sw, g.pt, g.pl, g.dh, g.dw, g.OH, g.OW, cols)


def _chunk(N: int, bytes_per_sample: int, cols_bytes: int) -> int:
    """How many samples' columns fit in ``cols_bytes`` (at least one)."""
    return max(1, min(N, cols_bytes // max(bytes_per_sample, 1)))


@njit(cache=True, parallel=True)
def _im2col(x, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW, cols):
    """cols[(c*KH + i)*KW + j, n*OH*OW + oh*OW + ow] = xp[n, c, oh*sh + i*dh, ow*sw + j*dw] (0 in padding).

    x (N, C, H, W) -> cols (C*KH*KW, N*OH*OW): the samples' columns side by side, so one GEMM
    covers the whole chunk. Parallel over (n, c): each writes its own block of cols.
    """
    N, C, H, W = x.shape
    for t in prange(N * C):
        n = t // C
        c = t % C
        for i in range(KH):
            for j in range(KW):
                out = cols[(c * KH + i) * KW + j, n * OH * OW:(n + 1) * OH * OW]   # one kernel offset
                lo, hi = valid_range(OW, sw, pl, j * dw, W)
                w0 = lo * sw + j * dw - pl                              # input column of output column lo
                m = hi - lo
                for oh in range(OH):
                    h = oh * sh - pt + i * dh
                    o = out[oh * OW:(oh + 1) * OW]
                    if h < 0 or h >= H:
                        o[:] = 0
                        continue
                    o[:lo] = 0
                    o[hi:] = 0
                    seg = o[lo:hi]
                    if sw == 1:
                        seg[:] = x[n, c, h, w0:w0 + m]
                    else:
                        xr = x[n, c, h]
                        for k in range(m):
                            seg[k] = xr[w0 + k * sw]


@njit(cache=True, parallel=True)
def _col2im(cols, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW, dx):
    """dx[n, c, oh*sh + i*dh - pt, ow*sw + j*dw - pl] += cols[(c*KH + i)*KW + j, n*OH*OW + oh*OW + ow].

    The inverse scatter of ``_im2col`` (padding positions dropped); dx must start at zero.
    Parallel over (n, c): overlapping windows of one channel are summed by one thread.
    """
    N, C, H, W = dx.shape
    for t in prange(N * C):
        n = t // C
        c = t % C
        for i in range(KH):
            for j in range(KW):
                src = cols[(c * KH + i) * KW + j, n * OH * OW:(n + 1) * OH * OW]
                lo, hi = valid_range(OW, sw, pl, j * dw, W)
                w0 = lo * sw + j * dw - pl
                m = hi - lo
                for oh in range(OH):
                    h = oh * sh - pt + i * dh
                    if h < 0 or h >= H:
                        continue
                    seg = src[oh * OW + lo:oh * OW + hi]
                    if sw == 1:
                        xs = dx[n, c, h, w0:w0 + m]
                        for k in range(m):
                            xs[k] += seg[k]
                    else:
                        xr = dx[n, c, h]
                        for k in range(m):
                            xr[w0 + k * sw] += seg[k]
