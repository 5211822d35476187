"""Shared timing helpers for the benchmark scripts: warm up, validate, then time; medians; JSON.

Timings on a shared 2-core machine are noisy: compare ratios measured in one run and quote medians.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def parse_args(description: str, argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, noisier numbers)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (median reported)")
    p.add_argument("--tiny", action="store_true", help="tiny shapes, one repeat: checks the script runs "
                                                       "(tests/test_benchmarks_run.py); the times mean nothing")
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.tiny else 2 if args.quick else 5
    return args


def status_kb(field: str) -> int | None:
    """A field of ``/proc/self/status`` in kB (``VmRSS``, ``VmHWM``); None where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (Linux: write 5 to /proc/self/clear_refs), so that loading a
    model does not hide the peak of what is measured after it; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def median_time(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def max_rel_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b), initial=0.0) / max(np.max(np.abs(b), initial=0.0), 1e-30))


def check_close(label: str, got, want, rtol: float) -> float:
    """Validate before timing: raise if ``got`` and ``want`` differ by more than ``rtol`` (max-relative)."""
    if np.shape(got) != np.shape(want):
        raise AssertionError(f"{label}: shape {np.shape(got)} != {np.shape(want)}")
    err = max_rel_diff(got, want)
    if not err <= rtol:
        raise AssertionError(f"{label}: max relative difference {err:.3g} > {rtol:g}")
    return err


def matmul_gflops(n: int = 2048, dtype=np.float32, repeats: int = 5) -> float:
    """float32 GEMM throughput of numpy's BLAS on this machine right now: the practical ceiling."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    t = median_time(lambda: a @ b, repeats)
    return 2 * n**3 / t / 1e9


def torch_or_none(threads: int = 2):
    """torch with ``threads`` intra-op threads, or None when it is not installed.

    ``import minicnn`` leaves the environment alone (``minicnn.runtime``), so torch's own OpenMP
    runtime loads with its defaults, as a user's would.
    """
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def blas_single_thread():
    """A context limiting BLAS to one thread (restored on exit), or None without threadpoolctl.

    On a machine busy with other work, OpenBLAS's spinning threads are what slows the conv GEMMs;
    timing the same code with one BLAS thread shows how much (Numba keeps its threads).
    """
    try:
        import threadpoolctl
    except ImportError:
        return None
    return threadpoolctl.threadpool_limits(1, user_api="blas")


def environment() -> dict:
    info = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "numpy": np.__version__,
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE")}
    try:
        import numba
        info["numba"] = numba.__version__
        info["numba_threads"] = numba.config.NUMBA_NUM_THREADS
    except ImportError:
        pass
    try:
        import threadpoolctl
        info["blas"] = [{k: d.get(k) for k in ("internal_api", "architecture", "num_threads", "version")}
                        for d in threadpoolctl.threadpool_info() if d.get("user_api") == "blas"]
    except ImportError:
        pass
    return info


def fmt_ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:9.1f}"


def fmt_gflops(flops, seconds) -> str:
    return "-" if seconds is None else f"{flops / seconds / 1e9:7.1f}"


def write_json(path: str, payload: dict) -> None:
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=2)
    print(f"wrote {path}")
