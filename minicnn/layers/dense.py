"""Fully connected layer.

    forward:  y = x @ W + b                 x (N, D), W (D, M), b (M,), y (N, M)
    backward: dx = dy @ W.T, dW = x.T @ dy, db = sum_n dy[n]

Elementwise math stays inline (no kernel hop): the GEMM is NumPy's BLAS call.
Proved by ``tests/layers/test_core_layers.py`` (gradcheck) and the torch parity tests.
"""
from __future__ import annotations

import numpy as np

from .. import init as _init
from ..shapes import check_input
from .base import Layer


class Dense(Layer):
    """``Dense(in_features, out_features, bias=True)``: params ``W`` (in, out) and ``b`` (out,)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, init: str = "glorot", seed=None):
        super().__init__()
        self.in_features, self.out_features, self.bias, self.init = int(in_features), int(out_features), bool(bias), init
        rng = _init.rng_from(seed)
        self.params["W"] = _init.initialize((self.in_features, self.out_features), self.in_features,
                                            self.out_features, init, rng)
        if self.bias:
            self.params["b"] = np.zeros(self.out_features, dtype=np.float32)

    def forward(self, x, training: bool = False):
        x = check_input(self, x, ndim=2, channels=self.in_features)
        self._cache = x
        y = x @ self.params["W"].astype(x.dtype, copy=False)           # (N, D) @ (D, M) -> (N, M)
        if self.bias:
            y += self.params["b"].astype(x.dtype, copy=False)
        return y

    def backward(self, dy, need_dx: bool = True):
        x = self._pop_cache()
        W = self.params["W"]
        if self.trainable:
            self.grads["W"] = (x.T @ dy).astype(W.dtype, copy=False)   # (D, N) @ (N, M) -> (D, M)
            if self.bias:
                self.grads["b"] = dy.sum(axis=0).astype(W.dtype, copy=False)
        if not need_dx:
            return None
        return dy @ W.T.astype(dy.dtype, copy=False)                  # (N, M) @ (M, D) -> (N, D)

    def output_shape(self, input_shape):
        return (input_shape[0], self.out_features)

    def get_config(self):
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias}

    def __repr__(self):
        return f"Dense({self.in_features}->{self.out_features}{'' if self.bias else ', bias=False'})"
