"""The evaluation written to ``metrics.json`` and its plain-text table.

Conventions: see ``minicnn.metrics``.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import DataError
from .ranking import average_precision, bootstrap_auc_ci, check_binary, roc_auc
from .threshold import confusion_at, rate_intervals, rates_from_confusion


def binary_report(y, p, threshold: float = 0.5) -> dict:
    """Every metric of one binary problem at ``threshold``; values are Python floats (may be ``nan``).

    Keys: ``roc_auc, pr_auc, accuracy, sensitivity, specificity, ppv, npv, f1, confusion`` (nested
    list ``[[tn, fp], [fn, tp]]``), ``threshold, n_pos, n_neg``, and Wilson 95% intervals
    ``sensitivity_ci95, specificity_ci95, ppv_ci95, npv_ci95``.
    """
    y, p = check_binary(y, p)
    cm = confusion_at(y, p, threshold)
    out = {"roc_auc": roc_auc(y, p), "pr_auc": average_precision(y, p)}
    out.update(rates_from_confusion(cm))
    out.update(rate_intervals(cm))
    out.update({"confusion": cm.tolist(), "threshold": float(threshold),
                "n_pos": int(y.sum()), "n_neg": int(y.size - y.sum())})
    return out


def _nanmean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def evaluate_predictions(y_true, y_prob, classes, threshold=0.5, positive_class=None,
                         n_boot: int = 1000, alpha: float = 0.05, seed=0) -> dict:
    """The full evaluation written to ``metrics.json``, already JSON-safe (``nan`` -> ``None``).

    (Long because it checks its arguments and assembles the documented structure in one place.)

    ``y_true`` and ``y_prob`` are ``(N, K)`` (or ``(N,)`` for one output), one column per model output.
    ``classes`` names the classes: K names, or, for a binary model with one output (K == 1), either
    ``[positive]`` or both names, in which case ``positive_class`` must say which one the output is.
    ``threshold`` is one number or one per output.

    Result::

        {"n", "classes", "positive_class", "threshold", "roc_auc", "roc_auc_ci95": [lo, hi], "pr_auc",
         "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "confusion": [[tn, fp], [fn, tp]],
         "sensitivity_ci95", "specificity_ci95", "ppv_ci95", "npv_ci95": [lo, hi] (Wilson),
         "per_class": {name: {"roc_auc", "roc_auc_ci95", "pr_auc", "accuracy", "sensitivity",
                              "specificity", "ppv", "npv", "f1", "confusion", "threshold",
                              "n_pos", "n_neg", and the four Wilson intervals}}}

    K == 1: the overall entries are those of the single output. K > 1 (multi-label): ``roc_auc`` and
    ``pr_auc`` are macro means over the classes (classes whose AUC is undefined are left out),
    ``roc_auc_ci95`` bootstraps the macro AUC by resampling images; the threshold metrics and the
    confusion matrix are *micro*: computed over all N*K (image, class) decisions pooled.
    ``positive_class`` is ``None`` for K > 1. The CI uses ``n_boot`` resamples seeded by ``seed``.
    NaN in ``y_true`` is a masked label (e.g. CheXpert's uncertain -1): each output is scored on the
    images whose label it knows (``per_class[name]["n_masked"]`` counts the others), the macro CI on
    the images with every label known.
    """
    y = np.asarray(y_true)
    p = np.asarray(y_prob, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    if p.ndim == 1:
        p = p[:, None]
    if y.ndim != 2 or y.shape != p.shape:
        raise DataError(f"y_true and y_prob must have the same shape (N, K), got {y.shape} and {p.shape}")
    n, k = y.shape
    classes = [str(c) for c in classes]
    if k == 1 and len(classes) == 2:
        if positive_class is None:
            raise DataError(f"one model output but two classes {classes}: pass positive_class= "
                             "(the class the output's probability is for)")
        if str(positive_class) not in classes:
            raise DataError(f"positive_class {positive_class!r} is not one of the classes {classes}")
        names = [str(positive_class)]
    elif len(classes) == k:
        names = classes
        if k == 1:
            positive_class = names[0] if positive_class is None else str(positive_class)
            if positive_class != names[0]:
                raise DataError(f"positive_class {positive_class!r} is not the class of the output {names[0]!r}")
    else:
        raise DataError(f"{k} model output(s) but {len(classes)} class names {classes}")
    if k > 1:
        positive_class = None
    thresholds = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (k,)) \
        if np.ndim(threshold) == 0 or np.size(threshold) == k else None
    if thresholds is None:
        raise DataError(f"threshold must be one number or one per output ({k}), got {threshold!r}")

    per_class = {}
    known = ~np.isnan(np.asarray(y, dtype=np.float64))          # masked (unknown) labels are NaN
    for j, name in enumerate(names):
        ok = known[:, j]
        rep = binary_report(y[ok, j], p[ok, j], thresholds[j])
        rep["roc_auc_ci95"] = list(bootstrap_auc_ci(y[ok, j], p[ok, j], n_boot, alpha, seed))
        if not ok.all():
            rep["n_masked"] = int((~ok).sum())
        per_class[name] = rep

    if k == 1:
        only = per_class[names[0]]
        overall = {key: only[key] for key in ("roc_auc", "roc_auc_ci95", "pr_auc", "accuracy", "sensitivity",
                                             "specificity", "ppv", "npv", "f1", "confusion", "sensitivity_ci95",
                                             "specificity_ci95", "ppv_ci95", "npv_ci95")}
        threshold_out = float(thresholds[0])
    else:
        cm = sum(np.asarray(per_class[name]["confusion"]) for name in names)  # micro: pooled decisions
        overall = {"roc_auc": _nanmean(per_class[name]["roc_auc"] for name in names),
                   "roc_auc_ci95": list(bootstrap_auc_ci(y[known.all(axis=1)], p[known.all(axis=1)], n_boot, alpha,
                                                         seed)) if known.all(axis=1).any() else [math.nan] * 2,
                   "pr_auc": _nanmean(per_class[name]["pr_auc"] for name in names)}
        overall.update(rates_from_confusion(cm))
        overall.update(rate_intervals(cm))
        overall["confusion"] = cm.tolist()
        threshold_out = float(thresholds[0]) if np.all(thresholds == thresholds[0]) else thresholds.tolist()

    out = {"n": int(n), "classes": classes, "positive_class": positive_class, "threshold": threshold_out}
    out.update(overall)
    out["per_class"] = per_class
    return to_jsonable(out)


def to_jsonable(obj):
    """Copy ``obj`` with NumPy scalars/arrays turned into Python ones and ``nan``/``inf`` into ``None``.

    The result passes ``json.dumps(..., allow_nan=False)``.
    """
    if isinstance(obj, dict):
        return {str(key): to_jsonable(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(value) for value in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    return obj


def format_number(value, digits: int = 3) -> str:
    """A metric for people: ``n/a`` for None/nan, integers as they are, else ``digits`` decimals
    (the text table here and the HTML report share it)."""
    if value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return str(int(value))
    return f"{float(value):.{digits}f}"


def format_interval(ci, between: str = ", ", empty: str = "") -> str:
    """``[lo, hi]`` as ``lo<between>hi`` (``empty`` when missing); the caller adds brackets."""
    if not ci or ci[0] is None or ci[1] is None:
        return empty
    return f"{format_number(ci[0])}{between}{format_number(ci[1])}"


def _fmt_ci(ci) -> str:
    text = format_interval(ci)
    return f"[{text}]" if text else ""


_TABLE_ROWS = [("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC (AP)"), ("accuracy", "accuracy"),
               ("sensitivity", "sensitivity"), ("specificity", "specificity"), ("ppv", "PPV"),
               ("npv", "NPV"), ("f1", "F1")]


def format_metrics_table(metrics: dict) -> str:
    """A plain-text table of an :func:`evaluate_predictions` result (or the JSON read back)."""
    lines = []
    head = f"n = {metrics.get('n')}"
    if metrics.get("split"):
        head = f"split: {metrics['split']}   " + head
    thr = metrics.get("threshold")
    thr_text = ", ".join(format_number(t) for t in thr) if isinstance(thr, list) else format_number(thr)
    head += f"   threshold = {thr_text}"
    if metrics.get("threshold_rule"):
        head += f" ({metrics['threshold_rule']})"
    if metrics.get("positive_class"):
        head += f"   positive class: {metrics['positive_class']}"
    lines.append(head)

    per_class = metrics.get("per_class", {})
    multi = len(per_class) > 1
    label_w = 14
    col_w = max([12, 17] + [len(str(name)) + 2 for name in per_class]) if multi else 10
    if multi:
        lines.append("overall: ROC-AUC/PR-AUC macro-averaged over classes, threshold metrics micro (pooled)")
        header = f"{'metric':<{label_w}}{'overall':>{col_w}}" + "".join(f"{str(c):>{col_w}}" for c in per_class)
    else:
        header = f"{'metric':<{label_w}}{'value':>{col_w}}   95% CI (AUC: bootstrap; rates: Wilson)"
    lines.append(header)
    lines.append("-" * len(header))
    for key, label in _TABLE_ROWS:
        if multi:
            row = f"{label:<{label_w}}{format_number(metrics.get(key)):>{col_w}}"
            row += "".join(f"{format_number(per_class[c].get(key)):>{col_w}}" for c in per_class)
        else:
            row = f"{label:<{label_w}}{format_number(metrics.get(key)):>{col_w}}"
            if metrics.get(f"{key}_ci95"):
                row += "   " + _fmt_ci(metrics.get(f"{key}_ci95"))
        lines.append(row.rstrip())
    if multi:
        row = f"{'AUC 95% CI':<{label_w}}{_fmt_ci(metrics.get('roc_auc_ci95')):>{col_w}}"
        row += "".join(f"{_fmt_ci(per_class[c].get('roc_auc_ci95')):>{col_w}}" for c in per_class)
        lines.append(row)
        row = f"{'positives':<{label_w}}{'':>{col_w}}"
        row += "".join(f"{format_number(per_class[c].get('n_pos')):>{col_w}}" for c in per_class)
        lines.append(row)
    cm = metrics.get("confusion")
    if cm:
        (tn, fp), (fn, tp) = cm
        lines.append("")
        lines.append("confusion" + (" (pooled over classes)" if multi else "") + ":")
        lines.append(f"{'':>14}{'pred neg':>10}{'pred pos':>10}")
        lines.append(f"{'true neg':>14}{tn:>10}{fp:>10}")
        lines.append(f"{'true pos':>14}{fn:>10}{tp:>10}")
    return "\n".join(lines)
