"""minicnn.metrics checked against scikit-learn (the reference) and against brute force."""
import json
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from minicnn import metrics as M
from minicnn.metrics import ranking

sk = pytest.importorskip("sklearn.metrics")
sk_cal = pytest.importorskip("sklearn.calibration")


@st.composite
def labels_and_scores(draw, max_n=60, both_classes=True, integer_scores=None):
    """Labels with both classes and scores; integer scores from a tiny range force heavy ties."""
    n = draw(st.integers(2 if both_classes else 1, max_n))
    y = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 1)))
    if both_classes and (y.min() == y.max()):
        y[0] = 1 - y[0]
    if integer_scores is None:
        integer_scores = draw(st.booleans())
    if integer_scores:
        hi = draw(st.integers(0, 4))
        p = draw(hnp.arrays(np.int64, n, elements=st.integers(0, hi))).astype(np.float64) / max(hi, 1)
    else:
        p = draw(hnp.arrays(np.float64, n, elements=st.floats(0, 1, allow_nan=False)))
    return y, p


@given(labels_and_scores(integer_scores=True))
def test_roc_auc_matches_sklearn_with_heavy_ties(yp):
    y, p = yp
    assert M.roc_auc(y, p) == pytest.approx(sk.roc_auc_score(y, p), rel=1e-12, abs=1e-12)


@given(labels_and_scores())
def test_roc_auc_matches_sklearn(yp):
    y, p = yp
    assert M.roc_auc(y, p) == pytest.approx(sk.roc_auc_score(y, p), rel=1e-12, abs=1e-12)


@given(labels_and_scores())
def test_roc_curve_matches_sklearn(yp):
    y, p = yp
    fpr, tpr, thr = M.roc_curve(y, p)
    sfpr, stpr, sthr = sk.roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sfpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tpr, stpr, rtol=0, atol=1e-12)
    assert thr[0] == np.inf and sthr[0] == np.inf
    np.testing.assert_array_equal(thr[1:], sthr[1:])


@given(labels_and_scores())
def test_average_precision_matches_sklearn(yp):
    y, p = yp
    assert M.average_precision(y, p) == pytest.approx(sk.average_precision_score(y, p), rel=1e-12, abs=1e-12)


@given(labels_and_scores(both_classes=False), st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, 0.3]))
def test_threshold_metrics_match_sklearn(yp, threshold):
    y, p = yp
    pred = (p >= threshold).astype(int)
    cm = M.confusion_at(y, p, threshold)
    np.testing.assert_array_equal(cm, sk.confusion_matrix(y, pred, labels=[0, 1]))
    rep = M.binary_report(y, p, threshold)
    assert rep["confusion"] == cm.tolist()
    tn, fp, fn, tp = cm.ravel()
    assert rep["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    checks = [("sensitivity", tp + fn, lambda: sk.recall_score(y, pred, zero_division=np.nan)),
              ("specificity", tn + fp, lambda: sk.recall_score(y, pred, pos_label=0, zero_division=np.nan)),
              ("ppv", tp + fp, lambda: sk.precision_score(y, pred, zero_division=np.nan)),
              ("npv", tn + fn, lambda: sk.precision_score(y, pred, pos_label=0, zero_division=np.nan)),
              ("f1", 2 * tp + fp + fn, lambda: sk.f1_score(y, pred, zero_division=np.nan))]
    for key, denominator, reference in checks:
        if denominator == 0:
            assert math.isnan(rep[key]), key  # zero division is nan, documented
        else:
            assert rep[key] == pytest.approx(reference()), key
    assert rep["n_pos"] == int(y.sum()) and rep["n_neg"] == int(len(y) - y.sum())


def test_zero_division_and_single_class_give_nan():
    y = np.ones(5, dtype=int)
    p = np.linspace(0, 1, 5)
    rep = M.binary_report(y, p, 2.0)  # nothing called positive, no negatives
    assert math.isnan(rep["roc_auc"]) and math.isnan(rep["specificity"]) and math.isnan(rep["ppv"])
    assert rep["sensitivity"] == 0.0 and rep["npv"] == 0.0
    assert math.isnan(M.average_precision(np.zeros(4, int), np.arange(4.0)))
    fpr, tpr, _ = M.roc_curve(y, p)
    assert np.isnan(fpr).all() and np.isfinite(tpr).all()
    assert M.bootstrap_auc_ci(y, p, n_boot=20) == (pytest.approx(math.nan, nan_ok=True),) * 2


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="only 0 and 1"):
        M.roc_auc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        M.roc_auc([0, 1], [0.1, np.nan])
    with pytest.raises(ValueError, match="labels but"):
        M.roc_auc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="both positive and negative"):
        M.youden_threshold([1, 1, 1], [0.1, 0.2, 0.3])


@given(labels_and_scores())
def test_youden_threshold_maximises_j_by_brute_force(yp):
    y, p = yp
    t = M.youden_threshold(y, p)
    assert t in set(p.tolist())

    def j(th):
        cm = M.confusion_at(y, p, th)
        return M.sensitivity(cm) + M.specificity(cm) - 1

    best = max(j(th) for th in np.unique(p))
    assert j(t) == pytest.approx(best, abs=1e-12)
    # ties broken towards the highest threshold
    assert all(j(th) < best - 1e-12 for th in np.unique(p) if th > t)


@given(labels_and_scores(), st.floats(0.01, 1.0))
def test_threshold_for_sensitivity_is_the_highest_reaching_target(yp, target):
    y, p = yp
    t = M.threshold_for_sensitivity(y, p, target)
    assert M.sensitivity(M.confusion_at(y, p, t)) >= target - 1e-12
    higher = [th for th in np.unique(p) if th > t]
    assert all(M.sensitivity(M.confusion_at(y, p, th)) < target for th in higher)


@given(labels_and_scores(both_classes=False), st.integers(1, 12))
def test_calibration_curve_matches_sklearn(yp, n_bins):
    y, p = yp
    mean_p, frac, count = M.calibration_curve(y, p, n_bins)
    s_frac, s_mean = sk_cal.calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    np.testing.assert_allclose(mean_p, s_mean, atol=1e-12)
    np.testing.assert_allclose(frac, s_frac, atol=1e-12)
    assert count.sum() == len(y)


def _sample(n=300, seed=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1)
    return y, p


def test_bootstrap_ci_is_deterministic_and_contains_the_estimate():
    y, p = _sample()
    auc = M.roc_auc(y, p)
    ci = M.bootstrap_auc_ci(y, p, n_boot=500, seed=7)
    assert ci == M.bootstrap_auc_ci(y, p, n_boot=500, seed=7)
    assert ci != M.bootstrap_auc_ci(y, p, n_boot=500, seed=8)
    lo, hi = ci
    assert lo < auc < hi
    assert 0.01 < hi - lo < 0.3  # n = 300: an interval of a few hundredths, not degenerate
    assert M.bootstrap_auc_ci(y, p, n_boot=100, seed=np.random.default_rng(1)) == \
        M.bootstrap_auc_ci(y, p, n_boot=100, seed=np.random.default_rng(1))


def test_bootstrap_weighted_auc_equals_auc_of_resampled_data():
    # the bootstrap computes each resample's AUC from draw counts; check that trick against
    # the plain AUC of the explicitly duplicated data, resample by resample.
    y, p = _sample(80, seed=5)
    p = np.round(p, 1)  # ties
    rng = np.random.default_rng(11)
    distinct, group = ranking._score_groups(p)
    for _ in range(20):
        idx = rng.integers(0, len(y), len(y))
        counts = np.bincount(idx, minlength=len(y)).astype(float)
        weighted = ranking._auc_from_groups(*ranking._group_counts(y, group, distinct.size, counts))
        assert weighted == pytest.approx(sk.roc_auc_score(y[idx], p[idx]), abs=1e-12)


def test_bootstrap_skips_single_class_resamples():
    y = np.array([0] * 30 + [1])  # one positive: most resamples lose it
    p = np.linspace(0, 1, 31)
    lo, hi = M.bootstrap_auc_ci(y, p, n_boot=200)
    assert lo == hi == 1.0  # the positive has the top score, so every usable resample has AUC 1


KEYS = {"n", "classes", "positive_class", "threshold", "roc_auc", "roc_auc_ci95", "pr_auc", "accuracy",
        "sensitivity", "specificity", "ppv", "npv", "f1", "confusion", "per_class",
        "sensitivity_ci95", "specificity_ci95", "ppv_ci95", "npv_ci95"}
CLASS_KEYS = {"roc_auc", "roc_auc_ci95", "pr_auc", "accuracy", "sensitivity", "specificity", "ppv", "npv",
              "f1", "confusion", "threshold", "n_pos", "n_neg",
              "sensitivity_ci95", "specificity_ci95", "ppv_ci95", "npv_ci95"}


def test_evaluate_predictions_binary_structure():
    y, p = _sample()
    res = M.evaluate_predictions(y[:, None], p[:, None], ["NORMAL", "PNEUMONIA"], threshold=0.4,
                                 positive_class="PNEUMONIA", n_boot=200)
    json.dumps(res, allow_nan=False)
    assert set(res) == KEYS
    assert list(res["per_class"]) == ["PNEUMONIA"]
    assert set(res["per_class"]["PNEUMONIA"]) == CLASS_KEYS
    assert res["classes"] == ["NORMAL", "PNEUMONIA"] and res["positive_class"] == "PNEUMONIA"
    assert res["n"] == len(y) and res["threshold"] == 0.4
    one = res["per_class"]["PNEUMONIA"]
    for key in CLASS_KEYS - {"threshold", "n_pos", "n_neg"}:
        assert res[key] == one[key]
    assert res["roc_auc"] == pytest.approx(sk.roc_auc_score(y, p))
    assert res["confusion"] == sk.confusion_matrix(y, (p >= 0.4).astype(int)).tolist()
    lo, hi = res["roc_auc_ci95"]
    assert lo < res["roc_auc"] < hi
    with pytest.raises(ValueError, match="positive_class"):
        M.evaluate_predictions(y, p, ["NORMAL", "PNEUMONIA"], n_boot=0)
    # 1-D input and a single class name work too
    res1 = M.evaluate_predictions(y, p, ["PNEUMONIA"], threshold=0.4, n_boot=200)
    assert res1["roc_auc"] == res["roc_auc"] and res1["positive_class"] == "PNEUMONIA"


def test_evaluate_predictions_multilabel_structure():
    rng = np.random.default_rng(0)
    n, names = 200, ["Atelectasis", "Effusion", "Pneumonia"]
    y = rng.integers(0, 2, (n, 3))
    y[:, 2] = 0  # a class with no positives: its AUC is undefined (null), not a crash
    p = np.clip(0.3 * y + 0.7 * rng.random((n, 3)), 0, 1)
    thr = [0.4, 0.5, 0.6]
    res = M.evaluate_predictions(y, p, names, threshold=thr, n_boot=100)
    text = json.dumps(res, allow_nan=False)
    assert set(res) == KEYS and list(res["per_class"]) == names
    assert res["positive_class"] is None and res["threshold"] == thr
    assert res["per_class"]["Pneumonia"]["roc_auc"] is None
    assert res["per_class"]["Pneumonia"]["roc_auc_ci95"] == [None, None]
    # macro AUC over the classes with a defined AUC
    expected = np.mean([sk.roc_auc_score(y[:, j], p[:, j]) for j in range(2)])
    assert res["roc_auc"] == pytest.approx(expected)
    for j, name in enumerate(names):
        c = res["per_class"][name]
        assert set(c) == CLASS_KEYS and c["threshold"] == thr[j]
        assert c["confusion"] == sk.confusion_matrix(y[:, j], (p[:, j] >= thr[j]).astype(int),
                                                     labels=[0, 1]).tolist()
    # micro: pooled over all (image, class) decisions
    pooled_pred = (p >= np.array(thr)).astype(int).ravel()
    assert res["confusion"] == sk.confusion_matrix(y.ravel(), pooled_pred).tolist()
    assert res["f1"] == pytest.approx(sk.f1_score(y.ravel(), pooled_pred))
    lo, hi = res["roc_auc_ci95"]
    assert lo < res["roc_auc"] < hi
    table = M.format_metrics_table(json.loads(text))
    for name in names:
        assert name in table
    assert "n/a" in table  # the undefined AUC
    with pytest.raises(ValueError, match="class names"):
        M.evaluate_predictions(y, p, names[:2], n_boot=0)


def test_format_metrics_table_binary():
    y, p = _sample()
    res = M.evaluate_predictions(y, p, ["PNEUMONIA"], n_boot=50)
    res.update(split="test", threshold_rule="youden")
    table = M.format_metrics_table(res)
    assert "split: test" in table and "youden" in table
    auc_line = next(line for line in table.splitlines() if line.startswith("ROC-AUC"))
    assert f"{res['roc_auc']:.3f}" in auc_line and f"{res['roc_auc_ci95'][0]:.3f}" in auc_line
    tn, fp = res["confusion"][0]
    assert any(line.split()[-2:] == [str(tn), str(fp)] for line in table.splitlines())


def test_to_jsonable():
    obj = {"a": np.float32(1.5), "b": [np.nan, np.inf, np.int64(3)], "c": np.array([[1, 2]]), "d": np.bool_(True)}
    assert M.to_jsonable(obj) == {"a": 1.5, "b": [None, None, 3], "c": [[1, 2]], "d": True}
    json.dumps(M.to_jsonable(obj), allow_nan=False)


# -- the scikit-learn names -----------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_sklearn_named_metrics_equal_sklearn(seed):
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    y[:2] = [0, 1]
    s = np.round(rng.random(60), 2)
    d = (s >= 0.4).astype(int)
    assert M.roc_auc_score(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
    np.testing.assert_array_equal(M.confusion_matrix(y, d), sk.confusion_matrix(y, d, labels=[0, 1]))
    names = ["NORMAL", "PNEUMONIA"]
    ours = M.classification_report(y, d, target_names=names, output_dict=True)
    theirs = sk.classification_report(y, d, labels=[0, 1], target_names=names, output_dict=True, zero_division=0)
    for key, row in theirs.items():
        if key == "accuracy":
            assert ours[key] == pytest.approx(row, abs=1e-12)
        else:
            for k, v in row.items():
                assert ours[key][k] == pytest.approx(v, abs=1e-12), (key, k)
    assert M.classification_report(y, d, target_names=names, digits=3) == \
        sk.classification_report(y, d, labels=[0, 1], target_names=names, digits=3, zero_division=0)
    Y = rng.integers(0, 2, (60, 3))
    Y[:2] = [[0, 0, 0], [1, 1, 1]]
    S = rng.random((60, 3))
    assert M.roc_auc_score(Y, S) == pytest.approx(sk.roc_auc_score(Y, S, average="macro"), abs=1e-12)
    np.testing.assert_allclose(M.roc_auc_score(Y, S, average=None), sk.roc_auc_score(Y, S, average=None), atol=1e-12)


def test_sklearn_named_metrics_refuse_what_sklearn_refuses():
    with pytest.raises(ValueError, match="one class"):
        M.roc_auc_score([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="column"):
        M.roc_auc_score(np.array([[0, 1], [1, 1]]), np.array([[0.1, 0.2], [0.3, 0.4]]))
    with pytest.raises(ValueError, match="0/1"):
        M.confusion_matrix([0, 2], [0, 1])


@pytest.mark.parametrize("k, n", [(0, 10), (10, 10), (3, 7), (45, 50), (1, 1), (120, 390)])
def test_wilson_interval_equals_scipy(k, n):
    stats = pytest.importorskip("scipy.stats")
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = M.wilson_interval(k, n)
    assert lo == pytest.approx(ci.low, abs=1e-9) and hi == pytest.approx(ci.high, abs=1e-9)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_rate_intervals_are_reported_and_contain_the_rates():
    y, p = _sample()
    res = M.evaluate_predictions(y[:, None], p[:, None], ["NORMAL", "PNEUMONIA"], threshold=0.4,
                                 positive_class="PNEUMONIA", n_boot=50)
    (tn, fp), (fn, tp) = res["confusion"]
    for key, (num, den) in {"sensitivity": (tp, tp + fn), "specificity": (tn, tn + fp),
                            "ppv": (tp, tp + fp), "npv": (tn, tn + fn)}.items():
        lo, hi = res[f"{key}_ci95"]
        assert lo <= res[key] <= hi and (lo, hi) == pytest.approx(M.wilson_interval(num, den))
    table = M.format_metrics_table(res)
    sens_line = next(l for l in table.splitlines() if l.startswith("sensitivity"))
    assert f"[{res['sensitivity_ci95'][0]:.3f}, {res['sensitivity_ci95'][1]:.3f}]" in sens_line
    assert all(math.isnan(v) for v in M.wilson_interval(0, 0))
