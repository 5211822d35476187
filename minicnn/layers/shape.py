"""Layers that only move values around: Flatten, ZeroPad2D, Concat, Add.

    Flatten    (N, C, H, W) -> (N, C*H*W)               dx = dy reshaped back
    ZeroPad2D  (N, C, H, W) -> (N, C, H+t+b, W+l+r)      dx = the centre of dy
    Concat     [(N, C_i, H, W)] -> (N, sum C_i, H, W)    dx_i = dy's channel slice i
    Add        [x_0, x_1, ...] -> sum_i x_i              dx_i = dy
    BufferedConcat  Concat that appends into a preallocated channel buffer (DenseNet inference:
               no quadratic re-copying of the growing feature stack)
"""
from __future__ import annotations

import numpy as np

from ..errors import UsageError
from ..shapes import check_input, normalize_padding
from .base import Layer


class Flatten(Layer):
    """Flatten everything but the batch axis, in C-order (NCHW: channel-major)."""

    def forward(self, x, training: bool = False):
        x = np.asarray(x)
        if x.ndim < 2:
            raise UsageError(f"{self!r} expects at least a 2-D input, got x.shape={x.shape}")
        self._cache = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, need_dx: bool = True):
        shape = self._pop_cache()
        return dy.reshape(shape) if need_dx else None

    def output_shape(self, input_shape):
        return (input_shape[0], int(np.prod(input_shape[1:])))


class ZeroPad2D(Layer):
    """``ZeroPad2D(padding)``: padding an int, ``(ph, pw)`` or ``(top, bottom, left, right)``."""

    def __init__(self, padding=1):
        super().__init__()
        self.padding = normalize_padding(padding)

    def forward(self, x, training: bool = False):
        x = check_input(self, x, ndim=4)
        t, b, l, r = self.padding
        self._cache = x.shape
        return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))

    def backward(self, dy, need_dx: bool = True):
        N, C, H, W = self._pop_cache()
        if not need_dx:
            return None
        t, _, l, _ = self.padding
        return dy[:, :, t:t + H, l:l + W].copy()

    def output_shape(self, input_shape):
        n, c, h, w = input_shape
        t, b, l, r = self.padding
        return (n, c, h + t + b, w + l + r)

    def get_config(self):
        return {"padding": list(self.padding)}


class Concat(Layer):
    """Concatenate a list of inputs along ``axis`` (default 1: channels)."""

    multi_input = True

    def __init__(self, axis: int = 1):
        super().__init__()
        self.axis = int(axis)

    def forward(self, xs, training: bool = False):
        xs = [np.asarray(x) for x in xs]
        ref = xs[0].shape
        for x in xs[1:]:
            other = tuple(s for i, s in enumerate(x.shape) if i != self.axis % x.ndim)
            if x.ndim != len(ref) or other != tuple(s for i, s in enumerate(ref) if i != self.axis % len(ref)):
                raise UsageError(f"{self!r}: inputs must agree except on axis {self.axis}, got shapes "
                                 f"{[v.shape for v in xs]}")
        self._cache = [x.shape[self.axis] for x in xs]
        return np.concatenate(xs, axis=self.axis)

    def backward(self, dy, need_dx: bool = True):
        sizes = self._pop_cache()
        if not need_dx:
            return None
        cuts = np.cumsum(sizes)[:-1]
        return np.split(dy, cuts, axis=self.axis)

    def output_shape(self, input_shape):
        shapes = [tuple(s) for s in input_shape]
        out = list(shapes[0])
        sizes = [s[self.axis] for s in shapes]
        out[self.axis] = None if None in sizes else sum(sizes)     # None: the (symbolic) batch axis
        return tuple(out)

    def get_config(self):
        return {"axis": self.axis}


class Add(Layer):
    """Elementwise sum of a list of same-shaped inputs (residual connections)."""

    multi_input = True

    def forward(self, xs, training: bool = False):
        xs = self._checked(xs)
        self._cache = len(xs)
        return self._sum(xs, np.empty_like(xs[0]))

    def infer(self, xs, overwrite: bool = False):
        """``overwrite=True`` (nothing else reads ``xs[0]``): the sum is written over ``xs[0]``."""
        if not self._own_infer(Add):
            return super().infer(xs, overwrite)
        xs = self._checked(xs)
        return self._sum(xs, xs[0] if overwrite else np.empty_like(xs[0]))

    def _checked(self, xs):
        xs = [np.asarray(x) for x in xs]
        if any(x.shape != xs[0].shape for x in xs):
            raise UsageError(f"{self!r}: inputs must have equal shapes, got {[x.shape for x in xs]}")
        return xs

    @staticmethod
    def _sum(xs, out):
        """xs[0] + xs[1] + ... into ``out`` (xs[0]'s dtype): one pass per added input, no copy first."""
        if len(xs) == 1:
            np.copyto(out, xs[0])
            return out
        np.add(xs[0], xs[1], out=out)
        for x in xs[2:]:
            out += x
        return out

    def backward(self, dy, need_dx: bool = True):
        n = self._pop_cache()
        return [dy] * n if need_dx else None

    def output_shape(self, input_shape):
        return tuple(input_shape[0])


class BufferedConcat(Concat):
    """Channel concatenation ``[prev, new]`` that writes into a buffer of ``capacity`` channels.

    With ``continues=True`` (set by ``use_concat_buffers`` only where this node is the sole
    concatenation reading the previous one) and ``prev`` the prefix view ``buf[:, :c]`` of such a
    buffer, only ``new`` is copied, into ``buf[:, c:c + new_channels]``, and the view
    ``buf[:, :c + new_channels]`` is returned. Otherwise a fresh buffer is allocated and ``prev``
    copied in first. Writes never touch the channels an earlier view covers. Backward is
    ``Concat``'s (split the gradient).
    """

    def __init__(self, capacity: int, continues: bool = False, axis: int = 1):
        if axis != 1:
            raise UsageError(f"BufferedConcat concatenates channels (axis=1), got axis={axis}")
        super().__init__(axis=1)
        self.capacity = int(capacity)
        self.continues = bool(continues)

    def _owning_buffer(self, prev):
        buf = prev.base
        if (isinstance(buf, np.ndarray) and buf.ndim == 4 and buf.shape[1] == self.capacity
                and buf.shape[0] == prev.shape[0] and buf.shape[2:] == prev.shape[2:] and buf.dtype == prev.dtype
                and prev.strides == buf.strides and prev.ctypes.data == buf.ctypes.data):
            return buf
        return None

    def forward(self, xs, training: bool = False):
        if len(xs) != 2:
            return super().forward(xs, training)
        prev, new = np.asarray(xs[0]), np.asarray(xs[1])
        if prev.ndim != 4 or new.ndim != 4 or prev.shape[0] != new.shape[0] or prev.shape[2:] != new.shape[2:]:
            raise UsageError(f"{self!r}: inputs must be (N, C, H, W) with equal N, H, W, got "
                             f"{prev.shape} and {new.shape}")
        c0, c1 = prev.shape[1], prev.shape[1] + new.shape[1]
        if c1 > self.capacity:
            raise UsageError(f"{self!r}: {c1} channels do not fit in the buffer's {self.capacity}")
        buf = self._owning_buffer(prev) if self.continues else None
        if buf is None:
            buf = np.empty((prev.shape[0], self.capacity) + prev.shape[2:], np.result_type(prev, new))
            buf[:, :c0] = prev
        buf[:, c0:c1] = new
        self._cache = [c0, c1 - c0]
        return buf[:, :c1]

    def get_config(self):
        return {"capacity": self.capacity, "continues": self.continues, "axis": 1}
