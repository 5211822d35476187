"""Layers run their kernels by an explicit ``method``; a whole model can run on the reference kernels."""
import numpy as np
import pytest

import minicnn
from minicnn import Sequential, layers
from minicnn.kernels.conv import CONV_METHODS

TOL = {np.float32: 2e-4, np.float64: 1e-10}


def small_model(dtype):
    """Every kernel-backed layer kind: conv (banded, depthwise, 1x1), BN, ReLU, max/avg/adaptive pools."""
    items = [layers.Conv2D(2, 4, 3, padding=1, bias=False, seed=1), layers.BatchNorm2D(4), layers.ReLU(),
             layers.MaxPool2D(2), layers.DepthwiseConv2D(4, 3, padding="same", seed=2),
             layers.Conv2D(4, 6, 1, seed=3), layers.ReLU(), layers.AvgPool2D(2, padding=1),
             layers.SeparableConv2D(6, 4, 3, padding=1, seed=4), layers.AdaptiveAvgPool2D(2),
             layers.Flatten(), layers.Dense(16, 3, seed=5)]
    return Sequential(items, input_shape=(2, 12, 12), output_activation="softmax").astype(dtype)


def forward_backward(model, x, dy):
    """Output and every gradient of a training pass (BN in training mode), then of an inference pass."""
    z = model.forward(x, training=True)
    dx = model.backward(dy)
    grads = {k: v.copy() for k, v in model.grads().items()}
    return z, dx, grads, model.predict(x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_model_on_reference_kernels_matches_auto(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 12, 12)).astype(dtype)
    dy = rng.standard_normal((3, 3)).astype(dtype)
    fast = small_model(dtype)
    slow = small_model(dtype).set_kernel_method("reference")
    kernel_layers = [l for l in slow.layers if l.kernel_methods]
    assert len(kernel_layers) == 10 and all(l.method == "reference" for l in kernel_layers)
    assert all(l.method == "auto" for l in fast.layers if l.kernel_methods)
    for name, a, b in zip(("y", "dx", "grads", "predict"), forward_backward(fast, x, dy), forward_backward(slow, x, dy)):
        pairs = [(k, a[k], b[k]) for k in a] if isinstance(a, dict) else [(name, a, b)]
        for key, u, v in pairs:
            assert u.dtype == v.dtype == dtype, key
            err = np.max(np.abs(u - v)) / max(np.max(np.abs(v)), 1e-30)
            assert err < TOL[dtype], (key, err)
    # and the switch goes back
    slow.set_kernel_method("auto")
    assert all(l.method == "auto" for l in slow.layers if l.kernel_methods)


def test_reference_layers_call_the_reference_kernels(monkeypatch):
    """Not just equal numbers: the layer really runs the plain loops when asked to."""
    from minicnn.kernels import conv
    calls = []
    real = conv.conv2d_forward_reference
    monkeypatch.setattr(conv, "conv2d_forward_reference", lambda *a, **k: calls.append(1) or real(*a, **k))
    x = np.ones((1, 2, 5, 5), np.float32)
    layers.Conv2D(2, 3, 3, seed=0).forward(x)
    assert calls == []
    layers.Conv2D(2, 3, 3, seed=0, method="reference").forward(x)
    assert calls == [1]


def test_method_is_saved_in_the_config_only_when_not_auto(tmp_path):
    assert "method" not in layers.Conv2D(2, 3, 3).get_config()
    assert layers.ReLU().get_config() == {} and repr(layers.ReLU()) == "ReLU()"
    model = small_model(np.float32)
    model.layers[0].set_kernel_method("im2col")
    model.layers[1].set_kernel_method("reference")
    model.layers[3].set_kernel_method("fast")
    path = model.save(tmp_path / "m.npz")
    back = minicnn.load(path)
    assert [getattr(l, "method", None) for l in back.layers][:4] == ["im2col", "reference", "auto", "fast"]
    assert "method='im2col'" in repr(back.layers[0])


@pytest.mark.parametrize("make, bad", [
    (lambda m: layers.Conv2D(2, 3, 3, method=m), "fast"),
    (lambda m: layers.BatchNorm2D(3, method=m), "banded"),
    (lambda m: layers.ReLU(method=m), "numpy"),
    (lambda m: layers.MaxPool2D(2, method=m), "im2col"),
])
def test_unknown_methods_are_refused(make, bad):
    with pytest.raises(ValueError, match="unknown kernel method"):
        make(bad)


def test_every_conv_method_is_accepted_by_conv2d():
    for m in CONV_METHODS:
        assert layers.Conv2D(2, 3, 3, method=m).method == m


def test_graph_switch_takes_only_methods_every_layer_knows():
    with pytest.raises(ValueError, match="'auto' or 'reference'"):
        small_model(np.float32).set_kernel_method("banded")


def _tiled_model(method):
    """A 3x3 conv with 32 in / 16 out channels at 12x12: what ``auto`` runs on ``tiled`` in float32."""
    return Sequential([layers.Conv2D(32, 16, 3, padding=1, seed=1, method=method), layers.ReLU(),
                       layers.AdaptiveAvgPool2D(1), layers.Flatten(), layers.Dense(16, 1, seed=2)],
                      input_shape=(32, 12, 12))


def test_predict_train_predict_sees_new_weights_after_step_load_and_astype():
    """Issue 12: no fast path keeps packed or re-laid-out weights past an optimizer step,
    ``load_state_dict`` or ``astype``; every prediction equals the plain loops on the current weights."""
    from minicnn import optim
    from minicnn.kernels.conv import conv_method
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 32, 12, 12)).astype(np.float32)
    fast, slow = _tiled_model("auto"), _tiled_model("reference")
    assert conv_method((2, 32, 12, 12), (16, 32, 3, 3), padding=(1, 1, 1, 1)) == "tiled"

    def same(tol=2e-5, x=x):
        a, b = fast.predict(x), slow.predict(x)
        assert a.dtype == b.dtype
        assert np.max(np.abs(a - b)) <= tol * max(np.max(np.abs(b)), 1e-30)
        return a

    first = same()
    fast.forward(x, training=True)
    fast.backward(np.ones((2, 1), np.float32))
    optim.SGD(fast.params(), lr=0.5).step(fast.grads())
    slow.load_state_dict(fast.state_dict())
    stepped = same()
    assert np.max(np.abs(stepped - first)) > 1e-3                    # the step changed what predict returns
    sd = {k: v * 0.5 for k, v in fast.state_dict().items()}
    fast.load_state_dict(sd)
    slow.load_state_dict(sd)
    assert np.max(np.abs(same() - stepped)) > 1e-3
    fast.astype(np.float64)
    slow.astype(np.float64)
    assert fast.params()["0.W"].dtype == np.float64
    assert same(1e-12, x.astype(np.float64)).dtype == np.float64


def _at_1_and_2_threads(run, deterministic):
    """``run()`` with 1 and then 2 Numba threads; the runtime settings are put back afterwards."""
    import numba

    from minicnn import runtime
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs NUMBA_NUM_THREADS >= 2 to compare thread counts")
    before = runtime.settings()
    try:
        out = []
        for threads in (1, 2):
            runtime.configure(threads=threads, deterministic=deterministic)
            out.append(run())
    finally:
        runtime.configure(threads=before.threads or numba.config.NUMBA_NUM_THREADS, deterministic=before.deterministic)
    return out


def test_tiled_results_do_not_depend_on_the_thread_count():
    """``tiled`` gives each output one task with a fixed summation order, so it honours the
    deterministic switch by construction: 1 and 2 threads give bit-identical outputs."""
    from minicnn.kernels.conv import conv2d_forward
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 32, 20, 20)).astype(np.float32)
    W = rng.standard_normal((40, 32, 3, 3)).astype(np.float32)
    one, two = _at_1_and_2_threads(lambda: conv2d_forward(x, W, None, padding=(1, 1, 1, 1), method="tiled"),
                                   deterministic=False)
    np.testing.assert_array_equal(one, two)


def test_pointwise_backward_is_thread_independent_with_the_deterministic_switch():
    from minicnn.kernels.conv import conv2d_backward
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 48, 9, 9)).astype(np.float32)
    W = rng.standard_normal((40, 48, 1, 1)).astype(np.float32)
    dy = rng.standard_normal((3, 40, 9, 9)).astype(np.float32)
    one, two = _at_1_and_2_threads(lambda: conv2d_backward(dy, x, W, method="pointwise"), deterministic=True)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
