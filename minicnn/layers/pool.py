"""Pooling layers over NCHW maps (kernels in ``minicnn.kernels.pool``).

    MaxPool2D          (N, C, H, W) -> (N, C, OH, OW)   max of each window; padding never selected
    AvgPool2D          (N, C, H, W) -> (N, C, OH, OW)   mean of each window (count_include_pad)
    GlobalAvgPool2D    (N, C, H, W) -> (N, C)           mean of each plane
    GlobalMaxPool2D    (N, C, H, W) -> (N, C)           max of each plane
    AdaptiveAvgPool2D  (N, C, H, W) -> (N, C, OH, OW)   torch's adaptive bins

``OH = floor((H + top + bottom - KH) / SH) + 1`` (likewise OW). ``padding`` may be an int,
``(ph, pw)``, ``(top, bottom, left, right)``, ``'valid'`` or ``'same'`` (TensorFlow: output
``ceil(H / SH)``, the odd extra row/column at the bottom/right), resolved with the input size.
"""
from __future__ import annotations

import numpy as np

from ..errors import UsageError
from ..shapes import as_pair, check_input
from ..kernels import pool as K
from ..kernels.methods import KERNEL_METHODS
from .base import Layer


def _jsonable(value):
    return list(value) if isinstance(value, tuple) else value


class _WindowPool(Layer):
    """Shared geometry for MaxPool2D and AvgPool2D; ``method``: "auto" | "fast" | "reference" kernels."""
    kernel_methods = KERNEL_METHODS

    def __init__(self, kernel_size, stride=None, padding=0, method="auto"):
        super().__init__()
        self.set_kernel_method(method)
        self.kernel_size = as_pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else as_pair(stride, "stride")
        if min(self.kernel_size + self.stride) < 1:
            raise UsageError(f"{type(self).__name__}: kernel_size and stride must be >= 1, got "
                             f"kernel_size={kernel_size!r}, stride={stride!r}")
        self.padding = padding if isinstance(padding, str) else _jsonable(padding)

    def _geometry(self, shape):
        """(kh, kw), (sh, sw), (top, bottom, left, right), (oh, ow) for an (N, C, H, W) shape."""
        try:
            return K.check_pool_geometry(shape, self.kernel_size, self.stride, self.padding)
        except ValueError as err:
            raise UsageError(f"{self!r} cannot pool an input of shape {tuple(shape)}: {err}") from None

    def output_shape(self, input_shape):
        n, c = input_shape[:2]
        oh, ow = self._geometry(input_shape)[3]
        return (n, c, oh, ow)

    def get_config(self):
        return {"kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": self.padding,
                **self._method_config()}


class MaxPool2D(_WindowPool):
    """``MaxPool2D(kernel_size, stride=None, padding=0)``; ``stride=None`` means ``kernel_size``.

    Padded cells count as ``-inf``. Ties: the first maximum in scan order gets the gradient.
    """

    def forward(self, x, training: bool = False):
        x = check_input(self, x, ndim=4)
        _, _, pad, _ = self._geometry(x.shape)
        y, argmax = K.max_pool2d_forward(x, self.kernel_size, self.stride, pad, method=self.method)
        self._cache = (argmax, x.shape)
        return y

    def backward(self, dy, need_dx: bool = True):
        argmax, x_shape = self._pop_cache()
        return K.max_pool2d_backward(dy, argmax, x_shape, method=self.method) if need_dx else None

    def infer(self, x, overwrite: bool = False):
        if not self._own_infer(MaxPool2D):
            return super().infer(x, overwrite)
        x = check_input(self, x, ndim=4)
        _, _, pad, _ = self._geometry(x.shape)
        return K.max_pool2d_values(x, self.kernel_size, self.stride, pad, method=self.method)


class AvgPool2D(_WindowPool):
    """``AvgPool2D(kernel_size, stride=None, padding=0, count_include_pad=True)``.

    ``count_include_pad=True`` divides by ``KH * KW`` (torch default); ``False`` divides by the
    number of real cells in the window (Keras ``AveragePooling2D(padding='same')``).
    """

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad: bool = True, method="auto"):
        super().__init__(kernel_size, stride, padding, method)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x, training: bool = False):
        x = check_input(self, x, ndim=4)
        _, _, pad, _ = self._geometry(x.shape)
        self._cache = (x.shape, pad)
        return K.avg_pool2d_forward(x, self.kernel_size, self.stride, pad, self.count_include_pad,
                                    method=self.method)

    def backward(self, dy, need_dx: bool = True):
        x_shape, pad = self._pop_cache()
        if not need_dx:
            return None
        return K.avg_pool2d_backward(dy, x_shape, self.kernel_size, self.stride, pad, self.count_include_pad,
                                     method=self.method)

    def get_config(self):
        return {**super().get_config(), "count_include_pad": self.count_include_pad}


class GlobalAvgPool2D(Layer):
    """``GlobalAvgPool2D()``: (N, C, H, W) -> (N, C), the mean of each plane."""

    def forward(self, x, training: bool = False):
        x = check_input(self, x, ndim=4)
        self._cache = x.shape
        return K.global_avg_pool2d_forward(x)

    def backward(self, dy, need_dx: bool = True):
        x_shape = self._pop_cache()
        return K.global_avg_pool2d_backward(dy, x_shape) if need_dx else None

    def output_shape(self, input_shape):
        return tuple(input_shape[:2])


class GlobalMaxPool2D(Layer):
    """``GlobalMaxPool2D()``: (N, C, H, W) -> (N, C), the max of each plane (first max gets the gradient)."""

    def forward(self, x, training: bool = False):
        x = check_input(self, x, ndim=4)
        y, argmax = K.global_max_pool2d_forward(x)
        self._cache = (argmax, x.shape)
        return y

    def backward(self, dy, need_dx: bool = True):
        argmax, x_shape = self._pop_cache()
        return K.global_max_pool2d_backward(dy, argmax, x_shape) if need_dx else None

    def output_shape(self, input_shape):
        return tuple(input_shape[:2])


class AdaptiveAvgPool2D(Layer):
    """``AdaptiveAvgPool2D(output_size)``: average over torch's adaptive bins to (OH, OW)
    (bin i spans ``floor(i * H / OH)`` to ``ceil((i + 1) * H / OH)``), e.g. VGG16's ``(7, 7)``."""
    kernel_methods = KERNEL_METHODS

    def __init__(self, output_size, method="auto"):
        super().__init__()
        self.set_kernel_method(method)
        self.output_size = as_pair(output_size, "output_size")
        if min(self.output_size) < 1:
            raise UsageError(f"AdaptiveAvgPool2D: output_size must be >= 1, got {output_size!r}")

    def forward(self, x, training: bool = False):
        x = check_input(self, x, ndim=4)
        self._cache = x.shape
        return K.adaptive_avg_pool2d_forward(x, self.output_size, method=self.method)

    def backward(self, dy, need_dx: bool = True):
        x_shape = self._pop_cache()
        return K.adaptive_avg_pool2d_backward(dy, x_shape, method=self.method) if need_dx else None

    def output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], *self.output_size)

    def get_config(self):
        return {"output_size": list(self.output_size), **self._method_config()}
