"""The fast conv kernels equal the plain-loop references on generated geometries.

Geometries are built to be valid by construction: draw kernel, stride, dilation, padding and groups,
then derive the smallest input that gives at least one output row/column and add a little.
"""
import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from minicnn.kernels.conv import (conv2d_backward, conv2d_backward_reference, conv2d_forward,
                                  conv2d_forward_reference)

TOL = {np.float32: 1e-4, np.float64: 1e-10}


def rel_err(a, b):
    return float(np.max(np.abs(a - b), initial=0.0) / max(np.max(np.abs(b), initial=0.0), 1e-30))


@st.composite
def geometries(draw, depthwise=None):
    KH, KW = draw(st.integers(1, 4), label="KH"), draw(st.integers(1, 4), label="KW")
    stride = (draw(st.integers(1, 3), label="sh"), draw(st.integers(1, 3), label="sw"))
    dilation = (draw(st.integers(1, 2), label="dh"), draw(st.integers(1, 2), label="dw"))
    padding = tuple(draw(st.integers(0, 2), label=name) for name in ("top", "bottom", "left", "right"))
    G = draw(st.integers(1, 3), label="groups")
    dw_mode = draw(st.booleans(), label="depthwise") if depthwise is None else depthwise
    if dw_mode:                                       # one input channel per group (direct kernel)
        Cg, Fg = 1, draw(st.integers(1, 3), label="depth multiplier")
    else:
        Cg, Fg = draw(st.integers(1, 3), label="Cg"), draw(st.integers(1, 3), label="Fg")
    # the smallest padded extent that holds one dilated kernel window, then a few more rows/cols
    H = max(1, dilation[0] * (KH - 1) + 1 - padding[0] - padding[1]) + draw(st.integers(0, 4), label="extra H")
    W = max(1, dilation[1] * (KW - 1) + 1 - padding[2] - padding[3]) + draw(st.integers(0, 4), label="extra W")
    N = draw(st.integers(1, 2), label="N")
    return dict(N=N, C=Cg * G, H=H, W=W, F=Fg * G, KH=KH, KW=KW, stride=stride, padding=padding,
                dilation=dilation, groups=G)


def make(g, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((g["N"], g["C"], g["H"], g["W"])).astype(dtype)
    W = rng.standard_normal((g["F"], g["C"] // g["groups"], g["KH"], g["KW"])).astype(dtype)
    b = rng.standard_normal(g["F"]).astype(dtype)
    return x, W, b


def conv_args(g):
    return dict(stride=g["stride"], padding=g["padding"], dilation=g["dilation"], groups=g["groups"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(g=geometries(), seed=st.integers(0, 2**16), use_bias=st.booleans())
def test_forward_matches_reference(dtype, g, seed, use_bias):
    note(g)
    x, W, b = make(g, dtype, seed)
    b = b if use_bias else None
    y = conv2d_forward(x, W, b, **conv_args(g))
    y_ref = conv2d_forward_reference(x, W, b, **conv_args(g))
    assert y.dtype == dtype and y.shape == y_ref.shape
    assert rel_err(y, y_ref) < TOL[dtype]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(g=geometries(), seed=st.integers(0, 2**16))
def test_backward_matches_reference(dtype, g, seed):
    note(g)
    x, W, _ = make(g, dtype, seed)
    y = conv2d_forward_reference(x, W, None, **conv_args(g))
    dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(dtype)
    dy_before = dy.copy()
    dx, dW, db = conv2d_backward(dy, x, W, **conv_args(g))
    dx_ref, dW_ref, db_ref = conv2d_backward_reference(dy, x, W, **conv_args(g))
    np.testing.assert_array_equal(dy, dy_before)
    for name, got, ref in (("dx", dx, dx_ref), ("dW", dW, dW_ref), ("db", db, db_ref)):
        assert got.dtype == dtype and got.shape == ref.shape, name
        assert rel_err(got, ref) < TOL[dtype], (name, rel_err(got, ref))


@given(g=geometries(), seed=st.integers(0, 2**16))
def test_backward_need_flags(g, seed):
    x, W, _ = make(g, np.float64, seed)
    dy = np.random.default_rng(seed).standard_normal(conv2d_forward(x, W, None, **conv_args(g)).shape)
    full = conv2d_backward(dy, x, W, **conv_args(g))
    dx, dW, db = conv2d_backward(dy, x, W, **conv_args(g), need_dW=False)
    assert dW is None and db is None
    np.testing.assert_allclose(dx, full[0], rtol=1e-12, atol=1e-12)
    dx, dW, db = conv2d_backward(dy, x, W, **conv_args(g), need_dx=False)
    assert dx is None
    np.testing.assert_allclose(dW, full[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, full[2], rtol=1e-12, atol=1e-12)


def test_pointwise_and_chunked_paths_match_reference(monkeypatch):
    """1x1 (no im2col), depthwise 1x1, and small column buffers (several chunks, a partial last one)."""
    import minicnn.kernels.conv as conv
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5, 6))
    for W, kw in ((rng.standard_normal((6, 2, 1, 1)), dict(groups=2)),
                  (rng.standard_normal((8, 1, 1, 1)), dict(groups=4)),             # depthwise 1x1
                  (rng.standard_normal((3, 4, 1, 1)), dict()),
                  (rng.standard_normal((5, 4, 3, 2)), dict(padding=(1, 0, 2, 1), stride=(2, 1)))):
        y_ref = conv2d_forward_reference(x, W, None, **kw)
        dy = rng.standard_normal(y_ref.shape)
        ref = conv2d_backward_reference(dy, x, W, **kw)
        per_sample = x.shape[1] * W.shape[2] * W.shape[3] * y_ref.shape[2] * y_ref.shape[3] * x.itemsize
        for budget in (conv._COLS_BYTES, 1, 2 * per_sample):       # 1 chunk; 3 chunks; chunks of 2 + 1
            monkeypatch.setattr(conv, "_COLS_BYTES", budget)
            assert rel_err(conv2d_forward(x, W, None, **kw), y_ref) < 1e-12
            for got, want in zip(conv2d_backward(dy, x, W, **kw), ref):
                assert rel_err(got, want) < 1e-12


def test_float32_stays_float32_with_float64_weights():
    x = np.ones((1, 2, 4, 4), np.float32)
    W = np.ones((3, 2, 3, 3), np.float64)
    y = conv2d_forward(x, W, np.zeros(3), padding=1)
    assert y.dtype == np.float32
    assert y[0, 0, 1, 1] == 18.0 and y[0, 0, 0, 0] == 8.0       # interior 2*9, corner 2*4


@pytest.mark.parametrize("kwargs, match", [
    (dict(groups=3), "groups"),
    (dict(padding=(1, 2, 3)), "padding"),
    (dict(stride=0), "stride"),
])
def test_bad_arguments_raise(kwargs, match):
    x = np.zeros((1, 4, 5, 5))
    W = np.zeros((4, 4, 3, 3))
    with pytest.raises(ValueError, match=match):
        conv2d_forward(x, W, None, **kwargs)


def test_empty_output_raises():
    with pytest.raises(ValueError, match="empty"):
        conv2d_forward(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 3, 3)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(g=geometries(), seed=st.integers(0, 2**16))
def test_fallback_path_without_blas_control_matches_reference(dtype, g, seed):
    """The im2col + threaded-BLAS path (used when BLAS threads cannot be limited) stays correct too."""
    import minicnn.kernels.conv as conv
    original = conv._blas_single_thread
    conv._blas_single_thread = lambda: None
    try:
        x, W, b = make(g, dtype, seed)
        y = conv2d_forward(x, W, b, **conv_args(g))
        assert rel_err(y, conv2d_forward_reference(x, W, b, **conv_args(g))) < TOL[dtype]
        dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(dtype)
        got = conv2d_backward(dy, x, W, **conv_args(g))
        ref = conv2d_backward_reference(dy, x, W, **conv_args(g))
        for name, a, r in zip(("dx", "dW", "db"), got, ref):
            assert rel_err(a, r) < TOL[dtype], name
    finally:
        conv._blas_single_thread = original
