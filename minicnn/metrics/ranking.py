"""Ranking metrics: ROC-AUC, the ROC curve, average precision, and a bootstrap CI for the AUC.

Conventions: see ``minicnn.metrics``.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import DataError


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


def _scorable(y, k) -> bool:
    return 0 < y[:, k].sum() < len(y)


def macro_roc_auc(y_true, y_prob) -> float:
    """Mean ROC-AUC over the columns (classes) that hold both positives and negatives; nan if none do."""
    y, p = np.asarray(y_true), np.asarray(y_prob)
    vals = [roc_auc(y[:, k], p[:, k]) for k in range(y.shape[1]) if _scorable(y, k)]
    return float(np.mean(vals)) if vals else float("nan")


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
