"""DenseNet121 parity: minicnn against torchvision (random weights AND random batch-norm statistics)
and against Keras' own outputs for a real Keras weight file in ../shared/ref.

rel err = max|a - b| / max|b| over the whole output; the bound is 1e-4 everywhere.
"""
import gc
from pathlib import Path

import numpy as np
import pytest
from torch_reference import randomize

from minicnn.pretrained import densenet121, load_weights

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
KERAS_H5 = SHARED / "ref" / "keras_densenet121_random_notop.h5"
KERAS_NPZ = SHARED / "ref" / "keras_densenet121_random.npz"


def rel_err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


# ------------------------------------------------------------------------------------------------
# torchvision
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def torch_files(tmp_path_factory):
    """A torchvision DenseNet121 with random weights and BN stats, saved three ways, plus its logits."""
    torch = pytest.importorskip("torch")
    tv = pytest.importorskip("torchvision")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = tv.models.densenet121(weights=None).eval()
    randomize(torch, net, seed=1)
    folder = tmp_path_factory.mktemp("tv")
    sd = net.state_dict()
    paths = {"zip": folder / "densenet121.pth", "legacy": folder / "densenet121_legacy.pth",
             "safetensors": folder / "densenet121.safetensors"}
    torch.save(sd, paths["zip"])
    torch.save(sd, paths["legacy"], _use_new_zipfile_serialization=False)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(paths["safetensors"]))
    rng = np.random.default_rng(0)
    x = {s: rng.standard_normal((2, 3, s, s)).astype(np.float32) for s in (224, 64)}
    with torch.no_grad():
        ref = {s: net(torch.from_numpy(v)).numpy().astype(np.float64) for s, v in x.items()}
    del net, sd
    gc.collect()
    return paths, x, ref


@pytest.mark.parametrize("fmt,size", [("zip", 224), ("legacy", 64), ("safetensors", 64)])
def test_torchvision_logits_match(torch_files, fmt, size):
    paths, x, ref = torch_files
    model = densenet121(weights=paths[fmt], input_shape=(3, size, size))
    assert model.meta["source"] == "torchvision" and model.output_activation is None
    assert len(model.meta["dropped"]) == 121 and all(k.endswith("num_batches_tracked") for k in model.meta["dropped"])
    out = model.predict(x[size], batch_size=2)
    err = rel_err(out, ref[size])
    print(f"torchvision {fmt} {size}x{size}: max rel err {err:.2e}")
    assert out.shape == (2, 1000)
    assert err < 1e-4, f"{fmt} {size}x{size}: rel err {err:.3e}"
    del model
    gc.collect()


def test_torchvision_file_as_feature_extractor(torch_files):
    """include_top=False drops the classifier explicitly (listed) and ends after norm5 + ReLU."""
    torch = pytest.importorskip("torch")
    paths, x, _ = torch_files
    model = densenet121(weights=paths["safetensors"], include_top=False, pooling="avg", input_shape=(3, 64, 64))
    assert {"classifier.weight", "classifier.bias"} <= set(model.meta["dropped"])
    import torchvision as tv
    net = tv.models.densenet121(weights=None).eval()
    net.load_state_dict(torch.load(paths["zip"], weights_only=True))
    with torch.no_grad():
        ref = torch.nn.functional.relu(net.features(torch.from_numpy(x[64]))).mean(dim=(2, 3)).numpy()
    err = rel_err(model.predict(x[64]), ref)
    print(f"torchvision pooled features: max rel err {err:.2e}")
    assert err < 1e-4
    del model, net
    gc.collect()


# ------------------------------------------------------------------------------------------------
# Keras
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def keras_ref():
    if not (KERAS_H5.is_file() and KERAS_NPZ.is_file()):
        pytest.skip("../shared/ref Keras DenseNet121 reference is not present")
    with np.load(KERAS_NPZ, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_keras_featuremap_matches(keras_ref):
    model = densenet121(weights=KERAS_H5, include_top=False)
    assert model.meta["source"] == "keras"
    assert model["features.norm0"].eps == pytest.approx(1.001e-5)
    assert "features.pad0" in model.nodes and "features.pad1" in model.nodes
    x = np.ascontiguousarray(keras_ref["x"].transpose(0, 3, 1, 2))          # NHWC -> NCHW
    out = model.predict(x, batch_size=2)
    assert out.shape == (2, 1024, 7, 7)
    err = rel_err(out.transpose(0, 2, 3, 1), keras_ref["featuremap"])
    print(f"keras feature map: max rel err {err:.2e}")
    assert err < 1e-4
    del model
    gc.collect()


def test_keras_pooled_matches(keras_ref):
    model = densenet121(weights=str(KERAS_H5), include_top=False, pooling="avg", input_shape=(3, 224, 224))
    x = np.ascontiguousarray(keras_ref["x"].transpose(0, 3, 1, 2))
    out = model.predict(x)
    err = rel_err(out, keras_ref["gap"])
    print(f"keras gap: max rel err {err:.2e}")
    assert out.shape == (2, 1024) and err < 1e-4
    del model
    gc.collect()


def test_keras_notop_file_into_top_model_is_refused(keras_ref):
    with pytest.raises(ValueError, match=r"241 layers with weights.*model: 242") as e:
        densenet121(weights=KERAS_H5, include_top=True)
    assert "predictions" in str(e.value) and "include_top" in str(e.value)


def test_source_conflict_is_refused(keras_ref):
    with pytest.raises(ValueError, match="keras"):
        densenet121(weights=KERAS_H5, include_top=False, source="torchvision")


# ------------------------------------------------------------------------------------------------
# builder facts and errors
# ------------------------------------------------------------------------------------------------
def test_builder_shapes_and_sources():
    tv = densenet121(include_top=False, input_shape=(3, 64, 64), seed=0)
    ke = densenet121(include_top=False, input_shape=(3, 64, 64), source="keras", seed=0)
    assert len(tv.state_dict()) == 727 - 121 - 2                     # torchvision keys minus counters and head
    assert set(tv.state_dict()) == set(ke.state_dict())
    assert tv["features.norm5"].eps == 1e-5 and ke["features.norm5"].eps == pytest.approx(1.001e-5)
    assert tv.output_shapes()["relu"] == (None, 1024, 2, 2)
    # same weights -> the two stems (torch -inf max-pool padding vs Keras zero padding after ReLU) agree
    ke.load_state_dict(tv.state_dict())
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    a, b = tv.predict(x), ke.predict(x)
    assert rel_err(b, a) < 1e-4        # eps differs by 1e-8 only
    top = densenet121(classes=3, source="keras", input_shape=(3, 64, 64), seed=1)
    assert top.output_activation == "softmax" and top.predict(x).sum() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="pooling"):
        densenet121(include_top=False, pooling="sum")
    with pytest.raises(ValueError, match="no such file"):
        densenet121(weights="/nonexistent/densenet.pth")


def _torch_style(model) -> dict:
    """A minicnn model's weights under torchvision's names and layouts (inverse of the mapping)."""
    names = {"W": "weight", "b": "bias", "gamma": "weight", "beta": "bias",
             "running_mean": "running_mean", "running_var": "running_var"}
    out = {}
    for k, v in model.state_dict().items():
        node, p = k.rsplit(".", 1)
        out[f"{node}.{names[p]}"] = v.T.copy() if node == "classifier" and p == "W" else v.copy()
    return out


def test_truncated_and_misshaped_state_dict_lists_everything(tmp_path):
    from safetensors.numpy import save_file
    model = densenet121(input_shape=(3, 64, 64), seed=0)
    sd = _torch_style(model)
    del sd["features.denseblock4.denselayer16.conv2.weight"]
    sd["features.norm5.weight"] = np.ones(1000, np.float32)
    sd["features.extra.weight"] = np.ones(3, np.float32)
    save_file(sd, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError) as e:
        load_weights(model, tmp_path / "bad.safetensors")
    msg = str(e.value)
    assert "missing (1)" in msg and "features.denseblock4.denselayer16.conv2.weight" in msg
    assert "unexpected (1)" in msg and "features.extra.weight" in msg
    assert "mis-shaped (1)" in msg and "features.norm5.weight: file (1000,) vs model (1024,)" in msg


def test_resnet_shaped_state_dict_is_refused(tmp_path):
    from safetensors.numpy import save_file
    sd = {"conv1.weight": np.zeros((64, 3, 7, 7), np.float32), "bn1.weight": np.ones(64, np.float32),
          "bn1.bias": np.zeros(64, np.float32), "bn1.running_mean": np.zeros(64, np.float32),
          "bn1.running_var": np.ones(64, np.float32), "bn1.num_batches_tracked": np.zeros((), np.int64),
          "layer1.0.conv1.weight": np.zeros((64, 64, 1, 1), np.float32),
          "fc.weight": np.zeros((1000, 2048), np.float32), "fc.bias": np.zeros(1000, np.float32)}
    save_file(sd, str(tmp_path / "resnet.safetensors"))
    with pytest.raises(ValueError) as e:
        densenet121(weights=tmp_path / "resnet.safetensors", input_shape=(3, 64, 64))
    msg = str(e.value)
    assert "missing (606)" in msg and "unexpected (8)" in msg and "layer1.0.conv1.weight" in msg


def test_malicious_pth_is_refused_without_running_code(tmp_path):
    import pickle
    import zipfile

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"features.conv0.weight": Evil()}, protocol=2))
        z.writestr("archive/version", "3\n")
    with pytest.raises(ValueError, match="(?i)refus|not allowed|unsafe"):
        densenet121(weights=path, input_shape=(3, 64, 64))
    assert not marker.exists()


def test_npz_round_trip(tmp_path):
    model = densenet121(include_top=False, pooling="avg", input_shape=(3, 64, 64), source="keras", seed=3)
    for k, v in model.state_dict().items():          # non-trivial BN statistics
        if k.endswith("running_var"):
            v[...] = np.random.default_rng(len(k)).uniform(0.5, 1.5, v.shape)
    model.save(tmp_path / "m.npz")
    again = densenet121(weights=tmp_path / "m.npz", include_top=False, pooling="avg", input_shape=(3, 64, 64))
    assert again.meta["source"] == "keras" and "features.pad0" in again.nodes
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    np.testing.assert_array_equal(again.predict(x), model.predict(x))


# ------------------------------------------------------------------------------------------------
# inference speed-ups
# ------------------------------------------------------------------------------------------------
def test_folded_and_buffered_densenet_equals_the_original():
    from minicnn.pretrained import fast_densenet, fold_batchnorm
    from minicnn.layers import BufferedConcat

    model = densenet121(input_shape=(3, 64, 64), seed=0)
    rng = np.random.default_rng(5)
    for k, v in model.state_dict().items():
        if k.endswith(("gamma", "running_var")):
            v[...] = rng.uniform(0.5, 1.5, v.shape)
        elif k.endswith(("beta", "running_mean")):
            v[...] = rng.uniform(-0.2, 0.2, v.shape)
    before = {k: v.copy() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    fast = fast_densenet(model)
    assert len(folded.meta["folded"]) == 1 + 58                      # norm0 and every dense layer's norm2
    assert "features.norm0" not in folded.nodes and "features.norm2" not in folded.nodes
    assert folded["features.conv0"].params["b"].shape == (64,)
    assert sum(isinstance(l, BufferedConcat) for l in fast.layers) == 58
    x = rng.standard_normal((3, 3, 64, 64)).astype(np.float32)
    ref = model.predict(x)
    for name, m, sizes in (("folded", folded, (3,)), ("folded+buffers", fast, (1, 3))):
        for bs in sizes:
            err = rel_err(m.predict(x, batch_size=bs), ref)
            print(f"{name} batch {bs}: max rel err {err:.2e}")
            assert err < 1e-4, (name, bs, err)
    for k, v in model.state_dict().items():                            # the original is untouched
        np.testing.assert_array_equal(v, before[k])


def test_buffered_concat_writes_each_value_once_and_keeps_gradients():
    from minicnn.layers import BufferedConcat

    rng = np.random.default_rng(0)
    a, n1, n2 = (rng.standard_normal((2, c, 3, 3)) for c in (4, 2, 2))
    first, second = BufferedConcat(8), BufferedConcat(8, continues=True)
    y1 = first.forward([a, n1])
    y2 = second.forward([y1, n2])
    assert np.shares_memory(y1, y2) and y2.shape == (2, 8, 3, 3)
    np.testing.assert_array_equal(y2, np.concatenate([a, n1, n2], axis=1))
    np.testing.assert_array_equal(y1, np.concatenate([a, n1], axis=1))     # earlier view untouched
    dy = rng.standard_normal(y2.shape)
    d_prev, d_new = second.backward(dy)
    np.testing.assert_array_equal(d_prev, dy[:, :6])
    np.testing.assert_array_equal(d_new, dy[:, 6:])
    # without continues, a fresh buffer: the caller's earlier result is never written into
    other = BufferedConcat(8).forward([y1, -n2])
    assert not np.shares_memory(other, y1)
    np.testing.assert_array_equal(y2[:, 6:], n2)
