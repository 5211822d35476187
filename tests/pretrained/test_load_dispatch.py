"""minicnn.load: one entry point, the format recognised by content (not by the file name)."""
import shutil
from pathlib import Path

import numpy as np
import pytest

import minicnn
from minicnn.errors import UnknownNameError, WeightFileError
from minicnn.pretrained.keras_import import load_keras
from minicnn.small_cnn import conv_net

SMALL = Path(__file__).resolve().parents[1] / "ref" / "keras_small"
SHARED_H5 = Path(__file__).resolve().parents[2].parent / "shared" / "ref" / "keras_densenet121_random_notop.h5"


@pytest.mark.parametrize("ext", ["keras", "h5"])
def test_keras_models_whatever_their_name(tmp_path, ext):
    with np.load(SMALL / "outputs.npz", allow_pickle=False) as z:
        x = np.ascontiguousarray(z["x_tiny_functional"].transpose(0, 3, 1, 2))
    disguised = tmp_path / "model.bin"                       # no telling extension
    shutil.copy(SMALL / f"tiny_functional.{ext}", disguised)
    got = minicnn.load(disguised)
    np.testing.assert_array_equal(got.predict(x), load_keras(SMALL / f"tiny_functional.{ext}").predict(x))


def test_npz_models_and_run_folders(tmp_path):
    model = conv_net(image_size=32, seed=0)
    path = model.save(tmp_path / "run" / "model.npz")
    x = np.random.default_rng(0).normal(size=(2,) + tuple(model.input_shape)).astype(np.float32)
    for target in (path, tmp_path / "run"):
        np.testing.assert_array_equal(minicnn.load(target).predict(x), model.predict(x))
    assert minicnn.pretrained.load is minicnn.pretrained.loading.load


def test_weights_only_and_unknown_inputs_are_clear(tmp_path):
    if SHARED_H5.is_file():
        with pytest.raises(WeightFileError, match="weights-only.*load_weights"):
            minicnn.load(SHARED_H5)
    with pytest.raises(UnknownNameError, match="xrv-densenet121-all"):
        minicnn.load("densenet121-imaginary")
    with pytest.raises(FileNotFoundError):
        minicnn.load(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(WeightFileError, match="junk.pt"):
        minicnn.load(junk)
