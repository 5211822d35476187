"""minicnn.pretrained.keras_import.load_keras: Keras model files -> Graph, proved on output values.

* small Keras 3 ``.keras`` and tf-keras (Keras 2) full-model ``.h5`` fixtures with Keras' own
  outputs (tests/ref/keras_small, made by its make_fixtures.py; no TensorFlow needed here);
* the real Xception pneumonia model from the PyPI wheel against the committed Keras logits
  (wheel dir in $MINICNN_TEST_WHEEL_DIR; skipped without it, a failure when $CI is set);
* every refused layer/option raises KerasImportError naming class, layer and option.
"""
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from minicnn.layers.activation import Dropout
from minicnn.layers.elementwise import Identity
from minicnn.layers.norm import BatchNorm2D
from minicnn.pretrained.keras_import import KerasImportError, load_keras

REF = Path(__file__).resolve().parents[1] / "ref"
SMALL = REF / "keras_small"
MODELS = ["tiny_functional", "tiny_sequential", "tiny_nested"]

KERAS_MEMBER = "pneumonia_model_package/trained_models/pneumonia_xception_model_val-acc_0.861.keras"


@pytest.fixture(scope="module")
def outputs():
    with np.load(SMALL / "outputs.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _nchw(x):
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


# ------------------------------------------------------------------------------ small fixtures
@pytest.mark.parametrize("ext", ["keras", "h5"])
@pytest.mark.parametrize("name", MODELS)
def test_small_models_match_keras(name, ext, outputs):
    g = load_keras(SMALL / f"{name}.{ext}")
    want = outputs[("y_" if ext == "keras" else "y2_") + name]
    got = g.predict(_nchw(outputs[f"x_{name}"]))
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-4, np.abs(got - want).max()
    # the outputs are not degenerate: the two samples differ, so a wrong network could not match
    assert np.abs(want[0] - want[1]).max() > 1e-3
    assert g.meta == {"source": "keras", "keras_file": f"{name}.{ext}", "input_layout": "NCHW",
                      "input_shape": list(g.input_shape)}


def test_output_activation_taken_from_last_layer():
    f = load_keras(SMALL / "tiny_functional.keras")
    assert f.output_activation == "softmax" and f.output_name == "probs"        # Dense(softmax): logits out
    s = load_keras(SMALL / "tiny_sequential.h5")
    assert s.output_activation == "sigmoid" and s.output_name == "out"
    n = load_keras(SMALL / "tiny_nested.keras")
    assert n.output_activation is None and n.output_name == "logits"
    # activations inside layer configs became nodes of their own
    assert {"sep/relu", "conv2/tanh", "fc1/elu"} <= set(f.nodes)
    assert f.input_shape == (3, 12, 12) and f.input_names == ["image"]


def test_logits_before_softmax_equal_keras_log_probabilities(outputs):
    g = load_keras(SMALL / "tiny_functional.keras")
    z = g.forward(_nchw(outputs["x_tiny_functional"]))
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    assert np.abs(logp - np.log(outputs["y_tiny_functional"])).max() < 1e-4


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_nested_model_is_flattened_and_stays_in_inference_mode(ext, outputs):
    g = load_keras(SMALL / f"tiny_nested.{ext}")
    assert list(g.nodes)[:3] == ["backbone/bb_conv", "backbone/bb_bn", "backbone/bb_relu"]
    assert g.nodes["backbone/bb_add"].inputs == ["backbone/bb_relu", "backbone/bb_bn2"]
    # backbone(x, training=False): its batch-norms are frozen, its convs stay trainable
    assert isinstance(g["backbone/bb_bn"], BatchNorm2D) and not g["backbone/bb_bn"].trainable
    assert not g["backbone/bb_bn2"].trainable
    assert g["backbone/bb_conv"].trainable and g["backbone/bb_sep"].trainable
    assert not g["logits"].trainable                       # Dense with trainable=False in the config
    x = _nchw(outputs["x_tiny_nested"])
    np.testing.assert_array_equal(g.forward(x, training=True), g.forward(x, training=False))


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_functional_batchnorm_trains_and_dropout_kept(ext, outputs):
    # Keras 3 records training=False for every functional Dropout call (its signature's default)
    # and overrides it at run time: the Dropout stays a Dropout
    g = load_keras(SMALL / f"tiny_functional.{ext}")
    assert g["stem_bn"].trainable and isinstance(g["drop"], Dropout)
    assert g["stem_bn"].momentum == pytest.approx(0.1) and g["stem_bn"].eps == pytest.approx(1e-3)
    assert "beta" not in g["bn2"].params and "gamma" in g["bn2"].params          # center=False
    assert g["avgpool"].count_include_pad is False
    x = _nchw(outputs["x_tiny_functional"])
    assert np.abs(g.forward(x, training=True) - g.forward(x, training=False)).max() > 1e-3


def test_keras2_dropout_called_with_training_false_becomes_identity(tmp_path):
    def edit(cfg):                     # tf-keras: [[["fc1", 0, 0, {"training": false}]]] -- explicit, binding
        _find(cfg, "drop")["inbound_nodes"][0][0][3] = {"training": False}
    g = load_keras(_edited_h5(tmp_path, "tiny_functional", edit))
    assert isinstance(g["drop"], Identity)


def test_imported_graph_trains_and_round_trips(tmp_path, outputs):
    g = load_keras(SMALL / "tiny_functional.h5")
    x = _nchw(outputs["x_tiny_functional"])
    z = g.forward(x, training=False)
    dx = g.backward(np.ones_like(z))
    assert dx.shape == x.shape and set(g.grads()) == set(g.params())
    g.save(tmp_path / "m.npz")
    from minicnn.serialization import load
    h = load(tmp_path / "m.npz")
    np.testing.assert_array_equal(h.predict(x), g.predict(x))
    assert h.meta["source"] == "keras" and h.output_activation == "softmax"


def test_keras2_sequential_without_input_layer(tmp_path, outputs):
    """Older Keras 2 Sequential configs carry batch_input_shape on the first layer instead of an InputLayer."""
    def edit(cfg):
        layers = cfg["config"]["layers"]
        inp = layers.pop(0)
        assert inp["class_name"] == "InputLayer"
        layers[0]["config"]["batch_input_shape"] = inp["config"]["batch_input_shape"]
    g = load_keras(_edited_h5(tmp_path, "tiny_sequential", edit))
    got = g.predict(_nchw(outputs["x_tiny_sequential"]))
    assert g.input_shape == (2, 10, 10)
    assert np.abs(got - outputs["y2_tiny_sequential"]).max() < 1e-4


# ------------------------------------------------------------------------------ errors
def _find(cfg, name):
    """The config entry of layer ``name`` (searching nested models too)."""
    stack = list(cfg["config"]["layers"])
    while stack:
        e = stack.pop()
        c = e.get("config")
        if isinstance(c, dict):
            if c.get("name") == name:
                return e
            stack.extend(c.get("layers", []))
    raise KeyError(name)


def _edited_keras(tmp_path, model, edit):
    """A copy of a fixture .keras with its config.json changed by ``edit(cfg)``."""
    src = SMALL / f"{model}.keras"
    dst = tmp_path / f"{model}_edited.keras"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                cfg = json.loads(data)
                edit(cfg)
                data = json.dumps(cfg).encode()
            zout.writestr(item, data)
    return dst


def _edited_h5(tmp_path, model, edit):
    dst = tmp_path / f"{model}_edited.h5"
    shutil.copy(SMALL / f"{model}.h5", dst)
    with h5py.File(dst, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        edit(cfg)
        f.attrs["model_config"] = json.dumps(cfg)
    return dst


def _set(name, **changes):
    def edit(cfg):
        _find(cfg, name)["config"].update(changes)
    return edit


def _rename_class(name, cls):
    def edit(cfg):
        _find(cfg, name)["class_name"] = cls
    return edit


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_unsupported_layer_class_names_class_layer_and_option(tmp_path, fmt):
    make = _edited_keras if fmt == "keras" else _edited_h5
    path = make(tmp_path, "tiny_functional", _rename_class("conv2", "Conv3D"))
    with pytest.raises(KerasImportError, match=r"Conv3D 'conv2': layer class not supported"):
        load_keras(path)
    path = make(tmp_path, "tiny_sequential", _rename_class("c2", "LSTM"))
    with pytest.raises(KerasImportError, match=r"LSTM 'c2': layer class not supported"):
        load_keras(path)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
@pytest.mark.parametrize("layer, changes, message", [
    ("stem_conv", {"data_format": "channels_first"}, r"Conv2D 'stem_conv': data_format='channels_first'"),
    ("maxpool", {"data_format": "channels_first"}, r"MaxPooling2D 'maxpool': data_format='channels_first'"),
    ("stem_conv", {"padding": "causal"}, r"Conv2D 'stem_conv': padding='causal'"),
    ("drop", {"noise_shape": [None, 1]}, r"Dropout 'drop': noise_shape"),
    ("concat", {"axis": 1}, r"Concatenate 'concat': axis=1"),
    ("stem_relu", {"threshold": 0.5}, r"ReLU 'stem_relu': threshold=0.5"),
    ("fc1", {"activation": "mish"}, r"Dense 'fc1': activation='mish'"),
    ("stem_bn", {"renorm": True}, r"BatchNormalization 'stem_bn': renorm=True"),
    ("sep", {"some_new_option": 3}, r"SeparableConv2D 'sep': option some_new_option=3"),
])
def test_unsupported_options_raise(tmp_path, fmt, layer, changes, message):
    make = _edited_keras if fmt == "keras" else _edited_h5
    with pytest.raises(KerasImportError, match=message):
        load_keras(make(tmp_path, "tiny_functional", _set(layer, **changes)))


def test_training_true_call_and_shape_mismatch_raise(tmp_path):
    def training_true(cfg):
        _find(cfg, "backbone")["inbound_nodes"][0]["kwargs"]["training"] = True
    with pytest.raises(KerasImportError, match=r"Functional 'backbone': called with training=True"):
        load_keras(_edited_keras(tmp_path, "tiny_nested", training_true))
    with pytest.raises(KerasImportError, match=r"Conv2D 'conv2': kernel of shape \(2, 2, 16, 4\).*\(2, 2, 16, 5\)"):
        load_keras(_edited_keras(tmp_path, "tiny_functional", _set("conv2", filters=5)))
    assert issubclass(KerasImportError, ValueError)


def _swap_names(cfg, pairs):
    """Swap layer names everywhere in a config (entries and tensor references)."""
    table = {}
    for x, y in pairs:
        table[x], table[y] = y, x

    def walk(v):
        if isinstance(v, str):
            return table.get(v, v)
        if isinstance(v, list):
            return [walk(t) for t in v]
        if isinstance(v, dict):
            return {k: walk(t) for k, t in v.items()}
        return v
    cfg.update(walk(cfg))


def test_keras3_weights_follow_class_keys_not_layer_names(tmp_path, outputs):
    """Keras 3 stores weights under snake_case class keys in config order (``conv2d``, ``conv2d_1``),
    not under layer names: swapping the names of two Conv2D (and two BN) layers must change nothing."""
    path = _edited_keras(tmp_path, "tiny_functional",
                         lambda cfg: _swap_names(cfg, [("stem_conv", "conv2"), ("stem_bn", "bn2")]))
    g = load_keras(path)
    assert g["conv2"].params["W"].shape == (8, 3, 3, 3)      # the first Conv2D, now called conv2
    x = _nchw(outputs["x_tiny_functional"])
    assert np.abs(g.predict(x) - outputs["y_tiny_functional"]).max() < 1e-4
    with zipfile.ZipFile(path) as z, h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as f:
        assert f["layers/conv2d/vars/0"].shape == (3, 3, 3, 8)
        assert f["layers/conv2d_1/vars/0"].shape == (2, 2, 16, 4)


def test_weights_only_and_wrong_files(tmp_path):
    w = tmp_path / "weights_only.h5"
    with h5py.File(w, "w") as f:
        f.attrs["layer_names"] = np.array([b"dense"])
        g = f.create_group("dense")
        g.attrs["weight_names"] = np.array([b"dense/kernel:0"])
        g["dense/kernel:0"] = np.zeros((2, 2), np.float32)
    with pytest.raises(KerasImportError, match="weights-only"):
        load_keras(w)
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="notes.txt"):
        load_keras(bad)
    with pytest.raises(FileNotFoundError):
        load_keras(tmp_path / "missing.keras")


# ------------------------------------------------------------------------------ the real model
@pytest.fixture(scope="module")
def xception_keras(pneumonia_wheel, tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel") / "xception.keras"
    with zipfile.ZipFile(pneumonia_wheel) as z:
        out.write_bytes(z.read(KERAS_MEMBER))
    return out


def test_real_xception_pneumonia_model_matches_keras_logits(xception_keras):
    with np.load(REF / "pneumonia_xception_keras_logits.npz", allow_pickle=False) as z:
        ref = {k: z[k] for k in z.files}
    g = load_keras(xception_keras)
    assert g.output_activation is None                       # Dense(2) logits, as the Keras model
    assert g.input_shape == (3, 150, 150)
    assert list(g.nodes)[0] == "xception/block1_conv1" and g.output_name == "dense_1"
    assert not g["xception/block1_conv1_bn"].trainable and g["dense"].trainable
    assert isinstance(g["dropout"], Dropout)                 # predict runs it as the identity
    x = ref["x_uint8"].astype(np.float32) / 127.5 - 1
    logits = g.predict(_nchw(x), batch_size=16)
    diff = float(np.abs(logits - ref["logits"]).max())
    correct = int((logits.argmax(1) == ref["labels"]).sum())
    print(f"\nXception: max |logits - keras| = {diff:.3g}; {correct}/16 classified correctly")
    assert diff < 1e-3
    np.testing.assert_array_equal(logits.argmax(1), ref["logits"].argmax(1))
