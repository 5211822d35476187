"""Models saved by minicnn at 8bb06d8 (model file format 1) load and predict exactly as they did then.

The fixtures in tests/fixtures/legacy_models were written by the OLD code (see the README there):
each ``meta['preprocessing']`` form it wrote — a dataset-fitted normalizer dict, converted models
with 'imagenet-torch' and 'tf', a builder's bare 'torch' / 'caffe' string, a transfer-learned
model's ``{"mode": "torch"}`` — with the predictions the old code made for four PNGs.
"""
import json
from pathlib import Path

import numpy as np
import pytest

import minicnn
from minicnn.data.preprocessing import Preprocessing
from minicnn.model import FORMAT_VERSION
from minicnn.predict import file_loader, predict_files, predict_loader

HERE = Path(__file__).parent / "fixtures" / "legacy_models"
EXPECTED = json.loads((HERE / "predictions.json").read_text())
IMAGES = [str(HERE / p) for p in EXPECTED["images"]]
MODES = {"trained_dataset_normalizer": "dataset", "converted_imagenet_torch": "imagenet-torch",
         "converted_tf": "tf", "builder_densenet_torch": "imagenet-torch", "builder_caffe": "imagenet-caffe",
         "transfer_head_torch": "imagenet-torch"}


def test_the_fixtures_were_written_by_format_1():
    with np.load(HERE / "trained_dataset_normalizer.npz") as z:
        assert int(z["format_version"]) == 1 < FORMAT_VERSION
    assert EXPECTED["commit"].startswith("8bb06d8")
    assert set(EXPECTED["models"]) == set(MODES)


@pytest.mark.parametrize("name", sorted(MODES))
def test_old_model_loads_upgraded_and_predicts_identically(name, tmp_path):
    entry = EXPECTED["models"][name]
    model = minicnn.load(HERE / f"{name}.npz")
    pre = Preprocessing.of(model)
    assert pre.mode == MODES[name]
    assert model.meta["preprocessing"] == pre.to_dict()            # upgraded on read to today's structure
    _, probs, _ = predict_loader(model, file_loader(IMAGES, pre))
    # The fixtures were computed on another CPU: OpenBLAS picks its float32 kernels per CPU (AVX2 /
    # AVX-512), so sums differ in their last bits between machines. Across machines the predictions
    # must agree to float32 accumulation accuracy (relative 1e-4 covers a logit of -90 rounded in
    # its last bits); on one machine they must be bit-identical (the save-again check below).
    if "records" in entry:                                            # what `minicnn predict` printed
        got = list(predict_files(model, IMAGES))
        assert [sorted(r["probabilities"]) for r in got] == [sorted(r["probabilities"]) for r in entry["records"]]
        for r, want in zip(got, entry["records"]):
            for k, v in want["probabilities"].items():
                assert r["probabilities"][k] == pytest.approx(v, rel=1e-4, abs=1e-7), (r, want)
        assert [r["prediction"] for r in got] == [r["prediction"] for r in entry["records"]]
    else:                                                             # preprocess() + predict() then
        np.testing.assert_allclose(probs.astype(np.float64), np.array(entry["probabilities"]),
                                   rtol=1e-4, atol=1e-7)
    # saved again, it is a format 2 file with the same predictions
    model.save(tmp_path / "again.npz")
    again = minicnn.load(tmp_path / "again.npz")
    assert again.meta["preprocessing"] == pre.to_dict()
    np.testing.assert_array_equal(predict_loader(again, file_loader(IMAGES, Preprocessing.of(again)))[1], probs)


def test_legacy_strings_are_read_but_not_accepted_as_new_input():
    pre = Preprocessing.from_meta({"preprocessing": "torch"}, (3, 32, 40))
    assert (pre.image_size, pre.channels, pre.mode, pre.interpolation, pre.fit) == \
        ((32, 40), 3, "imagenet-torch", "bilinear", "stretch")
    assert Preprocessing.from_meta({"preprocessing": "imagenet-caffe"}, (3, 8, 8)).mode == "imagenet-caffe"
    # what the builders will store (one line each, see the integration notes): the same object
    assert Preprocessing.from_meta({"preprocessing": Preprocessing.for_weights("imagenet-torch", (3, 32, 40)).to_dict()},
                                   None) == pre
    with pytest.raises(ValueError, match="spelled 'imagenet-torch'"):
        Preprocessing((8, 8), 3, mode="torch")
    with pytest.raises(ValueError, match="keys"):
        Preprocessing.from_dict({"image_size": [8, 8], "channels": 3, "normalizer": {"mode": "tf"}})


def test_builder_output_counts_become_num_classes():
    """Old builders stored their output count in meta['classes']; it names the outputs now."""
    model = minicnn.load(HERE / "builder_densenet_torch.npz")        # written with meta['classes'] = 3
    assert model.meta["num_classes"] == 3 and "classes" not in model.meta
    from minicnn import pretrained
    m = pretrained.vgg16(weights=None, input_shape=(3, 32, 32), classes=3)
    assert m.meta["num_classes"] == 3 and "classes" not in m.meta
