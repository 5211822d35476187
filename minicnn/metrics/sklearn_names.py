"""The metrics under the names and signatures scikit-learn users know.

    roc_auc_score(y_true, y_score)                 binary (N,) or multi-label (N, K), average="macro"|None
    confusion_matrix(y_true, y_pred)               [[tn, fp], [fn, tp]] for 0/1 labels (rows: truth)
    classification_report(y_true, y_pred, ...)     precision / recall / f1 / support per class, as text or dict

They are thin wrappers over minicnn's own hand-written metrics (``ranking``, ``threshold``), checked
against scikit-learn in ``tests/test_metrics.py``. ``y_pred`` are hard 0/1 decisions; to get them
from probabilities call ``p >= threshold`` (or ``model.predict_classes``).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import DataError
from .ranking import roc_auc
from .threshold import _ratio

__all__ = ["roc_auc_score", "confusion_matrix", "classification_report"]


def roc_auc_score(y_true, y_score, average: str | None = "macro"):
    """ROC-AUC of a binary problem, or of each column of a multi-label one.

    ``average="macro"``: the mean over columns (scikit-learn raises when a column has one class;
    here such a column is a ``DataError`` too, naming it). ``average=None``: one AUC per column.
    """
    y, s = np.asarray(y_true), np.asarray(y_score, dtype=np.float64)
    if y.ndim == 1:
        auc = roc_auc(y, s)
        if math.isnan(auc):
            raise DataError("ROC-AUC is undefined when y_true holds only one class")
        return auc
    if y.shape != s.shape or y.ndim != 2:
        raise DataError(f"y_true and y_score must have the same shape (N,) or (N, K), got {y.shape} and {s.shape}")
    if average not in ("macro", None):
        raise DataError(f"average must be 'macro' or None, got {average!r}")
    aucs = np.array([roc_auc(y[:, k], s[:, k]) for k in range(y.shape[1])])
    bad = [int(k) for k in np.flatnonzero(np.isnan(aucs))]
    if bad:
        raise DataError(f"ROC-AUC is undefined for column(s) {bad}: they hold only one class")
    return aucs if average is None else float(aucs.mean())


def _labels01(y, name):
    y = np.asarray(y)
    if y.ndim != 1:
        raise DataError(f"{name} must be 1-D, got shape {y.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise DataError(f"{name} must hold 0/1 labels, got values {np.unique(y)[:10].tolist()}")
    return y.astype(np.int64)


def confusion_matrix(y_true, y_pred) -> np.ndarray:
    """``[[tn, fp], [fn, tp]]`` (int64) of 0/1 labels and 0/1 decisions, as scikit-learn lays it out."""
    y, d = _labels01(y_true, "y_true"), _labels01(y_pred, "y_pred")
    if y.shape != d.shape:
        raise DataError(f"y_true has {y.size} labels but y_pred has {d.size}")
    return np.array([[np.sum((y == 0) & (d == 0)), np.sum((y == 0) & (d == 1))],
                     [np.sum((y == 1) & (d == 0)), np.sum((y == 1) & (d == 1))]], dtype=np.int64)


def _row(tp, fp, fn, support):
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    # scikit-learn reports 0.0 (with a warning) where a ratio is undefined; so does this report
    return {"precision": 0.0 if math.isnan(precision) else precision, "recall": 0.0 if math.isnan(recall) else recall,
            "f1-score": 0.0 if math.isnan(f1) else f1, "support": int(support)}


def classification_report(y_true, y_pred, target_names=None, digits: int = 2, output_dict: bool = False):
    """Precision, recall, F1 and support for class 0 and class 1, then accuracy, macro and weighted
    averages, laid out as ``sklearn.metrics.classification_report`` lays them out."""
    cm = confusion_matrix(y_true, y_pred)
    (tn, fp), (fn, tp) = cm
    names = ["0", "1"] if target_names is None else [str(n) for n in target_names]
    if len(names) != 2:
        raise DataError(f"target_names must name the 2 classes (0 then 1), got {names}")
    rows = {names[0]: _row(tn, fn, fp, tn + fp), names[1]: _row(tp, fp, fn, tp + fn)}
    total = int(cm.sum())
    out = dict(rows)
    out["accuracy"] = _ratio(tp + tn, total)
    for avg, w in (("macro avg", [0.5, 0.5]),
                   ("weighted avg", [r["support"] / total if total else 0.0 for r in rows.values()])):
        out[avg] = {k: float(sum(wi * r[k] for wi, r in zip(w, rows.values())))
                    for k in ("precision", "recall", "f1-score")}
        out[avg]["support"] = total
    if output_dict:
        return out
    width = max(len(n) for n in list(names) + ["weighted avg"])
    head = f"{'':>{width}}  {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"
    lines = [head, ""]
    fmt = lambda name, r: (f"{name:>{width}}  {r['precision']:>9.{digits}f} {r['recall']:>9.{digits}f} "
                           f"{r['f1-score']:>9.{digits}f} {r['support']:>9}")
    lines += [fmt(n, rows[n]) for n in names] + [""]
    lines.append(f"{'accuracy':>{width}}  {'':>9} {'':>9} {out['accuracy']:>9.{digits}f} {total:>9}")
    lines += [fmt(n, out[n]) for n in ("macro avg", "weighted avg")]
    return "\n".join(lines) + "\n"
