"""BLAS thread limits: every loaded BLAS runs one thread inside a model pass, and the user's limits come back."""
import numpy as np
import pytest

import threadpoolctl

from minicnn import Sequential, layers
from minicnn.runtime import blas_single_thread


def blas_threads():
    return [info["num_threads"] for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"]


class Probe(layers.Identity):
    """Records the BLAS thread counts seen while the model runs it."""
    seen = None

    def forward(self, x, training=False):
        Probe.seen = blas_threads()
        return super().forward(x, training)


def test_context_limits_and_restores():
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        assert blas_threads() and all(n == 2 for n in blas_threads())
        with blas_single_thread():
            assert all(n == 1 for n in blas_threads())
            with blas_single_thread():                 # nested: still one, and the outer limit survives
                assert all(n == 1 for n in blas_threads())
            assert all(n == 1 for n in blas_threads())
        assert all(n == 2 for n in blas_threads())


def test_model_predict_runs_blas_single_threaded_and_restores():
    model = Sequential([layers.Dense(4, 3, seed=0), Probe()], input_shape=(4,))
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        y = model.predict(np.ones((2, 4), np.float32))
        assert Probe.seen and all(n == 1 for n in Probe.seen)
        assert all(n == 2 for n in blas_threads())
    assert y.shape == (2, 3)


def test_limits_restored_when_a_layer_raises():
    model = Sequential([layers.Dense(4, 3, seed=0)], input_shape=(4,))
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        assert blas_threads() and all(n == 2 for n in blas_threads())
        with pytest.raises(ValueError):
            model.predict(np.ones((2, 5), np.float32))
        assert all(n == 2 for n in blas_threads())


def test_training_forward_and_backward_hold_blas_at_one_thread_and_restore():
    """Training too: an idle threaded BLAS spinning after its call took the cores the next Numba
    kernels needed (DenseNet121's 3x3 conv backward ran 2x slower), so every pass holds it at one."""
    class BackProbe(Probe):
        back = None

        def backward(self, dy, need_dx=True):
            BackProbe.back = blas_threads()
            return super().backward(dy, need_dx)

    model = Sequential([layers.Dense(4, 3, seed=0), BackProbe()], input_shape=(4,))
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        z = model.forward(np.ones((2, 4), np.float32), training=True)
        assert Probe.seen and all(n == 1 for n in Probe.seen)
        assert all(n == 2 for n in blas_threads())
        model.backward(np.ones_like(z))
        assert BackProbe.back and all(n == 1 for n in BackProbe.back)
        assert all(n == 2 for n in blas_threads())
