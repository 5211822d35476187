"""`minicnn summary FILE`: format, architecture, input size, classes, preprocessing for every
format minicnn reads; and a file of another architecture named as such (`--backbone resnet50`
given a DenseNet121 file)."""
from pathlib import Path

import h5py
import numpy as np
import pytest

from minicnn import Sequential, layers
from minicnn.cli import main
from minicnn.data import Preprocessing
from minicnn.data.synthetic import make_synthetic
from minicnn.pretrained import registry

KERAS_SMALL = Path(__file__).resolve().parent / "ref" / "keras_small"
DENSENET_SIG = "features.denseblock4.denselayer16.conv2.weight"
RESNET_SIG = "layer4.2.conv3.weight"


def _summary(capsys, path, *extra):
    assert main(["summary", str(path), *extra]) == 0
    out = capsys.readouterr().out
    return {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in out.splitlines() if ":" in line[:15]}, out


def _state_dict(sig, head, classes):
    return {sig: np.zeros((4, 2, 3, 3), np.float32), head: np.ones((classes, 16), np.float32),
            "x.bias": np.zeros(5, np.float32)}


def test_minicnn_model_npz(tmp_path, capsys):
    m = Sequential([layers.Conv2D(1, 2, 3, padding=1, seed=0), layers.Flatten(), layers.Dense(2 * 64, 1, seed=1)],
                   input_shape=(1, 8, 8), output_activation="sigmoid")
    m.meta.update(classes=["NORMAL", "PNEUMONIA"], positive_class="PNEUMONIA", outputs=["PNEUMONIA"],
                  preprocessing=Preprocessing(8, channels=1, mode="tf").to_dict(), threshold=[0.42])
    m.save(tmp_path / "model.npz")
    rows, out = _summary(capsys, tmp_path)                 # a run directory works too
    assert rows["format"].endswith("[npz]") and rows["architecture"] == "minicnn model"
    assert rows["input size"] == "8x8, 1 channel(s)"
    assert rows["classes"] == "NORMAL, PNEUMONIA (positive: PNEUMONIA)"
    assert rows["preprocessing"] == "Preprocessing(8x8x1, 'tf')"
    assert rows["parameters"] == f"{m.num_params():,}" and "threshold [0.42]" in out
    assert "total params" in out                           # the layer table
    rows, out = _summary(capsys, tmp_path / "model.npz", "--no-layers")
    assert "total params" not in out


def test_plain_npz_arrays(tmp_path, capsys):
    np.savez(tmp_path / "f.npz", features=np.zeros((3, 4)), labels=np.zeros(3))
    rows, _ = _summary(capsys, tmp_path / "f.npz")
    assert rows["architecture"].startswith("not recognised (2 tensors/layers)") and "not a minicnn model" in rows["architecture"]


def test_safetensors_resnet50_with_its_classes(tmp_path, capsys):
    from safetensors.numpy import save_file
    save_file(_state_dict(RESNET_SIG, "fc.weight", 3), str(tmp_path / "r.safetensors"))
    rows, out = _summary(capsys, tmp_path / "r.safetensors")
    assert rows["format"] == "safetensors [safetensors]"
    assert rows["architecture"].startswith("ResNet50 (recognised from its keys)")
    assert rows["classes"].startswith("3 outputs (fc.weight)")
    assert rows["input size"] == "not recorded in the file" and "--backbone resnet50" in out


@pytest.mark.parametrize("legacy", [False, True])
def test_torch_pth_densenet121(tmp_path, capsys, legacy):
    torch = pytest.importorskip("torch")
    sd = {k: torch.from_numpy(v) for k, v in _state_dict(DENSENET_SIG, "classifier.weight", 14).items()}
    torch.save(sd, tmp_path / "d.pth", _use_new_zipfile_serialization=not legacy)
    rows, _ = _summary(capsys, tmp_path / "d.pth")
    assert rows["format"].endswith("[torch_legacy]" if legacy else "[torch_zip]")
    assert rows["architecture"].startswith("DenseNet121") and rows["classes"].startswith("14 outputs")


def test_keras_weights_only_h5_vgg16(tmp_path, capsys):
    with h5py.File(tmp_path / "w.h5", "w") as f:
        f.attrs["layer_names"] = np.array([b"block5_conv3"], dtype="S")
        g = f.create_group("block5_conv3")
        g.attrs["weight_names"] = np.array([b"block5_conv3/kernel:0"], dtype="S")
        g.create_dataset("block5_conv3/kernel:0", data=np.zeros((3, 3, 2, 2), np.float32))
    rows, _ = _summary(capsys, tmp_path / "w.h5")
    assert rows["format"].endswith("[keras_h5]")
    assert rows["architecture"].startswith("VGG16 (recognised from its keys)")


def test_keras3_weights_h5(tmp_path, capsys):
    with h5py.File(tmp_path / "m.weights.h5", "w") as f:
        f.create_group("vars")
        f.create_group("layers/conv2d/vars").create_dataset("0", data=np.zeros((3, 3, 1, 2), np.float32))
    rows, _ = _summary(capsys, tmp_path / "m.weights.h5")
    assert rows["format"].endswith("[keras3_weights]") and rows["architecture"].startswith("not recognised")


@pytest.mark.parametrize("name, fmt, size", [("tiny_functional.keras", "keras_archive", "12x12, 3 channel(s)"),
                                             ("tiny_sequential.h5", "keras_h5_model", "10x10, 2 channel(s)")])
def test_keras_model_files(capsys, name, fmt, size):
    rows, out = _summary(capsys, KERAS_SMALL / name)
    assert rows["format"].endswith(f"[{fmt}]") and rows["input size"] == size
    assert rows["architecture"].startswith("Keras model 'tiny_")
    assert "minicnn convert" in out and f"--image-size {size.split('x')[0]}" in out
    if fmt == "keras_archive":     # its Rescaling layer is the preprocessing the file records
        assert rows["preprocessing"].startswith("inside the model: Rescaling(scale=0.007843, offset=-1.0)")
        assert rows["classes"] == "3 output(s), softmax; names not recorded in the file"


def test_unknown_file_is_one_line_error(tmp_path, capsys):
    (tmp_path / "x.bin").write_bytes(b"hello world, not weights")
    assert main(["summary", str(tmp_path / "x.bin")]) == 1
    err = capsys.readouterr().err
    assert "unrecognised or corrupt weight file" in err and len(err.strip().splitlines()) == 1


def test_backbone_given_another_architectures_file_says_which(tmp_path, capsys):
    from safetensors.numpy import save_file
    f = tmp_path / "densenet.safetensors"
    save_file(_state_dict(DENSENET_SIG, "classifier.weight", 2), str(f))
    assert registry.recognise_file(f) == "densenet121"
    data = tmp_path / "data"
    make_synthetic(data, n=24, size=16, seed=0)
    code = main(["train", str(data), "--backbone", "resnet50", "--weights", str(f), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{f} is a DenseNet121 file, not ResNet50: use --backbone densenet121" in err
    assert "missing" not in err
    with pytest.raises(Exception, match="is a DenseNet121 file, not VGG16"):
        registry.check_file_architecture("vgg16", f)
    registry.check_file_architecture("densenet121", f)      # its own architecture: no complaint


def test_a_python_builder_given_another_architectures_file_says_which(tmp_path):
    from safetensors.numpy import save_file
    from minicnn import pretrained
    from minicnn.errors import WeightFileError
    f = tmp_path / "densenet.safetensors"
    save_file(_state_dict(DENSENET_SIG, "classifier.weight", 2), str(f))
    with pytest.raises(WeightFileError, match="is a DenseNet121 file, not ResNet50") as e:
        pretrained.resnet50(weights=str(f), include_top=False, input_shape=(3, 32, 32))
    assert "missing" not in str(e.value)
    assert pretrained.resnet50.__doc__ and "ResNet" in pretrained.resnet50.__doc__ + pretrained.resnet50.__name__
