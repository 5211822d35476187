"""The minicnn command line on a tiny synthetic dataset (and the 16 real X-rays when ../shared exists)."""
import json
import subprocess
import sys

import numpy as np
import pytest

from minicnn.cli import main
from minicnn.serialization import load


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data, out = root / "data", root / "run"
    assert main(["synth", str(data), "--n", "200", "--size", "32", "--seed", "1"]) == 0
    assert main(["train", str(data), "--arch", "tiny", "--image-size", "32", "--epochs", "2", "--out", str(out),
                 "--quiet", "--threads", "2"]) == 0
    return data, out


def test_train_writes_the_run_directory(run):
    _, out = run
    for name in ("model.npz", "last.npz", "history.csv", "history.json", "plots/history.png"):
        assert (out / name).exists(), name
    hist = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in hist] == [1, 2] and "val_roc_auc" in hist[0]


def test_resume_continues_the_run(run, capsys):
    data, out = run
    assert main(["train", "--resume", str(out), "--epochs", "3", "--quiet"]) == 0
    hist = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in hist] == [1, 2, 3]
    assert "resuming" in capsys.readouterr().out


def test_evaluate_writes_metrics_json_and_plots(run, capsys):
    data, out = run
    assert main(["evaluate", str(out), str(data), "--split", "test", "--n-boot", "100"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    for key in ("split", "n", "classes", "positive_class", "threshold", "threshold_rule", "roc_auc", "roc_auc_ci95",
                "pr_auc", "accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "confusion", "per_class"):
        assert key in m, key
    assert m["split"] == "test" and m["positive_class"] == "PNEUMONIA" and "PNEUMONIA" in m["per_class"]
    assert sum(map(sum, m["confusion"])) == m["n"]
    assert (out / "plots" / "roc_test.png").exists() and (out / "plots" / "confusion_test.png").exists()
    assert "ROC-AUC" in capsys.readouterr().out


def test_predict_prints_a_table_and_writes_csv_and_json(run, tmp_path, capsys):
    data, out = run
    folder = data / "test" / "PNEUMONIA"
    assert main(["predict", str(out / "model.npz"), str(folder), "--out", str(tmp_path / "p.csv")]) == 0
    text = capsys.readouterr().out
    assert "P(NORMAL)" in text and "P(PNEUMONIA)" in text
    rows = (tmp_path / "p.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + len(list(folder.iterdir()))
    assert main(["predict", str(out), str(folder), "--out", str(tmp_path / "p.json")]) == 0
    recs = json.loads((tmp_path / "p.json").read_text())
    assert {r["prediction"] for r in recs} <= {"NORMAL", "PNEUMONIA"}
    thr = load(out / "model.npz").meta["threshold"][0]
    assert all(r["prediction"] == ("PNEUMONIA" if r["probabilities"]["PNEUMONIA"] >= thr else "NORMAL") for r in recs)


def test_predict_files_from_python_applies_saved_preprocessing(run):
    import minicnn
    from minicnn.data.loader import BatchLoader
    from minicnn.data.datasets import load_dataset
    from minicnn.data.preprocessing import Preprocessing
    data, out = run
    model = minicnn.load(out / "model.npz")
    recs = list(minicnn.predict_files(model, data / "test"))
    ds = load_dataset(data, split="test")
    pre = Preprocessing.from_dict(model.meta["preprocessing"])
    assert pre.channels == 1 and pre.mode == "dataset" and pre.count > 0
    loader = BatchLoader(ds, pre, batch_size=64, training=False)
    x = np.concatenate([b[0] for b in loader.epoch(0)])
    p = model.predict(x)[:, 0]
    by_file = {r["file"]: r["probabilities"]["PNEUMONIA"] for r in recs}
    np.testing.assert_allclose([by_file[str(f)] for f in ds.paths], p, rtol=1e-5, atol=1e-6)


def test_summary_gradcheck_explain(run, tmp_path, capsys):
    data, out = run
    assert main(["summary", str(out)]) == 0
    assert "total params" in capsys.readouterr().out
    assert main(["gradcheck"]) == 0
    text = capsys.readouterr().out
    assert "Conv2D" in text and "worst:" in text and "ok" in text
    image = sorted((data / "test" / "PNEUMONIA").iterdir())[0]
    png = tmp_path / "cam.png"
    assert main(["explain", str(out), str(image), "--out", str(png)]) == 0
    assert png.stat().st_size > 1000


@pytest.mark.parametrize("argv, fragment", [
    (["predict", "missing_model.npz", "x.png"], "model not found: missing_model.npz"),
    (["evaluate", "missing_run", "data"], "model not found: missing_run"),
    (["train", "no_such_folder"], "no_such_folder"),
])
def test_user_errors_are_one_line_without_traceback(argv, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = subprocess.run([sys.executable, "-m", "minicnn.cli", *argv], capture_output=True, text=True)
    assert r.returncode != 0
    assert fragment in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_corrupt_image_is_named(run, tmp_path, capsys):
    _, out = run
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    assert main(["predict", str(out), str(bad)]) == 1
    assert "broken.png" in capsys.readouterr().err


def test_real_xrays_load_and_predict_end_to_end(run, shared_dir, capsys):
    from minicnn.data.datasets import load_dataset
    folder = shared_dir / "data" / "chest_xray_val16"
    ds = load_dataset(folder)
    assert len(ds) == 16 and ds.classes == ["NORMAL", "PNEUMONIA"] and ds.labels.sum() == 8
    assert set(ds.patient_ids) >= {"NORMAL2-IM-1427", "person1946"}
    _, out = run
    assert main(["predict", str(out), str(folder)]) == 0  # probabilities are meaningless: synthetic training
    assert capsys.readouterr().out.count("\n") >= 17


def test_train_head_on_a_frozen_backbone_then_predict_and_evaluate(run, tmp_path, monkeypatch, capsys):
    data, _ = run
    monkeypatch.setenv("MINICNN_HOME", str(tmp_path / "home"))
    out = tmp_path / "head"
    argv = ["train", str(data), "--backbone", "densenet121", "--image-size", "32", "--epochs", "2",
            "--out", str(out), "--quiet"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "random weights" in first and "backbone + head saved" in first
    assert "head: 20 epochs on cached features (10 x --epochs 2; set --head-epochs)" in first
    assert "validation: the dataset's own 'val' split" in first
    cached = list((tmp_path / "home" / "features").rglob("*"))
    assert cached
    assert main(argv) == 1   # the run directory is taken: refused, nothing touched
    assert "already holds a run" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0   # second run: features come from the cache
    assert list((tmp_path / "home" / "features").rglob("*")) == cached
    from minicnn.serialization import load
    model = load(out / "model.npz")
    assert model.meta["preprocessing"]["normalization"]["mode"] == "imagenet-torch"
    assert json.loads((out / "history.json").read_text())[-1]["epoch"] == 20      # the head's 10 x 2 epochs
    assert not model["features.conv0"].trainable and model["head.logits"].trainable
    assert main(["predict", str(out), str(data / "test" / "NORMAL")]) == 0
    assert main(["evaluate", str(out), str(data), "--split", "test", "--n-boot", "50"]) == 0


def test_fine_tune_the_last_block_with_real_backward_passes(run, tmp_path, monkeypatch):
    from minicnn.serialization import load
    from minicnn.pretrained import densenet121
    data, _ = run
    monkeypatch.setenv("MINICNN_HOME", str(tmp_path / "home"))
    out = tmp_path / "ft"
    assert main(["train", str(data), "--backbone", "densenet121", "--image-size", "32", "--epochs", "1",
                 "--fine-tune", "1", "--out", str(out), "--quiet"]) == 0
    from minicnn.train import load_checkpoint
    # last.npz holds the fine-tuned model (model.npz keeps the head-only one unless fine-tuning beat
    # its best validation AUC)
    tuned, info, _ = load_checkpoint(out / "last.npz")
    assert info["extra"]["args"]["fine_tune"] == 1
    start = densenet121(include_top=False, pooling="avg", input_shape=(3, 32, 32), seed=0)  # --seed 0
    sd0 = start.state_dict()
    np.testing.assert_array_equal(tuned.state_dict()["features.conv0.W"], sd0["features.conv0.W"])
    np.testing.assert_array_equal(load(out / "model.npz").state_dict()["features.conv0.W"], sd0["features.conv0.W"])
    moved = "features.denseblock4.denselayer16.conv2.W"
    assert not np.array_equal(tuned.state_dict()[moved], sd0[moved])
    assert tuned["features.denseblock4.denselayer1.conv1"].trainable and not tuned["features.conv0"].trainable
    assert (out / "last.npz").exists() and (out / "history.json").exists()


def test_training_warns_loudly_about_patients_in_two_splits(run, tmp_path, capsys):
    import shutil
    from minicnn.data.splits import training_splits
    data, _ = run
    leaky = tmp_path / "leaky"
    shutil.copytree(data, leaky)
    victim = sorted((leaky / "test" / "PNEUMONIA").iterdir())[0]
    shutil.copy(victim, leaky / "train" / "PNEUMONIA" / victim.name.replace(".png", "_copy.png"))
    said = []
    training_splits(leaky, val_from_train=0.1, warn=said.append)
    assert any("training and test" in s for s in said)
    assert main(["train", str(leaky), "--arch", "tiny", "--image-size", "16", "--epochs", "1",
                 "--out", str(tmp_path / "r"), "--quiet"]) == 0
    assert "WARNING: 1 patient(s) appear in both the training and test data" in capsys.readouterr().err
