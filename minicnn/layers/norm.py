"""BatchNorm2D: per-channel batch normalisation of NCHW maps (kernels in ``minicnn.kernels.batchnorm``).

Training (and trainable): normalise with the batch mean and *biased* variance over (N, H, W), then
update the running statistics PyTorch's way::

    running_mean = (1 - momentum) * running_mean + momentum * batch_mean
    running_var  = (1 - momentum) * running_var  + momentum * batch_var_unbiased

Inference, or a frozen layer (``freeze()``, Keras' rule for frozen backbones, even when called with
``training=True``): normalise with the running statistics, which are left unchanged.
"""
from __future__ import annotations

import numpy as np

from ..errors import UsageError
from ..shapes import check_input
from ..kernels import batchnorm as K
from ..kernels.methods import KERNEL_METHODS
from .base import Layer


class BatchNorm2D(Layer):
    """``BatchNorm2D(num_features, eps=1e-5, momentum=0.1, center=True, scale=True)``.

    params ``gamma`` (ones, absent when ``scale=False``) and ``beta`` (zeros, absent when
    ``center=False``); buffers ``running_mean`` (zeros) and ``running_var`` (ones). Keras DenseNet
    uses ``eps=1.001e-5``; Keras' ``momentum=0.99`` is ``momentum=0.01`` here. ``method``: "auto" |
    "fast" | "reference" kernels (``minicnn.kernels.batchnorm``).
    """
    kernel_methods = KERNEL_METHODS

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 center: bool = True, scale: bool = True, method: str = "auto"):
        super().__init__()
        self.set_kernel_method(method)
        self.num_features = int(num_features)
        if self.num_features < 1:
            raise UsageError(f"BatchNorm2D: num_features must be >= 1, got {num_features!r}")
        self.eps = float(eps)
        self.momentum = float(momentum)
        if not 0.0 <= self.momentum <= 1.0:
            raise UsageError(f"BatchNorm2D: momentum must be in [0, 1], got {momentum!r}")
        self.center = bool(center)
        self.scale = bool(scale)
        C = self.num_features
        if self.scale:
            self.params["gamma"] = np.ones(C, np.float32)
        if self.center:
            self.params["beta"] = np.zeros(C, np.float32)
        self.buffers["running_mean"] = np.zeros(C, np.float32)
        self.buffers["running_var"] = np.ones(C, np.float32)

    def forward(self, x, training: bool = False):
        x = check_input(self, x, ndim=4, channels=self.num_features)
        gamma, beta = self.params.get("gamma"), self.params.get("beta")
        if training and self.trainable:
            if x.shape[0] * x.shape[2] * x.shape[3] < 2:
                raise UsageError(f"{self!r} needs more than 1 value per channel in training, "
                                 f"got x.shape={x.shape}")
            y, mean, inv_std, uvar = K.batchnorm2d_forward_train(x, gamma, beta, self.eps, method=self.method)
            m = self.momentum
            for name, stat in (("running_mean", mean), ("running_var", uvar)):
                run = self.buffers[name]
                run *= 1.0 - m
                run += m * stat.astype(run.dtype)
            self._cache = ("train", x, mean, inv_std)
        else:
            rm, rv = self.buffers["running_mean"], self.buffers["running_var"]
            y = K.batchnorm2d_forward_eval(x, gamma, beta, rm, rv, self.eps, method=self.method)
            self._cache = ("eval", x, rm.copy(), rv.copy())
        return y

    def infer(self, x, overwrite: bool = False):
        if not self._own_infer(BatchNorm2D):
            return super().infer(x, overwrite)
        x = check_input(self, x, ndim=4, channels=self.num_features)
        return K.batchnorm2d_forward_eval(x, self.params.get("gamma"), self.params.get("beta"),
                                          self.buffers["running_mean"], self.buffers["running_var"], self.eps,
                                          out=x if overwrite else None, method=self.method)

    def backward(self, dy, need_dx: bool = True):
        mode, x, a, b = self._pop_cache()
        if not need_dx and not self.trainable:
            return None
        gamma = self.params.get("gamma")
        if mode == "train":
            dx, dgamma, dbeta = K.batchnorm2d_backward_train(dy, x, gamma, a, b, method=self.method)
        else:
            dx, dgamma, dbeta = K.batchnorm2d_backward_eval(dy, x, gamma, a, b, self.eps, method=self.method)
        if self.trainable:
            for name, g in (("gamma", dgamma), ("beta", dbeta)):
                if name in self.params:
                    self.grads[name] = g.astype(self.params[name].dtype, copy=False)
        return dx if need_dx else None

    def get_config(self):
        return {"num_features": self.num_features, "eps": self.eps, "momentum": self.momentum,
                "center": self.center, "scale": self.scale, **self._method_config()}
