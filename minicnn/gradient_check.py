"""Numerical gradient checks by central differences.

``gradcheck(obj, x)`` compares the analytic gradients of a layer, a loss or a model with numerical
ones and returns the maximum relative error per tensor::

    err = max|analytic - numeric| / max(max|analytic|, max|numeric|, 1e-12)

For a layer or a model with output ``y = f(x, params)`` and an upstream gradient ``dy`` (random
unless given), the numerical vector-Jacobian product for element ``i`` of a tensor ``T`` is::

    (sum(f(T + h e_i) * dy) - sum(f(T - h e_i) * dy)) / (2 h)

which must equal the analytic ``dx`` / ``grads[name]`` that ``backward(dy)`` produces. For a loss,
``x`` is the pair ``(y_pred, y_true)`` and the check is on ``dL/dy_pred``.

Everything runs on a float64 deep copy, so the object passed in is never changed (a training-mode
BatchNorm keeps its running statistics; a Dropout layer replays the same mask in every evaluation,
because each evaluation starts from a fresh copy of the same state).
"""
from __future__ import annotations

import copy

import numpy as np

from .errors import UsageError


def _params(obj) -> dict:
    p = obj.params
    return p() if callable(p) else p


def _grads(obj) -> dict:
    g = obj.grads
    return g() if callable(g) else g


def _trainable(obj, name: str) -> bool:
    """A Layer's params are trainable unless it is frozen; a model's ``params()`` holds trainable ones only."""
    return getattr(obj, "trainable", True)


def _rel_error(a: np.ndarray, n: np.ndarray) -> float:
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(n), initial=0.0)), 1e-12)
    return float(np.max(np.abs(a - n), initial=0.0) / scale)


def _numeric(f, tensor: np.ndarray, h: float) -> np.ndarray:
    """Central-difference derivative of the scalar function ``f()`` w.r.t. ``tensor`` (perturbed in place)."""
    grad = np.zeros_like(tensor)
    flat, gflat = tensor.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        plus = f()
        flat[i] = old - h
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * h)
    return grad


def gradcheck(obj, x, *, dy=None, h: float = 1e-6, seed: int = 0, training: bool = False) -> dict[str, float]:
    """Relative error of analytic vs numerical gradients for every input and trainable param.

    Parameters
    ----------
    obj : a Layer, a Graph/Sequential model, or a loss (``forward(y_pred, y_true)``/``backward()``).
    x : array, or list of arrays (multi-input layers), or ``(y_pred, y_true)`` for a loss.
    dy : upstream gradient (same shape as the output); random normal from ``seed`` if ``None``.
    h : finite-difference step.
    training : forward mode (BatchNorm batch statistics, Dropout masks).

    Returns
    -------
    dict mapping ``"x"`` (or ``"x0"``, ``"x1"``, ...) and each param name to its relative error.
    """
    if getattr(obj, "is_loss", False):
        return _gradcheck_loss(obj, x, h=h, dy=dy)
    template = copy.deepcopy(obj).astype(np.float64)
    multi = isinstance(x, (list, tuple))
    xs = [np.array(v, dtype=np.float64) for v in (x if multi else [x])]

    def run_forward():
        model = copy.deepcopy(template)
        out = model.forward(xs if multi else xs[0], training=training)
        return model, out

    _, y = run_forward()
    if dy is None:
        dy = np.random.default_rng(seed).standard_normal(np.shape(y))
    dy = np.asarray(dy, dtype=np.float64)
    if dy.shape != np.shape(y):
        raise UsageError(f"dy.shape={dy.shape} does not match the output shape {np.shape(y)}")

    model, _ = run_forward()
    dx = model.backward(dy.copy())
    analytic = {}
    dxs = dx if multi else [dx]
    for i, d in enumerate(dxs):
        analytic[f"x{i}" if multi else "x"] = d
    grads = _grads(model)
    params = _params(template)
    frozen = {name for name in params if not _trainable(template, name)}
    for name in params:
        if name in grads:
            analytic[name] = grads[name]
        elif name not in frozen:
            raise UsageError(f"backward() left no gradient for trainable param {name!r}: the analytic "
                             f"gradient is missing, so it cannot be checked")

    def objective():
        return float(np.sum(run_forward()[1] * dy))

    errors = {}
    for i, xi in enumerate(xs):
        key = f"x{i}" if multi else "x"
        errors[key] = _rel_error(analytic[key], _numeric(objective, xi, h))
    for name, p in params.items():
        if name in analytic:
            errors[name] = _rel_error(analytic[name], _numeric(objective, p, h))
    return errors


def _gradcheck_loss(loss, x, h: float, dy=None) -> dict[str, float]:
    y_pred, y_true = (np.array(v, dtype=np.float64) for v in x)
    scale = 1.0 if dy is None else float(dy)
    loss = copy.deepcopy(loss)
    loss.forward(y_pred, y_true)
    analytic = loss.backward() * scale
    numeric = _numeric(lambda: loss.forward(y_pred, y_true) * scale, y_pred, h)
    return {"x": _rel_error(analytic, numeric)}
