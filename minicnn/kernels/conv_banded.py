"""Conv method ``banded``: Numba threads over work items, each calling a single-threaded BLAS GEMM.

The columns of one work item stay in L2 (``BAND_BYTES``), and BLAS is held at one thread around
the call (``minicnn.runtime.blas_single_thread``), since Numba's threads call it concurrently:

* forward: an item is (sample n, band of R output rows). Its columns (G*K, R*Wp), K = Cg*KH*KW,
  fit in ``BAND_BYTES``; ``y[n, g-rows, band] = W_g @ columns_g + b`` is written straight into y.
  For stride 1 the columns use the padded input width Wp = W + left + right as row pitch:
  the band's padded input rows are copied once, and each kernel offset's column row is then ONE
  contiguous copy of them shifted by ``i*dh*Wp + j*dw`` (the Wp - OW extra columns per row are
  junk, computed and dropped). Other strides: im2col of the band (Wp = OW).
* backward: worker t of T takes samples t, t+T, ...; per band it forms the columns, sums
  ``dW_t += dy_band @ columns.T`` in its own buffer (the T partial sums are added at the end)
  and scatters ``W.T @ dy_band`` back into its samples' dx (no two workers touch the same dx).

Geometry ``g`` is a ``minicnn.kernels.conv.ConvGeometry``; the arguments are checked there.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ..runtime import blas_single_thread, njit, work_split
from .conv_common import split_rows, valid_range

# The column buffer of one band of output rows of one sample stays below this (L2-sized).
BAND_BYTES = 2**20


def forward(x, W, b, g):
    """y (N, F, OH, OW) = conv2d(x, W) + b, parallel over (sample, band of output rows)."""
    N, C, H, Wd = x.shape
    F, Cg, KH, KW = W.shape
    G, K = g.G, Cg * KH * KW
    bias = np.zeros(F, x.dtype) if b is None else b
    y = np.empty((N, F, g.OH, g.OW), x.dtype)
    Wp = _band_pitch(Wd, g)
    with blas_single_thread():
        _banded_forward(x, W.reshape(G, F // G, K), bias, KH, KW, g.sh, g.sw, g.pt, g.pl, g.dh, g.dw,
                        _band_rows(N, G * K, g.OH, Wp, x.itemsize), Wp, y)
    return y


def backward(dy, x, W, g, need_dx, need_dW):
    """``(dx or None, dW or None)``; each Numba worker owns whole samples and its own partial dW."""
    N, C, H, Wd = x.shape
    F, Cg, KH, KW = W.shape
    G, Fg, K = g.G, F // g.G, Cg * KH * KW
    W3t = np.ascontiguousarray(W.reshape(G, Fg, K).transpose(0, 2, 1))   # (G, K, Fg)
    T = max(1, min(N, work_split()))      # partial dW buffers: fixed with runtime.configure(deterministic=True)
    dWp = np.zeros((T, G, Fg, K), x.dtype) if need_dW else np.zeros((1, 1, 1, 1), x.dtype)
    dx = np.zeros(x.shape, x.dtype) if need_dx else np.zeros((1, 1, 1, 1), x.dtype)
    Wp = _band_pitch(Wd, g)
    with blas_single_thread():
        _banded_backward(dy, x, W3t, KH, KW, g.sh, g.sw, g.pt, g.pl, g.dh, g.dw,
                         _band_rows(N, G * K, g.OH, Wp, x.itemsize), Wp, need_dx, need_dW, dx, dWp)
    dW = (dWp.sum(axis=0) if T > 1 else dWp[0]).reshape(W.shape) if need_dW else None
    return (dx if need_dx else None), dW


def _band_pitch(Wd, g) -> int:
    """Row pitch of the banded columns: the padded input width for stride 1, else OW."""
    return Wd + g.pl + g.pr if g.sh == g.sw == 1 else g.OW


def _band_rows(N: int, K: int, OH: int, OW: int, itemsize: int) -> int:
    """Output rows per band: the band's columns (K, rows*OW) fit in ``BAND_BYTES``, and the N
    samples have enough bands to give every thread work."""
    return max(1, min(OH, BAND_BYTES // max(K * OW * itemsize, 1), split_rows(OH, N)))


@njit(cache=True)
def _im2col_rows(x, n, KH, KW, sh, sw, pt, pl, dh, dw, oh0, oh1, OW, cols):
    """cols[(c*KH + i)*KW + j, (oh - oh0)*OW + ow] = xp[n, c, oh*sh + i*dh, ow*sw + j*dw], oh in [oh0, oh1)."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for c in range(C):
        for i in range(KH):
            for j in range(KW):
                out = cols[(c * KH + i) * KW + j]
                lo, hi = valid_range(OW, sw, pl, j * dw, W)
                w0 = lo * sw + j * dw - pl
                m = hi - lo
                for oh in range(oh0, oh1):
                    h = oh * sh - pt + i * dh
                    o = out[(oh - oh0) * OW:(oh - oh0 + 1) * OW]
                    if h < 0 or h >= H:
                        o[:] = 0
                        continue
                    o[:lo] = 0
                    o[hi:] = 0
                    seg = o[lo:hi]
                    if sw == 1:
                        xs = x[n, c, h, w0:w0 + m]
                        for k in range(m):
                            seg[k] = xs[k]
                    else:
                        xr = x[n, c, h]
                        for k in range(m):
                            seg[k] = xr[w0 + k * sw]


@njit(cache=True)
def _col2im_rows(cols, n, KH, KW, sh, sw, pt, pl, dh, dw, oh0, oh1, OW, dx):
    """dx[n, c, oh*sh + i*dh - pt, ow*sw + j*dw - pl] += cols[(c*KH + i)*KW + j, (oh - oh0)*OW + ow]."""
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    for c in range(C):
        for i in range(KH):
            for j in range(KW):
                src = cols[(c * KH + i) * KW + j]
                lo, hi = valid_range(OW, sw, pl, j * dw, W)
                w0 = lo * sw + j * dw - pl
                m = hi - lo
                for oh in range(oh0, oh1):
                    h = oh * sh - pt + i * dh
                    if h < 0 or h >= H:
                        continue
                    seg = src[(oh - oh0) * OW + lo:(oh - oh0) * OW + hi]
                    if sw == 1:
                        xs = dx[n, c, h, w0:w0 + m]
                        for k in range(m):
                            xs[k] += seg[k]
                    else:
                        xr = dx[n, c, h]
                        for k in range(m):
                            xr[w0 + k * sw] += seg[k]


@njit(cache=True)
def _fill_band(x, n, oh0, oh1, KH, KW, sh, sw, pt, pl, dh, dw, OW, Wp, bp, cols):
    """Columns of output rows [oh0, oh1) of sample n at row pitch Wp: column q = (oh - oh0)*Wp + ow.

    Stride 1: Wp is the padded input width; the rows of the band's padded input ``bp`` (C, Rin*Wp)
    are laid end to end, so each kernel offset's column row is ONE contiguous copy from bp
    (entries with ow >= OW are junk read from the padding/next row; they are never used, and the
    last Wp - OW are zeroed). Other strides: ``_im2col_rows`` (Wp == OW).
    """
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    if sh != 1 or sw != 1:
        _im2col_rows(x, n, KH, KW, sh, sw, pt, pl, dh, dw, oh0, oh1, OW, cols)
        return
    Rb = oh1 - oh0
    Rin = Rb + dh * (KH - 1)
    L = (Rb - 1) * Wp + OW
    for c in range(C):
        b = bp[c]
        for r in range(Rin):
            h = oh0 - pt + r
            row = b[r * Wp:(r + 1) * Wp]
            if h < 0 or h >= H:
                row[:] = 0
            else:
                row[:pl] = 0
                xr = x[n, c, h]
                rw = row[pl:]
                for k in range(W):
                    rw[k] = xr[k]
                row[pl + W:] = 0
        for i in range(KH):
            for j in range(KW):
                o = cols[(c * KH + i) * KW + j]
                src = b[i * dh * Wp + j * dw:]
                for k in range(L):                                    # a plain loop: a memcpy for LLVM
                    o[k] = src[k]
                o[L:] = 0


@njit(cache=True)
def _scatter_band(cols, n, oh0, oh1, KH, KW, sh, sw, pt, pl, dh, dw, OW, Wp, bp, dx):
    """dx[n] += the column gradient of output rows [oh0, oh1) (inverse of ``_fill_band``).

    Stride 1: contiguous adds into the band's padded gradient bp, whose in-image part is then
    added to dx (junk columns hold zeros, since the junk columns of dy were zeroed).
    """
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    if sh != 1 or sw != 1:
        _col2im_rows(cols, n, KH, KW, sh, sw, pt, pl, dh, dw, oh0, oh1, OW, dx)
        return
    Rb = oh1 - oh0
    Rin = Rb + dh * (KH - 1)
    L = (Rb - 1) * Wp + OW
    for c in range(C):
        b = bp[c]
        b[:] = 0
        for i in range(KH):
            for j in range(KW):
                src = cols[(c * KH + i) * KW + j]
                s0 = i * dh * Wp + j * dw
                t = b[s0:s0 + L]
                for k in range(L):
                    t[k] += src[k]
        for r in range(Rin):
            h = oh0 - pt + r
            if h < 0 or h >= H:
                continue
            d = dx[n, c, h]
            sr = b[r * Wp + pl:r * Wp + pl + W]
            for k in range(W):
                d[k] += sr[k]


@njit(cache=True, parallel=True)
def _banded_forward(x, W3, bias, KH, KW, sh, sw, pt, pl, dh, dw, R, Wp, y):
    """y[n, :, oh0:oh1] = W_g @ columns of that band, + bias. Parallel over (sample, band of R rows).

    Each work item fills its own small column buffer (stays in L2) and calls BLAS (one thread).
    """
    N, C = x.shape[0], x.shape[1]
    G, Fg, K = W3.shape
    OH, OW = y.shape[2], y.shape[3]
    nb = (OH + R - 1) // R
    for t in prange(N * nb):
        n = t // nb
        oh0 = (t % nb) * R
        oh1 = min(OH, oh0 + R)
        Pb = (oh1 - oh0) * Wp
        cols = np.empty((G * K, Pb), x.dtype)
        bp = np.empty((C, (oh1 - oh0 + dh * (KH - 1)) * Wp), x.dtype)
        out = np.empty((Fg, Pb), x.dtype)
        _fill_band(x, n, oh0, oh1, KH, KW, sh, sw, pt, pl, dh, dw, OW, Wp, bp, cols)
        for g in range(G):
            np.dot(W3[g], cols[g * K:(g + 1) * K], out)
            for f in range(Fg):
                bf = bias[g * Fg + f]
                for oh in range(oh0, oh1):
                    yr = y[n, g * Fg + f, oh]
                    o = out[f, (oh - oh0) * Wp:(oh - oh0) * Wp + OW]
                    for k in range(OW):
                        yr[k] = o[k] + bf


@njit(cache=True, parallel=True)
def _banded_backward(dy, x, W3t, KH, KW, sh, sw, pt, pl, dh, dw, R, Wp, need_dx, need_dW, dx, dWp):
    """dx (zeros on entry) and per-worker partial dW sums dWp (T, G, Fg, K), T = dWp.shape[0].

    Worker t takes samples t, t + T, ...: it alone writes their dx, and it sums its own dWp[t]
    (no races). Per band of R output rows: columns, dWp[t] += dy_band @ columns.T, column
    gradient W.T @ dy_band, scattered back into dx.
    """
    N, C = x.shape[0], x.shape[1]
    G, K, Fg = W3t.shape
    F = G * Fg
    OH, OW = dy.shape[2], dy.shape[3]
    T = dWp.shape[0]
    for t in prange(T):
        cbuf = np.empty(G * K * R * Wp, x.dtype)                      # flat, so each band's view is contiguous
        dbuf = np.empty(F * R * Wp, x.dtype)
        bp = np.empty((C, (R + dh * (KH - 1)) * Wp), x.dtype)
        tmp = np.empty((Fg, K), x.dtype)
        for n in range(t, N, T):
            for oh0 in range(0, OH, R):
                oh1 = min(OH, oh0 + R)
                Pb = (oh1 - oh0) * Wp
                c = cbuf[:G * K * Pb].reshape(G * K, Pb)
                d = dbuf[:F * Pb].reshape(F, Pb)
                bpb = bp[:, :(oh1 - oh0 + dh * (KH - 1)) * Wp]
                d[:] = 0
                for f in range(F):
                    for oh in range(oh0, oh1):
                        dr = d[f, (oh - oh0) * Wp:]
                        src = dy[n, f, oh]
                        for k in range(OW):
                            dr[k] = src[k]
                if need_dW:
                    _fill_band(x, n, oh0, oh1, KH, KW, sh, sw, pt, pl, dh, dw, OW, Wp, bpb, c)
                    for g in range(G):
                        np.dot(d[g * Fg:(g + 1) * Fg], c[g * K:(g + 1) * K].T, tmp)
                        dWp[t, g] += tmp
                if need_dx:
                    for g in range(G):
                        np.dot(W3t[g], d[g * Fg:(g + 1) * Fg], c[g * K:(g + 1) * K])
                    _scatter_band(c, n, oh0, oh1, KH, KW, sh, sw, pt, pl, dh, dw, OW, Wp, bpb, dx)
