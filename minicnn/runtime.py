"""Thread and memory policy for the process: Numba's thread count, BLAS's threads, OpenMP's idle
spin, and whether freed activation memory is kept for reuse.

One place decides how minicnn uses the cores, and nothing happens at import: ``import minicnn``
leaves ``os.environ`` and every thread pool alone. The policy is applied once, by the first of

* ``configure(threads=..., spin=..., reuse_memory=...)``: explicit (the command line calls it with
  ``--threads``);
* ``ensure_configured()``: the cheap guard at the entry of every parallel kernel, which applies
  the defaults if nothing was applied yet (so Python ``predict``/``fit`` run as fast as the CLI).

``settings()`` tells what is in force.

Why these defaults (all measured on 2 cores):

* **Spin.** The parallel kernels run on Numba's OpenMP threading layer. How idle OpenMP threads
  wait decides the speed of small workloads. GNU OpenMP's default lets them spin for 300,000
  iterations (milliseconds) after every parallel region, stealing the cores from anything else
  that runs then (with BLAS threads competing, DenseNet121 once ran 7x slower).
  ``OMP_WAIT_POLICY=PASSIVE`` makes them sleep at once, but then every parallel region starts by
  waking them (tens of microseconds): a batch-1 DenseNet121 pass runs ~360 regions, and spent a
  third of its time waiting (0.130 s passive, 0.080 s with a short spin; batch 8: 0.82 s vs 0.68 s).
  So unless the user has set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``, minicnn gives OpenMP a short
  spin, ``GOMP_SPINCOUNT=10000`` (well under a millisecond). libgomp reads that variable once,
  when it loads, i.e. when Numba starts its threads: minicnn puts it in the environment just for
  that moment and removes it again, so other libraries (and child processes) see the environment
  the user gave. If Numba's threads were started before minicnn applied its policy (by other
  Numba code), the spin OpenMP read then stays, and ``settings().spin_source`` says so.
* **BLAS.** The kernels call BLAS from inside Numba's threads, one GEMM per thread; BLAS must then
  run single-threaded. Two OpenBLAS builds are usually loaded (NumPy's, used by ``np.matmul`` in
  Python, and SciPy's, used by ``np.dot`` inside Numba), each with its own thread pool, and
  OpenBLAS's idle threads spin for a while (about 0.1 s) after every threaded call. On 2 cores
  one such call per DenseNet121 pass, the 1x1024 @ 1024x1000 product of the classifier, left a
  spinning NumPy BLAS thread that took a core from the next pass's Numba kernels: 0.142 s per
  batch-1 pass, 0.117 s with BLAS limited to one thread (perf: 28% of all cycles in OpenBLAS's
  ``blas_thread_server``). ``blas_single_thread()`` is the context that holds every loaded BLAS at
  one thread (the conv kernels and every ``Graph`` pass, forward and backward, use it) and
  restores the limits on exit. In training the same contention cost a DenseNet121 batch-8
  backward 1.47 s against 1.08 s with BLAS held (its 3x3 conv kernels ran 2x slower right after
  a threaded BLAS call of the 1x1 conv backward).
* **Threads.** By default Numba uses all ``NUMBA_NUM_THREADS`` threads and BLAS its own default;
  ``configure(threads=n)`` sets both to ``n`` for the whole process.
* **Memory.** A pass allocates and frees its activations, ~25 MB each for a batch of 8 at 56x56.
  glibc's malloc gives blocks that large back to the operating system when they are freed (it
  maps them on their own, or trims the top of the heap), so the next pass's arrays start as fresh
  pages the kernel must fault in and zero: ResNet50 batch-8 ``predict`` measured 397 ms (median of
  3 processes, 377-444) against 362 (360-362) with freed memory kept, DenseNet121 318 vs 308 ms;
  peak memory 405 vs 400 MB (2026-12-03, 2 cores). So with glibc, unless the environment sets
  ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_`` or a malloc tunable
  in ``GLIBC_TUNABLES``, minicnn calls ``mallopt`` once: blocks below 32 MiB come from the heap
  and up to 1 GiB of free heap is kept (``configure(reuse_memory=False)``: glibc's own policy).
  The process's resident memory then stays near its peak between passes instead of dropping.
  Like the spin, it is chosen once, when the policy is applied.

Parallel kernels share one thread pool per process: call them from one Python thread at a time.

Determinism. By default the kernels split their work by the number of threads: the conv
backward sums its weight gradient in one partial buffer per thread, over bands of output rows
sized to give every thread work. Floating-point addition is not associative, so the same seed
with ``--threads 1`` and ``--threads 2`` gives weights that differ in the last bits (measured:
7e-7 after 8 Adam steps of a small CNN), and the difference grows with training.
``configure(deterministic=True)`` (the command line's ``--deterministic``) makes the kernels plan
their work as if ``DETERMINISTIC_SPLIT`` threads ran, whatever the real count: the same items
and partial sums, added in the same order, so results are bit-identical for any thread count
(``tests/test_determinism.py`` trains with 1 and 2 threads). The cost is some parallelism on
machines with more than ``DETERMINISTIC_SPLIT`` cores. Forward passes (``predict``) split work
by output rows only and are identical for any thread count either way.

Compiled-kernel cache. minicnn's Numba kernels are compiled once and cached on disk. Numba's
default puts the cache files in ``__pycache__`` beside the source, i.e. inside an installed
package: ``pip uninstall`` leaves that folder behind, and a leftover ``minicnn/kernels/`` then
becomes a namespace package that shadows a later editable install. So minicnn's kernels are
decorated with :func:`njit` below, which caches them in a user folder instead:
``$MINICNN_HOME/numba/`` (default ``~/.cache/minicnn/numba/``), one subfolder per source folder
(a hash of its path, Numba's own scheme), so two installs never share entries; a
``NUMBA_CACHE_DIR`` the user set still wins. Only minicnn's own functions use this locator:
``numba.config``, the environment and other libraries' caches are untouched.
"""
from __future__ import annotations

import ctypes
import os
import platform
from contextlib import contextmanager
from dataclasses import dataclass

import numba
from numba.core import caching as _caching
from numba.np.ufunc import parallel as _numba_parallel

from .errors import UsageError

DEFAULT_SPINCOUNT = 10000
MMAP_THRESHOLD = 32 << 20   # mallopt(M_MMAP_THRESHOLD): glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 1 << 30    # mallopt(M_TRIM_THRESHOLD): free heap kept for reuse
_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
DETERMINISTIC_SPLIT = 8   # work items planned for with deterministic=True, whatever the thread count
_AUTO = "auto"


@dataclass(frozen=True)
class Settings:
    """What is in force (``applied=False``: nothing yet; the first kernel call applies the defaults)."""
    applied: bool
    threads: int | None           # Numba threads used by the kernels (None before applied)
    max_threads: int              # numba.config.NUMBA_NUM_THREADS: the pool size, fixed at start
    blas_threads: int | None      # BLAS limit set by configure(threads=...); None: BLAS's default
    threading_layer: str | None   # Numba's threading layer ('omp', 'tbb', 'workqueue'), once started
    spin: int | None              # GOMP_SPINCOUNT minicnn gave OpenMP; None: OpenMP read its own
    spin_source: str              # where the spin setting comes from
    deterministic: bool = False   # work split fixed (DETERMINISTIC_SPLIT), results independent of threads
    reuse_memory: bool = False    # freed memory kept for reuse (glibc mallopt, see "Memory" above)
    memory_source: str = "not applied yet"


_state = {"applied": False, "spin": None, "spin_source": "not applied yet", "blas_threads": None,
          "deterministic": False, "reuse_memory": False, "memory_source": "not applied yet"}


def _resolve_memory(reuse_memory):
    """``(keep freed memory?, source)`` for a ``reuse_memory`` argument of :func:`configure`."""
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    if reuse_memory == _AUTO:
        user = [k for k in _MALLOC_ENV if k in os.environ]
        if "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
            user.append("GLIBC_TUNABLES")
        if user:
            return False, "user environment: " + ", ".join(f"{k}={os.environ[k]}" for k in user)
        if not glibc:
            return False, "not glibc: the C library's own policy"
        return True, "minicnn default"
    if reuse_memory is False:
        return False, "the C library's own policy (configure(reuse_memory=False))"
    if reuse_memory is True:
        if not glibc:
            raise UsageError("reuse_memory=True needs glibc's malloc (Linux); use 'auto' or False here")
        return True, "configure()"
    raise UsageError(f"reuse_memory must be 'auto', True or False, got {reuse_memory!r}")


def _keep_freed_memory() -> None:
    """glibc: serve blocks below MMAP_THRESHOLD from the heap and keep TRIM_THRESHOLD of it free."""
    libc = ctypes.CDLL(None)
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    if not (libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)):
        raise RuntimeError("glibc refused mallopt(M_MMAP_THRESHOLD / M_TRIM_THRESHOLD)")


def _resolve_spin(spin):
    """``(spin count or None, source)`` for a ``spin`` argument of :func:`configure`."""
    if spin == _AUTO:
        user = [k for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if k in os.environ]
        if user:
            return None, "user environment: " + ", ".join(f"{k}={os.environ[k]}" for k in user)
        return DEFAULT_SPINCOUNT, "minicnn default"
    if spin is None:
        return None, "OpenMP's own (configure(spin=None))"
    if isinstance(spin, bool) or not isinstance(spin, int) or spin < 0:
        raise UsageError(f"spin must be 'auto', None or a spin count >= 0, got {spin!r}")
    return int(spin), "configure()"


def configure(threads: int | None = None, spin="auto", deterministic: bool | None = None,
              reuse_memory="auto") -> Settings:
    """Apply the thread policy now and return :func:`settings`.

    threads: Numba threads and BLAS threads for the whole process (capped at
        ``NUMBA_NUM_THREADS``); ``None`` leaves the thread counts as they are.
    spin: how long idle OpenMP threads spin before sleeping (``GOMP_SPINCOUNT``). ``'auto'``:
        10000 unless the environment sets ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` (then those);
        an int: that count; ``None``: OpenMP's own default. OpenMP reads it once, when Numba starts
        its threads, so it can only be chosen before the first kernel call (or first configure):
        a different value later raises ``UsageError``.
    deterministic: True: results independent of the thread count (see "Determinism" above);
        False: work split by the thread count (the default); ``None`` leaves it as it is.
    reuse_memory: keep freed memory for the next pass (see "Memory" above). ``'auto'``: yes with
        glibc unless the environment sets malloc's own variables; True / False: that. Chosen once,
        with the spin: a different explicit value later raises ``UsageError``.
    """
    if deterministic is not None and not isinstance(deterministic, bool):
        raise UsageError(f"deterministic must be True, False or None, got {deterministic!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise UsageError(f"threads must be a positive int or None, got {threads!r}")
    value, source = _resolve_spin(spin)
    keep, keep_source = _resolve_memory(reuse_memory)
    if not _state["applied"]:
        if getattr(_numba_parallel, "_is_initialized", False):           # started by other Numba code
            _refuse_spin(spin, value, None, "unknown: Numba's threads were started before minicnn's policy")
            value, source = None, "unknown: Numba's threads were started before minicnn's policy"
        else:
            _start_numba_threads(value)
        if keep:
            _keep_freed_memory()
        _state.update(applied=True, spin=value, spin_source=source, reuse_memory=keep, memory_source=keep_source)
    else:
        _refuse_spin(spin, value, _state["spin"], _state["spin_source"])
        if reuse_memory != _AUTO and keep != _state["reuse_memory"]:
            raise UsageError(f"the memory policy is chosen once, when the policy is applied; reuse_memory is "
                             f"{_state['reuse_memory']} ({_state['memory_source']}): call "
                             f"minicnn.runtime.configure(reuse_memory=...) before the first kernel call")
    if threads is not None:
        n = min(int(threads), numba.config.NUMBA_NUM_THREADS)
        numba.set_num_threads(n)
        _threadpoolctl().threadpool_limits(int(threads))
        _state["blas_threads"] = int(threads)
    if deterministic is not None:
        _state["deterministic"] = deterministic
    return settings()


def work_split() -> int:
    """How many threads' worth of work items the kernels plan for: the thread count, or
    ``DETERMINISTIC_SPLIT`` with ``configure(deterministic=True)``."""
    return DETERMINISTIC_SPLIT if _state["deterministic"] else numba.get_num_threads()


def _refuse_spin(spin, value, in_force, source) -> None:
    """An explicit spin that differs from the one OpenMP already read cannot take effect: say so."""
    if spin != _AUTO and value != in_force:
        raise UsageError(f"OpenMP's spin count is read once, when Numba starts its threads; it is {in_force} "
                         f"({source}): call minicnn.runtime.configure(spin=...) before the first kernel call")


def ensure_configured() -> None:
    """Apply the default policy unless a policy is in force (the guard of every parallel kernel)."""
    if not _state["applied"]:
        configure()


def settings() -> Settings:
    """The policy in force (``applied=False`` before the first kernel call or :func:`configure`)."""
    applied = _state["applied"]
    return Settings(applied=applied,
                    threads=numba.get_num_threads() if applied else None,
                    max_threads=numba.config.NUMBA_NUM_THREADS,
                    blas_threads=_state["blas_threads"],
                    threading_layer=numba.threading_layer() if applied else None,
                    spin=_state["spin"], spin_source=_state["spin_source"],
                    deterministic=_state["deterministic"], reuse_memory=_state["reuse_memory"],
                    memory_source=_state["memory_source"])


def _start_numba_threads(spin: int | None) -> None:
    """Start Numba's thread pool (OpenMP loads then) with ``GOMP_SPINCOUNT=spin`` in the environment
    for that moment only."""
    with _environment_kept():
        if spin is not None:
            os.environ["GOMP_SPINCOUNT"] = str(spin)
        numba.get_num_threads()                                       # starts the pool


@contextmanager
def _environment_kept():
    """Undo on exit whatever the block changed in ``os.environ``."""
    before = dict(os.environ)
    try:
        yield
    finally:
        for k in [k for k in os.environ if k not in before]:
            del os.environ[k]
        for k, v in before.items():
            if os.environ.get(k) != v:
                os.environ[k] = v


def _threadpoolctl():
    """threadpoolctl, imported on first use: its import sets ``KMP_DUPLICATE_LIB_OK``, which is
    taken back, so that ``import minicnn`` and the first kernel call leave the environment alone."""
    with _environment_kept():
        import threadpoolctl
    return threadpoolctl


# -- BLAS -----------------------------------------------------------------------------------------
_BLAS_LIBS: list = []


def blas_single_thread():
    """A context limiting every loaded BLAS to one thread on entry, restoring the limits on exit.

    The BLAS libraries are found once (SciPy's BLAS, the one ``np.dot`` in Numba calls, is loaded
    first); entering the context then costs a few microseconds (one ``set_num_threads`` call per
    library, none when the limit is already 1), which matters at batch 1, where a DenseNet121
    makes 120 conv calls.
    """
    if not _BLAS_LIBS:
        import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's BLAS before looking for it)
        controller = _threadpoolctl().ThreadpoolController()
        _BLAS_LIBS.append([c for c in controller.lib_controllers if c.user_api == "blas"])
    return _one_blas_thread(_BLAS_LIBS[0])


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


# -- where compiled kernels are cached ------------------------------------------------------------
def kernel_cache_dir() -> str:
    """``$MINICNN_HOME/numba``, default ``~/.cache/minicnn/numba``: where :func:`njit` caches kernels."""
    home = os.environ.get("MINICNN_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "minicnn")
    return os.path.join(home, "numba")


class _UserCacheLocator(_caching._SourceFileBackedLocatorMixin, _caching._CacheLocator):
    """Numba cache locator for minicnn's kernels: a subfolder of :func:`kernel_cache_dir`, never
    the package's own ``__pycache__``."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = os.path.join(kernel_cache_dir(), self.get_suitable_cache_subpath(py_file))

    def get_cache_path(self):
        return self._cache_path


class _KernelCacheImpl(_caching.CompileResultCacheImpl):
    # NUMBA_CACHE_DIR if the user set one, else minicnn's folder, else Numba's user-wide folder
    _locator_classes = [_caching.UserProvidedCacheLocator, _UserCacheLocator, _caching.UserWideCacheLocator]


class _KernelCache(_caching.FunctionCache):
    _impl_class = _KernelCacheImpl


def njit(*args, cache: bool = False, **options):
    """``numba.njit`` whose ``cache=True`` caches in :func:`kernel_cache_dir` (module docstring).

    Numba has no public hook for a per-function locator: the dispatcher's cache object is set the
    way ``Dispatcher.enable_caching`` sets it, with minicnn's cache class.
    """
    def decorate(func):
        dispatcher = numba.njit(**options)(func)
        if cache:
            dispatcher._cache = _KernelCache(dispatcher.py_func)
        return dispatcher
    if args and callable(args[0]) and len(args) == 1:
        return decorate(args[0])
    if args:
        raise UsageError("minicnn.runtime.njit takes keyword options only")
    return decorate
