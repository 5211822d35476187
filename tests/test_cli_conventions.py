"""The command line's conventions: refused arguments, run directories, validation splits, help,
predict's decision rule and labelled summary, and what it says about feature extractors."""
import subprocess
from pathlib import Path
import sys

import pytest

from minicnn.cli import main


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("conv") / "data"
    assert main(["synth", str(root), "--n", "120", "--size", "16", "--seed", "3"]) == 0
    return root


def _train(data, out, *extra):
    return main(["train", str(data), "--arch", "tiny", "--image-size", "16", "--epochs", "1", "--out", str(out),
                 "--quiet", *extra])


@pytest.mark.parametrize("argv, fragment", [
    (["train", "d", "--epochs", "0"], "--epochs: must be a whole number >= 1"),
    (["train", "d", "--epochs", "-1"], "--epochs: must be a whole number >= 1"),
    (["train", "d", "--image-size", "0"], "--image-size: must be at least 8 pixels"),
    (["train", "d", "--image-size", "1"], "--image-size: must be at least 8 pixels"),
    (["train", "d", "--lr", "nan"], "--lr: must be a finite number > 0"),
    (["train", "d", "--val-from-train", "1.5"], "--val-from-train: must be in [0, 1)"),
    (["convert", "m.keras", "o.npz", "--preprocess", "tf", "--image-size", "0"], "--image-size: must be at least 8"),
])
def test_bad_arguments_are_refused_before_any_work(argv, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2 and fragment in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []           # nothing was written


def test_train_without_arguments_prints_trains_usage():
    r = subprocess.run([sys.executable, "-m", "minicnn.cli", "train"], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.startswith("usage: minicnn train") and "give DATA" in r.stderr and "Traceback" not in r.stderr


def test_help_shows_every_default():
    r = subprocess.run([sys.executable, "-m", "minicnn.cli", "train", "--help"], capture_output=True, text=True)
    text = " ".join(r.stdout.split())
    for fragment in ("run directory (default: runs/run)", "images per batch (default: 32)",
                     "Adam learning rate (default: 0.003)", "(default: 10 x --epochs)", "--overwrite", "--traceback"):
        assert fragment in text, fragment


def test_the_datasets_own_val_split_is_used_and_named(data, tmp_path, capsys):
    assert _train(data, tmp_path / "a") == 0
    out = capsys.readouterr()
    assert "validation: the dataset's own 'val' split" in out.out
    assert "only" in out.err and "--val-from-train" in out.err       # 16 images: noisy, said so
    assert _train(data, tmp_path / "b", "--val-from-train", "0.2") == 0
    assert "validation: 0.2 of 'train' carved out by patient" in capsys.readouterr().out


def test_an_existing_run_directory_needs_resume_or_overwrite(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(data, out) == 0
    (out / "report").mkdir()
    (out / "report" / "old.html").write_text("stale")
    (out / "metrics.json").write_text("{}")
    capsys.readouterr()
    assert _train(data, out) == 1
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--overwrite" in err and "Traceback" not in err
    assert (out / "report" / "old.html").exists()          # refused: nothing touched
    assert _train(data, out, "--overwrite") == 0
    assert not (out / "report").exists() and not (out / "metrics.json").exists()   # no stale files
    assert (out / "model.npz").exists() and (out / "last.npz").exists()


def test_resume_of_a_run_without_checkpoint_says_so(tmp_path, capsys):
    (tmp_path / "dead").mkdir()
    assert main(["train", "--resume", str(tmp_path / "dead")]) == 1
    err = capsys.readouterr().err
    assert "no last.npz to resume" in err and "--overwrite" in err


def test_resume_keeps_the_epochs_the_run_was_started_with(data, tmp_path):
    from minicnn.experiment import resume_config
    out = tmp_path / "r"
    assert main(["train", str(data), "--arch", "tiny", "--image-size", "16", "--epochs", "2", "--out", str(out),
                 "--quiet", "--patience", "1"]) == 0
    assert resume_config(out).epochs == 2 and resume_config(out, epochs=5).epochs == 5
    assert resume_config(out).patience == 1


def test_predict_shows_the_decision_rule_truth_and_summary(data, tmp_path, capsys):
    out = tmp_path / "p"
    assert _train(data, out) == 0
    capsys.readouterr()
    assert main(["predict", str(out), str(data / "test")]) == 0
    text = capsys.readouterr().out
    assert "prediction: PNEUMONIA when P(PNEUMONIA) >= " in text
    assert "labelled images: accuracy" in text and "sensitivity" in text and "specificity" in text
    header = text.splitlines()[0]
    assert "true" in header
    rows = [line for line in text.splitlines()[1:] if line.endswith(("NORMAL", "PNEUMONIA", "<- wrong"))]
    assert rows and all(("NORMAL" in r.split()[1] or "PNEUMONIA" in r.split()[1]) for r in rows)


def test_predict_on_a_feature_extractor_points_to_features(tmp_path, capsys):
    from minicnn.pretrained import densenet121
    model = densenet121(include_top=False, pooling="avg", input_shape=(3, 32, 32), seed=0)
    model.save(tmp_path / "fx.npz")
    from PIL import Image
    import numpy as np
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "x.png")
    assert main(["predict", str(tmp_path / "fx.npz"), str(tmp_path / "x.png")]) == 1
    err = capsys.readouterr().err
    assert "feature extractor" in err and "minicnn features" in err


def test_evaluate_a_builder_model_gives_one_line_not_a_traceback(data, tmp_path, capsys):
    """Issue 16 bug 2: a model saved straight from a builder (string preprocessing once) is read."""
    from minicnn.pretrained import densenet121
    model = densenet121(include_top=False, pooling="avg", input_shape=(3, 32, 32), seed=0)
    model.save(tmp_path / "fx.npz")
    r = main(["evaluate", str(tmp_path / "fx.npz"), str(data), "--n-boot", "10"])
    err = capsys.readouterr().err
    assert r == 1 and "Traceback" not in err and "error:" in err


def test_predict_gradcam_writes_one_overlay_per_image(data, tmp_path, capsys):
    """Batch Grad-CAM: predict --gradcam DIR explains each image's predicted class (gradcam.explain_files)."""
    import json
    import numpy as np
    from PIL import Image
    from minicnn import load
    from minicnn.gradcam import explain_file
    run = tmp_path / "g"
    assert _train(data, run) == 0
    images = sorted((data / "test" / "PNEUMONIA").iterdir())[:2] + sorted((data / "test" / "NORMAL").iterdir())[:2]
    cams = tmp_path / "cams"
    capsys.readouterr()
    assert main(["predict", str(run), *map(str, images), "--gradcam", str(cams), "--out", str(tmp_path / "p.json")]) == 0
    assert f"wrote 4 Grad-CAM overlay(s) of the predicted class to {cams}" in capsys.readouterr().out
    assert sorted(p.name for p in cams.iterdir()) == sorted(f"{p.stem}_gradcam.png" for p in images)
    records = json.loads((tmp_path / "p.json").read_text())
    model = load(run / "model.npz")
    for r in records:
        assert Path(r["gradcam"]).name == Path(r["file"]).stem + "_gradcam.png"
        one = explain_file(model, r["file"], tmp_path / "one.png")       # the same map as `explain` draws
        assert one["class"] == r["prediction"]
        np.testing.assert_array_equal(np.asarray(Image.open(r["gradcam"])), np.asarray(Image.open(tmp_path / "one.png")))
