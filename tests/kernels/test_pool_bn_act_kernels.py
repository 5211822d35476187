"""Fast Numba kernels == their plain-loop references (pooling, batch-norm, ReLU), plus kernel edge cases.

Each fast-vs-reference test runs the fast kernel by ``method="auto"`` and ``method="fast"`` and
the reference both directly and as ``method="reference"``.

Geometries are valid by construction: draw the window, stride and padding (each pad smaller than
the window), then derive the smallest input that gives the drawn output size, plus some slack.
"""
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minicnn.kernels import activation as A
from minicnn.kernels import batchnorm as B
from minicnn.kernels import pool as P

TOL = {np.float32: 1e-4, np.float64: 1e-10}
dtypes = st.sampled_from([np.float32, np.float64])
FAST = pytest.mark.parametrize("method", ["auto", "fast"])


def rel_err(a, b, scale=0.0):
    """Max abs difference over the larger of ``max|b|`` and ``scale``.

    ``scale`` is the size of the terms a result is computed from, when they can cancel: with two
    values per channel the batch-norm input gradient is ``(dy1 - dy2)/2 * eps/(var + eps)``, a
    difference of terms of size ``|gamma| inv_std |dy|`` that is far smaller than they are, so
    rounding is only small relative to the terms (standard forward error bound), not to the result.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b), initial=0.0) / max(np.max(np.abs(b), initial=0.0), scale, 1e-12)


def assert_close(fast, ref, dtype, what, scale=0.0):
    assert fast.dtype == ref.dtype == dtype, f"{what}: dtypes {fast.dtype}, {ref.dtype}, want {dtype}"
    assert fast.shape == ref.shape, f"{what}: shapes {fast.shape} vs {ref.shape}"
    err = rel_err(fast, ref, scale)
    assert err < TOL[dtype], f"{what}: rel err {err:.3g}"


@st.composite
def pool_geometry(draw):
    kh, kw = draw(st.integers(1, 4), label="kh"), draw(st.integers(1, 4), label="kw")
    sh, sw = draw(st.integers(1, 3), label="sh"), draw(st.integers(1, 3), label="sw")
    top, bottom = draw(st.integers(0, kh - 1)), draw(st.integers(0, kh - 1))
    left, right = draw(st.integers(0, kw - 1)), draw(st.integers(0, kw - 1))
    oh, ow = draw(st.integers(1, 4), label="oh"), draw(st.integers(1, 4), label="ow")
    H = max((oh - 1) * sh + kh - top - bottom, 1) + draw(st.integers(0, sh - 1))
    W = max((ow - 1) * sw + kw - left - right, 1) + draw(st.integers(0, sw - 1))
    n, c = draw(st.integers(1, 2), label="n"), draw(st.integers(1, 3), label="c")
    return (n, c, H, W), (kh, kw), (sh, sw), (top, bottom, left, right)


@FAST
@given(geom=pool_geometry(), dtype=dtypes, seed=st.integers(0, 2**16), ties=st.booleans())
def test_max_pool_fast_equals_reference(method, geom, dtype, seed, ties):
    shape, k, s, pad = geom
    rng = np.random.default_rng(seed)
    # with ties=True values come from {0, 1, 2}: many equal maxima, so the tie rule is exercised
    x = (rng.integers(0, 3, shape) if ties else rng.standard_normal(shape)).astype(dtype)
    y, idx = P.max_pool2d_forward(x, k, s, pad, method=method)
    y_ref, idx_ref = P.max_pool2d_forward_reference(x, k, s, pad)
    assert all(np.array_equal(a, b) for a, b in zip(P.max_pool2d_forward(x, k, s, pad, method="reference"),
                                                    (y_ref, idx_ref)))
    assert np.array_equal(idx, idx_ref), "argmax (tie rule) differs"
    assert_close(y, y_ref, dtype, "max forward")
    assert np.array_equal(P.max_pool2d_values(x, k, s, pad, method=method), y_ref), "inference max pool differs"
    assert np.array_equal(P.max_pool2d_values(x, k, s, pad, method="reference"), y_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx_ref = P.max_pool2d_backward_reference(dy, idx_ref, shape)
    assert_close(P.max_pool2d_backward(dy, idx, shape, method=method), dx_ref, dtype, "max backward")
    assert np.array_equal(P.max_pool2d_backward(dy, idx, shape, method="reference"), dx_ref)


@FAST
@given(geom=pool_geometry(), dtype=dtypes, seed=st.integers(0, 2**16), cip=st.booleans())
def test_avg_pool_fast_equals_reference(method, geom, dtype, seed, cip):
    shape, k, s, pad = geom
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    y = P.avg_pool2d_forward(x, k, s, pad, cip, method=method)
    y_ref = P.avg_pool2d_forward_reference(x, k, s, pad, cip)
    assert_close(y, y_ref, dtype, "avg forward")
    assert np.array_equal(P.avg_pool2d_forward(x, k, s, pad, cip, method="reference"), y_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx_ref = P.avg_pool2d_backward_reference(dy, shape, k, s, pad, cip)
    assert_close(P.avg_pool2d_backward(dy, shape, k, s, pad, cip, method=method), dx_ref, dtype, "avg backward")
    assert np.array_equal(P.avg_pool2d_backward(dy, shape, k, s, pad, cip, method="reference"), dx_ref)


@FAST
@given(n=st.integers(1, 2), c=st.integers(1, 3), H=st.integers(1, 9), W=st.integers(1, 9),
       oh=st.integers(1, 5), ow=st.integers(1, 5), dtype=dtypes, seed=st.integers(0, 2**16))
def test_adaptive_avg_fast_equals_reference(method, n, c, H, W, oh, ow, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, H, W)).astype(dtype)
    y = P.adaptive_avg_pool2d_forward(x, (oh, ow), method=method)
    y_ref = P.adaptive_avg_pool2d_forward_reference(x, (oh, ow))
    assert_close(y, y_ref, dtype, "adaptive forward")
    assert np.array_equal(P.adaptive_avg_pool2d_forward(x, (oh, ow), method="reference"), y_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx_ref = P.adaptive_avg_pool2d_backward_reference(dy, x.shape)
    assert_close(P.adaptive_avg_pool2d_backward(dy, x.shape, method=method), dx_ref, dtype, "adaptive backward")
    assert np.array_equal(P.adaptive_avg_pool2d_backward(dy, x.shape, method="reference"), dx_ref)


@FAST
@given(n=st.integers(1, 3), c=st.integers(1, 4), H=st.integers(1, 6), W=st.integers(1, 7),
       dtype=dtypes, seed=st.integers(0, 2**16), affine=st.booleans())
def test_batchnorm_fast_equals_reference(method, n, c, H, W, dtype, seed, affine):
    if n * H * W < 2:
        H = 2  # training needs more than one value per channel
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, c, H, W)) * 3 + 5).astype(dtype)
    gamma = rng.standard_normal(c).astype(dtype) if affine else None
    beta = rng.standard_normal(c).astype(dtype) if affine else None
    eps = 1.001e-5
    fast = B.batchnorm2d_forward_train(x, gamma, beta, eps, method=method)
    ref = B.batchnorm2d_forward_train_reference(x, gamma, beta, eps)
    for name, f, r, r2 in zip(("y", "mean", "inv_std", "unbiased_var"), fast, ref,
                              B.batchnorm2d_forward_train(x, gamma, beta, eps, method="reference")):
        assert_close(f, r, dtype, f"bn train forward {name}")
        assert np.array_equal(r2, r)
    dy = rng.standard_normal(x.shape).astype(dtype)
    _, mean, inv_std, _ = ref
    g = np.abs(gamma) if affine else np.ones(c)
    dx_terms = float(np.max(g * inv_std) * np.max(np.abs(dy)))   # the size of what dx cancels
    for name, f, r, r2 in zip(("dx", "dgamma", "dbeta"),
                              B.batchnorm2d_backward_train(dy, x, gamma, mean, inv_std, method=method),
                              B.batchnorm2d_backward_train_reference(dy, x, gamma, mean, inv_std),
                              B.batchnorm2d_backward_train(dy, x, gamma, mean, inv_std, method="reference")):
        assert_close(f, r, dtype, f"bn train backward {name}", scale=dx_terms if name == "dx" else 0.0)
        assert np.array_equal(r2, r)
    rm, rv = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    y_eval = B.batchnorm2d_forward_eval_reference(x, gamma, beta, rm, rv, eps)
    assert_close(B.batchnorm2d_forward_eval(x, gamma, beta, rm, rv, eps, method=method), y_eval, dtype,
                 "bn eval forward")
    for m in (method, "reference"):
        xc = x.copy()
        assert B.batchnorm2d_forward_eval(xc, gamma, beta, rm, rv, eps, out=xc, method=m) is xc   # in place
        assert_close(xc, y_eval, dtype, f"bn eval forward in place ({m})")
    for name, f, r, r2 in zip(("dx", "dgamma", "dbeta"),
                              B.batchnorm2d_backward_eval(dy, x, gamma, rm, rv, eps, method=method),
                              B.batchnorm2d_backward_eval_reference(dy, x, gamma, rm, rv, eps),
                              B.batchnorm2d_backward_eval(dy, x, gamma, rm, rv, eps, method="reference")):
        assert_close(f, r, dtype, f"bn eval backward {name}")
        assert np.array_equal(r2, r)


def test_batchnorm_statistics_by_hand():
    x = np.arange(2 * 2 * 2 * 3, dtype=np.float64).reshape(2, 2, 2, 3)
    y, mean, inv_std, uvar = B.batchnorm2d_forward_train(x, None, None, 1e-5)
    for c in range(2):
        xc = x[:, c].ravel()
        assert mean[c] == pytest.approx(xc.mean())
        assert uvar[c] == pytest.approx(xc.var(ddof=1))
        assert inv_std[c] == pytest.approx(1 / np.sqrt(xc.var() + 1e-5))
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-4)


def test_batchnorm_float32_large_offset_is_accurate():
    # mean 1000, std 1: a one-pass E[x^2] - E[x]^2 in float32 would lose the variance entirely
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((8, 2, 16, 16)) + 1000).astype(np.float32)
    _, mean, inv_std, uvar = B.batchnorm2d_forward_train(x, None, None, 1e-5)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(uvar, x64.var(axis=(0, 2, 3), ddof=1), rtol=1e-5)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2, 3)), rtol=1e-6)


@pytest.mark.parametrize("first", [1e6, 1e6 + 3000.0, -2e6])
def test_batchnorm_shift_is_a_value_of_the_channel_so_an_outlier_first_value_stays_accurate(first):
    """The one-pass sums are shifted by the channel's first value: make it an outlier. (Unshifted
    float64 sums would lose ~(1e6)^2 * 1e-16 = 1e-4 of the variance here.)"""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 3, 9, 9)) * 4 + 1e6).astype(np.float32)
    x[0, :, 0, 0] = first
    _, mean, inv_std, uvar = B.batchnorm2d_forward_train(x, None, None, 1e-5)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(uvar, x64.var(axis=(0, 2, 3), ddof=1), rtol=1e-6)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2, 3)), rtol=1e-7)


def test_max_pool_tie_rule_first_in_scan_order_and_padding_never_selected():
    x = np.full((1, 1, 2, 2), -5.0)
    y, idx = P.max_pool2d_forward(x, 2, 1, (1, 0, 1, 0))  # windows hang over the top-left padding
    assert np.all(y == -5.0)  # padding (-inf) never wins, even over negative values
    assert idx[0, 0].tolist() == [[0, 0], [0, 0]]  # every window picks its first real cell: (0, 0)
    dx = P.max_pool2d_backward(np.ones_like(y), idx, x.shape)
    assert dx[0, 0].tolist() == [[4.0, 0.0], [0.0, 0.0]]
    x[0, 0, 1, 1] = -4.0  # a strict maximum takes the windows that contain it
    y, idx = P.max_pool2d_forward(x, 2, 1, (1, 0, 1, 0))
    assert y[0, 0].tolist() == [[-5.0, -5.0], [-5.0, -4.0]]
    assert idx[0, 0].tolist() == [[0, 0], [0, 3]]


def test_pool_geometry_errors():
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(ValueError, match="smaller than the window"):
        P.max_pool2d_forward(x, 2, 2, 2)
    with pytest.raises(ValueError, match="does not fit"):
        P.avg_pool2d_forward(x, 5)
    with pytest.raises(ValueError, match="dy.shape"):
        P.max_pool2d_backward(np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 2, 2), np.int32), x.shape)


def test_global_pools_match_full_window_pools():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 4))
    y, idx = P.global_max_pool2d_forward(x)
    y_win, idx_win = P.max_pool2d_forward(x, (5, 4))
    np.testing.assert_array_equal(y, y_win[:, :, 0, 0])
    np.testing.assert_array_equal(idx, idx_win[:, :, 0, 0])
    dy = rng.standard_normal((2, 3))
    np.testing.assert_array_equal(P.global_max_pool2d_backward(dy, idx, x.shape),
                                  P.max_pool2d_backward(dy[:, :, None, None], idx_win, x.shape))
    np.testing.assert_allclose(P.global_avg_pool2d_forward(x), P.avg_pool2d_forward(x, (5, 4))[:, :, 0, 0])
    np.testing.assert_allclose(P.global_avg_pool2d_backward(dy, x.shape),
                               P.avg_pool2d_backward(dy[:, :, None, None], x.shape, (5, 4)))


def test_adaptive_bins_match_torch_rule():
    starts, ends = P.adaptive_bins(10, 4)
    assert starts.tolist() == [0, 2, 5, 7] and ends.tolist() == [3, 5, 8, 10]
    starts, ends = P.adaptive_bins(7, 7)  # VGG16 at 224: the identity
    assert starts.tolist() == list(range(7)) and ends.tolist() == list(range(1, 8))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_softmax_stable_without_warnings(dtype):
    x = np.array([[-1000.0, 0.0, 1000.0]], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = A.sigmoid_forward(x)
        p = A.softmax_forward(x, axis=1)
    assert s.dtype == dtype and p.dtype == dtype
    np.testing.assert_array_equal(s, np.array([[0.0, 0.5, 1.0]], dtype))
    np.testing.assert_allclose(p, [[0.0, 0.0, 1.0]])


def test_dropout_mask_rule_and_backward():
    x = np.ones((1000,), np.float32)
    y, mask = A.dropout_forward(x, 0.25, np.random.default_rng(7))
    np.testing.assert_array_equal(mask, np.random.default_rng(7).random(1000) >= 0.25)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, mask / 0.75, rtol=1e-6)
    dy = np.arange(1000, dtype=np.float32)
    np.testing.assert_allclose(A.dropout_backward(dy, mask, 0.25), dy * mask / 0.75, rtol=1e-6)
    with pytest.raises(ValueError, match="p must be in"):
        A.dropout_forward(x, 1.0, np.random.default_rng(0))


@pytest.mark.parametrize("method", ["auto", "fast", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [7, 3 * A._PARALLEL_MIN + 5])             # auto: NumPy path and Numba path
def test_relu_fast_equals_reference_in_and_out_of_place(method, dtype, size):
    rng = np.random.default_rng(size)
    x = rng.standard_normal(size).astype(dtype)
    x[[1, 3, 5]] = [np.nan, 0.0, -0.0]
    x = x.reshape(1, -1, 1)
    ref = A.relu_forward_reference(x)
    assert np.isnan(ref[0, 1, 0]) and (ref >= 0).sum() == size - 1          # NaN passes through
    y = A.relu_forward(x, method=method)
    assert y.dtype == dtype and np.array_equal(y, ref, equal_nan=True)
    xc = x.copy()
    assert A.relu_forward(xc, out=xc, method=method) is xc and np.array_equal(xc, ref, equal_nan=True)
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx = A.relu_backward(dy, x, method=method)
    assert dx.dtype == dtype and np.array_equal(dx, A.relu_backward_reference(dy, x))
    assert np.array_equal(dx, np.where(x > 0, dy, 0))                       # the kink and NaN get 0


def test_relu_non_contiguous_and_integer_inputs():
    x = np.arange(-50000, 50000, dtype=np.float32).reshape(100, 1000)[:, ::2]
    assert np.array_equal(A.relu_forward(x), np.maximum(x, 0))
    assert np.array_equal(A.relu_forward(np.array([-2, 3])), [0, 3])
    with pytest.raises(ValueError, match="fast ReLU kernel needs"):
        A.relu_forward(np.array([-2, 3]), method="fast")


@pytest.mark.parametrize("call", [
    lambda m: P.max_pool2d_forward(np.zeros((1, 1, 2, 2)), 2, method=m),
    lambda m: B.batchnorm2d_forward_eval(np.zeros((1, 1, 2, 2)), None, None, None, None, 1e-5, method=m),
    lambda m: A.relu_forward(np.zeros(3), method=m),
])
def test_unknown_kernel_method_is_refused(call):
    with pytest.raises(ValueError, match="unknown kernel method 'numpy'"):
        call("numpy")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inference_max_pool_nan_and_infinities_like_the_argmax_kernel(dtype):
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 8)).astype(dtype)
    x[0, 0, 2, 3], x[0, 1, 0, 0], x[1, 2, 4, 4], x[1, 0, :, :] = np.nan, np.inf, -np.inf, -np.inf
    for k, s, pad in [(3, 2, 1), (2, None, 0), ((2, 3), (1, 2), (1, 0, 0, 2))]:
        y, _ = P.max_pool2d_forward(x, k, s, pad)
        assert np.isnan(y).any() and np.isinf(y).any()
        np.testing.assert_array_equal(P.max_pool2d_values(x, k, s, pad), y)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k, s, pad, include", [(3, 1, 1, True), (3, 1, 1, False), (2, 2, 0, True),
                                                (3, 2, (1, 0, 0, 1), False), ((2, 3), (1, 2), (1, 1, 2, 0), True)])
def test_avg_pool_fast_equals_the_reference_to_the_last_bit_in_float32(dtype, k, s, pad, include):
    """Both sum the real cells in float64 (the fast kernel's padding adds zeros): float32 results
    are identical, float64 ones differ only by the order of at most 9 additions."""
    x = (np.random.default_rng(3).standard_normal((2, 3, 9, 10)) * 1e3).astype(dtype)
    fast = P.avg_pool2d_forward(x, k, s, pad, count_include_pad=include)
    ref = P.avg_pool2d_forward_reference(x, k, s, pad, count_include_pad=include)
    assert fast.dtype == ref.dtype == dtype
    if dtype == np.float32:
        np.testing.assert_array_equal(fast, ref)
    else:
        np.testing.assert_allclose(fast, ref, rtol=1e-14, atol=1e-12)
