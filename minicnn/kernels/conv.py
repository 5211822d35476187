"""2-D convolution (cross-correlation, as in every framework): the maths, the reference, the dispatch.

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

``conv2d_forward_reference`` and ``conv2d_backward_reference`` at the end of this file are these
formulas as plain loops. ``conv2d_forward`` / ``conv2d_backward`` compute the same with one of
several methods (``method=``), each in its own file:

================  ===============================================================================
``reference``     the plain loops below (slow: for reading and for checking the others)
``im2col``        ``conv_im2col.py``: columns (C*KH*KW, n*OH*OW) of a chunk of samples, one BLAS
                  GEMM per group on BLAS's own threads; backward scatters the column gradient
``banded``        ``conv_banded.py``: Numba threads over (sample, band of output rows), each
                  calling a single-threaded BLAS GEMM on columns that stay in L2
``pointwise``     ``conv_pointwise.py``: 1x1, stride 1, no padding: ``y[n] = W @ x[n]``, no
                  columns (forward, groups=1); backward the same way for groups=1, grouped by
                  the im2col path, whose columns are then x itself, transposed
``direct``        ``conv_direct.py``: one input channel per group (depthwise): direct Numba loops,
                  since the per-group matrix products would be tiny
``tiled``         ``conv_tiled.py``: float32, groups=1, stride 1: a register-tiled direct conv
                  (8 positions x 32 filters per Numba task, no columns, no BLAS); backward: dx
                  by the same kernel on dy (transposed, flipped filters), dW by ``banded``
``auto``          the default: ``direct`` for Cg == 1 with G > 1, else ``pointwise`` where it
                  applies, else ``tiled`` forward for at most 64 filters with C*KH*KW >= 288
                  and a batch of >= 256 wide output positions
                  (DenseNet's 3x3 convs: measured 1.15-1.4x faster than ``banded``; slower
                  with many filters), else ``banded``; backward: ``tiled`` (its dx) for at
                  least 64 input channels, at most 64 filters and F*KH*KW >= 288, else
                  ``banded`` (:func:`conv_method` tells which)
================  ===============================================================================

Why banded is the default: Numba's threads and BLAS's threads share the cores, and OpenBLAS's
threads spin between calls and contend with everything else. On 2 shared cores, BLAS limited to
one thread made im2col's fwd+bwd 2-4x faster, hence the banded path, which keeps all threading in
Numba (see ``minicnn.runtime`` for the thread policy; call the kernels from one Python thread at a
time).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..errors import UsageError
from ..shapes import as_pair, conv_output_size
from ..runtime import ensure_configured
from . import conv_banded, conv_direct, conv_im2col, conv_pointwise, conv_tiled
from .conv_common import is_pointwise

CONV_METHODS = ("auto", "reference", "im2col", "banded", "pointwise", "direct", "tiled")


# ------------------------------------------------------------------------------------------------
# geometry, shared by every method
# ------------------------------------------------------------------------------------------------
class ConvGeometry(NamedTuple):
    """A checked conv geometry: stride, padding (top, bottom, left, right), dilation, output size, groups."""
    sh: int
    sw: int
    pt: int
    pb: int
    pl: int
    pr: int
    dh: int
    dw: int
    OH: int
    OW: int
    G: int


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


def conv_geometry(x_shape, w_shape, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1) -> ConvGeometry:
    """Check the shapes and arguments of a conv; return its :class:`ConvGeometry`."""
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
    return ConvGeometry(*stride, *padding, *dilation, OH, OW, int(groups))


def _pointwise(g: ConvGeometry, w_shape) -> bool:
    return is_pointwise(w_shape[2], w_shape[3], g.sh, g.sw, g.pt, g.pb, g.pl, g.pr)


TILED_MIN_POSITIONS = 256   # auto takes tiled only for a batch of at least this many wide positions


def _enough_positions(x_shape, w_shape, g: ConvGeometry) -> bool:
    """Batch-1 DenseNet121, 2026-12-03: at 7x7 (61 wide positions) tiled took 102 us against
    banded's 79 (its per-call set-up is not paid back); from 14x14 (222) on they were even."""
    return x_shape[0] * conv_tiled.wide_positions(w_shape, g) >= TILED_MIN_POSITIONS


def _tiled_pays(w_shape) -> bool:
    """Where ``tiled`` beat ``banded`` (2026-12-02, 2 cores, GFLOP/s tiled/banded): few filters and
    long dot products, where a GEMM with only F rows is weak: (8,128,56^2 -> 32, 3x3) 147/104,
    (8,128,14^2 -> 32) 120/103, (8,32,56^2 -> 64) 115/108; slower with many filters or short taps:
    (1,64,224^2 -> 64) 105/133, (1,512,14^2 -> 512) 88/92, (1,3,224^2 -> 64) 26/49, 1x7 (128 -> 128) 66/93."""
    F, Cg, KH, KW = w_shape
    return F <= 64 and Cg * KH * KW >= 288


def _tiled_dx_pays(w_shape) -> bool:
    """Where ``tiled``'s dx made the whole backward faster than ``banded``'s (2026-12-03, 2 cores,
    time tiled/banded, dW from banded in both): (8,128,56^2 -> 32, 3x3) 0.76, (8,128,28^2) 0.79,
    (8,128,14^2) 0.90, (1,128,56^2) 0.68, (16,64,56^2 -> 64) 0.89, (1,64,224^2 -> 64) 0.73,
    (8,32,56^2 -> 64) 0.94; slower with few input or many filters: (1,3,224^2 -> 64) 1.56,
    (32,16,64^2 -> 32) 1.14, (8,256,14^2 -> 256) 1.10, (1,512,14^2 -> 512) 0.97; 1x1s run pointwise."""
    F, Cg, KH, KW = w_shape
    return Cg >= 64 and F <= 64 and F * KH * KW >= 288


def _resolve(method: str, g: ConvGeometry, x_shape, w_shape, backward: bool, dtype) -> str:
    """The method that runs: ``auto``'s choice, or ``method`` itself once checked against the geometry."""
    if method not in CONV_METHODS:
        raise UsageError(f"unknown conv method {method!r}; choose one of {', '.join(CONV_METHODS)}")
    Cg = w_shape[1]
    if method == "auto":
        if Cg == 1 and g.G > 1:
            return "direct"
        if _pointwise(g, w_shape) and (backward or g.G == 1):
            return "pointwise"
        if not backward and _tiled_pays(w_shape) and _enough_positions(x_shape, w_shape, g) \
                and conv_tiled.applies(dtype, w_shape, g) is None:
            return "tiled"
        if backward and _tiled_dx_pays(w_shape) and _enough_positions(x_shape, w_shape, g) \
                and conv_tiled.applies_backward(dtype, x_shape, w_shape, g) is None:
            return "tiled"
        return "banded"
    if method == "direct" and Cg != 1:
        raise UsageError(f"conv method 'direct' needs one input channel per group (depthwise), "
                         f"got W.shape={tuple(w_shape)} with groups={g.G}")
    if method == "pointwise" and not (_pointwise(g, w_shape) and (backward or g.G == 1)):
        raise UsageError(f"conv method 'pointwise' needs a 1x1 kernel, stride 1, no padding (and groups=1 forward), "
                         f"got W.shape={tuple(w_shape)}, stride={(g.sh, g.sw)}, padding={(g.pt, g.pb, g.pl, g.pr)}, "
                         f"groups={g.G}")
    if method == "tiled":
        why = (conv_tiled.applies_backward(dtype, x_shape, w_shape, g) if backward
               else conv_tiled.applies(dtype, w_shape, g))
        if why is not None:
            raise UsageError(f"conv method 'tiled' needs {why} (float32, groups=1, stride 1, at least "
                             f"{conv_tiled.P} output positions per sample), got dtype={np.dtype(dtype).name}, "
                             f"W.shape={tuple(w_shape)}, stride={(g.sh, g.sw)}, padding={(g.pt, g.pb, g.pl, g.pr)}, "
                             f"groups={g.G}; use method='auto'")
    return method


def conv_method(x_shape, w_shape, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1,
                method="auto", backward=False, dtype="float32") -> str:
    """The method ``conv2d_forward`` (``backward=True``: ``conv2d_backward``) runs for these
    arguments, for an input of ``dtype``."""
    g = conv_geometry(x_shape, w_shape, stride, padding, dilation, groups)
    return _resolve(method, g, x_shape, w_shape, backward, dtype)


# ------------------------------------------------------------------------------------------------
# entry points
# ------------------------------------------------------------------------------------------------
_FORWARD = {"im2col": conv_im2col.forward, "banded": conv_banded.forward,
            "pointwise": conv_pointwise.forward, "direct": conv_direct.forward, "tiled": conv_tiled.forward}
_BACKWARD = {"im2col": conv_im2col.backward, "banded": conv_banded.backward,
             "pointwise": conv_pointwise.backward, "direct": conv_direct.backward,
             "tiled": conv_tiled.backward}


def conv2d_forward(x, W, b=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1, method="auto"):
    """``y = conv2d(x, W) + b`` (see the module docstring for the formula and the methods).

    x (N, C, H, W) float32/float64; W (F, C/G, KH, KW); b (F,) or None.
    padding: int, (ph, pw) or (top, bottom, left, right) zeros. Returns y (N, F, OH, OW) in x's dtype.
    """
    x = np.ascontiguousarray(x)
    g = conv_geometry(x.shape, W.shape, stride, padding, dilation, groups)
    method = _resolve(method, g, x.shape, W.shape, backward=False, dtype=x.dtype)
    if method == "reference":
        return conv2d_forward_reference(x, W, b, stride, padding, dilation, groups)
    W = np.ascontiguousarray(W, dtype=x.dtype)
    b = None if b is None else np.ascontiguousarray(b, dtype=x.dtype).reshape(W.shape[0])
    ensure_configured()
    return _FORWARD[method](x, W, b, g)


def conv2d_backward(dy, x, W, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1,
                    need_dx=True, need_dW=True, method="auto"):
    """Gradients of ``conv2d_forward`` (formulas in the module docstring).

    dy (N, F, OH, OW), x (N, C, H, W), W (F, C/G, KH, KW). Returns ``(dx, dW, db)`` in x's dtype:
    dx (N, C, H, W) or None when ``need_dx`` is False; dW (F, C/G, KH, KW) and db (F,), both None
    when ``need_dW`` is False (db is computed whether or not the conv has a bias; ignore it if not).
    """
    x = np.ascontiguousarray(x)
    g = conv_geometry(x.shape, W.shape, stride, padding, dilation, groups)
    N, F = x.shape[0], W.shape[0]
    if dy.shape != (N, F, g.OH, g.OW):
        raise UsageError(f"conv2d_backward: dy.shape={dy.shape}, expected {(N, F, g.OH, g.OW)}")
    method = _resolve(method, g, x.shape, W.shape, backward=True, dtype=x.dtype)
    if method == "reference":
        return conv2d_backward_reference(dy, x, W, stride, padding, dilation, groups, need_dx, need_dW)
    dy = np.ascontiguousarray(dy, dtype=x.dtype)
    W = np.ascontiguousarray(W, dtype=x.dtype)
    db = dy.sum(axis=(0, 2, 3)) if need_dW else None
    if not (need_dx or need_dW):
        return None, None, None
    ensure_configured()
    dx, dW = _BACKWARD[method](dy, x, W, g, need_dx, need_dW)
    return dx, dW, db


# ------------------------------------------------------------------------------------------------
# readable references (slow): the formulas above as explicit loops
# ------------------------------------------------------------------------------------------------
def conv2d_forward_reference(x, W, b=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1):
    """Plain-loop ``conv2d_forward``: one dot product of a window with a filter per output value."""
    sh, sw, pt, pb, pl, pr, dh, dw, OH, OW, _ = conv_geometry(x.shape, W.shape, stride, padding, dilation, groups)
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
    sh, sw, pt, pb, pl, pr, dh, dw, OH, OW, _ = conv_geometry(x.shape, W.shape, stride, padding, dilation, groups)
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
