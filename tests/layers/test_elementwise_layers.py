"""Activation, Rescaling, Identity (minicnn.layers.extra): values against formulas, gradient checks."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minicnn.gradient_check import gradcheck
from minicnn.layers.elementwise import ACTIVATIONS, Activation, Identity, Rescaling

TOL = 1e-6


def _x(seed, shape=(2, 3, 4, 4)):
    x = np.random.default_rng(seed).standard_normal(shape) * 3
    # keep away from the kinks (0 for relu-likes, 6 for relu6) where finite differences straddle them
    x[np.abs(x) < 1e-3] = 0.5
    x[np.abs(x - 6) < 1e-3] = 5.5
    return x


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_gradcheck(name):
    for seed in range(3):
        errs = gradcheck(Activation(name), _x(seed), seed=seed)
        assert errs["x"] < TOL, (name, errs)


@given(alpha=st.floats(0.01, 2.0), seed=st.integers(0, 99))
def test_activation_alpha_gradcheck(alpha, seed):
    for name in ("elu", "leaky_relu"):
        assert gradcheck(Activation(name, alpha=alpha), _x(seed, (3, 5)), seed=seed)["x"] < TOL


def test_activation_values_against_formulas():
    x = np.linspace(-8, 8, 161)
    sig = 1 / (1 + np.exp(-x))
    gelu_exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in x])
    expected = {
        "linear": x, "relu": np.maximum(x, 0), "relu6": np.minimum(np.maximum(x, 0), 6),
        "leaky_relu": np.where(x > 0, x, 0.2 * x), "elu": np.where(x > 0, x, np.exp(x) - 1),
        "selu": 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * (np.exp(x) - 1)),
        "tanh": np.tanh(x), "sigmoid": sig, "softplus": np.log(1 + np.exp(x)),
        "softsign": x / (1 + np.abs(x)), "swish": x * sig, "gelu": gelu_exact,
        "gelu_tanh": 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3))),
        "exponential": np.exp(x),
    }
    assert set(expected) == set(ACTIVATIONS)
    for name, want in expected.items():
        np.testing.assert_allclose(Activation(name).forward(x), want, rtol=1e-12, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(Activation("elu", alpha=0.5).forward(x), np.where(x > 0, x, 0.5 * (np.exp(x) - 1)))
    np.testing.assert_allclose(Activation("silu").forward(x), x * sig)


def test_activation_float32_and_errors():
    x = np.ones((2, 3), np.float32)
    for name in ACTIVATIONS:
        layer = Activation(name)
        assert layer.forward(x).dtype == np.float32, name
        assert layer.backward(x).dtype == np.float32, name
    with pytest.raises(ValueError, match="unknown function 'mish'"):
        Activation("mish")
    with pytest.raises(ValueError, match="takes no alpha"):
        Activation("tanh", alpha=0.1)
    layer = Activation("leaky_relu", alpha=0.3)
    assert type(layer).from_config(layer.get_config()).alpha == 0.3


@given(seed=st.integers(0, 99), per_channel=st.booleans())
def test_rescaling_values_and_gradcheck(seed, per_channel):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 4, 5))
    scale = rng.standard_normal(3).tolist() if per_channel else float(rng.standard_normal())
    offset = rng.standard_normal(3).tolist() if per_channel else float(rng.standard_normal())
    layer = Rescaling(scale, offset)
    s = np.reshape(scale, (1, -1, 1, 1)) if per_channel else scale
    o = np.reshape(offset, (1, -1, 1, 1)) if per_channel else offset
    np.testing.assert_allclose(layer.forward(x), x * s + o, rtol=1e-12)
    assert gradcheck(layer, x, seed=seed)["x"] < TOL
    assert Rescaling.from_config(layer.get_config()).get_config() == layer.get_config()


def test_rescaling_keras_tf_preprocessing_and_errors():
    x = np.array([[0.0, 127.5, 255.0]], np.float32)
    y = Rescaling(1 / 127.5, -1).forward(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [[-1, 0, 1]], atol=1e-7)
    with pytest.raises(ValueError, match="per-channel"):
        Rescaling([1.0, 2.0]).forward(np.zeros((1, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="finite"):
        Rescaling(float("nan"))


def test_identity_gradcheck_and_copy():
    x = _x(0)
    assert gradcheck(Identity(), x)["x"] < TOL
    layer = Identity()
    y = layer.forward(x)
    assert y is x or np.array_equal(y, x)
    dy = np.ones_like(x)
    dx = layer.backward(dy)
    assert dx is not dy and np.array_equal(dx, dy)
