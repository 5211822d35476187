"""Clinical evaluation metrics, written out by hand so a learner can read every step.

Everything here is plain NumPy and is checked against scikit-learn in ``tests/test_metrics.py``.

Conventions used throughout:

* ``y`` holds true labels 0/1 and ``p`` predicted scores (usually probabilities), both shape ``(N,)``;
  multi-label functions take ``(N, K)``, one column per class.
* A case is called **positive when ``p >= threshold``**.
* The confusion matrix is ``[[tn, fp], [fn, tp]]`` (rows: truth negative/positive; columns:
  predicted negative/positive), the same layout as ``sklearn.metrics.confusion_matrix``.
* A ratio whose denominator is zero (sensitivity with no positive cases, PPV when nothing is called
  positive, AUC on a single class, ...) is ``nan``, never an exception and never a made-up 0 or 1.
  :func:`to_jsonable` turns those ``nan`` into ``None`` (JSON ``null``).

Names: sensitivity = recall = true-positive rate (TPR); specificity = true-negative rate (TNR);
PPV = positive predictive value = precision; NPV = negative predictive value.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import DataError

__all__ = [
    "check_binary", "roc_auc", "roc_curve", "average_precision", "confusion_at", "rates_from_confusion",
    "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1",
    "youden_threshold", "threshold_for_sensitivity", "bootstrap_auc_ci", "calibration_curve",
    "binary_report", "evaluate_predictions", "format_metrics_table", "to_jsonable",
]


# ------------------------------------------------------------------------------------------------
# Input checks
# ------------------------------------------------------------------------------------------------

def check_binary(y, p, name: str = "y_true") -> tuple[np.ndarray, np.ndarray]:
    """Return ``(y, p)`` as 1-D ``int64`` / ``float64`` arrays after checking them.

    Raises ``ValueError`` when the shapes differ, ``y`` holds anything but 0 and 1, or ``p`` holds
    NaN/Inf (a NaN score usually means a diverged model, and silently ranking it would hide that).
    """
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    if y.ndim != 1 or p.ndim != 1:
        raise DataError(f"{name} and scores must be 1-D, got shapes {y.shape} and {p.shape}")
    if y.shape != p.shape:
        raise DataError(f"{name} has {y.shape[0]} labels but there are {p.shape[0]} scores")
    if y.size and not np.isin(y, (0, 1)).all():
        raise DataError(f"{name} must contain only 0 and 1, got values {np.unique(y)[:10].tolist()}")
    if not np.isfinite(p).all():
        raise DataError(f"scores contain {int((~np.isfinite(p)).sum())} NaN/Inf values; check the model output")
    return y.astype(np.int64), p


def _score_groups(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct scores in *descending* order and, per case, the index of its group in that order."""
    distinct, inverse = np.unique(p, return_inverse=True)  # ascending
    return distinct[::-1], (distinct.size - 1) - inverse.reshape(-1)


def _group_counts(y: np.ndarray, group: np.ndarray, n_groups: int, weight=None):
    """Number (or total weight) of positive and negative cases in each score group."""
    w = np.ones(y.shape[0]) if weight is None else np.asarray(weight, dtype=np.float64)
    pos = np.bincount(group, weights=w * y, minlength=n_groups)
    neg = np.bincount(group, weights=w * (1 - y), minlength=n_groups)
    return pos, neg


# ------------------------------------------------------------------------------------------------
# Ranking metrics: ROC-AUC, ROC curve, average precision
# ------------------------------------------------------------------------------------------------

def _auc_from_groups(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUC from per-group counts, groups ordered by *descending* score.

    AUC = P(score of a random positive > score of a random negative), a tie counting one half:
    each positive in group g beats every negative in a lower group and ties the negatives in g.
    """
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return math.nan
    neg_below = n_neg - np.cumsum(neg)  # negatives with a strictly lower score than group g
    wins = np.sum(pos * (neg_below + 0.5 * neg))
    return float(wins / (n_pos * n_neg))


def roc_auc(y, p) -> float:
    """Area under the ROC curve, ties between a positive and a negative counted as 1/2.

    This is the Mann-Whitney U statistic divided by ``n_pos * n_neg``, which equals the trapezoidal
    area under the ROC curve (and ``sklearn.metrics.roc_auc_score``). ``nan`` if ``y`` has one class.
    """
    y, p = check_binary(y, p)
    _, group = _score_groups(p)
    n_groups = int(group.max()) + 1 if group.size else 0
    return _auc_from_groups(*_group_counts(y, group, n_groups))


def roc_curve(y, p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve points ``(fpr, tpr, thresholds)``, one point per distinct score.

    ``thresholds`` are the distinct scores in decreasing order, preceded by ``inf`` (nothing called
    positive, the point (0, 0)); point i is the rates obtained by calling ``p >= thresholds[i]``
    positive. This matches ``sklearn.metrics.roc_curve(y, p, drop_intermediate=False)``: no
    collinear points are dropped. ``fpr`` (``tpr``) is all ``nan`` when there is no negative (positive).
    """
    y, p = check_binary(y, p)
    distinct, group = _score_groups(p)
    pos, neg = _group_counts(y, group, distinct.size)
    tps = np.concatenate([[0.0], np.cumsum(pos)])
    fps = np.concatenate([[0.0], np.cumsum(neg)])
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = tps / tps[-1] if tps[-1] > 0 else np.full_like(tps, np.nan)
        fpr = fps / fps[-1] if fps[-1] > 0 else np.full_like(fps, np.nan)
    return fpr, tpr, np.concatenate([[np.inf], distinct])


def average_precision(y, p) -> float:
    """PR-AUC as average precision: ``sum_k (R_k - R_{k-1}) * P_k`` over distinct thresholds.

    Walking the thresholds from the highest score down, each step adds the precision at that
    threshold times the recall it gained (no interpolation, like
    ``sklearn.metrics.average_precision_score``). ``nan`` when there is no positive case.
    """
    y, p = check_binary(y, p)
    distinct, group = _score_groups(p)
    pos, neg = _group_counts(y, group, distinct.size)
    if pos.sum() == 0:
        return math.nan
    tp = np.cumsum(pos)
    fp = np.cumsum(neg)
    precision = tp / (tp + fp)  # every group holds at least one case, so tp + fp > 0
    recall_gain = pos / pos.sum()
    return float(np.sum(recall_gain * precision))


# ------------------------------------------------------------------------------------------------
# Threshold metrics
# ------------------------------------------------------------------------------------------------

def confusion_at(y, p, threshold: float = 0.5) -> np.ndarray:
    """Confusion matrix ``[[tn, fp], [fn, tp]]`` (int64) calling ``p >= threshold`` positive."""
    y, p = check_binary(y, p)
    pred = (p >= threshold).astype(np.int64)
    tp = int(np.sum((y == 1) & (pred == 1)))
    fp = int(np.sum((y == 0) & (pred == 1)))
    fn = int(np.sum((y == 1) & (pred == 0)))
    tn = int(np.sum((y == 0) & (pred == 0)))
    return np.array([[tn, fp], [fn, tp]], dtype=np.int64)


def _ratio(num, den) -> float:
    return float(num) / float(den) if den > 0 else math.nan


def accuracy(cm) -> float:
    """(tp + tn) / all."""
    (tn, fp), (fn, tp) = np.asarray(cm)
    return _ratio(tp + tn, tn + fp + fn + tp)


def sensitivity(cm) -> float:
    """tp / (tp + fn): recall, true-positive rate. ``nan`` without positive cases."""
    (tn, fp), (fn, tp) = np.asarray(cm)
    return _ratio(tp, tp + fn)


def specificity(cm) -> float:
    """tn / (tn + fp): true-negative rate. ``nan`` without negative cases."""
    (tn, fp), (fn, tp) = np.asarray(cm)
    return _ratio(tn, tn + fp)


def ppv(cm) -> float:
    """tp / (tp + fp): precision. ``nan`` when nothing is called positive."""
    (tn, fp), (fn, tp) = np.asarray(cm)
    return _ratio(tp, tp + fp)


def npv(cm) -> float:
    """tn / (tn + fn). ``nan`` when nothing is called negative."""
    (tn, fp), (fn, tp) = np.asarray(cm)
    return _ratio(tn, tn + fn)


def f1(cm) -> float:
    """2 tp / (2 tp + fp + fn), the harmonic mean of PPV and sensitivity. ``nan`` if tp = fp = fn = 0."""
    (tn, fp), (fn, tp) = np.asarray(cm)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def rates_from_confusion(cm) -> dict:
    """All threshold metrics of one confusion matrix ``[[tn, fp], [fn, tp]]`` as a dict of floats."""
    return {"accuracy": accuracy(cm), "sensitivity": sensitivity(cm), "specificity": specificity(cm),
            "ppv": ppv(cm), "npv": npv(cm), "f1": f1(cm)}


# ------------------------------------------------------------------------------------------------
# Threshold selection
# ------------------------------------------------------------------------------------------------

def _roc_for_selection(y, p):
    y, p = check_binary(y, p)
    if y.sum() == 0 or y.sum() == y.size:
        raise DataError("choosing a threshold needs both positive and negative cases; "
                         f"got {int(y.sum())} positive of {y.size}")
    fpr, tpr, thr = roc_curve(y, p)
    return fpr[1:], tpr[1:], thr[1:]  # drop the (inf) "call nothing positive" point


def youden_threshold(y, p) -> float:
    """The score threshold maximising Youden's J = sensitivity + specificity - 1 = TPR - FPR.

    Candidates are the distinct scores (the ROC thresholds). Among equal J the highest threshold
    wins. Choose it on validation data, then apply it to the test set. ``ValueError`` if ``y`` has
    a single class.
    """
    fpr, tpr, thr = _roc_for_selection(y, p)
    return float(thr[int(np.argmax(tpr - fpr))])  # argmax takes the first, i.e. highest, threshold


def threshold_for_sensitivity(y, p, target: float) -> float:
    """The highest threshold whose sensitivity is at least ``target`` (0 < target <= 1).

    Among thresholds reaching the target sensitivity the highest one has the best specificity, so
    this is "the most specific operating point that still finds ``target`` of the positives".
    """
    if not 0.0 < float(target) <= 1.0:
        raise DataError(f"target sensitivity must be in (0, 1], got {target}")
    fpr, tpr, thr = _roc_for_selection(y, p)
    # tpr rises as the threshold falls; tolerate float round-off in e.g. 3/10 vs 0.3
    return float(thr[int(np.argmax(tpr >= float(target) - 1e-12))])


# ------------------------------------------------------------------------------------------------
# Bootstrap confidence interval for the AUC
# ------------------------------------------------------------------------------------------------

def _scorable(y, k) -> bool:
    return 0 < y[:, k].sum() < len(y)


def macro_roc_auc(y_true, y_prob) -> float:
    """Mean ROC-AUC over the columns (classes) that hold both positives and negatives; nan if none do."""
    y, p = np.asarray(y_true), np.asarray(y_prob)
    vals = [roc_auc(y[:, k], p[:, k]) for k in range(y.shape[1]) if _scorable(y, k)]
    return float(np.mean(vals)) if vals else float("nan")


def youden_thresholds(y_true, y_prob, default: float = 0.5) -> list[float]:
    """Per-column Youden threshold (``default`` for a column with a single class)."""
    y, p = np.asarray(y_true), np.asarray(y_prob)
    return [youden_threshold(y[:, k], p[:, k]) if _scorable(y, k) else default for k in range(y.shape[1])]


def bootstrap_auc_ci(y, p, n_boot: int = 1000, alpha: float = 0.05, seed=0) -> tuple[float, float]:
    """Percentile bootstrap ``(lo, hi)`` interval for the ROC-AUC, level ``1 - alpha``.

    Cases (rows) are resampled with replacement ``n_boot`` times using
    ``numpy.random.default_rng(seed)`` (``seed`` may also be a ``Generator``). For ``(N, K)``
    inputs the statistic is the macro AUC (mean over classes) and whole rows are resampled, so the
    classes stay paired. A resample in which some class that has both labels in the full data
    loses one of them is skipped (its AUC is undefined). ``(nan, nan)`` if no resample is usable.

    A resample is represented by how many times each case was drawn; the AUC of the resample is the
    Mann-Whitney AUC with those counts as weights, which is exactly the AUC of the duplicated data.
    """
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    if y.ndim == 1:
        y, p = y[:, None], p[:, None]
    if y.ndim != 2 or y.shape != p.shape:
        raise DataError(f"y and p must have the same shape (N,) or (N, K), got {y.shape} and {p.shape}")
    if not 0.0 < alpha < 1.0:
        raise DataError(f"alpha must be in (0, 1), got {alpha}")
    n, k = y.shape
    columns = []  # per class: labels, score group of each case, number of groups
    for j in range(k):
        yj, pj = check_binary(y[:, j], p[:, j])
        if 0 < yj.sum() < n:  # classes without both labels have no AUC and are left out
            distinct, group = _score_groups(pj)
            columns.append((yj, group, distinct.size))
    if not columns or n_boot <= 0:
        return math.nan, math.nan
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    stats = []
    for _ in range(int(n_boot)):
        counts = np.bincount(rng.integers(0, n, size=n), minlength=n).astype(np.float64)
        aucs = [_auc_from_groups(*_group_counts(yj, group, ng, counts)) for yj, group, ng in columns]
        if not any(math.isnan(a) for a in aucs):
            stats.append(float(np.mean(aucs)))
    if not stats:
        return math.nan, math.nan
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


# ------------------------------------------------------------------------------------------------
# Calibration
# ------------------------------------------------------------------------------------------------

def calibration_curve(y, p, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reliability diagram data: ``(mean_predicted, fraction_positive, count)`` per non-empty bin.

    Probabilities are cut into ``n_bins`` equal-width bins of [0, 1]; a value on an inner edge falls
    in the lower bin (as ``sklearn.calibration.calibration_curve`` with ``strategy='uniform'``).
    A well-calibrated model has ``fraction_positive`` close to ``mean_predicted`` in every bin.
    """
    y, p = check_binary(y, p)
    if p.size and (p.min() < 0 or p.max() > 1):
        raise DataError("calibration needs probabilities in [0, 1]; got scores outside that range")
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    bin_of = np.searchsorted(edges[1:-1], p)  # bin i holds (edges[i], edges[i+1]]
    count = np.bincount(bin_of, minlength=n_bins)
    sum_p = np.bincount(bin_of, weights=p, minlength=n_bins)
    sum_y = np.bincount(bin_of, weights=y, minlength=n_bins)
    keep = count > 0
    return sum_p[keep] / count[keep], sum_y[keep] / count[keep], count[keep]


# ------------------------------------------------------------------------------------------------
# Reports
# ------------------------------------------------------------------------------------------------

def binary_report(y, p, threshold: float = 0.5) -> dict:
    """Every metric of one binary problem at ``threshold``; values are Python floats (may be ``nan``).

    Keys: ``roc_auc, pr_auc, accuracy, sensitivity, specificity, ppv, npv, f1, confusion`` (nested
    list ``[[tn, fp], [fn, tp]]``), ``threshold, n_pos, n_neg``.
    """
    y, p = check_binary(y, p)
    cm = confusion_at(y, p, threshold)
    out = {"roc_auc": roc_auc(y, p), "pr_auc": average_precision(y, p)}
    out.update(rates_from_confusion(cm))
    out.update({"confusion": cm.tolist(), "threshold": float(threshold),
                "n_pos": int(y.sum()), "n_neg": int(y.size - y.sum())})
    return out


def _nanmean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def evaluate_predictions(y_true, y_prob, classes, threshold=0.5, positive_class=None,
                         n_boot: int = 1000, alpha: float = 0.05, seed=0) -> dict:
    """The full evaluation written to ``metrics.json``, already JSON-safe (``nan`` -> ``None``).

    ``y_true`` and ``y_prob`` are ``(N, K)`` (or ``(N,)`` for one output), one column per model output.
    ``classes`` names the classes: K names, or, for a binary model with one output (K == 1), either
    ``[positive]`` or both names, in which case ``positive_class`` must say which one the output is.
    ``threshold`` is one number or one per output.

    Result::

        {"n", "classes", "positive_class", "threshold", "roc_auc", "roc_auc_ci95": [lo, hi], "pr_auc",
         "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "confusion": [[tn, fp], [fn, tp]],
         "per_class": {name: {"roc_auc", "roc_auc_ci95", "pr_auc", "accuracy", "sensitivity",
                              "specificity", "ppv", "npv", "f1", "confusion", "threshold",
                              "n_pos", "n_neg"}}}

    K == 1: the overall entries are those of the single output. K > 1 (multi-label): ``roc_auc`` and
    ``pr_auc`` are macro means over the classes (classes whose AUC is undefined are left out),
    ``roc_auc_ci95`` bootstraps the macro AUC by resampling images; the threshold metrics and the
    confusion matrix are *micro*: computed over all N*K (image, class) decisions pooled.
    ``positive_class`` is ``None`` for K > 1. The CI uses ``n_boot`` resamples seeded by ``seed``.
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
    for j, name in enumerate(names):
        rep = binary_report(y[:, j], p[:, j], thresholds[j])
        rep["roc_auc_ci95"] = list(bootstrap_auc_ci(y[:, j], p[:, j], n_boot, alpha, seed))
        per_class[name] = rep

    if k == 1:
        only = per_class[names[0]]
        overall = {key: only[key] for key in ("roc_auc", "roc_auc_ci95", "pr_auc", "accuracy", "sensitivity",
                                             "specificity", "ppv", "npv", "f1", "confusion")}
        threshold_out = float(thresholds[0])
    else:
        cm = sum(np.asarray(per_class[name]["confusion"]) for name in names)  # micro: pooled decisions
        overall = {"roc_auc": _nanmean(per_class[name]["roc_auc"] for name in names),
                   "roc_auc_ci95": list(bootstrap_auc_ci(y, p, n_boot, alpha, seed)),
                   "pr_auc": _nanmean(per_class[name]["pr_auc"] for name in names)}
        overall.update(rates_from_confusion(cm))
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


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{value:.{digits}f}"


def _fmt_ci(ci) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    return f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"


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
    thr_text = ", ".join(_fmt(t) for t in thr) if isinstance(thr, list) else _fmt(thr)
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
        header = f"{'metric':<{label_w}}{'value':>{col_w}}   95% CI"
    lines.append(header)
    lines.append("-" * len(header))
    for key, label in _TABLE_ROWS:
        if multi:
            row = f"{label:<{label_w}}{_fmt(metrics.get(key)):>{col_w}}"
            row += "".join(f"{_fmt(per_class[c].get(key)):>{col_w}}" for c in per_class)
        else:
            row = f"{label:<{label_w}}{_fmt(metrics.get(key)):>{col_w}}"
            if key == "roc_auc":
                row += "   " + _fmt_ci(metrics.get("roc_auc_ci95"))
        lines.append(row.rstrip())
    if multi:
        row = f"{'AUC 95% CI':<{label_w}}{_fmt_ci(metrics.get('roc_auc_ci95')):>{col_w}}"
        row += "".join(f"{_fmt_ci(per_class[c].get('roc_auc_ci95')):>{col_w}}" for c in per_class)
        lines.append(row)
        row = f"{'positives':<{label_w}}{'':>{col_w}}"
        row += "".join(f"{_fmt(per_class[c].get('n_pos')):>{col_w}}" for c in per_class)
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
