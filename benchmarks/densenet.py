"""DenseNet121 224x224 inference: minicnn against PyTorch (2 threads), each in its own process.

    python benchmarks/densenet.py                       # batch 1 and 8, 3 rounds of 5 repeats
    python benchmarks/densenet.py --batches 1 --repeats 3 --rounds 1 --fast
    python benchmarks/densenet.py --batches 1 --repeats 1 --rounds 1 --size 32   # a smoke run

(``run_all.py`` measures the same rows against onnxruntime too; this script keeps ``--fast`` and
``--minicnn-threads``.)

Each measurement runs in a fresh subprocess (``--worker minicnn|torch --batch N``) that prints one
JSON line: the median wall time of ``--repeats`` forward passes after one warm-up, and the peak RSS
increase over the post-import baseline: the peak mark is reset (``/proc/self/clear_refs``; else
``ru_maxrss``) after building the model, making the input and one small 64x64 warm-up pass that
loads compiled kernels, and read again after the timed passes. Outputs are validated first (minicnn vs torch on the same
weights and input, rel err = max|a - b| / max|b|), then timed. Timings are noisy on shared machines:
each round runs torch then minicnn back to back, and the table gives the medians over the rounds
of the times, of the per-round ratios and of the RSS increases (the per-round time ratios are
listed too). Compare ratios measured in one run.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _harness as H  # noqa: E402


def _rss_mb() -> float:
    """Peak RSS in MB: VmHWM (resettable) when /proc is there, else ru_maxrss."""
    hwm = H.status_kb("VmHWM")
    if hwm is not None:
        return hwm / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0       # Linux: KiB


def worker(kind: str, batch: int, repeats: int, weights: str | None, fast: bool, check: str | None,
           size: int = 224) -> dict:
    import numpy as np
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    if kind == "torch":
        import torch
        import torchvision
        torch.set_num_threads(2)
        net = torchvision.models.densenet121(weights=None).eval()
        if weights:
            net.load_state_dict(torch.load(weights, weights_only=True))
        def run(v=x):
            with torch.no_grad():
                return net(torch.from_numpy(v)).numpy()
    else:
        from minicnn.pretrained import densenet121, fast_densenet
        model = densenet121(weights=weights, input_shape=(3, size, size))
        if fast:
            model = fast_densenet(model)

        def run(v=x):
            return model.predict(v, batch_size=len(v))
    run(rng.standard_normal((1, 3, 64, 64)).astype(np.float32))   # small warm-up: Numba loads its kernels
    reset = H.reset_peak()
    base = _rss_mb()
    out = run()                                  # warm-up at full size
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t)
    result = {"kind": kind, "batch": batch, "median_s": statistics.median(times), "times": times,
              "rss_increase_mb": _rss_mb() - base, "rss_base_mb": base, "peak_reset": reset}
    if check:
        np.save(check, out)
    return result


def spawn(kind, batch, repeats, weights, fast, check=None, threads=None, size=224) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--batch", str(batch),
           "--repeats", str(repeats), "--size", str(size)]
    if weights:
        cmd += ["--weights", weights]
    if fast:
        cmd += ["--fast"]
    if check:
        cmd += ["--check", check]
    env = dict(os.environ)
    if threads and kind == "minicnn":         # Numba's and OpenBLAS' thread pools
        env.update(NUMBA_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode:
        raise RuntimeError(f"worker {kind} batch {batch} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", choices=["minicnn", "torch"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3, help="alternating torch/minicnn runs per batch size")
    ap.add_argument("--size", type=int, default=224, help="image size (smaller: a smoke run)")
    ap.add_argument("--weights")
    ap.add_argument("--check")
    ap.add_argument("--fast", action="store_true", help="minicnn: batch-norm folding + concat buffers")
    ap.add_argument("--minicnn-threads", type=int, help="NUMBA/OPENBLAS threads for minicnn (default: theirs)")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.batch, args.repeats, args.weights, args.fast, args.check,
                                args.size)))
        return

    import numpy as np
    with tempfile.TemporaryDirectory() as tmp:
        # one set of random weights for both, so the outputs can be validated before timing
        weights = os.path.join(tmp, "densenet121.pth")
        code = ("import torch, torchvision; torch.manual_seed(0); "
                f"torch.save(torchvision.models.densenet121(weights=None).state_dict(), {weights!r})")
        subprocess.run([sys.executable, "-c", code], check=True)
        rows = []
        for batch in args.batches:
            ca, cb = os.path.join(tmp, "a.npy"), os.path.join(tmp, "b.npy")
            rounds = []
            for r in range(args.rounds):
                check = r == 0                        # validate the outputs once per batch size
                t = spawn("torch", batch, args.repeats, weights, False, cb if check else None, size=args.size)
                m = spawn("minicnn", batch, args.repeats, weights, args.fast, ca if check else None,
                          args.minicnn_threads, size=args.size)
                if check:
                    a, b = np.load(ca), np.load(cb)
                    err = float(np.abs(a - b).max() / np.abs(b).max())
                rounds.append((m, t))
            rows.append((batch, rounds, err))
    med = statistics.median
    print(f"DenseNet121 {args.size}x{args.size} inference, {os.cpu_count()} CPUs, torch threads 2, "
          f"minicnn{' (folded + concat buffers)' if args.fast else ''}"
          f"{f' with {args.minicnn_threads} thread(s)' if args.minicnn_threads else ''}; "
          f"medians over {args.rounds} round(s) of the median of {args.repeats} passes")
    hdr = (f"{'batch':>5} {'minicnn s':>10} {'torch s':>9} {'time ratio':>10} "
           f"{'minicnn dRSS MB':>15} {'torch dRSS MB':>13} {'RSS ratio':>9} {'rel err':>9}  per-round time ratios")
    print(hdr)
    print("-" * len(hdr))
    for batch, rounds, err in rows:
        ratios = [m["median_s"] / t["median_s"] for m, t in rounds]
        m_rss, t_rss = med([m["rss_increase_mb"] for m, _ in rounds]), med([t["rss_increase_mb"] for _, t in rounds])
        print(f"{batch:>5} {med([m['median_s'] for m, _ in rounds]):>10.3f} {med([t['median_s'] for _, t in rounds]):>9.3f} "
              f"{med(ratios):>10.2f} {m_rss:>15.1f} {t_rss:>13.1f} {m_rss / max(t_rss, 1e-9):>9.2f} {err:>9.1e}  "
              + " ".join(f"{q:.2f}" for q in ratios))


if __name__ == "__main__":
    main()
