"""One corrupt image in a dataset: `--on-bad-file skip|fail` in the loader, `train` (default skip:
warned once, counted, listed in RUN/bad_files.txt), `evaluate` and `predict` (default fail); and
`predict --out` into a folder, which leaves no temporary file behind, written or failed."""
import errno
import json
import os

import numpy as np
import pytest

from minicnn.cli import main
from minicnn.data.datasets import load_dataset
from minicnn.data.loader import BatchLoader
from minicnn.data.preprocessing import Preprocessing
from minicnn.errors import DataError, ImageLoadError

TRAIN = ["--arch", "tiny", "--image-size", "16", "--epochs", "2", "--batch-size", "16", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad") / "data"
    assert main(["synth", str(root), "--n", "80", "--size", "16", "--seed", "8"]) == 0
    bad = {}
    for split in ("train", "test"):
        victim = sorted((root / split / "PNEUMONIA").iterdir())[1]      # mid-dataset, not the first file
        victim.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)        # a PNG signature, then nothing valid
        bad[split] = victim
    return root, bad


def _pre():
    return Preprocessing(16, 1, mode="none")


def test_the_loader_skips_a_corrupt_image_only_when_asked(data):
    root, bad = data
    ds = load_dataset(str(root), split="train")
    k = ds.paths.index(str(bad["train"]))
    with pytest.raises(ImageLoadError, match=str(bad["train"])):
        for _ in BatchLoader(ds, _pre(), batch_size=8, training=False).epoch(0):
            pass
    said = []
    loader = BatchLoader(ds, _pre(), batch_size=8, training=True, return_indices=True, on_bad_file="skip",
                         warn=said.append)
    for epoch in range(2):                                 # the same file left out of every epoch
        served = [idx for _, _, idx in loader.epoch(epoch)]
        assert sorted(np.concatenate(served).tolist()) == [i for i in range(len(ds)) if i != k]
    assert list(loader.skipped) == [k] and str(bad["train"]) in loader.skipped[k]
    assert len(said) == 1 and said[0].startswith("skipping an unreadable image (--on-bad-file skip): ")
    x, y, idx = loader.batch(0, 0)
    assert len(x) == len(y) == len(idx) and np.array_equal(y, ds.labels[idx])
    one = ds.subset([k])
    with pytest.raises(ImageLoadError, match="every image of the batch is unreadable"):
        BatchLoader(one, _pre(), batch_size=4, on_bad_file="skip", warn=said.append).batch(0, 0)
    with pytest.raises(DataError, match="on_bad_file must be one of"):
        BatchLoader(ds, _pre(), on_bad_file="ignore")


def test_train_skips_by_default_counts_and_lists_the_file(data, tmp_path, capsys):
    root, bad = data
    out = tmp_path / "run"
    assert main(["train", str(root), "--out", str(out), *TRAIN]) == 0
    o = capsys.readouterr()
    assert o.err.count(f"WARNING: skipping an unreadable image (--on-bad-file skip): ") == 1
    assert str(bad["train"]) in o.err
    assert (f"WARNING: 1 unreadable image(s) skipped (--on-bad-file skip); listed in {out / 'bad_files.txt'}"
            in o.out)
    lines = (out / "bad_files.txt").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{bad['train']}\t")
    assert (out / "model.npz").exists()


def test_train_on_bad_file_fail_stops_naming_the_file(data, tmp_path, capsys):
    root, bad = data
    assert main(["train", str(root), "--out", str(tmp_path / "run"), *TRAIN, "--on-bad-file", "fail"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("minicnn train: error: ") and str(bad["train"]) in err[-1]
    assert "Traceback" not in "\n".join(err)


@pytest.fixture(scope="module")
def model(data, tmp_path_factory):
    root, _ = data
    out = tmp_path_factory.mktemp("badrun") / "run"
    assert main(["train", str(root), "--out", str(out), *TRAIN]) == 0
    return out


def test_evaluate_fails_by_default_and_skips_when_asked(data, model, tmp_path, capsys):
    root, bad = data
    capsys.readouterr()
    assert main(["evaluate", str(model), str(root), "--out", str(tmp_path / "a"), "--n-boot", "10"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("minicnn evaluate: error: ") and str(bad["test"]) in err and "\n" not in err
    assert main(["evaluate", str(model), str(root), "--out", str(tmp_path / "b"), "--n-boot", "10",
                 "--on-bad-file", "skip"]) == 0
    o = capsys.readouterr()
    assert f"WARNING: skipping an unreadable image (--on-bad-file skip): " in o.err and str(bad["test"]) in o.err
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert m["skipped_files"] == [str(bad["test"])]
    assert m["n"] == len(load_dataset(str(root), split="test")) - 1


def test_predict_fails_by_default_and_skips_when_asked(data, model, tmp_path, capsys):
    root, bad = data
    folder = root / "test"
    capsys.readouterr()
    assert main(["predict", str(model), str(folder)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("minicnn predict: error: ") and str(bad["test"]) in err and "\n" not in err
    assert main(["predict", str(model), str(folder), "--on-bad-file", "skip", "--out", str(tmp_path / "p.json")]) == 0
    o = capsys.readouterr()
    assert "WARNING: skipping an unreadable image (--on-bad-file skip): " in o.err and str(bad["test"]) in o.err
    records = json.loads((tmp_path / "p.json").read_text())
    files = [r["file"] for r in records]
    assert str(bad["test"]) not in files and len(files) == len(list(folder.rglob("*.png"))) - 1


def test_predict_out_folder_leaves_no_temporary_behind(data, model, tmp_path, monkeypatch, capsys):
    from minicnn import fileio
    root, _ = data
    image = str(sorted((root / "val" / "NORMAL").iterdir())[0])

    def temporaries():
        return [p for p in tmp_path.rglob("*") if p.name.startswith(fileio.TMP_PREFIX) or p.name.endswith(".tmp")]
    (tmp_path / "existing").mkdir()
    for out, written in ((tmp_path / "existing", tmp_path / "existing" / "predictions.csv"),
                         (f"{tmp_path / 'new'}/", tmp_path / "new" / "predictions.csv")):
        assert main(["predict", str(model), image, "--out", str(out)]) == 0
        assert f"wrote {written}" in capsys.readouterr().out
        assert written.read_text().startswith("file,P(NORMAL),P(PNEUMONIA),prediction")
        assert temporaries() == []

    def full_disk(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(fileio, "_fail_hook", full_disk)
    target = tmp_path / "existing" / "p.csv"
    assert main(["predict", str(model), image, "--out", str(target)]) == 1
    assert capsys.readouterr().err == f"minicnn predict: error: No space left on device: {target}\n"
    assert temporaries() == [] and not target.exists()
    with pytest.raises(IsADirectoryError, match="is a folder; give a file name"):
        fileio.write_text(tmp_path / "existing", "x")
    assert temporaries() == []


def test_train_with_a_backbone_skips_a_corrupt_image_and_lists_it(data, tmp_path, capsys):
    root, bad = data
    run = tmp_path / "run"
    args = ["train", str(root), "--backbone", "densenet121", "--image-size", "32", "--head-epochs", "2",
            "--batch-size", "16", "--quiet"]
    assert main(args + ["--out", str(run)]) == 0                      # default: skip
    captured = capsys.readouterr()
    assert "left out 1 unreadable image(s)" in captured.out
    listed = (run / "bad_files.txt").read_text()
    assert str(bad["train"]) in listed and len(listed.strip().splitlines()) == 1
    n_train = len(load_dataset(str(root), split="train"))
    assert f"head trained on {n_train - 1} images" in captured.out
    assert main(args + ["--out", str(tmp_path / "fail"), "--on-bad-file", "fail"]) == 1
    err = capsys.readouterr().err
    assert str(bad["train"]) in err and len(err.strip().splitlines()) <= 2


def test_bad_files_are_listed_after_every_epoch(data, tmp_path, monkeypatch):
    """A run killed after its first epoch already lists what it skipped (written each epoch)."""
    from minicnn import experiment
    root, bad = data
    seen = []
    real = experiment.BadFiles.write

    def spy(self, out, loaders):
        n = real(self, out, loaders)
        seen.append((n, (tmp_path / "run" / "bad_files.txt").exists()))
        return n
    monkeypatch.setattr(experiment.BadFiles, "write", spy)
    assert main(["train", str(root), "--out", str(tmp_path / "run")] + TRAIN) == 0
    assert len(seen) >= 3 and seen[0] == (1, True)            # after epoch 1, before the run ends
