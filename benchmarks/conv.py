"""Conv2D forward and forward+backward: reference, NumPy im2col, minicnn's Numba path, PyTorch.

    python benchmarks/conv.py [--quick] [--json PATH]
    python benchmarks/conv.py --tiny          # every shape shrunk to N <= 2, 12x12 (a smoke run)

For each shape: median times and GFLOP/s (fwd = 2*N*F*(C/G)*KH*KW*OH*OW flops; fwd+bwd = 3x that,
since dx and dW each cost one forward), the numba/torch ratio for fwd+bwd, and the machine's float32
matmul GFLOP/s measured in the same run as the ceiling. The plain-loop reference is timed on one
image cropped to 16x16 and reported only as GFLOP/s. Every implementation is validated against the
others before it is timed. PyTorch runs with 2 threads; BLAS and Numba use their defaults (2 here),
and the Numba path is timed again with BLAS limited to one thread ("BLAS-1T", via threadpoolctl):
on a machine busy with other work OpenBLAS's spinning threads fight for the cores, and the default
configuration can be several times slower.
Also times max-pool 2x2 and batch-norm fwd+bwd on (16, 64, 112, 112) when those kernels exist.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H  # noqa: E402

from minicnn.kernels.conv import (conv2d_backward, conv2d_backward_reference, conv2d_forward,  # noqa: E402
                                  conv2d_forward_reference)

# (N, C, H=W, F, k, stride, pad)
SHAPES = [
    (16, 64, 56, 64, 3, 1, 1),
    (16, 32, 128, 32, 3, 1, 1),
    (8, 3, 224, 64, 7, 2, 3),
    (8, 256, 28, 128, 1, 1, 0),
    (32, 1, 128, 32, 3, 1, 1),
]


# ------------------------------------------------------------------------------------------------
# the baseline: a straightforward NumPy im2col (loop over kernel offsets, one matmul)
# ------------------------------------------------------------------------------------------------
def numpy_conv_forward(x, W, b, s, p):
    N, C, Hh, Ww = x.shape
    F, _, k, _ = W.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    OH, OW = (Hh + 2 * p - k) // s + 1, (Ww + 2 * p - k) // s + 1
    cols = np.empty((N, C, k, k, OH, OW), x.dtype)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = xp[:, :, i:i + s * OH:s, j:j + s * OW:s]
    cols = cols.reshape(N, C * k * k, OH * OW)
    y = np.matmul(W.reshape(F, -1), cols) + b[:, None]
    return y.reshape(N, F, OH, OW), cols


def numpy_conv_backward(dy, x, W, s, p, cols):
    N, C, Hh, Ww = x.shape
    F, _, k, _ = W.shape
    OH, OW = dy.shape[2:]
    dy2 = dy.reshape(N, F, OH * OW)
    db = dy2.sum(axis=(0, 2))
    dW = np.einsum("nfp,nkp->fk", dy2, cols, optimize=True).reshape(W.shape)
    dcols = np.matmul(W.reshape(F, -1).T, dy2).reshape(N, C, k, k, OH, OW)
    dxp = np.zeros((N, C, Hh + 2 * p, Ww + 2 * p), x.dtype)
    for i in range(k):
        for j in range(k):
            dxp[:, :, i:i + s * OH:s, j:j + s * OW:s] += dcols[:, :, i, j]
    return dxp[:, :, p:p + Hh, p:p + Ww], dW, db


def numpy_fwd_bwd(x, W, b, dy, s, p):
    _, cols = numpy_conv_forward(x, W, b, s, p)
    return numpy_conv_backward(dy, x, W, s, p, cols)


# ------------------------------------------------------------------------------------------------
def conv_flops(N, C, F, k, OH, OW, groups=1):
    return 2.0 * N * F * (C // groups) * k * k * OH * OW


def bench_shape(shape, repeats, torch):
    N, C, S, F, k, s, p = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, S, S)).astype(np.float32)
    W = (rng.standard_normal((F, C, k, k)) / np.sqrt(C * k * k)).astype(np.float32)
    b = rng.standard_normal(F).astype(np.float32)
    pads = (p, p, p, p)
    y = conv2d_forward(x, W, b, (s, s), pads)
    OH, OW = y.shape[2:]
    dy = rng.standard_normal(y.shape).astype(np.float32)
    flops = conv_flops(N, C, F, k, OH, OW)
    row = {"shape": dict(zip("N C HW F k stride pad".split(), shape)), "fwd_gflop": flops / 1e9}

    # validate: numba vs numpy baseline (and torch), then time each
    y_np, _ = numpy_conv_forward(x, W, b, s, p)
    H.check_close(f"{shape} numba y vs numpy", y, y_np, 1e-4)
    grads = conv2d_backward(dy, x, W, (s, s), pads)
    for name, got, want in zip(("dx", "dW", "db"), grads, numpy_fwd_bwd(x, W, b, dy, s, p)):
        H.check_close(f"{shape} numba {name} vs numpy", got, want, 1e-4)

    def numba_fb():
        conv2d_forward(x, W, b, (s, s), pads)
        conv2d_backward(dy, x, W, (s, s), pads)

    row["numba_fwd_s"] = H.median_time(lambda: conv2d_forward(x, W, b, (s, s), pads), repeats)
    row["numba_fb_s"] = H.median_time(numba_fb, repeats)
    single = H.blas_single_thread()
    if single is not None:                    # the same path with 1 BLAS thread (busy machines)
        with single:
            row["numba_blas1thread_fwd_s"] = H.median_time(lambda: conv2d_forward(x, W, b, (s, s), pads), repeats)
            row["numba_blas1thread_fb_s"] = H.median_time(numba_fb, repeats)
    row["numpy_fwd_s"] = H.median_time(lambda: numpy_conv_forward(x, W, b, s, p), max(1, repeats // 2))
    row["numpy_fb_s"] = H.median_time(lambda: numpy_fwd_bwd(x, W, b, dy, s, p), max(1, repeats // 2))

    # reference: one image cropped to 16x16 (it is plain Python loops)
    xc = np.ascontiguousarray(x[:1, :, :16, :16])
    yc = conv2d_forward_reference(xc, W, b, (s, s), pads)
    dyc = rng.standard_normal(yc.shape).astype(np.float32)
    H.check_close(f"{shape} reference vs numba (16x16 crop)", yc, conv2d_forward(xc, W, b, (s, s), pads), 1e-4)
    flops_c = conv_flops(1, C, F, k, *yc.shape[2:])
    t_ref_f = H.median_time(lambda: conv2d_forward_reference(xc, W, b, (s, s), pads), 1, warmup=0)
    t_ref_b = H.median_time(lambda: conv2d_backward_reference(dyc, xc, W, (s, s), pads), 1, warmup=0)
    row["reference_fwd_gflops"] = flops_c / t_ref_f / 1e9
    row["reference_fb_gflops"] = 3 * flops_c / (t_ref_f + t_ref_b) / 1e9

    if torch is not None:
        tx = torch.from_numpy(x).requires_grad_()
        tW = torch.from_numpy(W).requires_grad_()
        tb = torch.from_numpy(b).requires_grad_()
        tdy = torch.from_numpy(dy)
        F_ = torch.nn.functional

        def torch_fwd():
            with torch.no_grad():
                return F_.conv2d(tx, tW, tb, s, p)

        def torch_fb():
            tx.grad = tW.grad = tb.grad = None
            F_.conv2d(tx, tW, tb, s, p).backward(tdy)

        H.check_close(f"{shape} numba y vs torch", y, torch_fwd().numpy(), 1e-4)
        torch_fb()
        for name, got, want in zip(("dx", "dW", "db"), grads, (tx.grad, tW.grad, tb.grad)):
            H.check_close(f"{shape} numba {name} vs torch", got, want.numpy(), 1e-4)
        row["torch_fwd_s"] = H.median_time(torch_fwd, repeats)
        row["torch_fb_s"] = H.median_time(torch_fb, repeats)
        row["ratio_fb_numba_over_torch"] = row["numba_fb_s"] / row["torch_fb_s"]
        if "numba_blas1thread_fb_s" in row:
            row["ratio_fb_numba_blas1thread_over_torch"] = row["numba_blas1thread_fb_s"] / row["torch_fb_s"]
    return row


def print_conv_table(rows, ceiling):
    print(f"\nfloat32 matmul ceiling (2048^3, numpy BLAS): {ceiling:.1f} GFLOP/s")
    print("times in ms (median), throughput in GFLOP/s; fwd+bwd computes y, dx, dW, db\n")
    head = (f"{'shape (N,C,HW,F,k,s,p)':<28}{'ref GF/s':>9} | {'numpy ms':>9}{'GF/s':>7} | "
            f"{'numba ms':>9}{'GF/s':>7} | {'torch ms':>9}{'GF/s':>7} | {'numba/torch':>11} | "
            f"{'BLAS-1T ms':>11}{'1T/torch':>9}")
    for mode, key in (("forward", "fwd"), ("forward+backward", "fb")):
        print(f"-- {mode}")
        print(head)
        for r in rows:
            mult = 1 if key == "fwd" else 3
            fl = r["fwd_gflop"] * 1e9 * mult
            shape = str(tuple(r["shape"].values()))
            t_torch = r.get(f"torch_{key}_s")
            ratio = "-" if t_torch is None else f"{r[f'numba_{key}_s'] / t_torch:11.2f}"
            t_1t = r.get(f"numba_blas1thread_{key}_s")
            ratio_1t = "-" if t_torch is None or t_1t is None else f"{t_1t / t_torch:9.2f}"
            print(f"{shape:<28}{r[f'reference_{key}_gflops']:9.3f} | "
                  f"{H.fmt_ms(r[f'numpy_{key}_s'])}{H.fmt_gflops(fl, r[f'numpy_{key}_s'])} | "
                  f"{H.fmt_ms(r[f'numba_{key}_s'])}{H.fmt_gflops(fl, r[f'numba_{key}_s'])} | "
                  f"{H.fmt_ms(t_torch)}{H.fmt_gflops(fl, t_torch)} | {ratio:>11} | "
                  f"{H.fmt_ms(r.get(f'numba_blas1thread_{key}_s')):>11}"
                  f"{ratio_1t:>9}")


# ------------------------------------------------------------------------------------------------
# other kernels: max-pool 2x2 and batch-norm on (16, 64, 112, 112)
# ------------------------------------------------------------------------------------------------
def tiny_shape(shape):
    """The same conv with N <= 2 and at most 12x12 (at least the kernel): for the smoke test."""
    N, C, S, F, k, s, p = shape
    return (min(N, 2), C, max(min(S, 12), k), F, k, s, p)


def bench_pool_bn(repeats, torch, shape=(16, 64, 112, 112)):
    rows = []
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    try:
        from minicnn.kernels.pool import max_pool2d_backward, max_pool2d_forward
    except ImportError as e:
        print(f"note: max-pool not timed ({e})")
    else:
        y, arg = max_pool2d_forward(x, (2, 2), (2, 2))
        dy = rng.standard_normal(y.shape).astype(np.float32)
        row = {"name": f"maxpool2x2 {shape}",
               "numba_fwd_s": H.median_time(lambda: max_pool2d_forward(x, (2, 2), (2, 2)), repeats),
               "numba_fb_s": H.median_time(lambda: max_pool2d_backward(dy, *max_pool2d_forward(x, (2, 2), (2, 2))[1:],
                                                                        x.shape), repeats)}
        if torch is not None:
            tx = torch.from_numpy(x).requires_grad_()
            H.check_close("maxpool y vs torch", y, torch.nn.functional.max_pool2d(tx, 2).detach().numpy(), 0)

            def tfb():
                tx.grad = None
                torch.nn.functional.max_pool2d(tx, 2).backward(torch.from_numpy(dy))
            with torch.no_grad():
                row["torch_fwd_s"] = H.median_time(lambda: torch.nn.functional.max_pool2d(tx, 2), repeats)
            row["torch_fb_s"] = H.median_time(tfb, repeats)
        rows.append(row)
    try:
        from minicnn.kernels.batchnorm import batchnorm2d_backward_train, batchnorm2d_forward_train
    except ImportError as e:
        print(f"note: batch-norm not timed ({e})")
    else:
        g, bta = np.ones(shape[1], np.float32), np.zeros(shape[1], np.float32)
        y, mean, inv_std, _ = batchnorm2d_forward_train(x, g, bta, 1e-5)
        dy = rng.standard_normal(y.shape).astype(np.float32)

        def bn_fb():
            _, m, s, _ = batchnorm2d_forward_train(x, g, bta, 1e-5)
            batchnorm2d_backward_train(dy, x, g, m, s)
        row = {"name": f"batchnorm train {shape}",
               "numba_fwd_s": H.median_time(lambda: batchnorm2d_forward_train(x, g, bta, 1e-5), repeats),
               "numba_fb_s": H.median_time(bn_fb, repeats)}
        if torch is not None:
            tx = torch.from_numpy(x).requires_grad_()
            tg = torch.from_numpy(g).requires_grad_()
            tb = torch.from_numpy(bta).requires_grad_()
            bn = torch.nn.functional.batch_norm
            H.check_close("batchnorm y vs torch", y,
                          bn(tx, None, None, tg, tb, training=True, eps=1e-5).detach().numpy(), 1e-4)

            def tfb():
                tx.grad = tg.grad = tb.grad = None
                bn(tx, None, None, tg, tb, training=True, eps=1e-5).backward(torch.from_numpy(dy))
            with torch.no_grad():
                row["torch_fwd_s"] = H.median_time(lambda: bn(tx, None, None, tg, tb, training=True, eps=1e-5),
                                                   repeats)
            row["torch_fb_s"] = H.median_time(tfb, repeats)
        rows.append(row)
    if rows:
        print(f"\n{'other kernels':<34}{'numba fwd':>10}{'numba f+b':>10}{'torch fwd':>10}{'torch f+b':>10}"
              f"{'f+b ratio':>10}")
        for r in rows:
            ratio = r["numba_fb_s"] / r["torch_fb_s"] if "torch_fb_s" in r else None
            print(f"{r['name']:<34}{H.fmt_ms(r['numba_fwd_s']):>10}{H.fmt_ms(r['numba_fb_s']):>10}"
                  f"{H.fmt_ms(r.get('torch_fwd_s')):>10}{H.fmt_ms(r.get('torch_fb_s')):>10}"
                  f"{'-' if ratio is None else f'{ratio:10.2f}':>10}")
    return rows


def main(argv=None):
    args = H.parse_args(__doc__.splitlines()[0], argv)
    torch = H.torch_or_none(threads=2)
    if torch is None:
        print("note: torch is not installed; PyTorch columns are left out")
    env = H.environment()
    print("environment:", env)
    rows = []
    for shape in SHAPES:
        shape = tiny_shape(shape) if args.tiny else shape
        print(f"timing {shape} ...", flush=True)
        rows.append(bench_shape(shape, args.repeats, torch))
    ceiling = H.matmul_gflops(n=256 if args.tiny else 2048, repeats=args.repeats)
    print_conv_table(rows, ceiling)
    other = bench_pool_bn(args.repeats, torch, (2, 8, 16, 16) if args.tiny else (16, 64, 112, 112))
    print("\nnoise: the machine is shared; ratios within ~20% of each other are not distinguishable.")
    if args.json:
        H.write_json(args.json, {"environment": env, "matmul_gflops_f32": ceiling, "conv": rows, "other": other})


if __name__ == "__main__":
    main()
