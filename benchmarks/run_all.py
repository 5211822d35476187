"""Every network benchmark in one command: minicnn against onnxruntime and PyTorch, side by side.

    python benchmarks/run_all.py                        # all rows, 5 alternating rounds
    python benchmarks/run_all.py --quick                # 2 rounds, fewer repeats
    python benchmarks/run_all.py --only densenet121-b1 densenet121-b8 --rounds 9 --json out.json
    python benchmarks/run_all.py --size 32 --batch 1 --rounds 1 --repeats 1    # a smoke run (the test)

Rows (``TASKS``): DenseNet121 224 px inference at batch 1 and 8, ResNet50 b8, VGG16 b1, InceptionV3
299 px b1, the DenseNet121 full training step at b8 (batch-norm in training mode, every layer,
softmax cross-entropy, Adam) and the small-CNN training step (``minicnn.small_cnn.conv_net``,
128 px, b32, weighted BCE, Adam).

How it measures (the rules of issue 12):
- One set of random weights per network (torchvision's initialisation, seeded), saved once; minicnn
  reads it with ``minicnn.load`` (the general route), torch with ``load_state_dict``, onnxruntime
  from ``torch.onnx.export`` of the same module (exported here, dynamic batch axis). The small CNN
  is minicnn's, its weights copied into an equal torch module.
- Every measurement runs in its own process (``--worker``): onnxruntime at ``ORT_ENABLE_ALL`` with 2
  intra-op threads and 1 inter-op, torch with ``set_num_threads(2)`` in NCHW and in channels_last
  (inference; its faster one is the reference), minicnn with its defaults (2 Numba threads here).
- Outputs are validated first: in round 1 each worker saves its output (inference) or its first
  loss (training), compared with torch's (max|a - b| / max|b|) before any ratio is printed.
- Rounds alternate the frameworks (the order reversed every other round); each worker reports the
  median of ``--repeats`` timed calls after one warm-up; the table shows medians over the rounds and
  the medians of the per-round ratios (with their range).
- GFLOP/s: conv and dense FLOPs from the layer geometry (``minicnn.profiling.layer_flops``: 2 per
  multiply-add) over the median time; a training step is counted as 3x its forward (dx and dW each
  cost about one forward). "of peak" is that over the float32 matmul rate of NumPy's BLAS (2048^3,
  all cores) measured at the start of every round: the machine's practical ceiling.
- Peak memory: VmHWM minus VmRSS after imports, model load and a small warm-up (Linux:
  ``/proc/self/clear_refs`` resets the high-water mark there).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))        # this checkout's minicnn, also in the worker processes
import _harness as H  # noqa: E402

# name -> (kind, network, batch, image size)
TASKS = {
    "densenet121-b1": ("infer", "densenet121", 1, 224),
    "densenet121-b8": ("infer", "densenet121", 8, 224),
    "resnet50-b8": ("infer", "resnet50", 8, 224),
    "vgg16-b1": ("infer", "vgg16", 1, 224),
    "inception_v3-b1": ("infer", "inception_v3", 1, 299),
    "densenet121-train-b8": ("train", "densenet121", 8, 224),
    "small-cnn-train-b32": ("train", "small", 32, 128),
}
INFER_FRAMEWORKS = ("minicnn", "onnxruntime", "torch", "torch-cl")
POOL_FIRST = "minicnn-poolfirst"       # --pool-first: minicnn after rewrite.pool_before_pointwise_conv
TRAIN_FRAMEWORKS = ("minicnn", "torch")
LR = 1e-3


# ------------------------------------------------------------------------------------------------
# networks
# ------------------------------------------------------------------------------------------------
def _torchvision_net(net: str):
    import torchvision
    if net == "inception_v3":
        return torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=True,
                                               transform_input=True)   # as minicnn.load builds it from a file
    return getattr(torchvision.models, net)(weights=None)


def _torch_small_cnn(npz: str):
    """The small CNN as a torch module, with the weights of minicnn's saved model."""
    import numpy as np
    import torch
    from torch import nn
    arrays = dict(np.load(npz, allow_pickle=False))
    w = {k[2:]: v for k, v in arrays.items() if k.startswith("w:")}
    mods, k = [], 1
    while f"block{k}.conv.W" in w:
        W = w[f"block{k}.conv.W"]
        conv = nn.Conv2d(W.shape[1], W.shape[0], 3, padding=1, bias=False)
        bn = nn.BatchNorm2d(W.shape[0], eps=1e-5, momentum=0.1)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(W))
            bn.weight.copy_(torch.from_numpy(w[f"block{k}.bn.gamma"]))
            bn.bias.copy_(torch.from_numpy(w[f"block{k}.bn.beta"]))
        mods += [conv, bn, nn.ReLU(), nn.MaxPool2d(2)]
        k += 1
    fc = nn.Linear(*w["fc.W"].shape)
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(w["fc.W"].T.copy()))
        fc.bias.copy_(torch.from_numpy(w["fc.b"]))
    return nn.Sequential(*mods, nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc)


def _conv_dense_flops(model, x) -> tuple:
    """(output, FLOPs of the convs and dense layers) of one ``model.predict(x)`` pass (the warm-up)."""
    from minicnn.profiling import layer_flops
    total = [0]

    def timer(node, a, y, seconds):
        layer = node.layer
        if "W" in layer.params or "pointwise_W" in layer.params:
            shapes = [tuple(v.shape) for v in (a if layer.multi_input else [a])]
            total[0] += layer_flops(layer, shapes, tuple(y.shape))
    out = model.predict(x, batch_size=len(x), logits=True, timer=timer)
    return out, total[0]


# ------------------------------------------------------------------------------------------------
# one measurement in this process
# ------------------------------------------------------------------------------------------------
def worker(a) -> dict:
    import numpy as np
    kind, net, batch, size = a.kind, a.net, a.batch, a.size
    channels = 1 if net == "small" else 3
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, channels, size, size)).astype(np.float32)
    small = rng.standard_normal((min(batch, 2), channels, 32 if net != "inception_v3" else 75,
                                 32 if net != "inception_v3" else 75)).astype(np.float32)
    labels = rng.integers(0, 1000, batch) if net != "small" else (rng.random((batch, 1)) < 0.5).astype(np.float32)
    flops = None
    fw = a.worker
    if fw in ("minicnn", POOL_FIRST):
        import minicnn
        from minicnn import losses, optim
        model = minicnn.load(a.weights)
        if fw == POOL_FIRST:
            from minicnn.rewrite import pool_before_pointwise_conv
            model = pool_before_pointwise_conv(model)
        if kind == "infer":
            def run():
                return model.predict(x, batch_size=batch, logits=True)
            model.predict(small, batch_size=len(small))                     # loads the compiled kernels
        else:
            loss = losses.SoftmaxCrossEntropy() if net != "small" else losses.WeightedBCE()
            opt = optim.Adam(model.params(), lr=LR)

            def run():
                z = model.forward(x, training=True)
                value = loss.forward(z, labels)
                model.backward(loss.backward(), input_grad=False)
                opt.step(model.grads())
                return value
            saved = {k: v.copy() for k, v in model.state_dict().items()}
            z = model.forward(small, training=True)                          # loads the compiled kernels
            model.backward(np.zeros_like(z), input_grad=False)
            model.load_state_dict(saved)
            flops = 3 * batch * _conv_dense_flops(model, x[:1])[1]
        base = H.status_kb("VmRSS")
        reset = H.reset_peak()
        t0 = time.perf_counter()
        if kind == "infer":
            out, flops = _conv_dense_flops(model, x)                          # the full-size warm-up
        else:
            out = run()
    elif fw == "onnxruntime":
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
        sess = ort.InferenceSession(a.onnx, so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name

        def run():
            return sess.run(None, {name: x})[0]
        base = H.status_kb("VmRSS")
        reset = H.reset_peak()
        t0 = time.perf_counter()
        out = run()
    else:
        import torch
        torch.set_num_threads(2)
        torch.manual_seed(0)
        cl = fw == "torch-cl"
        mod = _torch_small_cnn(a.weights) if net == "small" else _torchvision_net(net)
        if net != "small":
            mod.load_state_dict(torch.load(a.weights, weights_only=True))
        fmt = torch.channels_last if cl else torch.contiguous_format
        mod = mod.to(memory_format=fmt)
        tx = torch.from_numpy(x).contiguous(memory_format=fmt)
        if kind == "infer":
            mod.eval()

            def run():
                with torch.no_grad():
                    return mod(tx).numpy()
            with torch.no_grad():
                mod(torch.from_numpy(small).contiguous(memory_format=fmt))
        else:
            mod.train()
            opt = torch.optim.Adam(mod.parameters(), lr=LR)
            ty = torch.from_numpy(labels)
            lossf = torch.nn.CrossEntropyLoss() if net != "small" else torch.nn.BCEWithLogitsLoss()

            def run():
                opt.zero_grad(set_to_none=True)
                value = lossf(mod(tx), ty)
                value.backward()
                opt.step()
                return float(value)
            saved = {k: v.clone() for k, v in mod.state_dict().items()}
            lossf(mod(torch.from_numpy(small).contiguous(memory_format=fmt)),
                  ty[:len(small)]).backward()
            mod.load_state_dict(saved)
            opt.zero_grad(set_to_none=True)
        base = H.status_kb("VmRSS")
        reset = H.reset_peak()
        t0 = time.perf_counter()
        out = run()
    warm = time.perf_counter() - t0
    times = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    peak = H.status_kb("VmHWM")
    if a.check:
        np.save(a.check, np.asarray(out, np.float64))
    return {"framework": fw, "median_s": statistics.median(times), "times": times, "warmup_s": warm,
            "flops": flops, "peak_mb": (peak - base) / 1024 if peak and base and reset else None}


def spawn(fw, task, repeats, paths, check=None, size=None, batch=None) -> dict:
    kind, net, b, s = TASKS[task]
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", fw, "--kind", kind, "--net", net,
           "--batch", str(batch or b), "--size", str(size or s), "--repeats", str(repeats),
           "--weights", paths[net]["weights"]]
    if fw == "onnxruntime":
        cmd += ["--onnx", paths[net]["onnx"]]
    if check:
        cmd += ["--check", check]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{fw} {task} failed:\n{p.stderr[-4000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------
# weights and the ONNX export, once per network
# ------------------------------------------------------------------------------------------------
def prepare(nets, tmp, size, onnx: bool) -> dict:
    code = r"""
import sys, warnings, torch
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2])
import run_all
net, weights, onnx_path, size = sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
torch.manual_seed(0)
if net == "small":
    from minicnn.small_cnn import conv_net
    conv_net("small", image_size=size, seed=0).save(weights)
    sys.exit(0)
mod = run_all._torchvision_net(net).eval()
torch.save(mod.state_dict(), weights)
if onnx_path != "-":
    x = torch.randn(1, 3, size, size)
    kw = dict(input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(mod, (x,), onnx_path, dynamo=False, opset_version=17, **kw)
        except TypeError:                      # a torch without the TorchScript exporter's switch
            torch.onnx.export(mod, (x,), onnx_path, **kw)
"""
    paths = {}
    for net, s in nets.items():
        w = os.path.join(tmp, f"{net}.npz" if net == "small" else f"{net}.pth")
        o = os.path.join(tmp, f"{net}.onnx") if onnx and net != "small" else "-"
        subprocess.run([sys.executable, "-c", code, str(HERE), str(HERE.parent), net, w, o, str(s)], check=True)
        paths[net] = {"weights": w, "onnx": o}
    return paths


def _have(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def rel_err(a, b) -> float:
    import numpy as np
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=list(TASKS), help="these rows only")
    ap.add_argument("--quick", action="store_true", help="2 rounds of 2 repeats (a smoke run, noisier)")
    ap.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 5; --quick 2)")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per worker (default 5, training 3)")
    ap.add_argument("--size", type=int, default=None, help="image size for every row (smoke runs)")
    ap.add_argument("--batch", type=int, default=None, help="batch size for every row (smoke runs)")
    ap.add_argument("--no-onnxruntime", action="store_true", help="leave onnxruntime out")
    ap.add_argument("--pool-first", action="store_true",
                    help="inference rows: also time minicnn after rewrite.pool_before_pointwise_conv "
                         "(DenseNet's transitions pool before their 1x1 conv)")
    ap.add_argument("--json", metavar="PATH", help="also write every measurement as JSON")
    # worker mode
    ap.add_argument("--worker", choices=INFER_FRAMEWORKS + (POOL_FIRST,))
    ap.add_argument("--kind", choices=("infer", "train"))
    ap.add_argument("--net")
    ap.add_argument("--weights")
    ap.add_argument("--onnx")
    ap.add_argument("--check")
    a = ap.parse_args(argv)
    if a.worker:
        a.repeats = a.repeats or 1
        print(json.dumps(worker(a)))
        return
    tasks = a.only or list(TASKS)
    rounds = a.rounds or (2 if a.quick else 5)
    ort = not a.no_onnxruntime and _have("onnxruntime") and _have("onnx")
    if not _have("torch"):
        sys.exit("run_all.py needs torch and torchvision (the reference and the weights' source)")
    import numpy as np
    t_start = time.time()
    nets = {}
    for t in tasks:
        nets.setdefault(TASKS[t][1], a.size or TASKS[t][3])
    results = {t: [] for t in tasks}
    errors, ceilings = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        paths = prepare(nets, tmp, a.size, ort)
        for r in range(rounds):
            ceilings.append(H.matmul_gflops(repeats=3))
            for task in tasks:
                kind = TASKS[task][0]
                fws = [f for f in (INFER_FRAMEWORKS if kind == "infer" else TRAIN_FRAMEWORKS)
                       if f != "onnxruntime" or ort]
                if a.pool_first and kind == "infer":
                    fws.insert(1, POOL_FIRST)
                if r % 2:
                    fws = fws[::-1]
                repeats = a.repeats or (2 if a.quick else 3 if kind == "train" else 5)
                row = {}
                for fw in fws:
                    check = os.path.join(tmp, f"{task}-{fw}.npy") if r == 0 else None
                    row[fw] = spawn(fw, task, repeats, paths, check, a.size, a.batch)
                if r == 0:
                    ref = np.load(os.path.join(tmp, f"{task}-torch.npy"))
                    errors[task] = {fw: rel_err(np.load(os.path.join(tmp, f"{task}-{fw}.npy")), ref)
                                    for fw in fws if fw != "torch"}
                results[task].append(row)
                print(f"round {r + 1}/{rounds} {task}: " + ", ".join(
                    f"{fw} {m['median_s'] * 1e3:.1f} ms" for fw, m in row.items()), file=sys.stderr, flush=True)
    report = summarize(results, errors, ceilings, rounds)
    print(format_report(report, time.time() - t_start))
    if a.json:
        H.write_json(a.json, {"environment": H.environment(), "rounds": rounds, "report": report,
                              "measurements": results, "matmul_gflops": ceilings})


def summarize(results, errors, ceilings, rounds) -> list:
    med = statistics.median
    peak = med(ceilings)
    rows = []
    for task, per_round in results.items():
        kind = TASKS[task][0]
        fws = list(per_round[0])
        m = {fw: med([r[fw]["median_s"] for r in per_round]) for fw in fws}
        mem = {fw: med([r[fw]["peak_mb"] for r in per_round if r[fw]["peak_mb"] is not None] or [float("nan")])
               for fw in fws}
        torch_best = [min(r[f]["median_s"] for f in ("torch", "torch-cl") if f in r) for r in per_round]
        ratios = {"torch": [r["minicnn"]["median_s"] / tb for r, tb in zip(per_round, torch_best)]}
        if "onnxruntime" in fws:
            ratios["onnxruntime"] = [r["minicnn"]["median_s"] / r["onnxruntime"]["median_s"] for r in per_round]
        if POOL_FIRST in fws:
            ratios["pool_first_over_minicnn"] = [r[POOL_FIRST]["median_s"] / r["minicnn"]["median_s"]
                                                 for r in per_round]
            if "onnxruntime" in fws:
                ratios["pool_first_over_onnxruntime"] = [r[POOL_FIRST]["median_s"] / r["onnxruntime"]["median_s"]
                                                         for r in per_round]
        flops = per_round[0]["minicnn"]["flops"]
        rows.append({"task": task, "kind": kind, "rounds": rounds, "median_s": m, "peak_mb": mem,
                     "ratio_vs": {k: med(v) for k, v in ratios.items()}, "per_round_ratios": ratios,
                     "flops": flops, "minicnn_gflops_per_s": flops / m["minicnn"] / 1e9 if flops else None,
                     "gflops_per_s": {fw: flops / s / 1e9 for fw, s in m.items()} if flops else {},
                     "matmul_gflops": peak, "rel_err_vs_torch": errors.get(task, {})})
    return rows


def format_report(rows, elapsed) -> str:
    if not rows:
        return "nothing measured"
    peak = rows[0]["matmul_gflops"]
    out = [f"minicnn vs onnxruntime / torch, {os.cpu_count()} CPUs, {rows[0]['rounds']} alternating round(s), "
           f"medians; matmul ceiling {peak:.0f} GFLOP/s; {elapsed:.0f} s", ""]
    hdr = (f"{'row':<22}{'minicnn ms':>11}{'ORT ms':>9}{'torch ms':>9}{'t-cl ms':>9}{'/ORT':>6}{'/torch':>7}"
           f"{'GFLOP/s':>9}{'of peak':>8}{'ORT GF/s':>9}  {'peak MB m/ORT/t':<18}{'rel err':>8}  per-round /ref")
    out += [hdr, "-" * len(hdr)]
    for r in rows:
        s, mem, ratio = r["median_s"], r["peak_mb"], r["ratio_vs"]

        def ms(fw):
            return f"{s[fw] * 1e3:.1f}" if fw in s else "-"
        ref = "onnxruntime" if "onnxruntime" in ratio else "torch"
        g = r["gflops_per_s"]
        mems = "/".join(f"{mem[f]:.0f}" if f in mem and mem[f] == mem[f] else "-"
                        for f in ("minicnn", "onnxruntime", "torch"))
        err = max(r["rel_err_vs_torch"].values(), default=float("nan"))
        out.append(f"{r['task']:<22}{ms('minicnn'):>11}{ms('onnxruntime'):>9}{ms('torch'):>9}{ms('torch-cl'):>9}"
                   f"{ratio.get('onnxruntime', float('nan')):>6.2f}{ratio['torch']:>7.2f}"
                   f"{g.get('minicnn', float('nan')):>9.1f}{g.get('minicnn', float('nan')) / peak:>8.0%}"
                   f"{g.get('onnxruntime', float('nan')):>9.1f}  {mems:<18}{err:>8.1e}  "
                   + " ".join(f"{q:.2f}" for q in r["per_round_ratios"][ref]))
    for r in rows:
        q = r["per_round_ratios"]
        if "pool_first_over_minicnn" in q:
            out.append(f"{r['task']}: pool-first rewrite {r['median_s'][POOL_FIRST] * 1e3:.1f} ms, "
                       f"/minicnn {statistics.median(q['pool_first_over_minicnn']):.3f} ("
                       + " ".join(f"{v:.3f}" for v in q["pool_first_over_minicnn"]) + ")"
                       + (f", /ORT {statistics.median(q['pool_first_over_onnxruntime']):.2f}"
                          if "pool_first_over_onnxruntime" in q else "")
                       + f", rel err vs torch {r['rel_err_vs_torch'].get(POOL_FIRST, float('nan')):.1e}")
    out += ["", "/ORT, /torch: medians of the per-round time ratios minicnn / reference (torch: its faster of NCHW "
                "and channels_last per round; training rows: NCHW); <= 1.00 is no slower. Training GFLOP/s count 3x "
                "the forward. peak MB: VmHWM - RSS after imports and model load. rel err: worst of minicnn's (and "
                "ORT's) output, or first loss, vs torch's."]
    return "\n".join(out)


if __name__ == "__main__":
    main()
