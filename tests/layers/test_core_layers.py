"""Dense, Flatten, ZeroPad2D, Concat, Add: gradient checks and error messages."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from minicnn.gradient_check import gradcheck
from minicnn.layers.dense import Dense
from minicnn.layers.shape import Add, Concat, Flatten, ZeroPad2D

TOL = 1e-6


@given(n=st.integers(1, 4), d=st.integers(1, 6), m=st.integers(1, 5), bias=st.booleans(), seed=st.integers(0, 99))
def test_dense_gradcheck(n, d, m, bias, seed):
    layer = Dense(d, m, bias=bias, seed=seed)
    x = np.random.default_rng(seed).standard_normal((n, d))
    errs = gradcheck(layer, x, seed=seed)
    assert set(errs) == {"x", "W"} | ({"b"} if bias else set())
    assert max(errs.values()) < TOL, errs


@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4), seed=st.integers(0, 99))
def test_flatten_gradcheck(shape, seed):
    x = np.random.default_rng(seed).standard_normal(shape)
    assert gradcheck(Flatten(), x)["x"] < TOL


@given(pad=st.tuples(*[st.integers(0, 2)] * 4), seed=st.integers(0, 99))
def test_zeropad_gradcheck(pad, seed):
    x = np.random.default_rng(seed).standard_normal((2, 2, 3, 4))
    layer = ZeroPad2D(pad)
    assert layer.forward(x).shape == layer.output_shape(x.shape)
    assert gradcheck(layer, x)["x"] < TOL


@given(channels=st.lists(st.integers(1, 3), min_size=1, max_size=4), seed=st.integers(0, 99))
def test_concat_gradcheck(channels, seed):
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal((2, c, 3, 3)) for c in channels]
    errs = gradcheck(Concat(), xs)
    assert set(errs) == {f"x{i}" for i in range(len(xs))}
    assert max(errs.values()) < TOL


@given(k=st.integers(1, 4), seed=st.integers(0, 99))
def test_add_gradcheck(k, seed):
    rng = np.random.default_rng(seed)
    xs = [rng.standard_normal((2, 3, 2, 2)) for _ in range(k)]
    assert max(gradcheck(Add(), xs).values()) < TOL


def test_dense_shape_errors_name_the_layer():
    layer = Dense(4, 2)
    with pytest.raises(ValueError, match=r"Dense\(4->2\).*x.shape=\(3, 5\)"):
        layer.forward(np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        layer.forward(np.zeros((3, 4, 1), np.float32))


def test_backward_before_forward_is_a_clear_error():
    for layer in (Dense(2, 2), Flatten(), ZeroPad2D(1), Concat(), Add()):
        with pytest.raises(RuntimeError, match="backward called before forward"):
            layer.backward(np.zeros((1, 2), np.float32))


def test_dense_frozen_and_no_input_grad_and_dy_untouched():
    layer = Dense(3, 2, seed=0)
    x = np.ones((4, 3), np.float32)
    dy = np.arange(8, dtype=np.float32).reshape(4, 2)
    dy0 = dy.copy()
    layer.freeze()
    layer.forward(x)
    dx = layer.backward(dy)
    assert dx.shape == x.shape and layer.grads == {}
    np.testing.assert_array_equal(dy, dy0)
    layer.unfreeze()
    layer.forward(x)
    assert layer.backward(dy, need_dx=False) is None and set(layer.grads) == {"W", "b"}


def test_float32_stays_float32():
    layer = Dense(3, 2, seed=0)
    y = layer.forward(np.ones((2, 3), np.float32))
    assert y.dtype == np.float32
    assert layer.backward(np.ones((2, 2), np.float32)).dtype == np.float32


def test_concat_and_add_shape_errors():
    with pytest.raises(ValueError, match="agree except on axis"):
        Concat().forward([np.zeros((1, 2, 3, 3)), np.zeros((1, 2, 4, 3))])
    with pytest.raises(ValueError, match="equal shapes"):
        Add().forward([np.zeros((1, 2)), np.zeros((1, 3))])


def test_gradcheck_refuses_a_backward_that_forgets_a_param_gradient():
    class Forgetful(Dense):
        def backward(self, dy):
            dx = super().backward(dy)
            del self.grads["b"]
            return dx
    with pytest.raises(ValueError, match="no gradient for trainable param 'b'"):
        gradcheck(Forgetful(2, 2, seed=0), np.ones((1, 2)))
    frozen = Dense(2, 2, seed=0).freeze()
    assert set(gradcheck(frozen, np.ones((1, 2)))) == {"x"}
