"""Prototype (not used by minicnn yet): a register-tiled direct conv written in Numba, for issue 12.

Measured 2026-12-02 on the 2-core CI machine kind (AMD EPYC Zen 4), float32 forward, 2 threads:
(8,128,56^2 -> 32, 3x3) 166-200 GFLOP/s in a process running nothing else (onnxruntime 175, torch
168, minicnn's banded GEMM ~100, same shape, same machine); 1x1 (8,256,56^2 -> 128) 139 (onnxruntime
133). Run in this script, between calls of minicnn's own conv (the reference check), the same kernel
gave 78-185 from run to run: something (suspected: idle BLAS/OpenMP threads of the other kernels
spinning) takes the cores; that must be understood before it is wired in. These are single
best-of-7 timings, not the 9-round medians issue 12 asks for.
Run: ``python benchmarks/_tiled_conv_prototype.py``.

How it works (what the next step builds into ``minicnn/kernels``):
* weights packed once to (F/16, C*KH*KW, 16); a task computes P=8 consecutive output positions of
  one row x NB=2 blocks of 16 filters; the 256 accumulators are plain local scalars, so LLVM keeps
  them in 16 zmm registers. The source is generated (``kernel_source``): writing 256 scalars by hand
  is what a template is for; the plain reference is ``minicnn.kernels.conv.conv2d_forward_reference``.
* LLVM's SLP vectorizer must be on for this one compile (Numba turns it off by default:
  ``numba.core.config.SLP_VECTORIZE``): with it the inner loop is 2 vector loads, 8 broadcasts and
  16 FMAs (checked with ``inspect_asm``); without it every FMA is scalar (10 GFLOP/s).
* ``fastmath`` without ``reassoc``: with full fastmath the loop vectorizer turns the tap loop (a
  reduction) into gathers (3-10 GFLOP/s).
* positions must be consecutive in memory (stride 1, one row): per-position offsets make SLP use
  ``vgatherqps`` and the kernel drops to ~85 GFLOP/s. So this prototype needs OW % 8 == 0.
* indices that LLVM cannot prove non-negative cost a wraparound select per load: taps are uint64,
  views are sliced once per task.
Now wired in as ``minicnn.kernels.conv_tiled`` (method "tiled"); this script stays as the experiment.
Left to do here: stride > 1,
padding without a copy (BN+ReLU writing into a padded buffer), bias/ReLU epilogue, the packed-weight
cache and its invalidation, backward kernels, wiring as ``method="tiled"`` with equality tests.
"""
from __future__ import annotations

import time

import numpy as np
import numba
from numba import njit, prange

from minicnn.kernels.conv import conv2d_forward
from minicnn.shapes import conv_output_size

FB = 16
FASTMATH = {"contract", "nsz", "arcp", "nnan", "ninf"}


def kernel_source(P: int, NB: int) -> str:
    L = ["def kern(xflat, wpk, taps, offs, yflat, F, NPOS, OHW, yoffs, ntile, nfg):",
         "    T = taps.shape[0]",
         "    for task in prange(ntile * nfg):",
         "        tl = task // nfg",
         "        fg = task - tl * nfg",
         f"        xv = xflat[offs[tl * {P}]:]"]
    L += [f"        w{b}m = wpk[fg * {NB} + {b}]" for b in range(NB)]
    L += [f"        a{b}_{p}_{f} = np.float32(0.0)" for b in range(NB) for p in range(P) for f in range(FB)]
    L += ["        for t in range(T):", "            xo = taps[t]"]
    L += [f"            w{b}_{f} = w{b}m[t, {f}]" for b in range(NB) for f in range(FB)]
    for p in range(P):
        L.append(f"            x{p} = xv[xo + np.uint64({p})]")
        L += [f"            a{b}_{p}_{f} += x{p} * w{b}_{f}" for b in range(NB) for f in range(FB)]
    for p in range(P):
        L += [f"        q = tl * {P} + {p}", "        if q < NPOS:", "            yo = yoffs[q]"]
        for b in range(NB):
            for f in range(FB):
                L += [f"            ff = (fg * {NB} + {b}) * {FB} + {f}", "            if ff < F:",
                      f"                yflat[yo + ff * OHW] = a{b}_{p}_{f}"]
    return "\n".join(L)


def make_kernel(P=8, NB=2):
    ns = {"np": np, "prange": prange}
    exec(kernel_source(P, NB), ns)          # our own template, never data from a file
    return njit(parallel=True, fastmath=FASTMATH)(ns["kern"])


def prepare(x, W, pad, P=8, NB=2):
    N, C, H, Wd = x.shape
    F, _, KH, KW = W.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    Hp, Wp = H + 2 * pad, Wd + 2 * pad
    OH, OW = conv_output_size(H, KH, 1, pad, pad, 1), conv_output_size(Wd, KW, 1, pad, pad, 1)
    assert OW % P == 0, "prototype: output width must be a multiple of P"
    NPOS = N * OH * OW
    ntile = NPOS // P
    q = np.arange(ntile * P)
    n, r = q // (OH * OW), q % (OH * OW)
    offs = (n * C * Hp * Wp + (r // OW) * Wp + r % OW).astype(np.int64)
    q = np.arange(NPOS)
    yoffs = ((q // (OH * OW)) * F * OH * OW + q % (OH * OW)).astype(np.int64)
    c, i, j = np.meshgrid(np.arange(C), np.arange(KH), np.arange(KW), indexing="ij")
    taps = (c * Hp * Wp + i * Wp + j).ravel().astype(np.uint64)
    GF = NB * FB
    Fpad = -(-F // GF) * GF
    Wz = np.zeros((Fpad, C, KH, KW), np.float32)
    Wz[:F] = W
    wpk = np.ascontiguousarray(Wz.reshape(Fpad // FB, FB, C * KH * KW).transpose(0, 2, 1))
    y = np.empty((N, F, OH, OW), np.float32)
    return (xp.ravel(), wpk, taps, offs, y.reshape(-1), F, NPOS, OH * OW, yoffs, ntile, Fpad // GF), y


def main():
    kern = make_kernel()
    compiled = False
    for (N, C, H, F, k, pad) in [(8, 128, 56, 32, 3, 1), (8, 256, 56, 128, 1, 0), (1, 128, 56, 32, 3, 1)]:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((N, C, H, H), dtype=np.float32)
        W = rng.standard_normal((F, C, k, k), dtype=np.float32)
        args, y = prepare(x, W, pad)
        if not compiled:                    # one signature for every shape: compile once, SLP on
            old = numba.core.config.SLP_VECTORIZE
            numba.core.config.SLP_VECTORIZE = 1
            try:
                kern(*args)
            finally:
                numba.core.config.SLP_VECTORIZE = old
            compiled = True
        kern(*args)                         # warm-up
        ts = []
        for _ in range(7):
            t = time.perf_counter()
            kern(*args)
            ts.append(time.perf_counter() - t)
        ref = conv2d_forward(x, W, None, padding=pad)
        err = float(np.abs(y - ref).max() / np.abs(ref).max())
        fl = 2 * y.size * C * k * k
        print(f"{(N, C, H, F, k)}: rel err {err:.1e}, {fl / min(ts) / 1e9:.0f} GFLOP/s (best of 7)")


if __name__ == "__main__":
    main()
