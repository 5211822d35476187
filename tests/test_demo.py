"""`minicnn demo` and `minicnn convert` on the real Keras pneumonia model (wheel from $MINICNN_TEST_WHEEL_DIR)."""
import contextlib
import hashlib
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from minicnn.cli import main
from minicnn.data.images import load_image
from minicnn.demo import FetchError, get_wheel

REF = Path(__file__).resolve().parent / "ref"
_DEMO_STDOUT = {}


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.src = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.src.append(dict(attrs)["src"])


@pytest.fixture(scope="module")
def demo_out(pneumonia_wheel, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    out = tmp_path_factory.mktemp("demo")
    mp = pytest.MonkeyPatch()
    mp.setenv("MINICNN_HOME", str(home))
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            assert main(["demo", "--out", str(out), "--wheel", str(pneumonia_wheel)]) == 0
    finally:
        mp.undo()
    _DEMO_STDOUT["text"] = buf.getvalue()
    return out, home


def test_demo_output_and_report_say_not_a_medical_device_and_where_the_model_came_from(demo_out):
    from minicnn.report import NOT_A_MEDICAL_DEVICE
    out, home = demo_out
    lines = _DEMO_STDOUT["text"].strip().splitlines()
    assert lines[0] == NOT_A_MEDICAL_DEVICE and lines[-1] == NOT_A_MEDICAL_DEVICE
    html = (out / "report.html").read_text()
    assert "Not a medical device." in html
    keras_file = home / "pneumonia-model-package-0.3.0" / "pneumonia_xception_model_val-acc_0.861.keras"
    assert hashlib.sha256(keras_file.read_bytes()).hexdigest() in html and "minicnn version" in html
    assert "NORMAL, PNEUMONIA" in html                   # the classes by name, not "not PNEUMONIA"
    assert "4 equal-width bins for 16 images" in html


@pytest.fixture(scope="module")
def converted_xception(demo_out, tmp_path_factory):
    """`minicnn convert` of the real Keras model the demo unpacked (done once for the tests below)."""
    _, home = demo_out
    keras_file = home / "pneumonia-model-package-0.3.0" / "pneumonia_xception_model_val-acc_0.861.keras"
    out = tmp_path_factory.mktemp("converted") / "xception.npz"
    assert main(["convert", str(keras_file), str(out), "--preprocess", "tf", "--image-size", "150",
                 "--resize", "nearest", "--classes", "NORMAL,PNEUMONIA"]) == 0
    return out


def test_demo_reproduces_keras_on_the_16_xrays(demo_out, capsys):
    out, _ = demo_out
    d = json.loads((out / "demo.json").read_text())
    with np.load(REF / "pneumonia_xception_keras_logits.npz", allow_pickle=False) as z:
        files = [str(f).split("/")[-1] for f in z["files"]]
        keras_p = dict(zip(files, z["probabilities"][:, 1]))
        labels = dict(zip(files, z["labels"]))
    assert len(d["images"]) == 16
    for rec in d["images"]:
        assert set(rec) == {"file", "true_label", "probabilities", "prediction"}
        assert rec["true_label"] == ["NORMAL", "PNEUMONIA"][int(labels[rec["file"]])]
        assert abs(rec["probabilities"]["PNEUMONIA"] - keras_p[rec["file"]]) < 1e-4, rec["file"]
    correct = sum(r["prediction"] == r["true_label"] for r in d["images"])
    assert d["accuracy"] == pytest.approx(correct / 16)
    pos = [r for r in d["images"] if r["true_label"] == "PNEUMONIA"]
    assert d["sensitivity"] == pytest.approx(sum(r["prediction"] == "PNEUMONIA" for r in pos) / len(pos))


def test_demo_report_and_heatmaps(demo_out):
    out, _ = demo_out
    html = (out / "report.html").read_text()
    parser = _Images()
    parser.feed(html)
    assert len(parser.src) >= 16 + 3
    for src in parser.src:
        assert (out / src).is_file(), src
    assert len(list((out / "heatmaps").glob("*_gradcam.png"))) == 16


def test_preprocessing_matches_keras_load_img(demo_out):
    _, home = demo_out
    with np.load(REF / "pneumonia_xception_keras_logits.npz", allow_pickle=False) as z:
        files, x_uint8 = [str(f) for f in z["files"]], z["x_uint8"]
    folder = home / "pneumonia-model-package-0.3.0" / "val"
    for f, ref in zip(files, x_uint8):
        img = load_image(folder / f, size=150, color="rgb", interpolation="nearest")
        np.testing.assert_array_equal(img, ref.astype(np.float32), err_msg=f)


def test_gradcam_on_the_real_model_is_finite_nonconstant_reproducible(demo_out, converted_xception, tmp_path):
    from minicnn.serialization import load
    _, home = demo_out
    model = load(converted_xception)
    assert model.meta["classes"] == ["NORMAL", "PNEUMONIA"] and model.output_activation == "softmax"
    image = home / "pneumonia-model-package-0.3.0" / "val" / "PNEUMONIA" / "person1946_bacteria_4874.jpeg"
    from minicnn.gradcam import explain_file
    a = explain_file(model, image, tmp_path / "a.png")
    b = explain_file(model, image, tmp_path / "b.png")
    assert a["node"] == "xception/block14_sepconv2_act" and a["heatmap"].shape == (5, 5)
    assert np.isfinite(a["heatmap"]).all() and a["heatmap"].std() > 0
    np.testing.assert_array_equal(a["heatmap"], b["heatmap"])
    assert a["prediction"] == "PNEUMONIA" and a["probability"] > 0.99


def test_demo_refuses_a_wheel_with_the_wrong_hash(tmp_path):
    fake = tmp_path / "pneumonia_model_package-0.3.0-py3-none-any.whl"
    fake.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    with pytest.raises(FetchError, match="SHA-256"):
        get_wheel(fake)
    with pytest.raises(FetchError, match="wheel not found"):
        get_wheel(tmp_path / "nope.whl")


def test_convert_small_keras_model_and_predict(tmp_path, capsys):
    from minicnn.serialization import load
    src = REF / "keras_small" / "tiny_functional.keras"
    out = tmp_path / "tiny.npz"
    assert main(["convert", str(src), str(out), "--preprocess", "tf", "--image-size", "12"]) == 0
    model = load(out)
    pre = model.meta["preprocessing"]
    assert pre["image_size"] == [12, 12] and pre["normalization"]["mode"] == "tf" and pre["channels"] == 3
    assert main(["convert", str(src), str(tmp_path / "x.npz"), "--preprocess", "dataset", "--image-size", "12"]) == 1
    assert "needs statistics" in capsys.readouterr().err


def test_evaluate_report_of_the_converted_model_on_the_shared_xrays(converted_xception, shared_dir, tmp_path):
    model = converted_xception
    out = tmp_path / "eval"
    assert main(["evaluate", str(model), str(shared_dir / "data" / "chest_xray_val16"), "--split", "val",
                 "--out", str(out), "--report", "--n-boot", "200"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 16 and m["accuracy"] == pytest.approx(13 / 16) and m["confusion"] == [[7, 1], [2, 6]]
    parser = _Images()
    parser.feed((out / "report" / "report.html").read_text())
    errors = [s for s in parser.src if s.startswith("case_")]
    assert len(errors) == 3      # the three misclassified X-rays, with their Grad-CAM
    assert all((out / "report" / s).is_file() for s in parser.src)


def test_demo_offline_download_failure_says_what_to_do(tmp_path, monkeypatch):
    import minicnn.demo as demo
    monkeypatch.setenv("MINICNN_HOME", str(tmp_path))
    calls = []
    monkeypatch.setattr(demo, "_pip_download", lambda folder: calls.append(folder) or 1)
    with pytest.raises(FetchError, match=r"offline\?.*pip download --no-deps pneumonia-model-package==0.3.0.*--wheel"):
        get_wheel()
    assert calls == [tmp_path / "wheels"]
    assert main(["demo", "--out", str(tmp_path / "o")]) == 1


def test_the_wheel_minicnn_demo_cached_is_found_without_the_test_variable(pneumonia_wheel, tmp_path, monkeypatch):
    from conftest import find_pneumonia_wheels
    monkeypatch.delenv("MINICNN_TEST_WHEEL_DIR", raising=False)
    monkeypatch.setenv("MINICNN_HOME", str(tmp_path / "home"))
    assert find_pneumonia_wheels() == []
    (tmp_path / "home" / "wheels").mkdir(parents=True)
    (tmp_path / "home" / "wheels" / pneumonia_wheel.name).symlink_to(pneumonia_wheel)
    assert [w.name for w in find_pneumonia_wheels()] == [pneumonia_wheel.name]
