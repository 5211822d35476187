"""Layer tests for pooling, BatchNorm2D, activations and Dropout: gradient checks and behaviour."""
import copy
import json
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minicnn.gradient_check import gradcheck
from minicnn.layers.activation import Dropout, ReLU, Sigmoid, Softmax
from minicnn.layers.norm import BatchNorm2D
from minicnn.layers.pool import (AdaptiveAvgPool2D, AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D,
                                 MaxPool2D)

GRAD_TOL = 1e-6


def distinct(shape, seed=0, spacing=1e-2):
    """Values that differ pairwise by >= ``spacing`` (far from max-pool ties at h = 1e-6), centred on 0,
    and never within ``spacing / 2`` of 0 (the ReLU kink)."""
    n = int(np.prod(shape))
    v = np.random.default_rng(seed).permutation(n).astype(np.float64) - (n - 1) / 2
    v = np.where(v >= 0, v + 0.5, v - 0.5)  # keep away from 0
    return (v * spacing).reshape(shape)


def assert_grads(errors, expected_keys):
    assert set(errors) == set(expected_keys), errors
    for name, err in errors.items():
        assert err < GRAD_TOL, f"{name}: relative error {err:.3g}"


# -- gradient checks ------------------------------------------------------------------------------
@pytest.mark.parametrize("layer, shape", [
    (MaxPool2D(2), (2, 3, 6, 6)),
    (MaxPool2D(3, stride=2, padding=1), (2, 2, 7, 6)),
    (MaxPool2D(3, stride=2, padding="same"), (1, 2, 6, 5)),
    (MaxPool2D((2, 3), stride=(1, 2), padding=(1, 0, 0, 2)), (1, 2, 5, 6)),
    (AvgPool2D(2), (2, 3, 6, 6)),
    (AvgPool2D(3, stride=2, padding=1, count_include_pad=True), (2, 2, 7, 6)),
    (AvgPool2D(3, stride=2, padding="same", count_include_pad=False), (1, 2, 6, 5)),
    (GlobalAvgPool2D(), (2, 3, 4, 5)),
    (GlobalMaxPool2D(), (2, 3, 4, 5)),
    (AdaptiveAvgPool2D((3, 2)), (2, 2, 7, 5)),
    (AdaptiveAvgPool2D(7), (1, 1, 7, 7)),
    (ReLU(), (2, 3, 4, 4)),
    (ReLU(), (5, 7)),
    (Sigmoid(), (2, 3, 4, 4)),
    (Softmax(axis=1), (3, 5)),
    (Softmax(axis=-1), (2, 3, 4)),
], ids=repr)
def test_gradcheck_stateless_layers(layer, shape):
    x = distinct(shape, seed=len(shape))
    assert_grads(gradcheck(layer, x), ["x"])


@given(k=st.integers(1, 3), s=st.integers(1, 3), pad=st.integers(0, 2), extra=st.integers(0, 3),
       use_max=st.booleans(), cip=st.booleans(), seed=st.integers(0, 100))
def test_gradcheck_window_pools_property(k, s, pad, extra, use_max, cip, seed):
    pad = min(pad, k - 1)
    size = max(k - 2 * pad, 1) + extra
    layer = MaxPool2D(k, s, pad) if use_max else AvgPool2D(k, s, pad, count_include_pad=cip)
    assert_grads(gradcheck(layer, distinct((1, 2, size, size + 1), seed), seed=seed), ["x"])


@pytest.mark.parametrize("center, scale", [(True, True), (False, True), (True, False), (False, False)])
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_batchnorm(center, scale, training):
    rng = np.random.default_rng(5)
    bn = BatchNorm2D(3, eps=1.001e-5, center=center, scale=scale)
    if scale:
        bn.params["gamma"] = rng.uniform(0.5, 2, 3).astype(np.float32)
    if center:
        bn.params["beta"] = rng.standard_normal(3).astype(np.float32)
    bn.buffers["running_mean"] = rng.standard_normal(3).astype(np.float32)
    bn.buffers["running_var"] = rng.uniform(0.5, 2, 3).astype(np.float32)
    before = copy.deepcopy(bn.buffers)
    x = rng.standard_normal((3, 3, 4, 3)) * 2 + 1
    expected = ["x"] + (["gamma"] if scale else []) + (["beta"] if center else [])
    assert_grads(gradcheck(bn, x, training=training), expected)
    for name in before:  # gradcheck works on copies: the layer's running statistics are untouched
        np.testing.assert_array_equal(bn.buffers[name], before[name])


def test_gradcheck_dropout_replays_its_mask():
    layer = Dropout(0.4, seed=11)
    x = distinct((2, 3, 4, 4), seed=2)
    # gradcheck deep-copies the layer for each evaluation: every copy draws the same mask
    masks = [copy.deepcopy(layer).forward(x, training=True) != 0 for _ in range(3)]
    assert all(np.array_equal(masks[0], m) for m in masks[1:])
    assert 0 < masks[0].sum() < masks[0].size  # the mask really drops some and keeps some
    assert_grads(gradcheck(layer, x, training=True), ["x"])
    # and the original layer's generator was not advanced by the check
    np.testing.assert_array_equal(layer.forward(x, training=True) != 0, masks[0])


# -- batch-norm behaviour -------------------------------------------------------------------------
def test_batchnorm_running_update_follows_pytorch_formula():
    rng = np.random.default_rng(0)
    bn = BatchNorm2D(4, momentum=0.3)
    bn.buffers["running_mean"][:] = rng.standard_normal(4)
    bn.buffers["running_var"][:] = rng.uniform(0.5, 2, 4)
    rm0, rv0 = bn.buffers["running_mean"].copy(), bn.buffers["running_var"].copy()
    x = (rng.standard_normal((5, 4, 3, 2)) * 3 + 2).astype(np.float32)
    y = bn.forward(x, training=True)
    x64 = x.astype(np.float64)
    mean, uvar, bvar = x64.mean(axis=(0, 2, 3)), x64.var(axis=(0, 2, 3), ddof=1), x64.var(axis=(0, 2, 3))
    np.testing.assert_allclose(bn.buffers["running_mean"], 0.7 * rm0 + 0.3 * mean, rtol=1e-5)
    np.testing.assert_allclose(bn.buffers["running_var"], 0.7 * rv0 + 0.3 * uvar, rtol=1e-5)
    assert bn.buffers["running_var"].dtype == np.float32 and y.dtype == np.float32
    # normalised with the biased variance
    expect = (x64 - mean[None, :, None, None]) / np.sqrt(bvar[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(y, expect, rtol=1e-4, atol=1e-5)


def test_batchnorm_eval_uses_running_statistics():
    bn = BatchNorm2D(2, eps=1e-3)
    bn.params["gamma"][:] = [2.0, 0.5]
    bn.params["beta"][:] = [1.0, -1.0]
    bn.buffers["running_mean"][:] = [3.0, -2.0]
    bn.buffers["running_var"][:] = [4.0, 0.25]
    x = np.random.default_rng(1).standard_normal((2, 2, 3, 3)).astype(np.float32)
    y = bn.forward(x)
    g, b = np.array([2.0, 0.5]), np.array([1.0, -1.0])
    m, v = np.array([3.0, -2.0]), np.array([4.0, 0.25])
    expect = g[None, :, None, None] * (x - m[None, :, None, None]) / np.sqrt(v[None, :, None, None] + 1e-3) \
        + b[None, :, None, None]
    np.testing.assert_allclose(y, expect, rtol=1e-5)
    np.testing.assert_array_equal(bn.buffers["running_mean"], [3.0, -2.0])
    dx = bn.backward(np.ones_like(y))
    np.testing.assert_allclose(dx, np.broadcast_to((g / np.sqrt(v + 1e-3))[None, :, None, None], x.shape), rtol=1e-5)


def test_frozen_batchnorm_ignores_training_flag():
    rng = np.random.default_rng(2)
    bn = BatchNorm2D(3)
    bn.buffers["running_mean"][:] = [0.5, -1.0, 2.0]
    bn.buffers["running_var"][:] = [1.5, 0.5, 3.0]
    before = copy.deepcopy(bn.buffers)
    x = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
    eval_y = bn.forward(x, training=False)
    bn.backward(np.ones_like(eval_y))
    bn.freeze()
    y = bn.forward(x, training=True)
    np.testing.assert_array_equal(y, eval_y)
    for name in before:
        np.testing.assert_array_equal(bn.buffers[name], before[name])
    dx = bn.backward(np.ones_like(y))
    assert dx is not None and bn.grads == {}
    # the unfrozen layer normalises with batch statistics and moves its buffers
    bn.unfreeze()
    y_train = bn.forward(x, training=True)
    assert not np.allclose(y_train, eval_y)
    assert not np.array_equal(bn.buffers["running_mean"], before["running_mean"])


def test_batchnorm_params_and_buffers_layout():
    bn = BatchNorm2D(5, center=False)
    assert set(bn.params) == {"gamma"} and set(bn.buffers) == {"running_mean", "running_var"}
    assert BatchNorm2D(5, scale=False).params.keys() == {"beta"}
    np.testing.assert_array_equal(bn.buffers["running_var"], np.ones(5))
    assert bn.num_params == 5
    with pytest.raises(ValueError, match="BatchNorm2D.*channel"):
        bn.forward(np.zeros((2, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match="more than 1 value"):
        bn.forward(np.zeros((1, 5, 1, 1), np.float32), training=True)


# -- pooling behaviour ----------------------------------------------------------------------------
def test_maxpool_same_padding_tf_semantics():
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5) - 100  # all negative: padding must not win
    layer = MaxPool2D(2, stride=2, padding="same")  # total pad 1, on the bottom/right
    y = layer.forward(x)
    assert y.shape == (1, 1, 3, 3) and layer.output_shape((None, 1, 5, 5)) == (None, 1, 3, 3)
    np.testing.assert_array_equal(y[0, 0], [[6, 8, 9], [16, 18, 19], [21, 23, 24]] - np.float32(100))


def test_avgpool_count_include_pad():
    x = np.ones((1, 1, 2, 2))
    with_pad = AvgPool2D(2, stride=1, padding=1, count_include_pad=True).forward(x)
    without = AvgPool2D(2, stride=1, padding=1, count_include_pad=False).forward(x)
    np.testing.assert_allclose(with_pad[0, 0], [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])
    np.testing.assert_allclose(without, np.ones((1, 1, 3, 3)))


@pytest.mark.parametrize("layer, out", [
    (MaxPool2D(3, 2, 1), (None, 4, 4, 3)),
    (AvgPool2D((2, 3), (2, 1)), (None, 4, 3, 4)),
    (GlobalAvgPool2D(), (None, 4)),
    (GlobalMaxPool2D(), (None, 4)),
    (AdaptiveAvgPool2D((2, 3)), (None, 4, 2, 3)),
], ids=repr)
def test_pool_output_shape_and_config(layer, out):
    assert layer.output_shape((None, 4, 7, 6)) == out
    x = np.random.default_rng(0).standard_normal((2, 4, 7, 6)).astype(np.float32)
    y = layer.forward(x)
    assert y.shape == (2,) + out[1:] and y.dtype == np.float32
    config = json.loads(json.dumps(layer.get_config()))
    clone = type(layer).from_config(config)
    np.testing.assert_array_equal(clone.forward(x), y)
    assert type(layer).__name__ in repr(layer)


def test_pool_rejects_bad_geometry():
    with pytest.raises(ValueError, match="MaxPool2D.*cannot pool"):
        MaxPool2D(2, padding=2).forward(np.zeros((1, 1, 6, 6)))
    with pytest.raises(ValueError, match="AvgPool2D.*cannot pool"):
        AvgPool2D(5).forward(np.zeros((1, 1, 3, 3)))


# -- activations ----------------------------------------------------------------------------------
def test_softmax_rows_sum_to_one_and_stable():
    x = np.array([[1000.0, 1000.0, 0.0], [-1000.0, 5.0, 1000.0]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = Softmax().forward(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(y[0], [0.5, 0.5, 0.0], atol=1e-7)
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 3, 4))
    np.testing.assert_allclose(Softmax(axis=1).forward(z).sum(axis=1), 1.0)


def test_sigmoid_stable_at_extremes():
    x = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer = Sigmoid()
        y = layer.forward(x)
        dx = layer.backward(np.ones_like(x))
    assert y[0] == 0.0 and y[2] == 0.5 and y[4] == 1.0
    assert y[1] == pytest.approx(np.exp(-40.0), rel=1e-12)
    assert np.all(np.isfinite(dx))


def test_relu_forward_backward_values():
    x = np.array([[-2.0, 0.0, 3.0]], np.float32)
    layer = ReLU()
    np.testing.assert_array_equal(layer.forward(x), [[0.0, 0.0, 3.0]])
    np.testing.assert_array_equal(layer.backward(np.array([[5.0, 5.0, 5.0]], np.float32)), [[0.0, 0.0, 5.0]])


def test_dropout_identity_in_eval_and_statistics_in_training():
    layer = Dropout(0.5, seed=3)
    x = np.ones((200, 50), np.float32)
    assert layer.forward(x) is x
    np.testing.assert_array_equal(layer.backward(x), x)
    y = layer.forward(x, training=True)
    assert set(np.unique(y)) <= {0.0, 2.0} and y.dtype == np.float32
    assert abs((y == 0).mean() - 0.5) < 0.02
    dx = layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(dx, y)
    with pytest.raises(ValueError, match="Dropout"):
        Dropout(1.0)
    assert Dropout(0.2, seed=4).get_config() == {"p": 0.2, "seed": 4}


# -- interface contract, for every layer in this family -------------------------------------------
ALL = [lambda: MaxPool2D(2), lambda: AvgPool2D(2), GlobalAvgPool2D, GlobalMaxPool2D,
       lambda: AdaptiveAvgPool2D(2), lambda: BatchNorm2D(3), ReLU, Sigmoid, Softmax,
       lambda: Dropout(0.5, seed=0)]


@pytest.mark.parametrize("make", ALL)
@pytest.mark.parametrize("training", [False, True])
def test_layer_contract(make, training):
    layer = make()
    x = distinct((2, 3, 4, 4), seed=9).astype(np.float32)
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((2, 3, 2, 2), np.float32))
    y = layer.forward(x, training=training)
    assert y.dtype == np.float32
    dy = np.random.default_rng(0).standard_normal(y.shape).astype(np.float32)
    dy_before = dy.copy()
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dy, dy_before)  # dy is never mutated
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert dx is not dy
    with pytest.raises(RuntimeError):
        layer.backward(dy)  # the cache was freed
    layer.forward(x, training=training)
    assert layer.backward(dy, need_dx=False) is None
    with pytest.raises(TypeError):
        layer.forward(x.astype(np.int64))


@pytest.mark.parametrize("make", ALL[:6])
def test_4d_layers_reject_wrong_rank(make):
    layer = make()
    with pytest.raises(ValueError, match=type(layer).__name__ + r".*x\.shape=\(3, 4\)"):
        layer.forward(np.zeros((3, 4), np.float32))


# -- inference path (Layer.infer, what Graph.predict runs) -----------------------------------------
def _bn_with_stats(seed=0):
    bn = BatchNorm2D(3, eps=1e-3)
    rng = np.random.default_rng(seed)
    bn.params["gamma"][:] = rng.standard_normal(3)
    bn.params["beta"][:] = rng.standard_normal(3)
    bn.buffers["running_mean"][:] = rng.standard_normal(3)
    bn.buffers["running_var"][:] = rng.uniform(0.5, 2, 3)
    return bn


@pytest.mark.parametrize("make, shape", [
    (lambda: MaxPool2D(3, stride=2, padding=1), (2, 3, 9, 8)),
    (lambda: MaxPool2D((2, 3), stride=(1, 2), padding=(1, 0, 0, 2)), (1, 2, 5, 6)),
    (lambda: ReLU(), (2, 3, 4, 4)),
    (lambda: ReLU(), (4, 3, 64, 64)),                                 # large enough for the Numba ReLU
    (lambda: _bn_with_stats(), (2, 3, 5, 4)),
    (lambda: _bn_with_stats(), (4, 3, 64, 64)),
    (lambda: AvgPool2D(3, stride=2, padding=1), (2, 3, 9, 8)),        # the default Layer.infer
], ids=lambda v: v if isinstance(v, tuple) else "")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_infer_equals_forward_in_and_out_of_place(make, shape, dtype):
    layer = make()
    x = np.random.default_rng(3).standard_normal(shape).astype(dtype)
    x.flat[::7] = 0.0
    expected = layer.forward(x, training=False)
    layer.clear_cache()
    x_before = x.copy()
    y = layer.infer(x)
    assert y.dtype == dtype and np.array_equal(y, expected)
    np.testing.assert_array_equal(x, x_before)                        # overwrite=False leaves x alone
    assert layer._cache is None                                       # inference keeps nothing
    y2 = layer.infer(x, overwrite=True)
    assert np.array_equal(y2, expected)
    if y2.shape == x.shape:                                           # elementwise: really in place
        assert y2 is x
