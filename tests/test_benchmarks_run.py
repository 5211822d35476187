"""Every benchmark script runs, on tiny sizes with one round (timings are not asserted): they never rot.

The scripts run side by side (each is mostly process start-up and imports); each must exit 0 and
print its table. run_all.py covers one inference row (minicnn, onnxruntime, torch NCHW and
channels_last, outputs validated against torch inside the script) and one training row.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def test_every_benchmark_script_is_run_here():
    scripts = {p.name for p in BENCH.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(COMMANDS)


COMMANDS = {
    "run_all.py": ["--only", "densenet121-b1", "small-cnn-train-b32", "--size", "32", "--batch", "2", "--pool-first",
                   "--rounds", "1", "--repeats", "1"],
    "conv.py": ["--tiny"],
    "densenet.py": ["--batches", "1", "--repeats", "1", "--rounds", "1", "--size", "32", "--fast"],
    "dask_overhead.py": ["--images", "4", "--size", "32", "--rounds", "1", "--shard", "2"],
    "onnx_import.py": ["--tiny"],
}
NEEDS = {"run_all.py": ("torch", "torchvision"), "conv.py": (), "densenet.py": ("torch", "torchvision"),
         "dask_overhead.py": ("dask", "distributed"), "onnx_import.py": ("torch", "torchvision", "onnx")}
PRINTS = {"run_all.py": "densenet121-b1", "conv.py": "forward+backward", "densenet.py": "per-round time ratios",
          "dask_overhead.py": "per-task overhead", "onnx_import.py": "ONNX-imported"}


def test_benchmark_scripts_run_on_tiny_sizes(tmp_path):
    for needs in NEEDS.values():
        for module in needs:
            pytest.importorskip(module)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = {}
    for name, args in COMMANDS.items():
        extra = ["--json", str(tmp_path / f"{name}.json")] if name in ("run_all.py", "conv.py") else []
        procs[name] = subprocess.Popen([sys.executable, str(BENCH / name), *args, *extra], cwd=tmp_path, env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = {name: p.communicate(timeout=600) for name, p in procs.items()}
    for name, (out, err) in outs.items():
        assert procs[name].returncode == 0, f"{name} failed:\n{err[-3000:]}"
        assert PRINTS[name] in out, f"{name} printed no table:\n{out[-2000:]}"
    report = json.loads((tmp_path / "run_all.py.json").read_text())["report"]
    rows = {r["task"]: r for r in report}
    assert set(rows) == {"densenet121-b1", "small-cnn-train-b32"}
    assert set(rows["densenet121-b1"]["median_s"]) >= {"minicnn", "torch", "torch-cl"}
    assert all(e < 1e-4 for r in report for e in r["rel_err_vs_torch"].values())   # validated before timing
    assert rows["densenet121-b1"]["flops"] > 0 and rows["small-cnn-train-b32"]["flops"] > 0
