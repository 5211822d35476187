"""Array layout transforms between frameworks and minicnn, each defined once.

minicnn stores images NCHW, conv weights OIHW ``(F, C/G, KH, KW)`` and Dense weights ``(in, out)``;
``Flatten`` lists a ``(C, H, W)`` map channel-major.

===============================  =======================  ==============================  ==========================
file                             file layout              minicnn layout                  function
===============================  =======================  ==============================  ==========================
Keras Conv2D ``kernel``          HWIO (KH, KW, C, F)      OIHW (F, C, KH, KW)             :func:`hwio_to_oihw`
Keras DepthwiseConv2D kernel     (KH, KW, C, M)           (C*M, 1, KH, KW), out c*M + m   :func:`depthwise_to_oihw`
torch Linear ``weight``          (out, in)                Dense ``W`` (in, out)           :func:`linear_to_dense`
Keras Dense after ``Flatten``    rows in NHWC order       rows in NCHW order              :func:`nhwc_flatten_rows_to_nchw`
torch Conv2d, Keras Dense        OIHW, (in, out)          the same                        --
===============================  =======================  ==============================  ==========================

Every function returns a new C-contiguous float32 array (the file's array is never modified).
"""
from __future__ import annotations

import numpy as np


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def hwio_to_oihw(kernel) -> np.ndarray:
    """Keras conv kernel ``(KH, KW, C, F)`` -> minicnn ``(F, C, KH, KW)`` (also separable pointwise kernels)."""
    return _f32(np.asarray(kernel).transpose(3, 2, 0, 1))


def oihw_shape_to_hwio(shape) -> tuple:
    """The shape a Keras file stores for a minicnn conv weight of ``shape`` ``(F, C, KH, KW)``."""
    F, C, KH, KW = shape
    return (KH, KW, C, F)


def depthwise_to_oihw(kernel) -> np.ndarray:
    """Keras depthwise kernel ``(KH, KW, C, M)`` -> ``(C*M, 1, KH, KW)``, output channel ``c*M + m`` (Keras' order)."""
    kh, kw, C, m = np.shape(kernel)
    return _f32(np.asarray(kernel).transpose(2, 3, 0, 1).reshape(C * m, 1, kh, kw))


def linear_to_dense(weight) -> np.ndarray:
    """torch ``Linear.weight`` ``(out, in)`` -> minicnn ``Dense.W`` ``(in, out)``."""
    return _f32(np.asarray(weight).T)


def nhwc_flatten_rows_to_nchw(kernel, chw) -> np.ndarray:
    """Permute the rows of a Dense kernel that reads a flattened ``(C, H, W)`` map from NHWC to NCHW order.

    Keras flattens ``(H, W, C)`` with C fastest: row ``(h * W + w) * C + c``; minicnn flattens
    ``(C, H, W)``: row ``c * H * W + h * W + w``. ``kernel``: ``(C*H*W, units)``.
    """
    C, H, W = chw
    kernel = np.asarray(kernel)
    units = kernel.shape[-1]
    return _f32(kernel.reshape(H, W, C, units).transpose(2, 0, 1, 3).reshape(C * H * W, units))
