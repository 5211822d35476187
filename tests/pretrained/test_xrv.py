"""torchxrayvision's DenseNet121 / ResNet50 and CheXNet checkpoints, without torch, against torch.

Random weights (random batch-norm statistics, a classifier scaled so the outputs are not
saturated), saved here the way the projects save them: torchxrayvision's DenseNet as a whole
pickled module (``torch.save(model)``, zip and legacy), its ResNet50 as a state_dict, CheXNet as a
legacy-serialized checkpoint dict of a DataParallel model with the old key names. The torch side
is torchxrayvision itself, loading the same files from its cache folder.
"""
import math
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
xrv = pytest.importorskip("torchxrayvision")
skimage_io = pytest.importorskip("skimage.io")

import minicnn  # noqa: E402
from minicnn import gradcheck  # noqa: E402
from minicnn.data import Preprocessing  # noqa: E402
from minicnn.errors import UsageError, WeightFileError  # noqa: E402
from minicnn.layers import OperatingPoints  # noqa: E402
from minicnn.layers.elementwise import operating_points_reference  # noqa: E402
from minicnn.pretrained import check_input_range, registry  # noqa: E402
from minicnn.pretrained.chexnet import CHEXNET_CLASSES, ten_crop_batch  # noqa: E402
from minicnn.pretrained.xrv import PATHOLOGIES  # noqa: E402
from torch_reference import randomize  # noqa: E402

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "chest_xray_val16"
ALL = xrv.models.model_urls["all"]
RES = xrv.models.model_urls["resnet50-res512-all"]
TOL = 1e-4
E2E_TOL = 0.02


@pytest.fixture(scope="session")
def xrays():
    files = sorted(str(p) for p in SHARED.glob("*/*.jpeg"))
    if len(files) != 16:
        pytest.skip(f"the 16 real X-rays are not in {SHARED}")
    return files


def xrv_pipeline(files, size):
    """torchxrayvision's README recipe: normalize(img, 255), one channel, XRayCenterCrop, XRayResizer."""
    tf = torchvision.transforms.Compose([xrv.datasets.XRayCenterCrop(), xrv.datasets.XRayResizer(size)])
    out = []
    for f in files:
        img = xrv.datasets.normalize(skimage_io.imread(f), 255)
        img = img.mean(2) if img.ndim == 3 else img
        out.append(tf(img[None]))
    return np.stack(out).astype(np.float32)


def _scale_head(linear, feats, seed):
    """Random head weights giving logits ~ N(-1.5, 1.5) on these features (not saturated, around the thresholds)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = torch.randn(linear.weight.shape, generator=g)
        z = feats @ w.T
        s = 1.5 / z.std(0)
        linear.weight.copy_(w * s[:, None])
        linear.bias.copy_(-z.mean(0) * s - 1.5)


@pytest.fixture(scope="session")
def densenet_files(xrays, tmp_path_factory):
    """torchxrayvision DenseNet121 saved as torchxrayvision saves it (zip and legacy), its reference outputs."""
    d = tmp_path_factory.mktemp("xrv")
    fname = Path(ALL["weights_url"]).name
    torch.manual_seed(0)
    model = xrv.models.DenseNet()
    randomize(torch, model, 0)
    model.eval()
    x = xrv_pipeline(xrays, 224)
    with torch.no_grad():
        _scale_head(model.classifier, model.features2(torch.from_numpy(x)), 1)
    paths = {}
    for fmt, kw in [("zip", {}), ("legacy", {"_use_new_zipfile_serialization": False})]:
        (d / fmt).mkdir()
        paths[fmt] = d / fmt / fname
        torch.save(model, paths[fmt], **kw)
    assert paths["zip"].read_bytes()[:2] == b"PK" and paths["legacy"].read_bytes()[:2] != b"PK"
    # torchxrayvision itself loads the file from its cache folder and sets op_threshs from model_urls
    ref = xrv.models.DenseNet(weights="densenet121-res224-all", cache_dir=str(d / "zip"))
    with torch.no_grad():
        calibrated = ref(torch.from_numpy(x)).numpy()
        ref.op_threshs = None                                 # the maintainer's way to raw outputs: logits
        logits = ref(torch.from_numpy(x[:4])).numpy()        # the uncalibrated test uses 4 images
    return {"paths": paths, "x": x, "calibrated": calibrated, "logits": logits, "dir": d}


# ------------------------------------------------------------------------------ calibration node
def test_operating_points_layer_is_op_norm():
    rng = np.random.default_rng(0)
    t = np.array(ALL["op_threshs"], dtype=np.float64)
    t[[2, 5]] = np.nan
    p = rng.uniform(0, 1, (6, 18))
    p[0] = t                                                   # exactly at the thresholds: 0.5
    layer = OperatingPoints(t)
    y = layer.forward(p)
    want = xrv.models.op_norm(torch.tensor(p, dtype=torch.float32), torch.tensor(t, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(y, want, atol=1e-6)
    np.testing.assert_allclose(y, operating_points_reference(p, layer.thresholds), atol=1e-6)
    np.testing.assert_allclose(y[0][~np.isnan(t)], 0.5, atol=1e-6)
    assert np.all(y[:, [2, 5]] == 0.5)
    errs = gradcheck(OperatingPoints(t), np.clip(p[1:], 0.02, 0.98))
    assert max(errs.values()) < 1e-6, errs
    with pytest.raises(UsageError, match="thresholds"):
        OperatingPoints([0.3, 1.2])


# ------------------------------------------------------------------------------ preprocessing
def test_preprocessing_equals_torchxrayvision(xrays, densenet_files):
    model = minicnn.load(densenet_files["paths"]["zip"], output="logits")
    pre = Preprocessing.of(model)
    assert pre == Preprocessing.for_xrv(224) and pre.mode == "xrv" and pre.channels == 1
    x = pre.load_files(xrays)
    err = float(np.abs(x - densenet_files["x"]).max())
    assert x.shape == (16, 1, 224, 224) and err <= 1.0, err
    assert x.min() < -900 and x.max() > 500                     # really on the [-1024, 1024] scale
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_input_range(x, model)
    with pytest.warns(UserWarning, match="-1024, 1024"):        # torchxrayvision's issue #89: raw pixels
        assert not check_input_range(x / 1024 * 127.5 + 127.5, model)


# ------------------------------------------------------------------------------ DenseNet121 parity
def test_densenet_zip_calibrated_parity(densenet_files):
    model = minicnn.load(densenet_files["paths"]["zip"])
    assert model.meta["registry"] == "xrv-densenet121-all" and model.meta["output"] == "calibrated"
    assert model.meta["classes"] == ALL["labels"] == list(PATHOLOGIES)
    assert list(model.nodes)[-2:] == ["sigmoid", "calibration"] and model.output_activation is None
    np.testing.assert_allclose(model.nodes["calibration"].layer.thresholds, ALL["op_threshs"], rtol=1e-6)
    p = model.predict(densenet_files["x"], batch_size=8)
    err = float(np.abs(p - densenet_files["calibrated"]).max())
    assert err <= TOL, err
    spread = float((p.max(0) - p.min(0)).max())
    assert spread > 10 * E2E_TOL, spread
    densenet_files["zip_err"] = err


def test_densenet_legacy_uncalibrated_parity(densenet_files):
    model = minicnn.load(densenet_files["paths"]["legacy"], output="probabilities")
    assert "calibration" not in model.nodes and model.output_activation == "sigmoid"
    x = densenet_files["x"][:4]
    z = model.predict(x, logits=True)
    want = densenet_files["logits"][:4]
    p = model.predict(x)
    p_err = float(np.abs(p - 1 / (1 + np.exp(-want))).max())
    assert p_err <= TOL, p_err
    z_err = float(np.abs(z - want).max() / np.abs(want).max())
    assert z_err <= TOL, z_err
    # the same file as 'logits'
    assert minicnn.load(densenet_files["paths"]["legacy"], output="logits").output_activation is None


def test_end_to_end_from_image_files(xrays, densenet_files):
    """minicnn's preprocessing + model vs torchxrayvision's README pipeline + model, from the JPEG files."""
    model = minicnn.load(densenet_files["paths"]["legacy"])
    recs = list(minicnn.predict_files(model, xrays, batch_size=8))
    p = np.array([[r["probabilities"][k] if k else np.nan for k in PATHOLOGIES] for r in recs])
    assert [r["file"] for r in recs] == xrays
    err = float(np.abs(p - densenet_files["calibrated"]).max())
    assert err <= E2E_TOL, err
    spread = float((p.max(0) - p.min(0)).max())
    assert spread > 10 * E2E_TOL, spread


def test_unknown_file_loads_uncalibrated_with_a_warning(densenet_files, tmp_path):
    other = tmp_path / "my-finetuned-densenet.pt"
    shutil.copy(densenet_files["paths"]["zip"], other)
    with pytest.warns(UserWarning, match="uncalibrated"):
        model = minicnn.load(other)
    assert model.meta["output"] == "probabilities" and "calibration" not in model.nodes
    assert model.meta["registry"] is None and model.meta["classes"] == list(PATHOLOGIES)


def test_registry_name_from_the_cache_and_digest_match(densenet_files, tmp_path, monkeypatch):
    """A file placed in the cache by hand is found by name (minicnn's and torchxrayvision's); its SHA-256
    is recorded at first use, and a renamed copy is then recognised by that digest."""
    monkeypatch.setenv("MINICNN_HOME", str(tmp_path))
    cached = tmp_path / "weights" / Path(ALL["weights_url"]).name
    cached.parent.mkdir()
    shutil.copy(densenet_files["paths"]["legacy"], cached)
    a = minicnn.load("xrv-densenet121-all")
    assert a.meta["registry"] == "xrv-densenet121-all" and (tmp_path / "weights" / (cached.name + ".sha256")).is_file()
    b = minicnn.load("densenet121-res224-all", output="probabilities")
    assert b.meta["registry"] == "xrv-densenet121-all" and b.meta["output"] == "probabilities"
    renamed = tmp_path / "renamed.pt"
    shutil.copy(cached, renamed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = minicnn.load(renamed)
    assert c.meta["registry"] == "xrv-densenet121-all" and "calibration" in c.nodes
    for name in ("nih", "pc", "chex", "rsna", "mimic_nb", "mimic_ch"):
        e = registry.get(f"xrv-densenet121-{name}")
        want = xrv.models.model_urls[f"densenet121-res224-{name}"]
        assert e.url == want["weights_url"] and list(e.outputs) == want["labels"]
        np.testing.assert_array_equal(np.array(e.op_threshs), np.array(want["op_threshs"], dtype=np.float64))
        assert e.preprocessing == "xrv" and e.licence and e.image_size == 224
    with pytest.raises(KeyError, match="xrv-densenet121-all"):
        minicnn.load("xrv-densenet121-imaginary")


def test_saved_model_keeps_the_calibration(densenet_files, tmp_path):
    model = minicnn.load(densenet_files["paths"]["zip"], output="calibrated")
    out = tmp_path / "xrv.npz"
    model.save(out)
    back = minicnn.load(out)
    assert list(back.nodes) == list(model.nodes) and back.meta["classes"] == model.meta["classes"]
    np.testing.assert_array_equal(back.nodes["calibration"].layer.thresholds, model.nodes["calibration"].layer.thresholds)
    assert Preprocessing.of(back) == Preprocessing.for_xrv(224)
    err = float(np.abs(back.predict(densenet_files["x"][:1]) - densenet_files["calibrated"][:1]).max())
    assert err <= TOL, err


# ------------------------------------------------------------------------------ ResNet50 at 512 px
def test_resnet50_state_dict_at_512(xrays, tmp_path_factory):
    d = tmp_path_factory.mktemp("xrv_resnet")
    net = torchvision.models.resnet50(num_classes=18, weights=None)
    net.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    randomize(torch, net, 2)
    net.eval()
    files = xrays[:2]
    x = xrv_pipeline(files, 512)
    with torch.no_grad():
        feats = torch.flatten(torch.nn.Sequential(*list(net.children())[:-1])(torch.from_numpy(x)), 1)
        _scale_head(net.fc, torch.cat([feats, feats * 0.5]), 3)       # 2 images: a wider sample for the scale
    path = d / Path(RES["weights_url"]).name
    torch.save(net.state_dict(), path)
    ref = xrv.models.ResNet(weights="resnet50-res512-all", cache_dir=str(d))
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    model = minicnn.load(path)
    assert model.meta["registry"] == "xrv-resnet50-res512-all" and model.input_shape == (1, 512, 512)
    pre = Preprocessing.of(model)
    mx = pre.load_files(files)
    assert float(np.abs(mx - x).max()) <= 1.0
    p = model.predict(x, batch_size=2)
    err = float(np.abs(p - want).max())
    assert err <= TOL, err
    assert float(np.abs(p[0] - p[1]).max()) > 0.05                    # the two images differ


# ------------------------------------------------------------------------------ CheXNet layout
def _legacyfy(key):
    return re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key)


def test_chexnet_checkpoint(xrays, tmp_path):
    net = torchvision.models.densenet121(weights=None)
    net.classifier = torch.nn.Sequential(torch.nn.Linear(1024, 14), torch.nn.Sigmoid())
    randomize(torch, net, 4)
    net.eval()
    model0 = minicnn.pretrained.chexnet()
    x = Preprocessing.of(model0).load_files(xrays[:3])
    assert x.shape == (3, 3, 224, 224)
    with torch.no_grad():
        f = torch.nn.functional.adaptive_avg_pool2d(torch.relu(net.features(torch.from_numpy(x))), 1).flatten(1)
        _scale_head(net.classifier[0], f, 5)
        want = net(torch.from_numpy(x)).numpy()
    sd = {"module.densenet121." + _legacyfy(k): v for k, v in net.state_dict().items()}
    assert any(".norm.1." in k for k in sd) and any(k.endswith("classifier.0.weight") for k in sd)
    path = tmp_path / "model.pth.tar"
    torch.save({"epoch": 99, "arch": "densenet121", "state_dict": sd, "best_prec1": 0.84,
                "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]}}, path, _use_new_zipfile_serialization=False)
    model = minicnn.load(path)
    assert model.meta["classes"] == list(CHEXNET_CLASSES) and model.output_activation == "sigmoid"
    assert Preprocessing.of(model).mode == "imagenet-torch"
    p = model.predict(x)
    err = float(np.abs(p - want).max())
    assert p.shape == (3, 14) and err <= TOL, err
    assert float((p.max(0) - p.min(0)).max()) > 0.05
    e = registry.get("chexnet-densenet121")
    assert "TenCrop" in e.protocol and list(e.outputs) == list(CHEXNET_CLASSES)


def test_ten_crop_batch_is_torchvision_tencrop():
    img = torch.rand(3, 256, 300)
    want = torch.stack(torchvision.transforms.TenCrop(224)(img)).numpy()
    np.testing.assert_array_equal(ten_crop_batch(img.numpy(), 224), want)


# ------------------------------------------------------------------------------ one entry point
def test_load_recognises_torchvision_state_dicts_and_onnx(tmp_path):
    sd = torchvision.models.resnet50(num_classes=5, weights=None).state_dict()
    p = tmp_path / "some_resnet.bin"                   # the name says nothing: the keys say resnet50
    torch.save(sd, p)
    m = minicnn.load(p)
    assert m.meta["architecture"] == "resnet50" and m.meta["num_classes"] == 5 and "classes" not in m.meta
    np.testing.assert_array_equal(m.nodes["fc"].layer.params["W"], sd["fc.weight"].numpy().T)
    onnx_file = tmp_path / "model.weights"
    torch.onnx.export(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU()), torch.zeros(1, 1, 8, 8),
                      str(onnx_file), dynamo=False)
    assert minicnn.readers.detect_format(onnx_file) == "onnx"
    onnx_model = minicnn.load(onnx_file)                # found by content, whatever the name
    assert isinstance(onnx_model, minicnn.Graph) and onnx_model.meta["onnx"]["outputs"]
    junk = tmp_path / "pickled_module.pt"
    torch.save(torch.nn.Sequential(torch.nn.Linear(2, 2)), junk)
    with pytest.raises(WeightFileError, match="Sequential"):
        minicnn.load(junk)


# ------------------------------------------------------------------------------ DICOM (read_xray_dcm)
def test_dicom_follows_read_xray_dcm(xrays, tmp_path):
    pytest.importorskip("pydicom")
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    img = skimage_io.imread(xrays[8]).astype(np.uint16) * 16                 # a 12-bit X-ray
    pre = Preprocessing.for_xrv(224)
    for photometric in ("MONOCHROME2", "MONOCHROME1"):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
        ds.PatientID, ds.Modality = "p1", "CR"
        stored = img if photometric == "MONOCHROME2" else (4095 - img).astype(np.uint16)
        ds.set_pixel_data(stored, photometric_interpretation=photometric, bits_stored=12)
        ds.WindowCenter, ds.WindowWidth = 1000, 800                         # ignored, as read_xray_dcm does
        path = tmp_path / f"{photometric}.dcm"
        ds.save_as(path, enforce_file_format=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = xrv.utils.read_xray_dcm(str(path))
        want = xrv.datasets.XRayResizer(224)(xrv.datasets.XRayCenterCrop()(ref[None]))
        got = pre.load_files([path])
        err = float(np.abs(got[0] - want).max())
        assert err <= 1.0, (photometric, err)
        assert got.min() < -500 and got.max() > 500


def test_chexnet_ten_crop_protocol(xrays):
    """predict_ten_crop = torchvision Resize(256) + TenCrop(224) + normalisation, outputs averaged."""
    from minicnn.pretrained.chexnet import predict_ten_crop
    from PIL import Image
    from minicnn import layers
    # a small stand-in with CheXNet's preprocessing: the protocol, not the network, is under test
    model = minicnn.Sequential([layers.Conv2D(3, 4, 5, stride=4, seed=0), layers.ReLU(), layers.GlobalAvgPool2D(),
                                layers.Dense(4, 14, seed=1)], input_shape=(3, 224, 224))
    model.meta["preprocessing"] = Preprocessing.for_weights("imagenet-torch", (3, 224, 224)).to_dict()
    tf = torchvision.transforms.Compose([
        torchvision.transforms.Resize(256), torchvision.transforms.TenCrop(224),
        torchvision.transforms.Lambda(lambda crops: torch.stack([torchvision.transforms.ToTensor()(c) for c in crops])),
        torchvision.transforms.Lambda(lambda crops: torch.stack([torchvision.transforms.Normalize(
            [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])(c) for c in crops]))])
    crops = tf(Image.open(xrays[9]).convert("RGB")).numpy()
    want = model.predict(crops, batch_size=10).mean(axis=0)
    got = predict_ten_crop(model, [xrays[9]])[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_gradcam_sees_the_calibration(densenet_files):
    """Grad-CAM on the calibrated graph explains through the calibration node: a positive rescaling of the
    score, so the normalised map equals the logit's map."""
    from minicnn.gradcam import gradcam
    cal = minicnn.load(densenet_files["paths"]["zip"])
    raw = minicnn.load(densenet_files["paths"]["zip"], output="logits")
    x = densenet_files["x"][:1]
    h_cal, info = gradcam(cal, x, target_class="Pneumonia")
    h_raw, _ = gradcam(raw, x, target_class="Pneumonia")
    assert info["class"] == "Pneumonia" and info["output"] == PATHOLOGIES.index("Pneumonia") and h_cal.shape == (7, 7)
    assert h_cal.max() == 1.0
    np.testing.assert_allclose(h_cal, h_raw, atol=1e-4)
    assert abs(float(info["probs"][0, 8]) - float(densenet_files["calibrated"][0, 8])) <= TOL


def test_backbone_without_the_head(densenet_files):
    """include_top=False: the 1-channel feature extractor (the head's tensors dropped and listed)."""
    from minicnn.pretrained import xrv_densenet121
    bb = xrv_densenet121(densenet_files["paths"]["legacy"], include_top=False, pooling="avg")
    assert "classifier" not in bb.nodes and "calibration" not in bb.nodes and bb.meta["include_top"] is False
    assert set(bb.meta["dropped"]) >= {"classifier.weight", "classifier.bias"}
    assert Preprocessing.of(bb) == Preprocessing.for_xrv(224) and bb.input_shape == (1, 224, 224)
    full = minicnn.load(densenet_files["paths"]["legacy"], output="logits")
    np.testing.assert_array_equal(bb.nodes["features.conv0"].layer.params["W"],
                                  full.nodes["features.conv0"].layer.params["W"])


def test_cli_takes_a_registry_name(xrays, densenet_files, tmp_path, monkeypatch, capsys):
    """`minicnn predict xrv-densenet121-all IMAGE` (the file placed in the cache by hand: no network)."""
    from minicnn.cli import main
    monkeypatch.setenv("MINICNN_HOME", str(tmp_path))
    (tmp_path / "weights").mkdir()
    shutil.copy(densenet_files["paths"]["zip"], tmp_path / "weights" / Path(ALL["weights_url"]).name)
    assert main(["summary", "xrv-densenet121-all"]) == 0
    assert "calibration" in capsys.readouterr().out
    assert main(["predict", "xrv-densenet121-all", xrays[3]]) == 0
    out = capsys.readouterr().out
    assert Path(xrays[3]).name in out and "Pneumonia" in out


def test_cli_explain_pneumonia_through_the_calibration(xrays, densenet_files, tmp_path, capsys):
    """`minicnn explain FILE.pt IMAGE --class Pneumonia`: Grad-CAM of the calibrated output (the graph's
    last node is the calibration), its probability the one torchxrayvision gives."""
    from PIL import Image
    from minicnn.cli import main
    model_file = densenet_files["paths"]["zip"]
    assert list(minicnn.load(model_file).nodes)[-1] == "calibration"
    out = tmp_path / "cam.png"
    assert main(["explain", str(model_file), xrays[9], "--class", "Pneumonia", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Grad-CAM of 'Pneumonia'" in text
    p = float(re.search(r"P = ([0-9.]+)", text).group(1))
    assert abs(p - float(densenet_files["calibrated"][9, PATHOLOGIES.index("Pneumonia")])) <= TOL + 5e-5
    with Image.open(out) as im:
        assert im.size[0] > 100 and im.size[1] > 100
    assert main(["explain", str(model_file), xrays[9], "--class", "NoSuchFinding", "--out", str(tmp_path / "x.png")]) != 0
    assert "unknown class 'NoSuchFinding'" in capsys.readouterr().err


def test_cli_evaluate_a_torchxrayvision_file_on_a_class_folder(xrays, densenet_files, tmp_path, capsys):
    """`minicnn evaluate FILE.pt FOLDER`: NORMAL/PNEUMONIA scored on the calibrated "Pneumonia" output
    (threshold 0.5, torchxrayvision's operating point), the other 17 outputs skipped and said so."""
    sk = pytest.importorskip("sklearn.metrics")
    import json
    from minicnn.cli import main
    assert main(["evaluate", str(densenet_files["paths"]["zip"]), str(SHARED), "--out", str(tmp_path),
                 "--n-boot", "20"]) == 0
    assert "skipped (not in the data)" in capsys.readouterr().err
    m = json.loads((tmp_path / "metrics.json").read_text())
    p = densenet_files["calibrated"][:, PATHOLOGIES.index("Pneumonia")].astype(np.float64)
    y = np.array([Path(f).parent.name == "PNEUMONIA" for f in xrays], float)
    assert m["evaluated_outputs"] == {"Pneumonia": "PNEUMONIA"} and len(m["skipped_outputs"]) == 17
    assert m["threshold"] == 0.5
    assert m["roc_auc"] == pytest.approx(sk.roc_auc_score(y, p), abs=1e-9)
    assert m["confusion"] == sk.confusion_matrix(y, p >= 0.5, labels=[0, 1]).tolist()
