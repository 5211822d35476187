"""Distributed overhead: DenseNet121 features of N images, in-process (2 threads) vs Dask local:2 (2 x 1 thread).

    python benchmarks/dask_overhead.py [--images 2000] [--size 224] [--rounds 3] [--shard 256]

Each round runs both, alternating which goes first; each run is a fresh process (the in-process
run) or a fresh output folder on one long-lived local cluster (the distributed run, whose start-up
and model shipping are timed separately). The per-task overhead is measured with empty tasks
through the same worker plugin. Prints medians and the per-round ratios, then an extrapolation of
NIH ChestX-ray14 (112,120 images) from the measured figures.
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

NIH = 112_120


def make_images(folder: Path, n: int, size: int) -> list:
    import numpy as np
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"img{i:05d}.png"
        if not p.exists():
            Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


IN_PROCESS = r"""
import json, sys, time
import minicnn
from minicnn import runtime
from minicnn.transfer import extract_features
runtime.configure(threads=2)
model = minicnn.load(sys.argv[1]); paths = json.load(open(sys.argv[2]))
extract_features(model, paths[:16], batch_size=16)                     # warm-up (kernel cache)
t = time.perf_counter(); f = extract_features(model, paths, batch_size=16); t = time.perf_counter() - t
print(json.dumps({"seconds": t, "shape": list(f.shape)}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--shard", type=int, default=256)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()

    import numpy as np
    import minicnn.distributed as mdist
    from minicnn.pretrained import densenet121

    work = Path(tempfile.mkdtemp(prefix="minicnn-dist-bench-"))
    paths = make_images(work / "images", a.images, a.size)
    (work / "paths.json").write_text(json.dumps(paths))
    model = densenet121(weights=None, include_top=False, pooling="avg", input_shape=(3, a.size, a.size))
    model.save(work / "backbone.npz")

    t0 = time.perf_counter()
    client = mdist.connect("local:2")
    start = time.perf_counter() - t0
    warm = mdist.features(client, work / "backbone.npz", paths[:32], work / "warm", batch_size=16, shard_size=16)
    ship = time.perf_counter() - t0 - start

    local, dist, ratios = [], [], []
    for r in range(a.rounds):
        order = ("local", "dist") if r % 2 == 0 else ("dist", "local")
        got = {}
        for which in order:
            if which == "local":
                out = subprocess.run([sys.executable, "-c", IN_PROCESS, str(work / "backbone.npz"),
                                      str(work / "paths.json")], capture_output=True, text=True, check=True)
                got["local"] = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
            else:
                t = time.perf_counter()
                f = mdist.features(client, work / "backbone.npz", paths, work / f"dist{r}", batch_size=16,
                                   shard_size=a.shard)
                got["dist"] = time.perf_counter() - t
                assert f.shape[0] == len(paths) and np.isfinite(f).all()
        local.append(got["local"]); dist.append(got["dist"]); ratios.append(got["dist"] / got["local"])
        print(f"round {r + 1}: in-process {got['local']:.1f} s, local:2 {got['dist']:.1f} s, "
              f"ratio {ratios[-1]:.3f}", flush=True)

    # per-task overhead: empty shards through the same plugin
    digest = json.loads((work / f"dist0" / "manifest.json").read_text())["model_sha256"]
    name = f"minicnn-model-{digest[:16]}"
    n_empty = 200
    t = time.perf_counter()
    futs = [client.submit(mdist._task, name, "features", [], 16, "fail", pure=False) for _ in range(n_empty)]
    client.gather(futs)
    per_task = (time.perf_counter() - t) / n_empty
    mdist.close(client)

    med_local, med_dist, med_ratio = statistics.median(local), statistics.median(dist), statistics.median(ratios)
    per_image_worker = med_dist * 2 / len(paths)              # worker-seconds per image (2 workers)
    tasks = -(-NIH // a.shard)
    extrapolation = {w: (NIH * per_image_worker / w + tasks * per_task / w + start + ship) for w in (1, 8, 64)}
    result = {"images": len(paths), "size": a.size, "shard": a.shard, "rounds": a.rounds,
              "in_process_s": local, "local2_s": dist, "ratios": ratios, "median_ratio": med_ratio,
              "cluster_start_s": start, "first_run_incl_model_shipping_s": ship, "per_task_overhead_s": per_task,
              "nih_hours_by_workers": {w: v / 3600 for w, v in extrapolation.items()}}
    print(f"median: in-process {med_local:.1f} s, local:2 {med_dist:.1f} s, ratio {med_ratio:.3f} "
          f"(rounds {' '.join(f'{x:.3f}' for x in ratios)}); cluster start {start:.1f} s, first run "
          f"(model shipped to 2 workers, 32 images) {ship:.1f} s; per-task overhead {per_task * 1e3:.1f} ms")
    for w, v in extrapolation.items():
        print(f"NIH ChestX-ray14 ({NIH} images) at {a.size}px on {w} single-thread workers: {v / 3600:.2f} h")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
