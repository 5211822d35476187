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
from .ranking import average_precision, bootstrap_auc_ci, check_binary, macro_roc_auc, roc_auc, roc_curve
from .report import (binary_report, evaluate_predictions, format_interval, format_metrics_table, format_number,
                     to_jsonable)
from .sklearn_names import classification_report, confusion_matrix, roc_auc_score
from .threshold import (accuracy, rate_intervals, calibration_bins, calibration_curve, confusion_at, f1, npv, ppv, rates_from_confusion, sensitivity,
                        specificity, threshold_for_sensitivity, wilson_interval, youden_threshold, youden_thresholds)

__all__ = [
    "check_binary", "roc_auc", "roc_curve", "average_precision", "confusion_at", "rates_from_confusion",
    "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1",
    "youden_threshold", "threshold_for_sensitivity", "bootstrap_auc_ci", "calibration_curve",
    "macro_roc_auc", "youden_thresholds", "wilson_interval", "rate_intervals", "binary_report", "evaluate_predictions", "roc_auc_score", "confusion_matrix", "classification_report", "format_metrics_table", "to_jsonable", "format_number", "format_interval", "calibration_bins",
]
