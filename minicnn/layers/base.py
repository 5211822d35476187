"""The Layer interface every minicnn layer follows.

Shape letters: N batch, C input channels, H W height/width, F output channels,
KH KW kernel size, OH OW output size, G groups.

A layer owns three dicts:
    params   trainable arrays by their math names (``W``, ``b``, ``gamma``, ``beta``);
    grads    the same keys and shapes, *assigned* by ``backward`` (never accumulated);
    buffers  non-trainable state saved with the model (``running_mean``, ``running_var``).

``forward(x, training=False) -> y`` validates the input, keeps in ``self._cache`` what backward
needs (references, not copies) and returns ``y``. ``backward(dy, need_dx=True) -> dx`` reads the
cache, frees it, never mutates ``dy``, fills ``grads`` when the layer is trainable and returns
``dx`` (``None`` when ``need_dx=False``: the model asks for no ``dx`` where nobody needs it, e.g.
below the lowest trainable layer, and the layer then skips that work).
Layers that draw random numbers (Dropout) take ``forward(x, training, rng=None)``: the generator
for this pass is passed in (``Graph.forward(..., rngs={node: Generator})``); a layer used alone
falls back to its own generator, created once from its explicit ``seed``.
Multi-input layers (Concat, Add) take a list and return a list from ``backward``.
``infer(x, overwrite=False) -> y`` is the inference forward ``Graph.predict`` runs: the same
values as ``forward(x, training=False)``, no cache; by default it is exactly that, and a few layers
do less (MaxPool2D skips the argmax) or, given ``overwrite=True``, write ``y`` over ``x``.

Kernel methods. A layer whose kernels have a fast path and a readable reference (Conv2D and its
kinds, MaxPool2D, AvgPool2D, AdaptiveAvgPool2D, BatchNorm2D, ReLU) takes ``method="auto"`` in its
constructor (saved in its config when not ``"auto"``) and passes it to every kernel it calls:
``"reference"`` runs the plain loops of ``minicnn.kernels``; the names are in ``kernel_methods``
(``minicnn.kernels.methods``; conv names its strategies, ``minicnn.kernels.conv``).
``Graph.set_kernel_method("reference")`` sets it on every such layer of a model.
"""
from __future__ import annotations

import numpy as np

from ..errors import UsageError


class Layer:
    multi_input = False

    def __init__(self):
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.trainable = True
        self._cache = None

    # -- the two methods every layer implements ---------------------------------------------
    def forward(self, x, training: bool = False):
        raise NotImplementedError

    def backward(self, dy, need_dx: bool = True):
        raise NotImplementedError

    uses_rng = False  # True for layers whose training forward draws random numbers (forward takes rng=)
    kernel_methods: tuple = ()  # the ``method`` values this layer's kernels accept; () for no choice

    def set_kernel_method(self, method: str) -> "Layer":
        """Run this layer's kernels by ``method`` ("auto", "reference", ...: ``kernel_methods``)."""
        if method not in self.kernel_methods:
            choice = ", ".join(self.kernel_methods) if self.kernel_methods else "none (no kernel to choose)"
            raise UsageError(f"{type(self).__name__}: unknown kernel method {method!r}; choose one of {choice}")
        self.method = method
        return self

    def _method_config(self) -> dict:
        """``{"method": ...}`` for ``get_config`` when not the default (configs of "auto" layers stay as they were)."""
        return {} if getattr(self, "method", "auto") == "auto" else {"method": self.method}

    def infer(self, x, overwrite: bool = False):
        """Inference forward (``training=False``) keeping no cache: what ``Graph.predict`` runs.

        Same values as ``forward``; a layer may skip work only backward needs (MaxPool2D's argmax).
        ``overwrite=True``: the caller guarantees nothing else reads ``x``, so an elementwise layer
        may write its output over it (ReLU, BatchNorm2D) instead of allocating. A multi-input
        layer gets the list of inputs and ``overwrite`` is about the first one (Add sums into it).
        """
        y = self.forward(x, training=False)
        self.clear_cache()
        return y

    def _own_infer(self, cls) -> bool:
        """Does ``cls.infer`` compute this layer? Not when a subclass redefined ``forward`` only
        (a clipped ReLU, say): then the generic ``Layer.infer`` (its forward) must run instead."""
        return type(self).forward is cls.forward

    # -- shapes -------------------------------------------------------------------------------
    def output_shape(self, input_shape):
        """Output shape for an input shape (N may be ``None``). Elementwise layers keep it."""
        return tuple(input_shape)

    # -- bookkeeping ----------------------------------------------------------------------------
    def get_config(self) -> dict:
        """Constructor arguments as JSON-able values; ``type(self)(**get_config())`` rebuilds it."""
        return {}

    @classmethod
    def from_config(cls, config: dict) -> "Layer":
        return cls(**config)

    def freeze(self) -> "Layer":
        """Stop training this layer's params (``dx`` still flows through it)."""
        self.trainable = False
        self.grads = {}
        return self

    def unfreeze(self) -> "Layer":
        self.trainable = True
        return self

    @property
    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def astype(self, dtype) -> "Layer":
        """Cast params and buffers (float64 for gradient checks); returns self.

        A change of dtype needs new arrays: an optimizer built on the old ones refuses its next
        step (build it again). Casting to the dtype the arrays already have changes nothing.
        """
        for d in (self.params, self.buffers):
            for k in d:
                d[k] = d[k].astype(dtype, copy=False)
        self.grads = {}
        return self

    def clear_cache(self) -> None:
        self._cache = None

    def _pop_cache(self):
        """Return what forward kept and free it; a clear error if forward was not called."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward "
                               f"(or called twice for one forward)")
        cache, self._cache = self._cache, None
        return cache

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
