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
