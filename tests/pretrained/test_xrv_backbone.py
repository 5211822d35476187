"""`minicnn train DATA --backbone xrv-densenet121-all`: torchxrayvision's 1-channel DenseNet121 features
(its own preprocessing) -> a new pneumonia head trained with the weighted loss, saved as one model.

No download is possible here: the weights are minicnn's own random-weight torchxrayvision
DenseNet121 saved to .npz and given as --weights (its 18-way head is dropped, as for a
torchxrayvision file). A tiny synthetic dataset keeps the 224 px forward passes few.
"""
import json

import numpy as np
import pytest

import minicnn
from minicnn.data import Preprocessing
from minicnn.data.datasets import load_dataset
from minicnn.data.synthetic import make_synthetic
from minicnn.errors import UsageError
from minicnn.pretrained.xrv import xrv_densenet121
from minicnn.transfer import load_backbone, xrv_backbones


def test_xrv_backbones_are_the_registry_names():
    names = xrv_backbones()
    assert "xrv-densenet121-all" in names and "xrv-densenet121-nih" in names and "xrv-resnet50-res512-all" in names
    with pytest.raises(UsageError, match="xrv-densenet121-all"):
        load_backbone("densenet-xrv", None, None)


def test_train_with_the_xrv_backbone(tmp_path, monkeypatch, capsys):
    from minicnn.cli import main
    monkeypatch.setenv("MINICNN_HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    make_synthetic(data, size=48, splits=(("train", 8), ("val", 4)), pneumonia_fraction=0.75, seed=0)
    weights = tmp_path / "xrv-random.npz"
    xrv_densenet121(seed=0).save(weights)
    with pytest.raises(UsageError, match="224"):
        load_backbone("xrv-densenet121-all", weights, 64)
    run = tmp_path / "run"
    assert main(["train", str(data), "--backbone", "xrv-densenet121-all", "--weights", str(weights),
                 "--out", str(run), "--head-epochs", "3", "--val-split", "val", "--quiet"]) == 0
    from minicnn.cli import _names_its_weights
    assert _names_its_weights("xrv-densenet121-all") and not _names_its_weights("densenet121")  # --weights optional
    model = minicnn.load(run / "model.npz")
    assert model.input_shape == (1, 224, 224) and Preprocessing.of(model) == Preprocessing.for_xrv(224)
    assert model.meta["outputs"] == ["PNEUMONIA"] and model.meta["class_weighted"] is True
    assert model.meta["backbone"] == "xrv-densenet121-all" and "calibration" not in model.nodes
    assert "head.logits" in model.nodes and model.nodes["head.logits"].layer.params["W"].shape == (1024, 1)
    # the backbone is the given weights, frozen: its features, then the trained head
    backbone, pre = load_backbone("xrv-densenet121-all", weights, None)
    assert set(backbone.meta["dropped"]) == {"classifier.W", "classifier.b"}
    np.testing.assert_array_equal(model.nodes["features.conv0"].layer.params["W"],
                                  backbone.nodes["features.conv0"].layer.params["W"])
    val = load_dataset(data, split="val")
    x = pre.load_files(val.paths)
    assert x.shape == (4, 1, 224, 224) and x.min() < -500 and x.max() > 500      # torchxrayvision's scale
    feats = backbone.predict(x, batch_size=4)
    W, b = model.nodes["head.logits"].layer.params["W"], model.nodes["head.logits"].layer.params["b"]
    want = 1.0 / (1.0 + np.exp(-(feats.astype(np.float64) @ W + b)))
    np.testing.assert_allclose(model.predict(x, batch_size=4), want, atol=1e-5)
    # the head learned (the weighted loss went down) and the run records it
    history = json.loads((run / "history.json").read_text())
    rows = history if isinstance(history, list) else history.get("history", history)
    losses = [r["loss"] for r in rows] if isinstance(rows, list) else rows["loss"]
    assert len(losses) == 3 and losses[-1] < losses[0]
    # `minicnn features` takes the same backbone: the cached features the head was trained on
    assert main(["features", str(data), "--backbone", "xrv-densenet121-all", "--weights", str(weights),
                 "--split", "val", "--out", str(tmp_path / "f.npz")]) == 0
    with np.load(tmp_path / "f.npz", allow_pickle=False) as z:
        np.testing.assert_allclose(z["features"], feats, atol=1e-4)
        assert list(z["paths"]) == list(val.paths)
