"""Grad-CAM against a hand-computed case, and its contract."""
import numpy as np
import pytest

from minicnn import Graph, layers
from minicnn.viz import default_gradcam_node, gradcam


def tiny(w_dense):
    """x (1,1,2,3) -> 1x1 conv to 2 channels (A) -> GAP -> Dense(2 -> 2): the logits are linear in A."""
    g = Graph(input_shape=(1, 2, 3))
    conv = layers.Conv2D(1, 2, 1, bias=False)
    conv.params["W"][:] = np.array([1.0, -2.0], np.float32).reshape(2, 1, 1, 1)
    g.add("conv", conv)
    g.add("gap", layers.GlobalAvgPool2D())
    fc = layers.Dense(2, 2)
    fc.params["W"][:] = np.asarray(w_dense, np.float32)
    g.add("fc", fc)
    g.output_activation = "softmax"
    g.meta["outputs"] = ["a", "b"]
    return g


def test_gradcam_matches_the_hand_computation():
    Wd = np.array([[0.5, -1.0], [0.1, 2.0]])       # (in=2 channels, out=2 classes)
    g = tiny(Wd)
    x = np.array([[[[1.0, 2.0, -1.0], [0.5, -0.5, 3.0]]]], np.float32)
    A = np.stack([1.0 * x[0, 0], -2.0 * x[0, 0]])  # conv output, (2, 2, 3)
    for k in (0, 1):
        # d logit_k / dA[c, i, j] = Wd[c, k] / (h * w)  ->  alpha_c = Wd[c, k] / 6
        alpha = Wd[:, k] / 6
        cam = np.maximum((alpha[:, None, None] * A).sum(0), 0)
        expected = cam / cam.max()
        heat, info = gradcam(g, x, target_class=["a", "b"][k])
        assert info["node"] == "conv" and info["output"] == k
        np.testing.assert_allclose(heat, expected, rtol=1e-6, atol=1e-7)
    # default class: the predicted one
    _, info = gradcam(g, x)
    assert info["class"] == ["a", "b"][int(np.argmax(g.predict(x)[0]))]


def test_gradcam_is_deterministic_and_leaves_no_caches():
    g = tiny([[0.5, -1.0], [0.25, 2.0]])
    x = np.random.default_rng(0).standard_normal((1, 1, 2, 3)).astype(np.float32)
    h1, _ = gradcam(g, x, target_class="b")
    h2, _ = gradcam(g, x, target_class="b")
    np.testing.assert_array_equal(h1, h2)
    assert all(l._cache is None for l in g.layers)


def test_binary_model_other_class_uses_the_negative_logit():
    g = tiny([[1.0, 0.0], [0.0, 0.0]])
    g.nodes.pop("fc")
    fc = layers.Dense(2, 1)
    fc.params["W"][:] = np.array([[1.0], [-1.0]], np.float32)
    g.add("fc", fc, inputs="gap")
    g.output_activation = "sigmoid"
    g.meta = {"classes": ["NORMAL", "PNEUMONIA"], "outputs": ["PNEUMONIA"], "positive_class": "PNEUMONIA"}
    x = np.array([[[[1.0, 2.0, -1.0], [0.5, -0.5, 3.0]]]], np.float32)
    hp, ip = gradcam(g, x, target_class="PNEUMONIA")
    hn, inn = gradcam(g, x, target_class="NORMAL")
    assert ip["score"] == pytest.approx(-inn["score"])
    assert not np.allclose(hp, hn)
    with pytest.raises(ValueError, match="unknown class"):
        gradcam(g, x, target_class="Effusion")


def test_default_node_and_errors():
    g = tiny([[1.0, 0.0], [0.0, 1.0]])
    assert default_gradcam_node(g) == "conv"
    with pytest.raises(ValueError, match=r"one image"):
        gradcam(g, np.zeros((2, 1, 2, 3), np.float32))
    with pytest.raises(ValueError, match="feature map"):
        gradcam(g, np.zeros((1, 1, 2, 3), np.float32), node="gap")
