"""Grad-CAM against a hand-computed case, and its contract."""
import numpy as np
import pytest

from minicnn import Graph, layers
from minicnn.gradcam import default_gradcam_node, gradcam


W_CONV = np.array([[1.0, 0.5], [-2.0, 1.5]])      # (out=2, in=2): the two feature maps are independent


def tiny(w_dense):
    """x (1,2,2,3) -> 1x1 conv to 2 channels (A) -> GAP -> Dense(2 -> 2): the logits are linear in A."""
    g = Graph(input_shape=(2, 2, 3))
    conv = layers.Conv2D(2, 2, 1, bias=False)
    conv.params["W"][:] = W_CONV.reshape(2, 2, 1, 1)
    g.add("conv", conv)
    g.add("gap", layers.GlobalAvgPool2D())
    fc = layers.Dense(2, 2)
    fc.params["W"][:] = np.asarray(w_dense, np.float32)
    g.add("fc", fc)
    g.output_activation = "softmax"
    g.meta["outputs"] = ["a", "b"]
    return g


X = np.array([[[[1.0, 2.0, -1.0], [0.5, -0.5, 3.0]],
               [[-1.0, 0.5, 2.0], [1.5, -2.0, 0.25]]]], np.float32)


def test_gradcam_matches_the_hand_computation():
    Wd = np.array([[0.5, -1.0], [0.1, 2.0]])       # (in=2 channels, out=2 classes)
    g = tiny(Wd)
    A = np.einsum("fc,chw->fhw", W_CONV, X[0])      # conv output, (2, 2, 3)
    seen = []
    for k in (0, 1):
        # d logit_k / dA[c, i, j] = Wd[c, k] / (h * w)  ->  alpha_c = Wd[c, k] / 6
        alpha = Wd[:, k] / 6
        cam = np.maximum((alpha[:, None, None] * A).sum(0), 0)
        expected = cam / cam.max()
        heat, info = gradcam(g, X, target_class=["a", "b"][k])
        assert info["node"] == "conv" and info["output"] == k
        np.testing.assert_allclose(heat, expected, rtol=1e-6, atol=1e-7)
        seen.append(heat)
    # the two classes weigh the two (independent) maps differently: the heatmaps differ in shape,
    # not only in sign, so a wrong alpha (e.g. transposed dense weights) would be caught
    assert not np.allclose(seen[0], seen[1]) and (seen[0] > 0).sum() > 1 and (seen[1] > 0).sum() > 1
    wrong = np.maximum((Wd[0][:, None, None] / 6 * A).sum(0), 0)   # alpha from the transposed weights
    assert not np.allclose(seen[0], wrong / wrong.max())
    # default class: the predicted one
    _, info = gradcam(g, X)
    assert info["class"] == ["a", "b"][int(np.argmax(g.predict(X)[0]))]


def test_gradcam_is_deterministic_and_leaves_no_caches():
    g = tiny([[0.5, -1.0], [0.25, 2.0]])
    h1, _ = gradcam(g, X, target_class="b")
    h2, _ = gradcam(g, X, target_class="b")
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
    hp, ip = gradcam(g, X, target_class="PNEUMONIA")
    hn, inn = gradcam(g, X, target_class="NORMAL")
    assert ip["score"] == pytest.approx(-inn["score"])
    assert not np.allclose(hp, hn)
    with pytest.raises(ValueError, match="unknown class"):
        gradcam(g, X, target_class="Effusion")


def test_default_node_and_errors():
    g = tiny([[1.0, 0.0], [0.0, 1.0]])
    assert default_gradcam_node(g) == "conv"
    with pytest.raises(ValueError, match=r"one image"):
        gradcam(g, np.zeros((2, 2, 2, 3), np.float32))
    with pytest.raises(ValueError, match="feature map"):
        gradcam(g, X, node="gap")


def test_explain_files_names_one_overlay_per_image_even_when_stems_repeat(tmp_path):
    from PIL import Image
    from minicnn.data import Preprocessing
    from minicnn.gradcam import explain_files
    g = Graph(input_shape=(1, 8, 8))
    g.add("conv", layers.Conv2D(1, 2, 3, padding=1, seed=0))
    g.add("gap", layers.GlobalAvgPool2D())
    g.add("fc", layers.Dense(2, 1, seed=1))
    g.output_activation = "sigmoid"
    g.meta.update(classes=["NORMAL", "PNEUMONIA"], positive_class="PNEUMONIA", outputs=["PNEUMONIA"],
                  preprocessing=Preprocessing(8, channels=1, mode="sample").to_dict(), threshold=[0.5])
    paths = []
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.random.default_rng(len(paths)).integers(0, 255, (8, 8), dtype=np.uint8)).save(
            tmp_path / folder / "x.png")
        paths.append(tmp_path / folder / "x.png")
    res = explain_files(g, paths, tmp_path / "cams")
    assert [r["overlay"] for r in res] == [str(tmp_path / "cams" / "x_gradcam.png"),
                                           str(tmp_path / "cams" / "x_2_gradcam.png")]
    assert all((tmp_path / "cams" / n).is_file() for n in ("x_gradcam.png", "x_2_gradcam.png"))
    assert [r["class"] for r in res] == [r["prediction"] for r in res]     # the predicted class is explained
