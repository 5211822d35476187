"""Conv2D, DepthwiseConv2D, SeparableConv2D: gradient checks, padding rules, errors, the Layer contract."""
import json

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from minicnn.gradient_check import gradcheck
from minicnn.kernels.conv import conv2d_forward_reference
from minicnn.layers.conv import Conv2D, DepthwiseConv2D, SeparableConv2D


@st.composite
def layer_and_input(draw, kind):
    k = (draw(st.integers(1, 3), label="KH"), draw(st.integers(1, 3), label="KW"))
    stride = (draw(st.integers(1, 2), label="sh"), draw(st.integers(1, 2), label="sw"))
    dilation = (draw(st.integers(1, 2), label="dh"), draw(st.integers(1, 2), label="dw"))
    padding = draw(st.one_of(st.just("same"), st.just("valid"), st.integers(0, 1),
                             st.tuples(*[st.integers(0, 1)] * 4)), label="padding")
    pads = (0, 0, 0, 0) if isinstance(padding, str) else (
        (padding,) * 4 if isinstance(padding, int) else padding)
    H = max(1, dilation[0] * (k[0] - 1) + 1 - pads[0] - pads[1]) + draw(st.integers(0, 2), label="extra H")
    W = max(1, dilation[1] * (k[1] - 1) + 1 - pads[2] - pads[3]) + draw(st.integers(0, 2), label="extra W")
    seed = draw(st.integers(0, 1000), label="seed")
    common = dict(stride=stride, padding=padding, dilation=dilation, seed=seed)
    if kind == "conv":
        G = draw(st.integers(1, 2), label="groups")
        C, F = G * draw(st.integers(1, 2)), G * draw(st.integers(1, 2))
        layer = Conv2D(C, F, k, groups=G, bias=draw(st.booleans(), label="bias"), **common)
    elif kind == "depthwise":
        C = draw(st.integers(1, 3), label="C")
        layer = DepthwiseConv2D(C, k, depth_multiplier=draw(st.integers(1, 2), label="dm"), **common)
    else:
        C = draw(st.integers(1, 2), label="C")
        layer = SeparableConv2D(C, draw(st.integers(1, 3), label="F"), k,
                                depth_multiplier=draw(st.integers(1, 2), label="dm"), **common)
    x = np.random.default_rng(seed).standard_normal((draw(st.integers(1, 2), label="N"), C, H, W))
    return layer, x


@pytest.mark.parametrize("kind", ["conv", "depthwise", "separable"])
@given(data=st.data())
def test_gradcheck(kind, data):
    layer, x = data.draw(layer_and_input(kind))
    note(repr(layer))
    for name in layer.params:                      # nonzero biases so their gradient path is exercised
        layer.params[name] += np.float32(0.1)
    errors = gradcheck(layer, x)
    assert set(errors) == {"x", *layer.params}
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("H, W", [(7, 8), (8, 7), (6, 6), (5, 9)])
def test_same_padding_stride2_is_asymmetric(H, W):
    """TF 'same' with stride 2 on an even size pads (0, 1): the extra zero goes bottom/right."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, H, W))
    same = Conv2D(3, 4, 3, stride=2, padding="same", seed=0).astype(np.float64)
    y = same.forward(x)
    assert y.shape == (2, 4, -(-H // 2), -(-W // 2))
    pads = tuple((t // 2, t - t // 2) for t in (max((-(-s // 2) - 1) * 2 + 3 - s, 0) for s in (H, W)))
    explicit = Conv2D(3, 4, 3, stride=2, padding=(*pads[0], *pads[1]), seed=0).astype(np.float64)
    np.testing.assert_array_equal(y, explicit.forward(x))
    if H % 2 == 0 and W % 2 == 0:
        assert pads == ((0, 1), (0, 1))
    ref = conv2d_forward_reference(np.pad(x, ((0, 0), (0, 0), pads[0], pads[1])), same.params["W"],
                                   same.params["b"], stride=2)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_same_padding_stride1_keeps_size_for_even_kernel():
    layer = Conv2D(2, 3, (2, 4), padding="same", seed=0)
    assert layer.forward(np.zeros((1, 2, 5, 6), np.float32)).shape == (1, 3, 5, 6)
    assert layer.output_shape((None, 2, 5, 6)) == (None, 3, 5, 6)


@pytest.mark.parametrize("layer", [Conv2D(3, 8, 3, seed=0), DepthwiseConv2D(3, 3, seed=0),
                                   SeparableConv2D(3, 8, 3, seed=0)], ids=repr)
def test_errors_name_the_layer(layer):
    name = type(layer).__name__
    with pytest.raises(ValueError, match=name):
        layer.forward(np.zeros((3, 8, 8), np.float32))             # missing batch axis
    with pytest.raises(ValueError, match=rf"{name}.*channel.*\(1, 4, 8, 8\)"):
        layer.forward(np.zeros((1, 4, 8, 8), np.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.zeros((1, 8, 6, 6), np.float32))
    y = layer.forward(np.zeros((1, 3, 8, 8), np.float32))
    layer.backward(np.zeros_like(y))
    with pytest.raises(RuntimeError):                              # the cache was freed
        layer.backward(np.zeros_like(y))


@pytest.mark.parametrize("make", [lambda: Conv2D(3, 4, 3, padding=1, seed=1),
                                  lambda: DepthwiseConv2D(3, 3, padding=1, depth_multiplier=2, seed=1),
                                  lambda: SeparableConv2D(3, 4, 3, padding=1, seed=1)])
def test_layer_contract(make):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    x_before = x.copy()
    layer = make()
    y = layer.forward(x, training=True)
    assert y.dtype == np.float32
    assert (None, *y.shape[1:]) == layer.output_shape((None, 3, 6, 5))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dy_before = dy.copy()
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dy, dy_before)                     # dy not mutated
    np.testing.assert_array_equal(x, x_before)
    assert dx.shape == x.shape and dx.dtype == np.float32
    assert set(layer.grads) == set(layer.params)
    for name in layer.params:
        assert layer.grads[name].shape == layer.params[name].shape
        assert layer.grads[name].dtype == layer.params[name].dtype
        assert np.any(layer.grads[name] != 0)

    frozen = make().freeze()                                         # no grads, still dx
    frozen.forward(x)
    dx_frozen = frozen.backward(dy)
    assert frozen.grads == {}
    np.testing.assert_allclose(dx_frozen, dx, rtol=1e-6, atol=1e-6)

    no_dx = make()
    no_dx.forward(x)
    assert no_dx.backward(dy, need_dx=False) is None
    for name in layer.params:
        np.testing.assert_allclose(no_dx.grads[name], layer.grads[name], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer", [
    Conv2D(3, 64, 7, stride=2, padding=3, bias=False, seed=0),
    Conv2D(4, 6, (1, 7), padding=(0, 0, 3, 3), groups=2, dilation=(1, 2), init="glorot", seed=3),
    DepthwiseConv2D(5, 3, stride=2, padding="same", depth_multiplier=2, seed=4),
    SeparableConv2D(3, 7, (3, 1), padding="valid", depth_multiplier=3, bias=False, seed=5),
], ids=repr)
def test_config_round_trip(layer):
    cfg = json.loads(json.dumps(layer.get_config()))                  # JSON-able
    rebuilt = type(layer).from_config(cfg)
    assert repr(rebuilt) == repr(layer)
    assert set(rebuilt.params) == set(layer.params)
    for name in layer.params:
        np.testing.assert_array_equal(rebuilt.params[name], layer.params[name])
    x = np.random.default_rng(0).standard_normal((1, layer.in_channels, 9, 9)).astype(np.float32)
    np.testing.assert_array_equal(rebuilt.forward(x), layer.forward(x))


def test_shapes_init_and_repr():
    conv = Conv2D(3, 64, 7, stride=2, padding=3, bias=False, seed=0)
    assert repr(conv) == "Conv2D(3->64, k=7, s=2, p=3, bias=False)"
    assert conv.params["W"].shape == (64, 3, 7, 7) and conv.params["W"].dtype == np.float32
    assert "b" not in conv.params
    assert abs(conv.params["W"].std() - np.sqrt(2 / (3 * 49))) < 0.01   # He normal
    assert conv.output_shape((None, 3, 224, 224)) == (None, 64, 112, 112)
    dw = DepthwiseConv2D(8, 3, depth_multiplier=2, seed=0)
    assert dw.params["W"].shape == (16, 1, 3, 3) and dw.groups == 8
    sep = SeparableConv2D(8, 5, 3, depth_multiplier=2, seed=0)
    assert {k: v.shape for k, v in sep.params.items()} == {
        "depthwise_W": (16, 1, 3, 3), "pointwise_W": (5, 16, 1, 1), "b": (5,)}
    a, b = Conv2D(2, 2, 3, seed=7), Conv2D(2, 2, 3, seed=7)
    np.testing.assert_array_equal(a.params["W"], b.params["W"])       # explicit seeds reproduce


def test_depthwise_channel_order_and_separable_composition():
    """Output channel c*dm + m reads input channel c only; separable = depthwise then 1x1."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 5, 5))
    dw = DepthwiseConv2D(3, 3, depth_multiplier=2, bias=False, seed=0).astype(np.float64)
    x_one = np.zeros_like(x)
    x_one[:, 1] = x[:, 1]
    y = dw.forward(x_one)
    assert np.all(y[:, [0, 1, 4, 5]] == 0) and np.all(y[:, [2, 3]] != 0)
    sep = SeparableConv2D(3, 4, 3, padding=1, depth_multiplier=2, seed=0).astype(np.float64)
    sep.params["b"][:] = [1, 2, 3, 4]
    z = conv2d_forward_reference(x, sep.params["depthwise_W"], None, padding=1, groups=3)
    want = conv2d_forward_reference(z, sep.params["pointwise_W"], sep.params["b"])
    np.testing.assert_allclose(sep.forward(x), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kwargs", [dict(groups=2), dict(padding="full"), dict(padding=(1, 2, 3)),
                                    dict(padding=-1), dict(stride=0), dict(init="zeros")])
def test_bad_constructor_arguments(kwargs):
    with pytest.raises(ValueError):
        Conv2D(3, 4, 3, **kwargs)
