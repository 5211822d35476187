"""Convolution layers: Conv2D, DepthwiseConv2D, SeparableConv2D (math in ``minicnn.kernels.conv``).

Shape letters: N batch, C input channels, H W input size, F output channels, KH KW kernel size,
OH OW output size, G groups.
"""
from __future__ import annotations

import numpy as np

from ..errors import UsageError
from .. import init as _init
from ..shapes import as_pair, check_input, conv_output_size, normalize_padding
from ..kernels.conv import CONV_METHODS, conv2d_backward, conv2d_forward
from .base import Layer


def _padding_config(padding):
    """Padding as given, JSON-able (tuples become lists)."""
    return list(padding) if isinstance(padding, tuple) else padding


def _short_padding(padding) -> str:
    if isinstance(padding, (list, tuple)) and len(set(padding)) == 1:
        return str(padding[0])
    return str(tuple(padding)) if isinstance(padding, (list, tuple)) else str(padding)


def _short_pair(p) -> str:
    return str(p[0]) if p[0] == p[1] else f"({p[0]}, {p[1]})"


class Conv2D(Layer):
    kernel_methods = CONV_METHODS

    """2-D convolution: x (N, C, H, W) -> y (N, F, OH, OW); params ``W`` (F, C/G, KH, KW), ``b`` (F,).

    ``padding``: an int, ``(ph, pw)``, ``(top, bottom, left, right)``, ``'valid'`` or ``'same'``
    (TensorFlow's rule, resolved for each input size; an odd total puts the extra row/column at the
    bottom/right). ``method``: the conv kernel method, ``"auto"`` or one of ``CONV_METHODS``
    (``minicnn.kernels.conv``; ``"reference"``: the plain loops), used forward and backward.

    >>> Conv2D(3, 8, 3, stride=2, padding='same', seed=0).output_shape((None, 3, 33, 32))
    (None, 8, 17, 16)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, init="he", seed=None, method="auto"):
        super().__init__()
        self.set_kernel_method(method)
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = as_pair(kernel_size, "kernel_size")
        self.stride = as_pair(stride, "stride")
        self.dilation = as_pair(dilation, "dilation")
        self.padding = padding
        if not isinstance(padding, str):
            normalize_padding(padding)                                 # reject bad values now
        elif padding.lower() not in ("same", "valid"):
            raise UsageError(f"padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
        if self.groups < 1 or self.in_channels % self.groups or self.out_channels % self.groups:
            raise UsageError(f"{type(self).__name__}: in_channels={in_channels} and out_channels={out_channels} "
                             f"must both be divisible by groups={groups}")
        if min(self.kernel_size + self.stride + self.dilation) < 1:
            raise UsageError(f"kernel_size, stride and dilation must be >= 1, got {kernel_size}, {stride}, {dilation}")
        self.bias, self.init, self.seed = bool(bias), init, seed
        self._init_params(_init.rng_from(seed))

    def _init_params(self, rng):
        KH, KW = self.kernel_size
        cg = self.in_channels // self.groups
        self.params["W"] = _init.initialize((self.out_channels, cg, KH, KW), fan_in=cg * KH * KW,
                                            fan_out=self.out_channels // self.groups * KH * KW,
                                            init=self.init, rng=rng)
        if self.bias:
            self.params["b"] = np.zeros(self.out_channels, np.float32)

    def _pads(self, hw):
        return normalize_padding(self.padding, self.kernel_size, self.stride, self.dilation, in_hw=hw)

    def forward(self, x, training=False):
        x = check_input(self, x, ndim=4, channels=self.in_channels)
        pads = self._pads(x.shape[2:])
        y = conv2d_forward(x, self.params["W"], self.params.get("b"), self.stride, pads, self.dilation, self.groups,
                           method=self.method)
        self._cache = (x, pads)
        return y

    def backward(self, dy, need_dx: bool = True):
        x, pads = self._pop_cache()
        dx, dW, db = conv2d_backward(dy, x, self.params["W"], self.stride, pads, self.dilation, self.groups,
                                     need_dx=need_dx, need_dW=self.trainable, method=self.method)
        if self.trainable:
            self.grads["W"] = dW.astype(self.params["W"].dtype, copy=False)
            if self.bias:
                self.grads["b"] = db.astype(self.params["b"].dtype, copy=False)
        return dx

    def output_shape(self, input_shape):
        N, C, H, W = input_shape
        if C != self.in_channels:
            raise UsageError(f"{self!r} expects {self.in_channels} channel(s), got input shape {tuple(input_shape)}")
        pt, pb, pl, pr = self._pads((H, W))
        OH = conv_output_size(H, self.kernel_size[0], self.stride[0], pt, pb, self.dilation[0])
        OW = conv_output_size(W, self.kernel_size[1], self.stride[1], pl, pr, self.dilation[1])
        return (N, self.out_channels, OH, OW)

    def get_config(self):
        return dict(in_channels=self.in_channels, out_channels=self.out_channels,
                    kernel_size=list(self.kernel_size), stride=list(self.stride),
                    padding=_padding_config(self.padding), dilation=list(self.dilation), groups=self.groups,
                    bias=self.bias, init=self.init, seed=self.seed if isinstance(self.seed, (int, type(None))) else None,
                    **self._method_config())

    def _repr_parts(self):
        parts = [f"k={_short_pair(self.kernel_size)}"]
        if self.stride != (1, 1):
            parts.append(f"s={_short_pair(self.stride)}")
        if self.padding not in (0, "valid"):
            parts.append(f"p={_short_padding(self.padding)}")
        if self.dilation != (1, 1):
            parts.append(f"d={_short_pair(self.dilation)}")
        if not self.bias:
            parts.append("bias=False")
        if self.method != "auto":
            parts.append(f"method={self.method!r}")
        return parts

    def _repr_extra(self) -> str | None:
        return f"groups={self.groups}" if self.groups != 1 else None

    def __repr__(self):
        parts = self._repr_parts()
        extra = self._repr_extra()
        if extra:
            parts.insert(len(parts) - (not self.bias) - (self.method != "auto"), extra)
        return f"{type(self).__name__}({self.in_channels}->{self.out_channels}, {', '.join(parts)})"


class DepthwiseConv2D(Conv2D):
    """Depthwise convolution: each input channel has its own ``depth_multiplier`` filters.

    A Conv2D with groups = C; ``W`` (C*dm, 1, KH, KW); output channel ``c*dm + m`` comes from input
    channel ``c`` (the order of Keras and of torch's groups=C).
    """

    def __init__(self, in_channels, kernel_size, stride=1, padding=0, dilation=1, depth_multiplier=1, bias=True,
                 init="he", seed=None, method="auto"):
        self.depth_multiplier = int(depth_multiplier)
        if self.depth_multiplier < 1:
            raise UsageError(f"depth_multiplier must be >= 1, got {depth_multiplier}")
        super().__init__(in_channels, in_channels * self.depth_multiplier, kernel_size, stride=stride,
                         padding=padding, dilation=dilation, groups=in_channels, bias=bias, init=init, seed=seed,
                         method=method)

    def get_config(self):
        cfg = super().get_config()
        del cfg["out_channels"], cfg["groups"]
        cfg["depth_multiplier"] = self.depth_multiplier
        return cfg

    def _repr_extra(self) -> str | None:
        return f"dm={self.depth_multiplier}" if self.depth_multiplier != 1 else None


class SeparableConv2D(Conv2D):
    """Depthwise conv (no bias) then a pointwise 1x1 conv with bias, as Keras' SeparableConv2D.

    Params ``depthwise_W`` (C*dm, 1, KH, KW), ``pointwise_W`` (F, C*dm, 1, 1), ``b`` (F,). Stride,
    padding and dilation apply to the depthwise step.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, depth_multiplier=1,
                 bias=True, init="he", seed=None, method="auto"):
        self.depth_multiplier = int(depth_multiplier)
        if self.depth_multiplier < 1:
            raise UsageError(f"depth_multiplier must be >= 1, got {depth_multiplier}")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=1, bias=bias, init=init, seed=seed, method=method)

    def _init_params(self, rng):
        KH, KW = self.kernel_size
        mid = self.in_channels * self.depth_multiplier
        self.params["depthwise_W"] = _init.initialize((mid, 1, KH, KW), fan_in=KH * KW,
                                                      fan_out=self.depth_multiplier * KH * KW, init=self.init, rng=rng)
        self.params["pointwise_W"] = _init.initialize((self.out_channels, mid, 1, 1), fan_in=mid,
                                                      fan_out=self.out_channels, init=self.init, rng=rng)
        if self.bias:
            self.params["b"] = np.zeros(self.out_channels, np.float32)

    def forward(self, x, training=False):
        x = check_input(self, x, ndim=4, channels=self.in_channels)
        pads = self._pads(x.shape[2:])
        z = conv2d_forward(x, self.params["depthwise_W"], None, self.stride, pads, self.dilation, self.in_channels,
                           method=self.method)
        y = conv2d_forward(z, self.params["pointwise_W"], self.params.get("b"), method=self.method)
        self._cache = (x, z, pads)
        return y

    def backward(self, dy, need_dx: bool = True):
        x, z, pads = self._pop_cache()
        dz, dpw, db = conv2d_backward(dy, z, self.params["pointwise_W"], need_dW=self.trainable, method=self.method)
        dx, ddw, _ = conv2d_backward(dz, x, self.params["depthwise_W"], self.stride, pads, self.dilation,
                                     self.in_channels, need_dx=need_dx, need_dW=self.trainable, method=self.method)
        if self.trainable:
            self.grads["depthwise_W"] = ddw.astype(self.params["depthwise_W"].dtype, copy=False)
            self.grads["pointwise_W"] = dpw.astype(self.params["pointwise_W"].dtype, copy=False)
            if self.bias:
                self.grads["b"] = db.astype(self.params["b"].dtype, copy=False)
        return dx

    def get_config(self):
        cfg = super().get_config()
        del cfg["groups"]
        cfg["depth_multiplier"] = self.depth_multiplier
        return cfg

    def _repr_extra(self) -> str | None:
        return f"dm={self.depth_multiplier}" if self.depth_multiplier != 1 else None
