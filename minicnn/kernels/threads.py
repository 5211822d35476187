"""BLAS thread control: keep all parallelism in Numba's thread pool.

minicnn's kernels run their threads with Numba (``prange``) and call BLAS from inside those
threads, one GEMM per thread; BLAS must then run single-threaded. Two OpenBLAS builds are usually
loaded (NumPy's, used by ``np.matmul`` in Python, and SciPy's, used by ``np.dot`` inside Numba),
each with its own thread pool, and OpenBLAS's idle threads *spin* for a while (about 0.1 s) after
every threaded call. On 2 cores one such call per DenseNet121 pass, the 1x1024 @ 1024x1000 product
of the classifier, left a spinning NumPy BLAS thread that took a core from the next pass's Numba
kernels: 0.142 s per batch-1 pass, 0.117 s with BLAS limited to one thread (measured with perf:
28% of all cycles in OpenBLAS's ``blas_thread_server``).

``blas_single_thread()`` gives a context that limits every loaded BLAS to one thread on entry and
restores the previous limits on exit (``threadpoolctl``); ``None`` when threadpoolctl is missing.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext

_BLAS_LIBS = []


def blas_single_thread():
    """A context limiting BLAS to one thread, or None when threadpoolctl is not importable.

    The BLAS libraries are found once; entering the context then costs a few microseconds (one
    ``set_num_threads`` call per library, none when the limit is already 1), which matters at
    batch 1, where a DenseNet121 makes 120 conv calls.
    """
    if not _BLAS_LIBS:
        try:
            import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's BLAS before looking for it)
            from threadpoolctl import ThreadpoolController
            _BLAS_LIBS.append([c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"])
        except Exception:                                             # noqa: BLE001 - optional speed-up
            _BLAS_LIBS.append(None)
    libs = _BLAS_LIBS[0]
    return None if libs is None else _one_blas_thread(libs)


def blas_single_thread_or_null():
    """``blas_single_thread()``, or a context doing nothing when BLAS threads cannot be limited."""
    return blas_single_thread() or nullcontext()


@contextmanager
def _one_blas_thread(libs):
    """Limit BLAS to one thread on entry (not before), restore the previous limits on exit."""
    before = [lib.num_threads for lib in libs]
    changed = [(lib, n) for lib, n in zip(libs, before) if n != 1]
    for lib, _ in changed:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in changed:
            lib.set_num_threads(n)
