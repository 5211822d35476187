"""Every conv method equals the plain-loop reference on generated geometries, chosen explicitly.

Geometries are built to be valid by construction: draw kernel, stride, dilation, padding and groups,
then derive the smallest input that gives at least one output row/column and add a little. A
method that only applies to some geometries (``direct``: one input channel per group;
``pointwise``: 1x1, stride 1, no padding, groups 1 forward; ``tiled``: stride 1, groups 1, at least 8
output columns) gets geometries of that kind.
"""

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from minicnn.errors import UsageError
from minicnn.kernels import conv_im2col, conv_tiled
from minicnn.kernels.conv import (CONV_METHODS, conv2d_backward, conv2d_backward_reference, conv2d_forward,
                                  conv2d_forward_reference, conv_geometry, conv_method)

TOL = {np.float32: 1e-4, np.float64: 1e-10}
FAST_METHODS = [m for m in CONV_METHODS if m != "reference"]   # auto, im2col, banded, pointwise, direct, tiled


def rel_err(a, b):
    return float(np.max(np.abs(a - b), initial=0.0) / max(np.max(np.abs(b), initial=0.0), 1e-30))


@st.composite
def geometries(draw, method="auto", backward=False):
    """A valid geometry; of the kind ``method`` needs (``backward``: pointwise may have groups)."""
    pointwise, tiled = method == "pointwise", method == "tiled"
    KH, KW = (1, 1) if pointwise else (draw(st.integers(1, 4), label="KH"), draw(st.integers(1, 4), label="KW"))
    stride = (1, 1) if pointwise or tiled else (draw(st.integers(1, 3), label="sh"), draw(st.integers(1, 3), label="sw"))
    dilation = (draw(st.integers(1, 2), label="dh"), draw(st.integers(1, 2), label="dw"))
    # tiled backward: dx is a forward conv of dy padded by the dilated kernel extent minus the padding
    most = ((2, 2, 2, 2) if not (tiled and backward) else
            tuple(min(2, d * (k - 1)) for d, k in ((dilation[0], KH),) * 2 + ((dilation[1], KW),) * 2))
    padding = (0, 0, 0, 0) if pointwise else tuple(draw(st.integers(0, m), label=name)
                                                    for m, name in zip(most, ("top", "bottom", "left", "right")))
    G = 1 if (pointwise and not backward) or tiled else draw(st.integers(1, 3), label="groups")
    dw_mode = True if method == "direct" else False if tiled else draw(st.booleans(), label="depthwise")
    if dw_mode:                                       # one input channel per group (direct kernel)
        Cg, Fg = 1, draw(st.integers(1, 3), label="depth multiplier")
    else:
        Cg, Fg = draw(st.integers(1, 3), label="Cg"), draw(st.integers(1, 3), label="Fg")
    # the smallest padded extent that holds one dilated kernel window, then a few more rows/cols
    H = max(1, dilation[0] * (KH - 1) + 1 - padding[0] - padding[1]) + draw(st.integers(0, 4), label="extra H")
    W = max(1, dilation[1] * (KW - 1) + 1 - padding[2] - padding[3]) + draw(st.integers(0, 4), label="extra W")
    W += 8 * tiled                                    # tiled: at least 8 output positions per sample
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


@pytest.mark.parametrize("method", FAST_METHODS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data(), seed=st.integers(0, 2**16), use_bias=st.booleans())
def test_forward_matches_reference(method, dtype, data, seed, use_bias):
    g = data.draw(geometries(method))
    note(g)
    x, W, b = make(g, dtype, seed)
    b = b if use_bias else None
    if method == "tiled" and dtype == np.float64:
        with pytest.raises(UsageError, match="'tiled' needs float32"):
            conv2d_forward(x, W, b, **conv_args(g), method=method)
        return
    y = conv2d_forward(x, W, b, **conv_args(g), method=method)
    y_ref = conv2d_forward_reference(x, W, b, **conv_args(g))
    assert np.array_equal(conv2d_forward(x, W, b, **conv_args(g), method="reference"), y_ref)
    assert y.dtype == dtype and y.shape == y_ref.shape
    assert rel_err(y, y_ref) < TOL[dtype]


@pytest.mark.parametrize("method", FAST_METHODS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_backward_matches_reference(method, dtype, data, seed):
    g = data.draw(geometries(method, backward=True))
    note(g)
    x, W, _ = make(g, dtype, seed)
    y = conv2d_forward_reference(x, W, None, **conv_args(g))
    dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(dtype)
    dy_before = dy.copy()
    if method == "tiled" and dtype == np.float64:
        with pytest.raises(UsageError, match="'tiled' needs float32"):
            conv2d_backward(dy, x, W, **conv_args(g), method=method)
        return
    dx, dW, db = conv2d_backward(dy, x, W, **conv_args(g), method=method)
    dx_ref, dW_ref, db_ref = conv2d_backward_reference(dy, x, W, **conv_args(g))
    np.testing.assert_array_equal(dy, dy_before)
    for name, got, ref in (("dx", dx, dx_ref), ("dW", dW, dW_ref), ("db", db, db_ref)):
        assert got.dtype == dtype and got.shape == ref.shape, name
        assert rel_err(got, ref) < TOL[dtype], (name, rel_err(got, ref))


@pytest.mark.parametrize("method", FAST_METHODS + ["reference"])
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_backward_need_flags(method, data, seed):
    g = data.draw(geometries(method, backward=True))
    x, W, _ = make(g, np.float32 if method == "tiled" else np.float64, seed)    # tiled: float32 only
    dy = np.random.default_rng(seed).standard_normal(conv2d_forward_reference(x, W, None, **conv_args(g)).shape)
    dy = dy.astype(x.dtype)
    full = conv2d_backward(dy, x, W, **conv_args(g), method=method)
    dx, dW, db = conv2d_backward(dy, x, W, **conv_args(g), need_dW=False, method=method)
    assert dW is None and db is None
    np.testing.assert_allclose(dx, full[0], rtol=1e-12, atol=1e-12)
    dx, dW, db = conv2d_backward(dy, x, W, **conv_args(g), need_dx=False, method=method)
    assert dx is None
    np.testing.assert_allclose(dW, full[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, full[2], rtol=1e-12, atol=1e-12)


def test_im2col_chunks_match_reference():
    """1x1 (no im2col), depthwise 1x1, and small column buffers (several chunks, a partial last one)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5, 6))
    for W, kw in ((rng.standard_normal((6, 2, 1, 1)), dict(groups=2)),
                  (rng.standard_normal((8, 1, 1, 1)), dict(groups=4)),             # depthwise 1x1
                  (rng.standard_normal((3, 4, 1, 1)), dict()),
                  (rng.standard_normal((5, 4, 3, 2)), dict(padding=(1, 0, 2, 1), stride=(2, 1)))):
        y_ref = conv2d_forward_reference(x, W, None, **kw)
        dy = rng.standard_normal(y_ref.shape)
        ref = conv2d_backward_reference(dy, x, W, **kw)
        g = conv_geometry(x.shape, W.shape, **kw)
        per_sample = x.shape[1] * W.shape[2] * W.shape[3] * y_ref.shape[2] * y_ref.shape[3] * x.itemsize
        for budget in (conv_im2col.COLS_BYTES, 1, 2 * per_sample):      # 1 chunk; 3 chunks; chunks of 2 + 1
            assert rel_err(conv_im2col.forward(x, W, None, g, cols_bytes=budget), y_ref) < 1e-12
            dx, dW = conv_im2col.backward(dy, x, W, g, True, True, cols_bytes=budget)
            assert rel_err(dx, ref[0]) < 1e-12 and rel_err(dW, ref[1]) < 1e-12


@pytest.mark.parametrize("x_shape, w_shape, kw, forward, backward", [
    ((2, 8, 9, 9), (8, 1, 3, 3), dict(groups=8, padding=1), "direct", "direct"),        # depthwise
    ((2, 8, 9, 9), (8, 1, 1, 1), dict(groups=8), "direct", "direct"),                   # depthwise 1x1
    ((2, 8, 9, 9), (4, 8, 1, 1), dict(), "pointwise", "pointwise"),
    ((2, 8, 9, 9), (4, 4, 1, 1), dict(groups=2), "banded", "pointwise"),                # grouped 1x1
    ((2, 8, 9, 9), (4, 8, 1, 1), dict(stride=2), "banded", "banded"),
    ((2, 8, 9, 9), (4, 8, 3, 3), dict(padding=1), "banded", "banded"),
    ((2, 1, 9, 9), (4, 1, 3, 3), dict(), "banded", "banded"),                           # one channel, groups 1
    ((4, 128, 9, 9), (32, 128, 3, 3), dict(padding=1), "tiled", "tiled"),               # DenseNet's 3x3
    ((2, 128, 9, 9), (32, 128, 3, 3), dict(padding=1), "banded", "banded"),             # 194 < 256 positions
    ((4, 128, 9, 9), (32, 128, 3, 3), dict(padding=3), "tiled", "banded"),              # dx would need pad -1
    ((4, 64, 9, 9), (64, 64, 3, 3), dict(padding=1), "tiled", "tiled"),
    ((4, 32, 9, 9), (64, 32, 3, 3), dict(padding=1), "tiled", "banded"),                # few input channels
    ((4, 128, 9, 9), (16, 128, 3, 3), dict(padding=1), "tiled", "banded"),              # dx taps 16*9 < 288
    ((4, 128, 9, 9), (128, 128, 3, 3), dict(padding=1), "banded", "banded"),            # many filters
    ((4, 128, 9, 9), (32, 128, 3, 3), dict(padding=1, stride=2), "banded", "banded"),
    ((20, 128, 3, 3), (32, 128, 3, 3), dict(padding=1), "tiled", "tiled"),              # 13 wide positions each
    ((100, 128, 2, 2), (32, 128, 3, 3), dict(padding=1), "banded", "banded"),           # 6 wide positions each
])
def test_auto_chooses_as_documented(x_shape, w_shape, kw, forward, backward):
    assert conv_method(x_shape, w_shape, **kw) == forward
    assert conv_method(x_shape, w_shape, **kw, backward=True) == backward


def test_auto_takes_tiled_for_float32_only():
    assert conv_method((4, 128, 9, 9), (32, 128, 3, 3), padding=1) == "tiled"
    assert conv_method((4, 128, 9, 9), (32, 128, 3, 3), padding=1, dtype=np.float64) == "banded"
    assert conv_method((4, 128, 9, 9), (32, 128, 3, 3), padding=1, dtype=np.float64, backward=True) == "banded"


def test_tiled_backward_refuses_a_padding_its_dx_cannot_take():
    x = np.zeros((1, 4, 12, 12), np.float32)
    W = np.zeros((4, 4, 3, 3), np.float32)
    dy = np.zeros_like(conv2d_forward_reference(x, W, None, padding=3))
    assert conv2d_forward(x, W, None, padding=3, method="tiled").shape == dy.shape
    with pytest.raises(UsageError, match="'tiled' needs padding at most"):
        conv2d_backward(dy, x, W, padding=3, method="tiled")
    dx, dW, _ = conv2d_backward(dy, x, W, padding=3)                 # auto: banded
    assert dx.shape == x.shape and dW.shape == W.shape


@pytest.mark.parametrize("N, C, H, W, F, k, padding, dilation", [
    (2, 128, 9, 9, 32, 3, 1, 1),           # DenseNet's 3x3: dx over 4 groups of 32 output channels
    (1, 70, 6, 11, 33, (3, 2), (2, 0, 1, 1), (1, 2)),
    (3, 64, 1, 12, 64, (1, 3), (0, 0, 1, 1), 1),
])
def test_tiled_backward_matches_reference(N, C, H, W, F, k, padding, dilation):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    Wt = rng.standard_normal((F, C) + ((k, k) if isinstance(k, int) else k)).astype(np.float32)
    kw = dict(padding=padding, dilation=dilation)
    dy = rng.standard_normal(conv2d_forward_reference(x, Wt, None, **kw).shape).astype(np.float32)
    ref = conv2d_backward_reference(dy.astype(np.float64), x.astype(np.float64), Wt.astype(np.float64), **kw)
    got = conv2d_backward(dy, x, Wt, **kw, method="tiled")
    for name, a, b in zip(("dx", "dW", "db"), got, ref):
        assert a.dtype == np.float32 and a.shape == b.shape, name
        assert rel_err(a, b) < 1e-5, (name, rel_err(a, b))


@pytest.mark.parametrize("N, C, H, W, F, k, padding, dilation", [
    (2, 128, 7, 7, 32, 3, 1, 1),           # DenseNet's last block: 7 columns, wide rows of 9
    (1, 9, 14, 14, 33, 3, 1, 1),           # F one past a 32-filter group
    (3, 5, 5, 11, 70, 3, (1, 0, 2, 1), (1, 2)),
    (2, 6, 1, 9, 64, 1, 0, 1),             # 1x1 over a 9-wide single row: the overlapping last tile
    (1, 4, 4, 4, 16, (2, 3), 2, 1),        # 16 positions, wide rows of 8
])
def test_tiled_matches_reference_across_tiles_and_filter_groups(N, C, H, W, F, k, padding, dilation):
    rng = np.random.default_rng(0)
    k = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    Wt = rng.standard_normal((F, C, *k)).astype(np.float32)
    b = rng.standard_normal(F).astype(np.float32)
    y = conv2d_forward(x, Wt, b, padding=padding, dilation=dilation, method="tiled")
    y_ref = conv2d_forward_reference(x.astype(np.float64), Wt.astype(np.float64), b.astype(np.float64),
                                     padding=padding, dilation=dilation)
    assert y.dtype == np.float32 and y.shape == y_ref.shape
    assert rel_err(y, y_ref) < 1e-5
    # the same call again and a call with a changed weight: nothing is cached between calls
    assert np.array_equal(conv2d_forward(x, Wt, b, padding=padding, dilation=dilation, method="tiled"), y)
    Wt[0] += 1.0
    y2 = conv2d_forward(x, Wt, b, padding=padding, dilation=dilation, method="tiled")
    assert rel_err(y2, conv2d_forward_reference(x, Wt, b, padding=padding, dilation=dilation)) < 1e-5


def test_tiled_kernel_file_is_its_generator_output():
    with open(conv_tiled.GENERATED) as fh:
        assert fh.read() == conv_tiled.kernel_source(), \
            "regenerate minicnn/kernels/_conv_tiled_kernel.py with: python -m minicnn.kernels.conv_tiled"


@pytest.mark.parametrize("w_shape, kw, match", [
    ((4, 2, 3, 3), dict(groups=2), "groups=1"),
    ((4, 4, 3, 3), dict(stride=2), "stride 1"),
    ((4, 4, 3, 3), dict(), "at least 8 output positions"),
])
def test_tiled_refuses_geometries_it_does_not_cover(w_shape, kw, match):
    with pytest.raises(UsageError, match=match):
        conv2d_forward(np.zeros((1, 4, 4, 4), np.float32), np.zeros(w_shape, np.float32), None, method="tiled", **kw)


@pytest.mark.parametrize("w_shape, kw, method, match", [
    ((4, 2, 3, 3), dict(groups=2), "direct", "one input channel per group"),
    ((4, 4, 3, 3), dict(), "pointwise", "1x1"),
    ((4, 4, 1, 1), dict(padding=1), "pointwise", "1x1"),
    ((4, 4, 1, 1), dict(), "winograd", "unknown conv method"),
])
def test_methods_refuse_geometries_they_do_not_cover(w_shape, kw, method, match):
    x = np.zeros((1, 4, 5, 5))
    W = np.zeros(w_shape)
    with pytest.raises(ValueError, match=match):
        conv2d_forward(x, W, None, method=method, **kw)
    y = conv2d_forward_reference(x, W, None, **kw)
    with pytest.raises(ValueError, match=match):
        conv2d_backward(np.zeros_like(y), x, W, method=method, **kw)


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
