"""The clinician-facing report: CIs for the four rates, class names, provenance, Grad-CAM of the
positive class for missed positives, calibration bins for the sample size and the class-weight
note, the not-a-medical-device notice; and the one number formatter; file permissions."""
import hashlib
import os
import re

import numpy as np
import pytest

from minicnn import fileio, metrics, small_cnn
from minicnn.data import Preprocessing, load_dataset
from minicnn.data.synthetic import make_synthetic
from minicnn.metrics import evaluate_predictions, format_number
from minicnn.report import NOT_A_MEDICAL_DEVICE, _binary_labels, write_evaluation_report, write_html_report


def test_the_four_rates_carry_wilson_intervals_and_the_notice(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 16)
    p = np.clip(0.5 * y + 0.5 * rng.random(16), 0, 1)
    m = evaluate_predictions(y, p, ["NORMAL", "PNEUMONIA"], positive_class="PNEUMONIA", n_boot=50)
    html = write_html_report(tmp_path, m, y, p, ["PNEUMONIA"], class_names=["NORMAL", "PNEUMONIA"]).read_text()
    for key in ("sensitivity", "specificity", "ppv", "npv"):
        lo, hi = m[key + "_ci95"]
        assert f"{format_number(lo)} &ndash; {format_number(hi)}" in html, key
    assert "Wilson" in html and "Not a medical device." in html
    assert NOT_A_MEDICAL_DEVICE.split(". ", 1)[1] in html
    assert "4 equal-width bins for 16 images" in html                  # sqrt(16), not 10 near-empty bins
    assert "class weights" not in html


def test_multilabel_rows_have_intervals_too(tmp_path):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, (40, 2))
    p = np.clip(0.5 * y + 0.5 * rng.random((40, 2)), 0, 1)
    m = evaluate_predictions(y, p, ["A", "B"], n_boot=20)
    html = write_html_report(tmp_path, m, y, p, ["A", "B"]).read_text()
    lo, hi = m["per_class"]["B"]["specificity_ci95"]
    assert html.count("95% CI</td>") >= 5 and f"{format_number(lo)} &ndash; {format_number(hi)}" in html


def test_negative_class_is_named():
    assert _binary_labels("PNEUMONIA", ["NORMAL", "PNEUMONIA"]) == ["NORMAL", "PNEUMONIA"]
    assert _binary_labels("PNEUMONIA", ["PNEUMONIA"]) == ["not PNEUMONIA", "PNEUMONIA"]   # only when unknown


def test_calibration_bins_follow_the_sample_size():
    assert [metrics.calibration_bins(n) for n in (3, 16, 49, 100, 5000)] == [2, 4, 7, 10, 10]


def test_evaluation_report_provenance_missed_positives_and_class_weights(tmp_path):
    data = tmp_path / "data"
    make_synthetic(data, n=40, size=16, seed=2)
    ds = load_dataset(data, split="test")
    model = small_cnn.conv_net("tiny", in_channels=1, outputs=1, image_size=16, seed=0)
    model.meta.update(classes=list(ds.classes), outputs=list(ds.output_names), positive_class=ds.positive_class,
                      preprocessing=Preprocessing(16, channels=1, mode="sample").to_dict(), threshold=[0.5],
                      class_weighted=True)
    path = tmp_path / "model.npz"
    model.save(path)
    y = ds.labels
    p = np.where(y == 1, 0.2, 0.8)                  # every positive missed, every negative called positive
    for cls in (0, 1):                              # except one right answer per class
        i = np.flatnonzero(y[:, 0] == cls)[0]
        p[i] = 1 - p[i]
    m = evaluate_predictions(y, p, ds.output_names, positive_class=ds.positive_class, n_boot=20)
    m["split"] = "test"
    html_path = write_evaluation_report(model, ds, y, p, m, tmp_path / "rep", n_errors=100, model_path=path,
                                        data=data)
    html = open(html_path).read()
    text = re.sub(r"<[^>]+>", " ", html)
    assert hashlib.sha256(path.read_bytes()).hexdigest() in html
    assert str(path) in html and str(data) in html and "minicnn version" in text and "UTC" in text
    n_missed = html.count(f"Grad-CAM of {ds.positive_class} (missed)")
    n_false_alarm = html.count(f"Grad-CAM: high = more evidence for {ds.positive_class}")
    missed = int(((y[:, 0] == 1) & (p[:, 0] < 0.5)).sum())
    false_alarms = int(((y[:, 0] == 0) & (p[:, 0] >= 0.5)).sum())
    assert missed > 0 and false_alarms > 0
    assert (n_missed, n_false_alarm) == (missed, false_alarms)   # a missed positive shows the positive class's map
    assert "trained with class weights" in html
    assert "not NORMAL" not in html and "not PNEUMONIA" not in html


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_atomic_writes_get_the_permissions_open_gives(tmp_path, mask):
    old = os.umask(mask)
    try:
        fileio.write_text(tmp_path / "a.txt", "x")
        with open(tmp_path / "b.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    mode = lambda name: os.stat(tmp_path / name).st_mode & 0o777
    assert mode("a.txt") == mode("b.txt") == 0o666 & ~mask


def test_one_number_formatter():
    assert [format_number(v) for v in (None, float("nan"), 3, np.int64(4), 0.12345, np.float32(0.5))] == \
        ["n/a", "n/a", "3", "4", "0.123", "0.500"]
    assert format_number(True) == "1.000"          # a bool is not a count
