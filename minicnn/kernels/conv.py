"""2-D convolution (cross-correlation, as in every framework): fast paths and plain references.

Shape letters: N batch, C input channels, H W input size, F output channels, KH KW kernel size,
OH OW output size, G groups (Cg = C / G input and Fg = F / G output channels per group).

Math (zero padding ``(top, bottom, left, right)``, stride ``(sh, sw)``, dilation ``(dh, dw)``;
``xp`` is ``x`` with the padding added, output channel ``f`` belongs to group ``g = f // Fg``)::

    y[n, f, oh, ow] = b[f] + sum_{c, i, j} W[f, c, i, j] * xp[n, g*Cg + c, oh*sh + i*dh, ow*sw + j*dw]

    OH = floor((H + top + bottom - dh*(KH - 1) - 1) / sh) + 1          (OW likewise)

Backward, for the upstream gradient ``dy`` (N, F, OH, OW)::

    db[f]          = sum_{n, oh, ow} dy[n, f, oh, ow]
    dW[f, c, i, j] = sum_{n, oh, ow} dy[n, f, oh, ow] * xp[n, g*Cg + c, oh*sh + i*dh, ow*sw + j*dw]
    dxp[n, g*Cg + c, oh*sh + i*dh, ow*sw + j*dw] += dy[n, f, oh, ow] * W[f, c, i, j]   (all f, oh, ow, i, j)
    dx = dxp with the padding cropped off

Fast paths (chosen in ``conv2d_forward`` / ``conv2d_backward``):

* Cg == 1 with G > 1 (depthwise): a direct Numba loop, because the per-group matrix products
  would be tiny.
* everything else, banded (used when ``threadpoolctl`` is importable): Numba ``prange`` over work
  items, each calling a single-threaded BLAS GEMM on data that stays in L2 (BLAS is limited to one
  thread around the call, since Numba's threads call it concurrently):

  - forward: an item is (sample n, band of R output rows). Its columns (G*K, R*Wp), K = Cg*KH*KW,
    fit in ``_BAND_BYTES``; ``y[n, g-rows, band] = W_g @ columns_g + b`` is written straight into y.
    For stride 1 the columns use the padded input width Wp = W + left + right as row pitch:
    the band's padded input rows are copied once, and each kernel offset's column row is then ONE
    contiguous copy of them shifted by ``i*dh*Wp + j*dw`` (the Wp - OW extra columns per row are
    junk, computed and dropped). Other strides: im2col of the band (Wp = OW).
  - backward: worker t of T takes samples t, t+T, ...; per band it forms the columns, sums
    ``dW_t += dy_band @ columns.T`` in its own buffer (the T partial sums are added at the end)
    and scatters ``W.T @ dy_band`` back into its samples' dx (no two workers touch the same dx).
  - 1x1, stride 1, no padding, G == 1, forward: no columns at all; ``y[n, f-chunk] =
    W[f-chunk] @ x[n] + b``, parallel over (n, f-chunk). Its backward takes the path below (per
    sample GEMMs with only OH*OW = 49..784 terms measured slower than the few big GEMMs there).
* fallback (no threadpoolctl; and 1x1 backward): im2col (Numba) into columns (C*KH*KW, n*OH*OW) that hold a chunk
  of n samples side by side, then one BLAS GEMM (on BLAS's own threads) per group for the whole
  chunk; backward recomputes the columns and col2im scatter-adds the column gradient into dx.
  Chunks keep the column buffer below ``_COLS_BYTES``. 1x1 stride-1 convs only transpose x.

Threads: the Numba kernels use ``parallel=True`` (a thread pool shared by the process); call them
from one Python thread at a time. Numba's threads and BLAS's threads share the cores; OpenBLAS's
threads spin between calls and contend with everything else: on 2 shared cores, BLAS limited to one
thread made the fallback's fwd+bwd 2-4x faster, hence the banded path, which keeps all threading in
Numba (idle OpenMP threads spin only briefly, see ``minicnn/kernels/__init__.py`` and
``minicnn/kernels/threads.py``).
"""
from __future__ import annotations

import numpy as np
from numba import get_num_threads, njit, prange

from ..errors import UsageError
from .._validate import as_pair, conv_output_size
from .threads import blas_single_thread as _blas_single_thread

# Upper bound on the im2col buffer (bytes); samples are processed in chunks that fit in it.
_COLS_BYTES = 64 * 2**20
# Banded path: the column buffer of one band of output rows of one sample stays below this (L2-sized).
_BAND_BYTES = 2**20


# ------------------------------------------------------------------------------------------------
# argument handling shared by the fast and reference paths
# ------------------------------------------------------------------------------------------------
def _pad4(padding) -> tuple[int, int, int, int]:
    if isinstance(padding, (int, np.integer)):
        p = int(padding)
        return (p, p, p, p)
    padding = tuple(int(v) for v in padding)
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    if len(padding) == 4 and min(padding) >= 0:
        return padding
    raise UsageError(f"padding must be an int, (ph, pw) or non-negative (top, bottom, left, right), "
                     f"got {padding!r}")


def _geometry(x_shape, w_shape, stride, padding, dilation, groups):
    """Check shapes; return ``(stride, padding4, dilation, OH, OW)``."""
    stride, dilation, padding = as_pair(stride, "stride"), as_pair(dilation, "dilation"), _pad4(padding)
    if len(x_shape) != 4 or len(w_shape) != 4:
        raise UsageError(f"conv2d expects x (N, C, H, W) and W (F, C/G, KH, KW), "
                         f"got x.shape={tuple(x_shape)}, W.shape={tuple(w_shape)}")
    N, C, H, Wd = x_shape
    F, Cg, KH, KW = w_shape
    if groups < 1 or C % groups or F % groups or Cg * groups != C:
        raise UsageError(f"conv2d with groups={groups}: x.shape={tuple(x_shape)} and W.shape={tuple(w_shape)} "
                         f"need C divisible by groups, F divisible by groups and W.shape[1] == C / groups")
    if min(stride) < 1 or min(dilation) < 1:
        raise UsageError(f"stride and dilation must be >= 1, got stride={stride}, dilation={dilation}")
    OH = conv_output_size(H, KH, stride[0], padding[0], padding[1], dilation[0])
    OW = conv_output_size(Wd, KW, stride[1], padding[2], padding[3], dilation[1])
    if OH < 1 or OW < 1:
        raise UsageError(f"conv2d output would be empty: x.shape={tuple(x_shape)}, W.shape={tuple(w_shape)}, "
                         f"stride={stride}, padding={padding}, dilation={dilation}")
    return stride, padding, dilation, OH, OW


# ------------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------------
def conv2d_forward(x, W, b=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """``y = conv2d(x, W) + b`` (see the module docstring for the formula).

    x (N, C, H, W) float32/float64; W (F, C/G, KH, KW); b (F,) or None.
    padding: int, (ph, pw) or (top, bottom, left, right) zeros. Returns y (N, F, OH, OW) in x's dtype.
    """
    x = np.ascontiguousarray(x)
    (sh, sw), (pt, pb, pl, pr), (dh, dw), OH, OW = _geometry(x.shape, W.shape, stride, padding, dilation, groups)
    W = np.ascontiguousarray(W, dtype=x.dtype)
    N, C, H, Wd = x.shape
    F, Cg, KH, KW = W.shape
    G = groups
    if Cg == 1 and G > 1:
        bias = np.zeros(F, x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
        y = np.empty((N, F, OH, OW), x.dtype)
        _direct_forward(x, W, bias, sh, sw, pt, pl, dh, dw, G, y)
        return y
    Fg, K, P = F // G, Cg * KH * KW, OH * OW
    W3 = W.reshape(G, Fg, K)                                          # (G, Fg, Cg*KH*KW)
    pointwise = _is_pointwise(KH, KW, sh, sw, pt, pb, pl, pr)
    single = _blas_single_thread()
    if single is not None:                                            # banded path (module docstring)
        bias = np.zeros(F, x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
        y = np.empty((N, F, OH, OW), x.dtype)
        if pointwise and G == 1:                                      # y[n, rows] = W[rows] @ x[n]: no copies
            with single:
                _pointwise_forward(x.reshape(N, C, P), W3[0], bias, _split(F, N), y.reshape(N, F, P))
            return y
        with single:
            Wp = _band_pitch(Wd, sh, sw, pl, pr, OW)
            _banded_forward(x, W3, bias, KH, KW, sh, sw, pt, pl, dh, dw, _band_rows(N, G * K, OH, Wp, x.itemsize), Wp, y)
        return y
    bias = None if b is None else np.asarray(b, dtype=x.dtype).reshape(F, 1, 1)
    y = np.empty((N, F, P), x.dtype)
    step = _chunk(N, C * KH * KW * P * x.itemsize)
    cols = np.empty((C * KH * KW, step * P), x.dtype)                 # columns of `step` samples side by side
    out = np.empty((F, step * P), x.dtype)
    for n0 in range(0, N, step):
        nb = min(step, N - n0)
        c, o = cols[:, :nb * P], out[:, :nb * P]
        _fill_columns(x[n0:n0 + nb], c, pointwise, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW)
        for g in range(G):                                            # (Fg, K) @ (K, nb*P): one GEMM per group
            np.matmul(W3[g], c[g * K:(g + 1) * K], out=o[g * Fg:(g + 1) * Fg])
        o3 = o.reshape(F, nb, P).transpose(1, 0, 2)                   # (nb, F, P) view
        if bias is None:
            y[n0:n0 + nb] = o3
        else:
            np.add(o3, bias.reshape(1, F, 1), out=y[n0:n0 + nb])
    return y.reshape(N, F, OH, OW)


def conv2d_backward(dy, x, W, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1,
                    need_dx=True, need_dW=True):
    """Gradients of ``conv2d_forward`` (formulas in the module docstring).

    dy (N, F, OH, OW), x (N, C, H, W), W (F, C/G, KH, KW). Returns ``(dx, dW, db)`` in x's dtype:
    dx (N, C, H, W) or None when ``need_dx`` is False; dW (F, C/G, KH, KW) and db (F,), both None
    when ``need_dW`` is False (db is computed whether or not the conv has a bias; ignore it if not).
    """
    x = np.ascontiguousarray(x)
    (sh, sw), (pt, pb, pl, pr), (dh, dw), OH, OW = _geometry(x.shape, W.shape, stride, padding, dilation, groups)
    N, C, H, Wd = x.shape
    F, Cg, KH, KW = W.shape
    if dy.shape != (N, F, OH, OW):
        raise UsageError(f"conv2d_backward: dy.shape={dy.shape}, expected {(N, F, OH, OW)}")
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    W = np.ascontiguousarray(W, dtype=x.dtype)
    G, Fg, K = groups, F // groups, Cg * KH * KW
    direct = Cg == 1 and groups > 1
    pointwise = _is_pointwise(KH, KW, sh, sw, pt, pb, pl, pr)
    # dx is accumulated into (zeros) except on the pointwise GEMM path, which writes every element
    dx = (np.empty if pointwise and not direct else np.zeros)(x.shape, x.dtype) if need_dx else None
    dW = db = None
    if need_dW:
        db = dy.sum(axis=(0, 2, 3))
    if not (need_dx or need_dW):
        return dx, dW, db

    if direct:
        if need_dW:
            dW = np.empty(W.shape, x.dtype)
            _direct_backward_weight(dy, x, sh, sw, pt, pl, dh, dw, G, dW)
        if need_dx:
            _direct_backward_input(dy, W, sh, sw, pt, pl, dh, dw, G, dx)
        return dx, dW, db

    P = OH * OW
    W3 = W.reshape(G, Fg, K)
    W3t = np.ascontiguousarray(W3.transpose(0, 2, 1))                 # (G, K, Fg)
    single = None if pointwise else _blas_single_thread()            # 1x1: the GEMMs below win
    if single is not None:                                            # banded path (module docstring)
        T = max(1, min(N, get_num_threads()))
        dWp = np.zeros((T, G, Fg, K), x.dtype) if need_dW else np.zeros((1, 1, 1, 1), x.dtype)
        dx = dxa = np.zeros(x.shape, x.dtype) if need_dx else np.zeros((1, 1, 1, 1), x.dtype)
        with single:
            Wp = _band_pitch(Wd, sh, sw, pl, pr, OW)
            _banded_backward(dy, x, W3t, KH, KW, sh, sw, pt, pl, dh, dw, _band_rows(N, G * K, OH, Wp, x.itemsize), Wp,
                             need_dx, need_dW, dxa, dWp)
        if need_dW:
            dW = dWp.sum(axis=0).reshape(W.shape) if T > 1 else dWp[0].reshape(W.shape)
        return (dx if need_dx else None), dW, db
    dW3 = np.zeros((G, Fg, K), x.dtype) if need_dW else None
    tmp = np.empty((Fg, K), x.dtype)
    step = _chunk(N, C * KH * KW * P * x.itemsize)
    cols = np.empty((C * KH * KW, step * P), x.dtype)
    dyT = np.empty((F, step * P), x.dtype)
    for n0 in range(0, N, step):
        nb = min(step, N - n0)
        c, d = cols[:, :nb * P], dyT[:, :nb * P]
        d.reshape(F, nb, P)[...] = dy[n0:n0 + nb].reshape(nb, F, P).transpose(1, 0, 2)   # (F, nb*P)
        if need_dW:
            _fill_columns(x[n0:n0 + nb], c, pointwise, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW)
            for g in range(G):                                        # dW_g += dy_g (Fg, nb*P) @ cols_g.T
                np.matmul(d[g * Fg:(g + 1) * Fg], c[g * K:(g + 1) * K].T, out=tmp)
                dW3[g] += tmp
        if need_dx:
            for g in range(G):                                        # column gradient W_g.T @ dy_g
                np.matmul(W3t[g], d[g * Fg:(g + 1) * Fg], out=c[g * K:(g + 1) * K])
            if pointwise:
                dx[n0:n0 + nb] = c.reshape(C, nb, H, Wd).transpose(1, 0, 2, 3)
            else:
                _col2im(c, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW, dx[n0:n0 + nb])
    if need_dW:
        dW = dW3.reshape(W.shape)
    return dx, dW, db


def _fill_columns(x, cols, pointwise, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW):
    """cols (C*KH*KW, n*OH*OW) from x (n, C, H, W); a 1x1 stride-1 conv only needs x transposed."""
    if pointwise:
        n, C = x.shape[:2]
        cols.reshape(C, n, OH * OW)[...] = x.reshape(n, C, OH * OW).transpose(1, 0, 2)
    else:
        _im2col(x, KH, KW, sh, sw, pt, pl, dh, dw, OH, OW, cols)


def _is_pointwise(KH, KW, sh, sw, pt, pb, pl, pr) -> bool:
    return KH == KW == sh == sw == 1 and pt == pb == pl == pr == 0


def _split(rows: int, items: int) -> int:
    """Rows per chunk so that ``items`` times the number of chunks gives every thread work."""
    per = -(-get_num_threads() // max(items, 1))                      # chunks per item (ceil)
    return max(1, -(-rows // per)) if per > 1 else rows


def _band_pitch(Wd, sh, sw, pl, pr, OW) -> int:
    """Row pitch of the banded columns: the padded input width for stride 1, else OW."""
    return Wd + pl + pr if sh == sw == 1 else OW


def _band_rows(N: int, K: int, OH: int, OW: int, itemsize: int) -> int:
    """Output rows per band: the band's columns (K, rows*OW) fit in ``_BAND_BYTES``, and the N
    samples have enough bands to give every thread work."""
    return max(1, min(OH, _BAND_BYTES // max(K * OW * itemsize, 1), _split(OH, N)))


def _chunk(N: int, bytes_per_sample: int) -> int:
    """How many samples' columns fit in ``_COLS_BYTES`` (at least one)."""
    return max(1, min(N, _COLS_BYTES // max(bytes_per_sample, 1)))


# ------------------------------------------------------------------------------------------------
# Numba kernels: im2col / col2im
# ------------------------------------------------------------------------------------------------
@njit(cache=True)
def _valid_range(OW, sw, pl, offset, W):
    """Output columns ``ow`` whose input column ``ow*sw - pl + offset`` lies inside ``[0, W)``."""
    lo = 0
    while lo < OW and lo * sw - pl + offset < 0:
        lo += 1
    hi = OW
    while hi > lo and (hi - 1) * sw - pl + offset >= W:
        hi -= 1
    return lo, hi


# Inner loops run over a row segment ``k in range(m)`` starting at a precomputed offset: indices
# that are provably non-negative let LLVM vectorise (an index like ``ow + w0`` with ``w0 < 0``
# would need Numba's negative-index wraparound check on every element).

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
                lo, hi = _valid_range(OW, sw, pl, j * dw, W)
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
                lo, hi = _valid_range(OW, sw, pl, j * dw, W)
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


# ------------------------------------------------------------------------------------------------
# Numba kernels: banded im2col + single-threaded GEMM per (sample, band of output rows)
# ------------------------------------------------------------------------------------------------
@njit(cache=True)
def _im2col_rows(x, n, KH, KW, sh, sw, pt, pl, dh, dw, oh0, oh1, OW, cols):
    """cols[(c*KH + i)*KW + j, (oh - oh0)*OW + ow] = xp[n, c, oh*sh + i*dh, ow*sw + j*dw], oh in [oh0, oh1)."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    for c in range(C):
        for i in range(KH):
            for j in range(KW):
                out = cols[(c * KH + i) * KW + j]
                lo, hi = _valid_range(OW, sw, pl, j * dw, W)
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
                lo, hi = _valid_range(OW, sw, pl, j * dw, W)
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


# ------------------------------------------------------------------------------------------------
# Numba kernels: direct convolution for one input channel per group (depthwise)
# ------------------------------------------------------------------------------------------------
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
                    lo, hi = _valid_range(OW, sw, pl, j * dw, Wd)
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
                        lo, hi = _valid_range(OW, sw, pl, j * dw, Wd)
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
                lo, hi = _valid_range(OW, sw, pl, j * dw, Wd)
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


# ------------------------------------------------------------------------------------------------
# readable references (slow): the formulas above as explicit loops
# ------------------------------------------------------------------------------------------------
def conv2d_forward_reference(x, W, b=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """Plain-loop ``conv2d_forward``: one dot product of a window with a filter per output value."""
    (sh, sw), (pt, pb, pl, pr), (dh, dw), OH, OW = _geometry(x.shape, W.shape, stride, padding, dilation, groups)
    N, C, H, Wd = x.shape
    F, Cg, KH, KW = W.shape
    Fg = F // groups
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))              # zero padding
    y = np.zeros((N, F, OH, OW), x.dtype)
    for n in range(N):
        for f in range(F):
            g = f // Fg                                                # this filter's group
            for oh in range(OH):
                for ow in range(OW):
                    window = xp[n, g * Cg:(g + 1) * Cg,
                                oh * sh: oh * sh + dh * (KH - 1) + 1: dh,
                                ow * sw: ow * sw + dw * (KW - 1) + 1: dw]    # (Cg, KH, KW)
                    y[n, f, oh, ow] = np.sum(window * W[f]) + (0 if b is None else b[f])
    return y


def conv2d_backward_reference(dy, x, W, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1,
                              need_dx=True, need_dW=True):
    """Plain-loop ``conv2d_backward``: every output value sends its gradient back to its window."""
    (sh, sw), (pt, pb, pl, pr), (dh, dw), OH, OW = _geometry(x.shape, W.shape, stride, padding, dilation, groups)
    N, C, H, Wd = x.shape
    F, Cg, KH, KW = W.shape
    Fg = F // groups
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    dxp = np.zeros_like(xp)
    dW = np.zeros(W.shape, x.dtype)
    for n in range(N):
        for f in range(F):
            g = f // Fg
            for oh in range(OH):
                for ow in range(OW):
                    rows = slice(oh * sh, oh * sh + dh * (KH - 1) + 1, dh)
                    cols = slice(ow * sw, ow * sw + dw * (KW - 1) + 1, dw)
                    chans = slice(g * Cg, (g + 1) * Cg)
                    dW[f] += dy[n, f, oh, ow] * xp[n, chans, rows, cols]
                    dxp[n, chans, rows, cols] += dy[n, f, oh, ow] * W[f]
    dx = dxp[:, :, pt:pt + H, pl:pl + Wd].copy() if need_dx else None
    db = dy.sum(axis=(0, 2, 3)).astype(x.dtype) if need_dW else None
    return dx, (dW if need_dW else None), db
