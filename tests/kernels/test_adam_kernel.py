"""The parallel Adam update equals its NumPy reference bit for bit (same roundings, no contraction)."""
import numpy as np
import pytest

from minicnn.kernels.adam import adam_update, adam_update_reference


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (7, 3), (64, 32, 3, 3), (100_003,)])
def test_kernel_equals_reference_over_steps(dtype, shape):
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(shape).astype(dtype)
    a = [p0.copy(), np.zeros_like(p0), np.zeros_like(p0)]
    b = [p0.copy(), np.zeros_like(p0), np.zeros_like(p0)]
    b1, b2 = 0.9, 0.999
    for t in range(1, 4):
        g = (rng.standard_normal(shape) * 10.0 ** rng.integers(-6, 3)).astype(dtype)
        args = (3e-3, b1, b2, 1e-8, 1 - b1 ** t, 1 - b2 ** t)
        adam_update(a[0], g, a[1], a[2], *args, method="fast")
        adam_update_reference(b[0], g, b[1], b[2], *args)
        for u, w in zip(a, b):
            assert u.dtype == dtype
            np.testing.assert_array_equal(u, w)
    assert not np.array_equal(a[0], p0)


def test_a_non_contiguous_parameter_takes_the_reference_and_is_updated_in_place():
    base = np.ones((4, 6), np.float32)
    p = base[:, ::2]
    m, v = np.zeros_like(p), np.zeros_like(p)
    adam_update(p, np.ones_like(p), m, v, 0.1, 0.9, 0.999, 1e-8, 0.1, 0.001)
    np.testing.assert_allclose(base[:, ::2], 1 - 0.1, rtol=1e-6)
    np.testing.assert_array_equal(base[:, 1::2], 1)
