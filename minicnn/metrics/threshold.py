"""Threshold metrics of a confusion matrix, choosing a threshold, and calibration.

Conventions: see ``minicnn.metrics``.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import DataError
from .ranking import _scorable, check_binary, roc_curve


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


def youden_thresholds(y_true, y_prob, default: float = 0.5) -> list[float]:
    """Per-column Youden threshold (``default`` for a column with a single class)."""
    y, p = np.asarray(y_true), np.asarray(y_prob)
    return [youden_threshold(y[:, k], p[:, k]) if _scorable(y, k) else default for k in range(y.shape[1])]


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


def calibration_bins(n: int, most: int = 10, fewest: int = 2) -> int:
    """Equal-width calibration bins for ``n`` predictions: about sqrt(n) (so a bin holds about as
    many images as there are bins), between ``fewest`` and ``most``: 16 images -> 4 bins, 100 or
    more -> 10. Ten bins over 16 images would leave most bins with one image or none."""
    return int(min(most, max(fewest, math.isqrt(max(int(n), 0)))))


def wilson_interval(successes, n, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for a proportion ``successes / n`` at level ``1 - alpha``.

    Unlike the normal approximation it stays inside [0, 1] and behaves at 0 and n successes, which
    matters for the small counts of a clinical test set (sensitivity on 20 positives, say).
    ``(nan, nan)`` when ``n == 0``.
    """
    n = float(n)
    if n <= 0:
        return math.nan, math.nan
    if not 0.0 < alpha < 1.0:
        raise DataError(f"alpha must be in (0, 1), got {alpha}")
    z = _normal_quantile(1 - alpha / 2)
    phat = float(successes) / n
    centre = (phat + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n))
    lo = 0.0 if successes <= 0 else max(0.0, centre - half)   # exact at the ends (no round-off above 0)
    hi = 1.0 if successes >= n else min(1.0, centre + half)
    return lo, hi


def _normal_quantile(q: float) -> float:
    """The standard normal quantile, by bisection on ``erf`` (exact to 1e-12; no SciPy needed)."""
    lo, hi = -10.0, 10.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def rate_intervals(cm, alpha: float = 0.05) -> dict:
    """Wilson intervals of sensitivity, specificity, PPV and NPV of ``[[tn, fp], [fn, tp]]``."""
    (tn, fp), (fn, tp) = np.asarray(cm)
    return {"sensitivity_ci95": list(wilson_interval(tp, tp + fn, alpha)),
            "specificity_ci95": list(wilson_interval(tn, tn + fp, alpha)),
            "ppv_ci95": list(wilson_interval(tp, tp + fp, alpha)),
            "npv_ci95": list(wilson_interval(tn, tn + fn, alpha))}
