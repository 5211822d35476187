"""Losses with hand-written backward passes (NumPy only).

Weighted binary cross-entropy, multi-label (N examples x K classes), reduction stated once and
shared by both forms::

    L = -(1/N) * sum_n sum_k [ w_pos[k] * y[n,k] * log p[n,k] + w_neg[k] * (1 - y[n,k]) * log(1 - p[n,k]) ]

i.e. summed over classes, averaged over examples. ``class_weights(labels)`` returns
``w_pos = freq_neg`` and ``w_neg = freq_pos`` per class, so positives and negatives contribute
equally to the loss whatever the class balance.

From logits z (p = sigmoid(z)), stable for any |z| via log-sigmoid::

    log p = -softplus(-z),   log(1 - p) = -softplus(z),   softplus(t) = max(t, 0) + log1p(exp(-|t|))
    dL/dz = (1/N) * [ w_neg * (1 - y) * p - w_pos * y * (1 - p) ]

From probabilities (p clipped to [eps, 1 - eps]; the clip has zero derivative outside)::

    dL/dp = -(1/N) * [ w_pos * y / p - w_neg * (1 - y) / (1 - p) ]
"""
from __future__ import annotations

import numpy as np

from .errors import UsageError
from .kernels.activation import sigmoid_forward, softplus


def class_weights(labels, classes=None) -> tuple[np.ndarray, np.ndarray]:
    """``(w_pos, w_neg)`` per class from training labels (N, K) or (N,): ``w_pos = freq_neg``, ``w_neg = freq_pos``.

    Raises ``ValueError`` naming the class when a class has no positive or no negative example
    (its weights would make the loss ignore one side entirely).
    """
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[0] == 0:
        raise UsageError(f"labels must have shape (N,) or (N, K) with N > 0, got {np.shape(labels)}")
    freq_pos = y.mean(axis=0)
    for k, f in enumerate(freq_pos):
        name = classes[k] if classes is not None else f"class {k}"
        if f <= 0:
            raise UsageError(f"{name} has no positive examples in the training labels; "
                             f"class weights are undefined (add positives or drop the class)")
        if f >= 1:
            raise UsageError(f"{name} has no negative examples in the training labels; "
                             f"class weights are undefined (add negatives or drop the class)")
    return 1.0 - freq_pos, freq_pos


class WeightedBCE:
    """Weighted binary cross-entropy; ``forward(y_pred, y_true) -> float``, ``backward() -> dy``.

    ``from_logits=True`` (default) takes raw scores z; ``False`` takes probabilities p (for a
    network that ends in a Sigmoid layer). Weights broadcast over the class axis; scalars work.
    """

    is_loss = True

    def __init__(self, w_pos=1.0, w_neg=1.0, from_logits: bool = True, eps: float = 1e-7):
        self.w_pos = np.atleast_1d(np.asarray(w_pos, dtype=np.float64))
        self.w_neg = np.atleast_1d(np.asarray(w_neg, dtype=np.float64))
        self.from_logits = bool(from_logits)
        self.eps = float(eps)
        self._cache = None

    def _check(self, y_pred, y_true):
        y_pred = np.asarray(y_pred)
        y_true = np.asarray(y_true, dtype=y_pred.dtype if y_pred.dtype.kind == "f" else np.float64)
        if y_pred.shape != y_true.shape:
            raise UsageError(f"WeightedBCE: y_pred.shape={y_pred.shape} != y_true.shape={y_true.shape}")
        if y_pred.ndim not in (1, 2) or y_pred.shape[0] == 0:
            raise UsageError(f"WeightedBCE expects (N,) or (N, K) predictions, got {y_pred.shape}")
        K = 1 if y_pred.ndim == 1 else y_pred.shape[1]
        for w, name in ((self.w_pos, "w_pos"), (self.w_neg, "w_neg")):
            if w.size not in (1, K):
                raise UsageError(f"WeightedBCE: {name} has {w.size} entries for {K} classes")
        return y_pred, y_true

    def forward(self, y_pred, y_true) -> float:
        z, y = self._check(y_pred, y_true)
        n = z.shape[0]
        if self.from_logits:
            log_p, log_1mp = -softplus(-z), -softplus(z)
        else:
            p = np.clip(z, self.eps, 1 - self.eps)
            log_p, log_1mp = np.log(p), np.log1p(-p)
        per = self.w_pos * y * log_p + self.w_neg * (1 - y) * log_1mp
        self._cache = (z, y)
        return float(-per.sum() / n)

    def backward(self) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError("WeightedBCE.backward called before forward")
        z, y = self._cache
        n = z.shape[0]
        if self.from_logits:
            p = sigmoid_forward(z)
            d = (self.w_neg * (1 - y) * p - self.w_pos * y * (1 - p)) / n
        else:
            inside = (z > self.eps) & (z < 1 - self.eps)
            p = np.clip(z, self.eps, 1 - self.eps)
            d = -(self.w_pos * y / p - self.w_neg * (1 - y) / (1 - p)) / n * inside
        return d.astype(z.dtype if z.dtype.kind == "f" else np.float64, copy=False)

    def get_config(self) -> dict:
        return {"w_pos": self.w_pos.tolist(), "w_neg": self.w_neg.tolist(), "from_logits": self.from_logits,
                "eps": self.eps}

    def __repr__(self):
        return f"WeightedBCE(w_pos={self.w_pos.round(4).tolist()}, w_neg={self.w_neg.round(4).tolist()}, " \
               f"from_logits={self.from_logits})"


class SoftmaxCrossEntropy:
    """Softmax cross-entropy from logits z (N, K) and integer targets (N,) or one-hot (N, K).

    ``L = sum_n w[t_n] * (-log softmax(z_n)[t_n]) / sum_n w[t_n]`` (PyTorch's weighted mean;
    with no weights, the plain mean over examples). ``dL/dz_n = w[t_n] (softmax(z_n) - onehot(t_n)) / sum w``.
    """

    is_loss = True

    def __init__(self, class_weights=None):
        self.class_weights = None if class_weights is None else np.asarray(class_weights, dtype=np.float64)
        self._cache = None

    def forward(self, y_pred, y_true) -> float:
        z = np.asarray(y_pred)
        if z.ndim != 2:
            raise UsageError(f"SoftmaxCrossEntropy expects logits (N, K), got {z.shape}")
        t = np.asarray(y_true)
        if t.ndim == 2:
            t = t.argmax(axis=1)
        t = t.astype(np.int64)
        if t.shape != (z.shape[0],) or t.min(initial=0) < 0 or t.max(initial=0) >= z.shape[1]:
            raise UsageError(f"SoftmaxCrossEntropy: targets must be class indices in [0, {z.shape[1]}) "
                             f"for {z.shape[0]} examples")
        shifted = z - z.max(axis=1, keepdims=True)
        log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        w = np.ones(z.shape[0]) if self.class_weights is None else self.class_weights[t]
        self._cache = (np.exp(log_softmax), t, w)
        return float(-(w * log_softmax[np.arange(z.shape[0]), t]).sum() / w.sum())

    def backward(self) -> np.ndarray:
        if self._cache is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward called before forward")
        p, t, w = self._cache
        d = p.copy()
        d[np.arange(len(t)), t] -= 1
        return (d * (w / w.sum())[:, None]).astype(p.dtype, copy=False)
