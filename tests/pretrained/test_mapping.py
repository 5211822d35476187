"""The generic loading machinery on tiny models and hand-written files: layouts, positions, errors."""
import h5py
import numpy as np
import pytest

from minicnn.layers import BatchNorm2D, Conv2D, Dense, Flatten, ReLU
from minicnn.model import Graph
from minicnn.pretrained import load_weights
from minicnn.pretrained.mapping import convert_torch_state_dict


def tiny(bn_scale=True, eps=1e-5):
    g = Graph(input_shape=(2, 4, 4))
    g.add("conv", Conv2D(2, 3, 3, padding=1, bias=True, seed=0))
    g.add("bn", BatchNorm2D(3, eps=eps, scale=bn_scale))
    g.add("relu", ReLU())
    g.add("flat", Flatten())
    g.add("fc", Dense(48, 5, seed=0))
    return g


def write_keras_h5(path, layers):
    """The legacy Keras layout: root ``layer_names`` (bytes), a group per layer with ``weight_names``."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n, _ in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.21.0"
        for name, weights in layers:
            g = f.create_group(name)
            g.attrs["weight_names"] = np.array([w.encode() for w, _ in weights])
            for w, a in weights:
                g.create_dataset(w, data=a)


def test_torch_linear_is_transposed_and_counters_dropped():
    g = tiny()
    rng = np.random.default_rng(0)
    sd = {"conv.weight": rng.standard_normal((3, 2, 3, 3)), "conv.bias": rng.standard_normal(3),
          "bn.weight": rng.standard_normal(3), "bn.bias": rng.standard_normal(3),
          "bn.running_mean": rng.standard_normal(3), "bn.running_var": rng.uniform(1, 2, 3),
          "bn.num_batches_tracked": np.array(5), "fc.weight": rng.standard_normal((5, 48)),
          "fc.bias": rng.standard_normal(5)}
    out, dropped = convert_torch_state_dict(g, sd)
    assert dropped == ["bn.num_batches_tracked"]
    np.testing.assert_array_equal(out["fc.W"], sd["fc.weight"].T.astype(np.float32))
    np.testing.assert_array_equal(out["bn.gamma"], sd["bn.weight"].astype(np.float32))
    sd["fc.weight"] = sd["fc.weight"].T                        # (in, out) given where (out, in) belongs
    with pytest.raises(ValueError, match=r"fc.weight: file \(48, 5\) \(out, in\) vs model \(5, 48\)"):
        convert_torch_state_dict(g, sd)


def test_keras_h5_positional_assignment_with_layouts(tmp_path):
    g = tiny()
    rng = np.random.default_rng(1)
    k = rng.standard_normal((3, 3, 2, 3)).astype(np.float32)          # HWIO
    bn = [rng.standard_normal(3).astype(np.float32) for _ in range(3)] + [rng.uniform(1, 2, 3).astype(np.float32)]
    fc = rng.standard_normal((48, 5)).astype(np.float32)
    write_keras_h5(tmp_path / "w.h5", [
        ("input_1", []),
        ("block/conv", [("block/conv/kernel:0", k), ("block/conv/bias:0", np.ones(3, np.float32))]),
        ("block/bn", [(f"block/bn/{n}:0", a) for n, a in zip(("gamma", "beta", "moving_mean", "moving_variance"), bn)]),
        ("relu", []), ("flatten", []),
        ("dense", [("dense/kernel:0", fc), ("dense/bias:0", np.zeros(5, np.float32))]),
    ])
    load_weights(g, tmp_path / "w.h5")
    assert g.meta["source"] == "keras" and g.meta["dropped"] == []
    np.testing.assert_array_equal(g["conv"].params["W"], k.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(g["bn"].buffers["running_var"], bn[3])
    np.testing.assert_array_equal(g["fc"].params["W"], fc)
    # a BN without scale (InceptionV3) stores 3 arrays: beta, mean, var
    g3 = tiny(bn_scale=False)
    write_keras_h5(tmp_path / "noscale.h5", [
        ("c", [("c/kernel:0", k), ("c/bias:0", np.ones(3, np.float32))]),
        ("b", [(f"b/{n}:0", a) for n, a in zip(("beta", "moving_mean", "moving_variance"), bn[1:])]),
        ("d", [("d/kernel:0", fc), ("d/bias:0", np.zeros(5, np.float32))])])
    load_weights(g3, tmp_path / "noscale.h5")
    np.testing.assert_array_equal(g3["bn"].params["beta"], bn[1])


def test_keras_h5_mismatches_are_listed(tmp_path):
    k = np.zeros((3, 3, 2, 3), np.float32)
    write_keras_h5(tmp_path / "short.h5", [("c", [("c/kernel:0", k), ("c/bias:0", np.zeros(3, np.float32))])])
    with pytest.raises(ValueError, match=r"1 layers with weights .*model: 3"):
        load_weights(tiny(), tmp_path / "short.h5")
    write_keras_h5(tmp_path / "shapes.h5", [
        ("c", [("c/kernel:0", np.zeros((3, 3, 3, 2), np.float32)), ("c/bias:0", np.zeros(3, np.float32))]),
        ("b", [("b/gamma:0", np.zeros(3, np.float32))]),
        ("d", [("d/kernel:0", np.zeros((48, 5), np.float32)), ("d/bias:0", np.zeros(5, np.float32))])])
    with pytest.raises(ValueError) as e:
        load_weights(tiny(), tmp_path / "shapes.h5")
    msg = str(e.value)
    assert "mis-shaped (2)" in msg and "file (3, 3, 3, 2) vs expected (3, 3, 2, 3)" in msg
    assert "file has 1 arrays" in msg and "moving_variance" in msg


# ------------------------------------------------------------------------------------------------
# import structure: readers never reach a layer or the model; no cycle through minicnn/pretrained
# ------------------------------------------------------------------------------------------------
