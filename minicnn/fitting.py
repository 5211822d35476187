"""Keras-style ``compile`` / ``fit`` / ``evaluate`` for a ``Graph``, over the one training loop.

``Graph.compile``, ``Graph.fit`` and ``Graph.evaluate`` are thin methods that import this module
when called (the one model -> training dependency ARCHITECTURE.md allows). Everything here turns
arrays, loaders or a ``Dataset`` into loaders and names into objects, then calls ``train.fit`` —
there is no second training loop.

    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["auc", "accuracy"])
    history = model.fit(x, y, epochs=5, batch_size=32, validation_split=0.2, class_weight="balanced")
    history.history["val_auc"]          # one value per epoch
    model.evaluate(x_test, y_test)      # minicnn.metrics.evaluate_predictions: AUROC, sensitivity, ...
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import losses as losses_mod
from . import metrics as metrics_mod
from . import optim, train
from .data import ArrayLoader, BatchLoader, Dataset, Preprocessing, fit_preprocessing
from .errors import UsageError
from .predict import predict_loader

LOSSES = ("binary_crossentropy", "categorical_crossentropy", "sparse_categorical_crossentropy")
OPTIMIZERS = {"adam": (optim.Adam, 1e-3), "adamw": (optim.AdamW, 1e-3), "sgd": (optim.SGD, 1e-2)}


@dataclass
class Compiled:
    """What ``Graph.compile`` recorded: the loss (or its name), the optimizer, the metric functions."""
    loss: object = None
    optimizer: object = None
    metrics: dict = field(default_factory=dict)


@dataclass
class History:
    """What ``fit`` returns: ``history`` maps each logged name (``loss``, ``val_loss``,
    ``val_roc_auc``, each compiled metric and ``val_<metric>``, ``lr``, ...) to its per-epoch values;
    ``epoch`` the epoch numbers (1-based); ``state`` the ``train.TrainState``."""
    history: dict
    epoch: list
    state: object = None

    @classmethod
    def from_rows(cls, rows, state=None) -> "History":
        names = list(dict.fromkeys(k for r in rows for k in r if k != "epoch"))
        return cls({k: [r.get(k) for r in rows] for k in names}, [r["epoch"] for r in rows], state)


# -- metrics by name -------------------------------------------------------------------------------
def _binary(y, p):
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    return y.ravel(), p.ravel()


def _rate(fn):
    return lambda y, p: fn(metrics_mod.confusion_at(*_binary(y, p), 0.5))


def _accuracy(y, p):
    y, p = np.asarray(y), np.asarray(p)
    if p.ndim == 2 and p.shape[1] > 1 and np.allclose(p.sum(axis=1), 1.0):   # softmax: argmax
        return float(np.mean(p.argmax(axis=1) == y.argmax(axis=1)))
    return metrics_mod.accuracy(metrics_mod.confusion_at(*_binary(y, p), 0.5))


METRICS = {
    "auc": lambda y, p: metrics_mod.macro_roc_auc(y, p), "pr_auc": lambda y, p: metrics_mod.average_precision(*_binary(y, p)),
    "accuracy": _accuracy, "sensitivity": _rate(metrics_mod.sensitivity), "recall": _rate(metrics_mod.sensitivity),
    "specificity": _rate(metrics_mod.specificity), "ppv": _rate(metrics_mod.ppv), "precision": _rate(metrics_mod.ppv),
    "npv": _rate(metrics_mod.npv), "f1": _rate(metrics_mod.f1),
}
METRICS["roc_auc"] = METRICS["auc"]


def metric_functions(names) -> dict:
    """``{name: fn(y_true, y_prob)}`` for metric names (``METRICS``; rates at threshold 0.5) or callables."""
    if isinstance(names, dict):
        return dict(names)
    out = {}
    for m in names or ():
        if callable(m):
            out[getattr(m, "__name__", "metric")] = m
        elif m in METRICS:
            out[m] = METRICS[m]
        else:
            raise UsageError(f"unknown metric {m!r}: use one of {sorted(METRICS)} or a function f(y_true, y_prob)")
    return out


# -- compile ---------------------------------------------------------------------------------------
def compile(model, loss=None, optimizer="adam", metrics=(), learning_rate=None) -> Compiled:
    """Record the loss (a name in ``LOSSES`` or a ``minicnn.losses`` object), the optimizer (a name in
    ``OPTIMIZERS``, built on ``model.params()`` with ``learning_rate``, or a ``minicnn.optim``
    optimizer) and metrics on ``model.compiled``. Later ``fit`` calls continue the same optimizer."""
    if isinstance(loss, str) and loss not in LOSSES:
        raise UsageError(f"unknown loss {loss!r}: use one of {LOSSES} or a minicnn.losses object")
    if loss is not None and not isinstance(loss, str) and not getattr(loss, "is_loss", False):
        raise UsageError(f"loss must be a name in {LOSSES} or a minicnn.losses object, got {type(loss).__name__}")
    if isinstance(optimizer, str):
        if optimizer.lower() not in OPTIMIZERS:
            raise UsageError(f"unknown optimizer {optimizer!r}: use one of {sorted(OPTIMIZERS)} or a minicnn.optim optimizer")
        cls, default_lr = OPTIMIZERS[optimizer.lower()]
        optimizer = cls(model.params(), lr=default_lr if learning_rate is None else learning_rate)
    elif isinstance(optimizer, optim.Optimizer):
        if set(optimizer.params) != set(model.params()):
            raise UsageError("the optimizer was built on other parameters: build it from this model's params()")
        if learning_rate is not None:
            optimizer.lr = float(learning_rate)
    else:
        raise UsageError(f"optimizer must be a name in {sorted(OPTIMIZERS)} or a minicnn.optim optimizer, "
                         f"got {type(optimizer).__name__}")
    model.compiled = Compiled(loss, optimizer, metric_functions(metrics))
    return model.compiled


def _softmax(model) -> bool:
    return model.output_activation == "softmax"


def _labels(model, y, n_outputs=None):
    """Labels as the loss and metrics take them: (N, K) float; integer classes one-hot for softmax."""
    y = np.asarray(y)
    if _softmax(model) and (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
        k = n_outputs or int(y.max()) + 1
        return np.eye(k, dtype=np.float32)[y.reshape(-1).astype(np.int64)]
    y = y.astype(np.float32)
    return y[:, None] if y.ndim == 1 else y


def _make_loss(model, loss, class_weight, labels):
    """The loss object: ``loss`` as given, or by name / by the model's output activation, weighted by
    ``class_weight`` ("balanced": every class counts equally, ``losses.class_weights``; or {class: w})."""
    if loss is not None and not isinstance(loss, str):
        if class_weight is not None:
            raise UsageError("class_weight= needs a loss given by name; a loss object carries its own weights")
        return loss
    name = loss or ("categorical_crossentropy" if _softmax(model) else "binary_crossentropy")
    if name == "binary_crossentropy":
        if class_weight is None:
            return losses_mod.WeightedBCE()
        if class_weight == "balanced":
            return losses_mod.WeightedBCE(*losses_mod.class_weights(labels))
        if isinstance(class_weight, dict) and set(class_weight) <= {0, 1}:
            return losses_mod.WeightedBCE(w_pos=class_weight.get(1, 1.0), w_neg=class_weight.get(0, 1.0))
        raise UsageError(f"class_weight must be None, 'balanced' or {{0: w_neg, 1: w_pos}}, got {class_weight!r}")
    counts = labels.sum(axis=0)
    if class_weight is None:
        return losses_mod.SoftmaxCrossEntropy()
    if class_weight == "balanced":
        if np.any(counts == 0):
            raise UsageError(f"class_weight='balanced': class(es) {np.flatnonzero(counts == 0).tolist()} have no examples")
        return losses_mod.SoftmaxCrossEntropy(len(labels) / (len(counts) * counts))
    if isinstance(class_weight, dict):
        return losses_mod.SoftmaxCrossEntropy([float(class_weight.get(k, 1.0)) for k in range(len(counts))])
    raise UsageError(f"class_weight must be None, 'balanced' or {{class index: weight}}, got {class_weight!r}")


def _is_loader(obj) -> bool:
    return hasattr(obj, "epoch") and hasattr(obj, "labels")


def _dataset_loader(model, dataset, preprocessing, batch_size, training, seed):
    pre = preprocessing
    if pre is None and model.meta.get("preprocessing"):
        pre = Preprocessing.from_meta(model.meta, model.input_shape)
    if pre is None:
        raise UsageError("fit/evaluate on a Dataset needs preprocessing=minicnn.data.Preprocessing(...) "
                         "(or a model whose meta holds one)")
    if training:
        pre = fit_preprocessing(pre, dataset, seed=seed)
        model.meta.update({"preprocessing": pre.to_dict(), "classes": list(dataset.classes),
                           "outputs": list(dataset.output_names), "positive_class": dataset.positive_class})
    return BatchLoader(dataset, pre, batch_size=batch_size, training=training, seed=seed)


def _loaders(model, x, y, batch_size, validation_split, validation_data, shuffle, seed, preprocessing):
    if validation_split and validation_data is not None:
        raise UsageError("give validation_split= or validation_data=, not both")
    if isinstance(x, Dataset):
        if y is not None:
            raise UsageError("fit(dataset): the labels come from the Dataset; do not pass y")
        train_loader = _dataset_loader(model, x, preprocessing, batch_size, True, seed)
    elif _is_loader(x):
        if y is not None:
            raise UsageError("fit(loader): the labels come from the loader; do not pass y")
        train_loader = x
    else:
        if y is None:
            raise UsageError("fit(x, y): give the labels y with the array x")
        x = np.asarray(x)
        n_out = model.predict(x[:1]).shape[1] if _softmax(model) and len(x) else None   # one-hot width
        labels = _labels(model, y, n_out)
        if len(labels) != len(x):
            raise UsageError(f"x has {len(x)} items but y has {len(labels)}")
        if validation_split:
            if not 0 < float(validation_split) < 1:
                raise UsageError(f"validation_split must be in (0, 1), got {validation_split}")
            n_val = int(round(len(x) * float(validation_split)))   # Keras: the last fraction, before shuffling
            if not 0 < n_val < len(x):
                raise UsageError(f"validation_split={validation_split} of {len(x)} items leaves an empty split")
            validation_data = (x[-n_val:], labels[-n_val:])
            x, labels = x[:-n_val], labels[:-n_val]
        train_loader = ArrayLoader(x, labels, batch_size=batch_size, training=True, shuffle=shuffle, seed=seed)
    if validation_data is None:
        val_loader = None
    elif isinstance(validation_data, Dataset):   # with the preprocessing fitted on the training Dataset
        val_loader = _dataset_loader(model, validation_data, None if model.meta.get("preprocessing") else preprocessing,
                                     batch_size, False, seed)
    elif _is_loader(validation_data):
        val_loader = validation_data
    else:
        xv, yv = validation_data
        val_loader = ArrayLoader(xv, _labels(model, yv, train_loader.labels.shape[1]), batch_size=batch_size,
                                 training=False)
    return train_loader, val_loader


def fit(model, x, y=None, *, epochs: int = 1, batch_size: int = 32, validation_split: float | None = None,
        validation_data=None, class_weight=None, callbacks=(), seed: int = 0, shuffle: bool = True,
        verbose: int = 1, loss=None, optimizer=None, metrics=None, preprocessing=None, out_dir=None,
        initial_epoch: int = 0) -> History:
    """Train ``model`` with ``train.fit``; returns a ``History``. See ``Graph.fit``.

    ``initial_epoch`` (Keras): continue at this epoch (0-based) up to ``epochs``: shuffles and
    dropout masks are those of these epoch numbers, and the compiled optimizer keeps its state, so
    ``fit(epochs=2)`` then ``fit(epochs=3, initial_epoch=2)`` equals ``fit(epochs=3)``."""
    old = getattr(model, "compiled", None)
    if old is None or loss is not None or optimizer is not None or metrics is not None:   # fit(..., loss=...)
        old = old or Compiled()
        compile(model, loss if loss is not None else old.loss,
                optimizer if optimizer is not None else (old.optimizer or "adam"),
                metrics if metrics is not None else old.metrics)
    if int(epochs) < 1 or not 0 <= int(initial_epoch) < int(epochs):
        raise UsageError(f"need epochs >= 1 and 0 <= initial_epoch < epochs, got epochs={epochs}, "
                         f"initial_epoch={initial_epoch}")
    c = model.compiled
    train_loader, val_loader = _loaders(model, x, y, batch_size, validation_split, validation_data, shuffle, seed,
                                        preprocessing)
    loss_obj = _make_loss(model, c.loss, class_weight, np.asarray(train_loader.labels))
    model.meta["class_weighted"] = class_weight is not None      # the report's calibration note reads it
    state = train.fit(model, loss_obj, c.optimizer, train_loader, val_loader, epochs=int(epochs), seed=seed,
                      progress=verbose > 0, log=print if verbose else (lambda *a: None), out_dir=out_dir,
                      metrics_fns=c.metrics, callbacks=list(callbacks),
                      resume_state=train.TrainState(epoch=int(initial_epoch)))
    return History.from_rows(state.history, state)


def evaluate(model, x, y=None, *, batch_size: int = 32, threshold=None, classes=None, positive_class=None,
             n_boot: int = 1000, seed: int = 0, preprocessing=None) -> dict:
    """``minicnn.metrics.evaluate_predictions`` of the model on ``(x, y)`` (or a loader / Dataset),
    at the model's saved threshold (``meta['threshold']``, else 0.5), plus ``loss`` when compiled."""
    if isinstance(x, Dataset):
        loader = _dataset_loader(model, x, preprocessing, batch_size, False, seed)
    elif _is_loader(x):
        loader = x
    else:
        if y is None:
            raise UsageError("evaluate(x, y): give the labels y with the array x")
        x = np.asarray(x)
        n_out = model.predict(x[:1]).shape[1] if _softmax(model) and len(x) else None
        loader = ArrayLoader(x, _labels(model, y, n_out), batch_size=batch_size, training=False)
    c = getattr(model, "compiled", None)
    loss_obj = _make_loss(model, c.loss, None, np.asarray(loader.labels)) if c is not None else None
    y_true, y_prob, loss_value = predict_loader(model, loader, loss_obj)
    k = y_prob.shape[1]
    names = classes or model.meta.get("classes") or (["positive"] if k == 1 else [f"class {j}" for j in range(k)])
    if k == 1 and len(names) == 2 and positive_class is None:
        positive_class = model.meta.get("positive_class") or names[-1]
    thr = threshold if threshold is not None else model.meta.get("threshold", 0.5)
    if _softmax(model):
        thr = 0.5
    out = metrics_mod.evaluate_predictions(y_true, y_prob, names, thr, positive_class, n_boot=n_boot, seed=seed)
    if loss_value is not None:
        out["loss"] = float(loss_value)
    return out
