"""minicnn.pretrained.layout: each transform checked against a direct definition of what it must preserve."""
import numpy as np

from minicnn.layers.conv import Conv2D, DepthwiseConv2D
from minicnn.pretrained.layout import (depthwise_to_oihw, hwio_to_oihw, linear_to_dense, nhwc_flatten_rows_to_nchw,
                                       oihw_shape_to_hwio)

RNG = np.random.default_rng(0)


def _keras_conv_nhwc(x_nhwc, k_hwio):
    """A valid stride-1 convolution as Keras computes it: NHWC input, HWIO kernel (direct definition)."""
    kh, kw = k_hwio.shape[:2]
    H, W = x_nhwc.shape[1] - kh + 1, x_nhwc.shape[2] - kw + 1
    patches = np.stack([[x_nhwc[:, a:a + H, b:b + W, :] for b in range(kw)] for a in range(kh)])   # (kh, kw, N, H, W, C)
    return np.einsum("abnijc,abcf->nijf", patches, k_hwio)


def test_hwio_to_oihw_gives_the_same_convolution():
    x = RNG.standard_normal((2, 7, 6, 3)).astype(np.float32)                  # NHWC
    k = RNG.standard_normal((3, 2, 3, 5)).astype(np.float32)                  # HWIO, non-square
    conv = Conv2D(3, 5, (3, 2), bias=False)
    w = hwio_to_oihw(k)
    assert w.shape == (5, 3, 3, 2) == (conv.params["W"].shape) and w.flags.c_contiguous and w.dtype == np.float32
    assert oihw_shape_to_hwio(w.shape) == k.shape
    conv.params["W"] = w
    got = conv.forward(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))         # minicnn, NCHW
    want = _keras_conv_nhwc(x, k).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(w[4, 1, 2, 0], k[2, 0, 1, 4])               # entry by entry: W[f,c,a,b] = K[a,b,c,f]


def test_depthwise_to_oihw_gives_the_same_depthwise_convolution():
    C, M = 3, 2
    x = RNG.standard_normal((2, 6, 5, C)).astype(np.float32)
    k = RNG.standard_normal((3, 3, C, M)).astype(np.float32)                  # Keras (kh, kw, in, multiplier)
    layer = DepthwiseConv2D(C, 3, depth_multiplier=M, bias=False)
    w = depthwise_to_oihw(k)
    assert w.shape == (C * M, 1, 3, 3) == layer.params["W"].shape
    layer.params["W"] = w
    got = layer.forward(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    # Keras: output channel c*M + m is input channel c convolved with k[:, :, c, m]
    want = np.concatenate([_keras_conv_nhwc(x[..., c:c + 1], k[:, :, c:c + 1, m:m + 1])
                           for c in range(C) for m in range(M)], axis=-1).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_linear_to_dense_keeps_the_product():
    x = RNG.standard_normal((4, 6))
    weight = RNG.standard_normal((3, 6))                                      # torch Linear (out, in)
    w = linear_to_dense(weight)
    assert w.shape == (6, 3) and w.dtype == np.float32 and w.flags.c_contiguous
    np.testing.assert_allclose(x @ w, np.einsum("ni,oi->no", x, weight), rtol=1e-5, atol=1e-6)


def test_nhwc_flatten_rows_to_nchw_keeps_the_dense_output():
    C, H, W, units = 4, 3, 2, 5
    fmap = RNG.standard_normal((2, C, H, W)).astype(np.float32)               # NCHW, as minicnn holds it
    kernel = RNG.standard_normal((H * W * C, units)).astype(np.float32)       # rows in Keras' NHWC-flatten order
    keras_out = fmap.transpose(0, 2, 3, 1).reshape(2, -1) @ kernel            # Keras: Flatten over (H, W, C)
    w = nhwc_flatten_rows_to_nchw(kernel, (C, H, W))
    np.testing.assert_allclose(fmap.reshape(2, -1) @ w, keras_out, rtol=1e-5, atol=1e-5)
    c, h, x = 3, 1, 1                                                         # one row by its definition
    np.testing.assert_array_equal(w[c * H * W + h * W + x], kernel[(h * W + x) * C + c])


def test_transforms_do_not_modify_their_input():
    k = RNG.standard_normal((2, 2, 3, 4)).astype(np.float32)
    before = k.copy()
    for f in (hwio_to_oihw, depthwise_to_oihw):
        f(k)[...] = 0
    np.testing.assert_array_equal(k, before)
