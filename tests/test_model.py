"""Graph / Sequential: execution, gradient flow, save/load, summaries and errors."""
import json
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import minicnn
from minicnn import Graph, Sequential, gradcheck, layers, load


def small_cnn(seed=0, channels=1):
    return Sequential([
        layers.Conv2D(channels, 4, 3, stride=2, padding=1, seed=seed), layers.ReLU(), layers.MaxPool2D(2),
        layers.Flatten(), layers.Dense(4 * 2 * 2, 1, seed=seed + 1),
    ], input_shape=(channels, 8, 8), output_activation="sigmoid")


def branchy(seed=0):
    """input -> conv_a -> relu -> [conv_b, conv_c] -> concat -> add(concat, conv_d(input)) -> gap -> dense"""
    g = Graph(input_shape=(2, 6, 6))
    g.add("conv_a", layers.Conv2D(2, 3, 3, padding=1, bias=False, seed=seed))  # a bias before BN has no gradient
    g.add("bn", layers.BatchNorm2D(3))
    g.add("relu", layers.ReLU())
    g.add("conv_b", layers.Conv2D(3, 2, 1, seed=seed + 1), inputs="relu")
    g.add("conv_c", layers.Conv2D(3, 2, 3, padding="same", seed=seed + 2), inputs="relu")
    g.add("cat", layers.Concat(), inputs=["conv_b", "conv_c"])
    g.add("conv_d", layers.Conv2D(2, 4, 1, seed=seed + 3), inputs="input")
    g.add("sum", layers.Add(), inputs=["cat", "conv_d"])
    g.add("gap", layers.GlobalAvgPool2D())
    g.add("fc", layers.Dense(4, 2, seed=seed + 4))
    return g


def test_public_api_names():
    for name in ("layers", "losses", "optim", "Sequential", "Graph", "gradcheck", "load"):
        assert hasattr(minicnn, name)
    import minicnn.gradient_check as module
    assert callable(minicnn.gradcheck) and module.gradcheck is minicnn.gradcheck


@settings(max_examples=5)
@given(seed=st.integers(0, 50))
def test_graph_gradcheck_with_fanout(seed):
    x = np.random.default_rng(seed).standard_normal((2, 2, 6, 6))
    errs = gradcheck(branchy(seed), x, training=True)
    assert "x" in errs and "conv_a.W" in errs and "bn.gamma" in errs and "fc.b" in errs
    assert max(errs.values()) < 1e-6, errs


def test_fanout_gradient_is_summed():
    g = Graph()
    g.add("a", layers.Dense(3, 3, seed=0))
    g.add("p", layers.Dense(3, 3, seed=1), inputs="a")
    g.add("q", layers.Dense(3, 3, seed=2), inputs="a")
    g.add("s", layers.Add(), inputs=["p", "q"])
    x = np.ones((2, 3))
    g.forward(x)
    dx = g.backward(np.ones((2, 3)))
    Wa, Wp, Wq = g["a"].params["W"], g["p"].params["W"], g["q"].params["W"]
    np.testing.assert_allclose(dx, np.ones((2, 3)) @ (Wp + Wq).T @ Wa.T, rtol=1e-5)


def test_frozen_prefix_is_skipped_and_params_exclude_it():
    g = small_cnn()
    g.freeze(["0"])
    assert set(g.params()) == {"4.W", "4.b"}
    assert "0.W" in g.state_dict()
    x = np.random.default_rng(0).standard_normal((3, 1, 8, 8)).astype(np.float32)
    g.forward(x, training=True)
    assert g.backward(np.ones((3, 1), np.float32), input_grad=False) is None
    assert g["0"].grads == {} and set(g.grads()) == {"4.W", "4.b"}


def test_backward_wrt_node_is_the_gradient_at_that_node():
    g = Graph()
    g.add("a", layers.Dense(3, 4, seed=0))
    g.add("r", layers.Sigmoid())
    g.add("b", layers.Dense(4, 2, seed=1))
    x = np.random.default_rng(0).standard_normal((5, 3))
    dy = np.random.default_rng(1).standard_normal((5, 2))
    g.forward(x, keep=["r"])
    d_r = g.backward(dy, wrt="r")
    np.testing.assert_allclose(d_r, dy @ g["b"].params["W"].T, rtol=1e-6)   # b is linear: dL/dr = dy W_b^T
    g.forward(x, keep=["a"])
    s = g.activations["a"]
    d_a = g.backward(dy, wrt="a")
    sig = 1 / (1 + np.exp(-s))
    np.testing.assert_allclose(d_a, (dy @ g["b"].params["W"].T) * sig * (1 - sig), rtol=1e-5)


def test_backward_wrt_node_returns_that_gradient():
    g = small_cnn()
    x = np.random.default_rng(1).standard_normal((2, 1, 8, 8))
    g.forward(x, keep=["2"])
    d = g.backward(np.ones((2, 1)), wrt="2")
    assert d.shape == g.activations["2"].shape


def test_predict_batches_and_applies_output_activation():
    g = small_cnn()
    x = np.random.default_rng(2).standard_normal((10, 1, 8, 8)).astype(np.float32)
    p = g.predict(x, batch_size=3)
    z = g.forward(x)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-z)), rtol=1e-6)
    assert p.shape == (10, 1) and p.dtype == np.float32
    g.output_activation = "softmax"
    np.testing.assert_allclose(g.predict(x).sum(1), 1.0, rtol=1e-6)
    with pytest.raises(ValueError, match="output_activation"):
        g.output_activation = "tanh"


def test_save_load_roundtrip(tmp_path):
    g = branchy(3)
    g.meta = {"classes": ["NORMAL", "PNEUMONIA"], "threshold": 0.4}
    g.output_activation = "softmax"
    g.freeze(["conv_a"])
    x = np.random.default_rng(3).standard_normal((2, 2, 6, 6)).astype(np.float32)
    g.forward(x, training=True)  # move BN running stats away from the init
    path = g.save(tmp_path / "m.npz")
    h = load(path)
    assert isinstance(h, Graph) and h.meta == g.meta and h.output_activation == "softmax"
    assert not h["conv_a"].trainable and h["conv_b"].trainable
    for k, v in g.state_dict().items():
        np.testing.assert_array_equal(h.state_dict()[k], v, err_msg=k)
    np.testing.assert_array_equal(h.predict(x), g.predict(x))
    with np.load(path, allow_pickle=False) as z:
        assert int(z["format_version"]) == 2
        assert json.loads(str(z["architecture"]))["nodes"][0]["class"] == "Conv2D"
    s = small_cnn()
    s2 = load(s.save(tmp_path / "s.npz"))
    assert isinstance(s2, Sequential) and list(s2.nodes) == list(s.nodes)


def test_load_weights_is_strict(tmp_path):
    path = small_cnn().save(tmp_path / "a.npz")
    other = Sequential([layers.Conv2D(1, 5, 3, stride=2, padding=1), layers.ReLU(), layers.MaxPool2D(2),
                        layers.Flatten(), layers.Dense(20, 1), layers.Dense(1, 1)])
    with pytest.raises(ValueError) as e:
        other.load_weights(path)
    msg = str(e.value)
    assert "missing (2): 5.W, 5.b" in msg and "mis-shaped" in msg and "0.W: file (4, 1, 3, 3) vs model (5, 1, 3, 3)" in msg


def test_pickled_npz_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, architecture=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="pickled Python objects"):
        load(path)
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load(tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        load(tmp_path / "bad.npz")
    whole = small_cnn().save(tmp_path / "whole.npz")
    data = open(whole, "rb").read()
    (tmp_path / "half.npz").write_bytes(data[: len(data) // 2])    # a truncated model file
    with pytest.raises(ValueError, match="half.npz.*truncated"):
        load(tmp_path / "half.npz")


def test_save_is_atomic_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    g = small_cnn()
    g.save(path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError):
        small_cnn(seed=5).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]


def test_errors_for_bad_inputs():
    g = small_cnn()
    with pytest.raises(ValueError, match=r"node '0'.*channel"):
        g.forward(np.zeros((1, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"4-D input"):
        g.forward(np.zeros((8, 8), np.float32))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        small_cnn().backward(np.ones((1, 1), np.float32))
    with pytest.raises(ValueError, match="unknown input"):
        Graph().add("a", layers.ReLU(), inputs="missing")
    with pytest.raises(ValueError, match="already used"):
        g.add("0", layers.ReLU())


def test_summary_and_trace_are_readable():
    g = small_cnn()
    s = g.summary()
    assert "(None, 4, 4, 4)" in s and "total params: 57" in s
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    t = g.trace(x, np.array([[1.0], [0.0]], np.float32))
    text = str(t)
    assert "(2, 1, 8, 8) -> (2, 4, 4, 4)" in text and "loss =" in text
    assert len(t.rows) == 5 and all("grad_stats" in r for r in t.rows)
    assert t.rows[0]["param_grads"]["W"] > 0


def test_freeze_selects_nodes_and_their_children_only():
    s = Sequential([layers.Dense(2, 2) for _ in range(11)])
    s.freeze(["1"])
    assert [n for n, node in s.nodes.items() if not node.layer.trainable] == ["1"]   # not "10"
    g = Graph()
    g.add("features.conv0", layers.Dense(2, 2))
    g.add("features.conv01", layers.Dense(2, 2))
    g.add("head", layers.Dense(2, 2))
    g.freeze("features.conv0")
    assert not g["features.conv0"].trainable and g["features.conv01"].trainable
    g.unfreeze().freeze("features")
    assert not g["features.conv01"].trainable and g["head"].trainable
    with pytest.raises(ValueError, match="no node is named"):
        g.freeze("feature")


def aliasing_graph(seed=0):
    """Identity passes arrays through, so two live names can hold one array: in-place layers must notice."""
    g = Graph(input_shape=(2, 6, 6))
    g.add("relu_in", layers.ReLU())                                   # reads the caller's array
    g.add("conv", layers.Conv2D(2, 3, 3, padding=1, seed=seed))
    g.add("bn", layers.BatchNorm2D(3))
    g.add("ident", layers.Identity(), inputs="bn")                    # same array as "bn"
    g.add("relu_a", layers.ReLU(), inputs="ident")                    # "bn" still needed below: no overwrite
    g.add("bn_b", layers.BatchNorm2D(3), inputs="bn")                 # last reader of that array: may overwrite
    g.add("pool", layers.MaxPool2D(3, stride=2, padding=1), inputs="relu_a")
    g.add("pool_b", layers.MaxPool2D(3, stride=2, padding=1), inputs="bn_b")
    g.add("bn2", layers.BatchNorm2D(3), inputs="pool")
    g.add("sum", layers.Add(), inputs=["bn2", "pool_b"])
    g.add("flat", layers.Flatten())                                   # a view of "sum"
    g.add("relu_c", layers.ReLU(), inputs="sum")                      # last reader of "sum", but "flat" views it
    g.add("flat_c", layers.Flatten(), inputs="relu_c")
    g.add("out", layers.Add(), inputs=["flat", "flat_c"])
    rng = np.random.default_rng(seed)
    for name in ("bn", "bn_b", "bn2"):
        layer = g.nodes[name].layer
        layer.buffers["running_mean"][:] = rng.standard_normal(3)
        layer.buffers["running_var"][:] = rng.uniform(0.5, 2, 3)
    return g


@pytest.mark.parametrize("keep", [[], ["bn", "relu_a", "bn_b"], ["sum"]])
def test_predict_overwrites_only_arrays_nobody_else_holds(keep):
    g = aliasing_graph()
    x = np.random.default_rng(1).standard_normal((2, 2, 6, 6)).astype(np.float32)
    x_before = x.copy()
    expected = g.forward(x, training=False, keep=keep)                 # caches kept: nothing overwritten
    kept = {k: v.copy() for k, v in g.activations.items()}
    got = g.forward(x, training=False, keep=keep, _cache=False)       # the inference path (Layer.infer)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(x, x_before)                         # the caller's input untouched
    for k in keep:                                                     # kept activations untouched
        np.testing.assert_array_equal(g.activations[k], kept[k])
    np.testing.assert_array_equal(g.predict(x, batch_size=1), expected)
    np.testing.assert_array_equal(x, x_before)


def test_predict_overwrites_in_place_where_allowed():
    """The in-place path is really taken (else the test above would pass vacuously)."""
    g = aliasing_graph()
    seen = {}
    for name in ("relu_a", "bn_b", "bn2", "relu_in", "relu_c", "sum", "out"):
        layer = g.nodes[name].layer
        original = layer.infer

        def spy(x, overwrite=False, _name=name, _f=original):
            seen[_name] = overwrite
            return _f(x, overwrite=overwrite)
        layer.infer = spy
    g.predict(np.ones((1, 2, 6, 6), np.float32))
    assert seen == {"relu_in": False, "relu_a": False, "bn_b": True, "bn2": True, "relu_c": False,
                    "sum": True, "out": False}       # Add sums into a dead first input, not into a view


def test_add_sums_into_its_first_input_only_when_nobody_reads_it_later():
    g = Graph(input_shape=(3,))
    g.add("a", layers.ReLU())
    g.add("b", layers.ReLU(), inputs=g.input_names[0])
    g.add("twice", layers.Add(), inputs=["a", "a"])              # one array on both edges: no overwrite
    g.add("ab", layers.Add(), inputs=["b", "twice"])             # "b" is read again below: no overwrite
    g.add("last", layers.Add(), inputs=["twice", "ab", "b"])     # "twice" dies here: summed into it
    seen = {}
    for name in ("twice", "ab", "last"):
        original = g.nodes[name].layer.infer
        g.nodes[name].layer.infer = (lambda xs, overwrite=False, _n=name, _f=original:
                                     seen.__setitem__(_n, overwrite) or _f(xs, overwrite=overwrite))
    x = np.array([[-1.0, 2.0, 3.0]], np.float32)
    r = np.maximum(x, 0)
    np.testing.assert_array_equal(g.predict(x), 2 * r + (r + 2 * r) + r)
    assert seen == {"twice": False, "ab": False, "last": True}
    np.testing.assert_array_equal(x, [[-1.0, 2.0, 3.0]])


def test_predict_of_a_subclass_that_only_redefines_forward_uses_that_forward():
    class Clipped(layers.ReLU):
        def forward(self, x, training=False):
            return np.minimum(super().forward(x, training), 1.0)

    model = Sequential([Clipped()], input_shape=(4,))
    x = np.array([[-1.0, 0.5, 2.0, 3.0]], np.float32)
    np.testing.assert_array_equal(model.predict(x), [[0.0, 0.5, 1.0, 1.0]])
