"""`predict_files(..., protocol="tencrop")` and `minicnn predict --protocol tencrop`: CheXNet's published
protocol (Resize(256) + TenCrop(224), ImageNet normalisation, the ten outputs averaged) against
torchvision's transforms on a real X-ray."""
import json
from pathlib import Path

import numpy as np
import pytest

import minicnn
from minicnn import layers
from minicnn.data import Preprocessing
from minicnn.errors import DataError
from minicnn.pretrained.chexnet import CHEXNET_CLASSES, predict_ten_crop
from minicnn.predict import predict_files

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "chest_xray_val16"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    files = sorted(str(p) for p in SHARED.glob("*/*.jpeg"))
    if len(files) != 16:
        pytest.skip(f"the 16 real X-rays are not in {SHARED}")
    # a small stand-in with CheXNet's preprocessing and 14 sigmoid outputs: the protocol is under test
    model = minicnn.Sequential([layers.Conv2D(3, 4, 5, stride=4, seed=0), layers.ReLU(), layers.GlobalAvgPool2D(),
                                layers.Dense(4, 14, seed=1)], input_shape=(3, 224, 224))
    model.output_activation = "sigmoid"
    model.meta.update({"classes": list(CHEXNET_CLASSES), "outputs": list(CHEXNET_CLASSES), "threshold": 0.5,
                       "preprocessing": Preprocessing.for_weights("imagenet-torch", (3, 224, 224)).to_dict()})
    path = tmp_path_factory.mktemp("tencrop") / "m.npz"
    model.save(path)
    return model, path, [files[0], files[9]]


def torchvision_ten_crop_mean(model, file):
    from PIL import Image
    T = torchvision.transforms
    tf = T.Compose([T.Resize(256), T.TenCrop(224),
                    T.Lambda(lambda crops: torch.stack([T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])(
                        T.ToTensor()(c)) for c in crops]))])
    with Image.open(file) as im:
        crops = tf(im.convert("RGB")).numpy()
    assert crops.shape == (10, 3, 224, 224)
    return model.predict(crops, batch_size=10).mean(axis=0)


def test_predict_files_tencrop_equals_torchvision(setup):
    model, _, files = setup
    want = np.stack([torchvision_ten_crop_mean(model, f) for f in files])
    records = list(predict_files(model, files, protocol="tencrop"))
    got = np.array([[r["probabilities"][c] for c in CHEXNET_CLASSES] for r in records])
    assert [r["file"] for r in records] == files
    assert np.abs(got - want).max() <= 1e-5, np.abs(got - want).max()
    np.testing.assert_allclose(predict_ten_crop(model, files), got, atol=1e-6)   # one piece of code
    single = np.array([[r["probabilities"][c] for c in CHEXNET_CLASSES] for r in predict_files(model, files)])
    assert np.abs(single - got).max() > 1e-4                    # the protocol changes the answer
    with pytest.raises(DataError, match="protocol"):
        predict_files(model, files, protocol="fivecrop")


def test_cli_predict_protocol_tencrop(setup, tmp_path):
    from minicnn.cli import main
    model, path, files = setup
    out = tmp_path / "p.json"
    assert main(["predict", str(path), *files, "--protocol", "tencrop", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    rows = rows["predictions"] if isinstance(rows, dict) else rows
    got = np.array([[r["probabilities"][c] for c in CHEXNET_CLASSES] for r in rows])
    want = np.stack([torchvision_ten_crop_mean(model, f) for f in files])
    assert np.abs(got - want).max() <= 1e-5
