"""`--dask local:N` on predict, evaluate and features gives the in-process numbers; predict streams."""
import csv
import tracemalloc

import numpy as np
import pytest

pytest.importorskip("dask.distributed")

from minicnn import cli, layers                                         # noqa: E402
from minicnn.data.preprocessing import Preprocessing                    # noqa: E402
from minicnn.data.synthetic import make_synthetic                       # noqa: E402
from minicnn.small_cnn import conv_net                                  # noqa: E402

SIZE = 24


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("clidask")
    make_synthetic(root / "data", n=48, size=SIZE, splits=(("train", 24), ("test", 24)), seed=4)
    m = conv_net("tiny", in_channels=1, outputs=1, image_size=SIZE, seed=2)
    rng = np.random.default_rng(1)
    for n in m.nodes.values():
        if isinstance(n.layer, layers.BatchNorm2D):
            n.layer.buffers["running_var"][...] = rng.uniform(0.5, 2, n.layer.buffers["running_var"].shape)
    m.output_activation = "sigmoid"
    m.meta.update(classes=["NORMAL", "PNEUMONIA"], outputs=["PNEUMONIA"], positive_class="PNEUMONIA",
                  threshold=0.5, preprocessing=Preprocessing((SIZE, SIZE), 1, mode="sample").to_dict())
    m.save(root / "model.npz")
    return root


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_predict_on_local_cluster_equals_in_process(setup, tmp_path, capsys):
    root = setup
    assert cli.main(["predict", str(root / "model.npz"), str(root / "data" / "test"), "--batch-size", "4",
                     "--out", str(tmp_path / "local.csv"), "--threads", "1"]) == 0
    assert cli.main(["predict", str(root / "model.npz"), str(root / "data" / "test"), "--batch-size", "4",
                     "--dask", "local:2", "--shard-size", "8", "--out", str(tmp_path / "dask")]) == 0
    out = capsys.readouterr().out
    assert "24 images predicted" in out and "labelled images: accuracy" in out
    local, dask = _rows(tmp_path / "local.csv"), _rows(tmp_path / "dask" / "predictions.csv")
    assert [r["file"] for r in local] == [r["file"] for r in dask]
    assert [r["prediction"] for r in local] == [r["prediction"] for r in dask]
    for a, b in zip(local, dask):
        assert abs(float(a["P(PNEUMONIA)"]) - float(b["P(PNEUMONIA)"])) <= 1e-6


def test_predict_dask_needs_an_output_folder(setup, capsys):
    assert cli.main(["predict", str(setup / "model.npz"), str(setup / "data" / "test"), "--dask", "local:1"]) == 1
    assert "give --out DIR" in capsys.readouterr().err


def test_evaluate_on_local_cluster_equals_in_process(setup, tmp_path):
    import json
    root = setup
    assert cli.main(["evaluate", str(root / "model.npz"), str(root / "data"), "--n-boot", "50", "--batch-size", "4",
                     "--out", str(tmp_path / "a"), "--threads", "1"]) == 0
    assert cli.main(["evaluate", str(root / "model.npz"), str(root / "data"), "--n-boot", "50", "--batch-size", "4",
                     "--out", str(tmp_path / "b"), "--dask", "local:2", "--shard-size", "8"]) == 0
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert a["roc_auc"] == pytest.approx(b["roc_auc"], abs=1e-9)
    assert a["confusion"] == b["confusion"]
    assert (tmp_path / "b" / "predictions-dask" / "manifest.json").exists()


def test_in_process_predict_streams_with_flat_memory(tmp_path, capsys):
    """2,000 tiny images: the CLI holds no table of records (a summary above 50 files) and memory
    stays flat (traced allocations grow by far less than 50 MB)."""
    from PIL import Image
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2000):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    m = conv_net("tiny", in_channels=1, outputs=1, image_size=8, seed=0)
    m.output_activation = "sigmoid"
    m.meta.update(classes=["NORMAL", "PNEUMONIA"], outputs=["PNEUMONIA"], positive_class="PNEUMONIA",
                  threshold=0.5, preprocessing=Preprocessing((8, 8), 1, mode="sample").to_dict())
    m.save(tmp_path / "m.npz")
    cli.main(["predict", str(tmp_path / "m.npz"), str(folder), "--out", str(tmp_path / "warm.csv"),
              "--batch-size", "64"])                  # warm-up: kernels compiled, modules imported
    capsys.readouterr()
    tracemalloc.start()
    try:
        assert cli.main(["predict", str(tmp_path / "m.npz"), str(folder), "--out", str(tmp_path / "p.csv"),
                         "--batch-size", "64"]) == 0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    out = capsys.readouterr().out
    assert "2000 images predicted (more than 50: no table" in out
    assert len(out.splitlines()) < 10
    assert len(_rows(tmp_path / "p.csv")) == 2000
    assert peak < 50 * 2**20, f"peak traced memory {peak / 2**20:.1f} MB"
