"""Small valid seed files of every format the readers accept, and the JSON-level mutation of
the formats that carry a JSON description (minicnn's architecture, Keras' config.json)."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
KERAS_SMALL = ROOT / "tests" / "ref" / "keras_small"

HOSTILE_VALUES = (None, -1, 0, 10 ** 12, "x", "", [], {}, 1.5, True, [1, 2, 3], [0, 0], {"a": 1}, 2 ** 63,
                  float("nan"), "../../etc/passwd", [[1]], -(10 ** 9))


def _tiny_model():
    from minicnn.layers import Conv2D, Dense, GlobalAvgPool2D, ReLU
    from minicnn.layers.norm import BatchNorm2D
    from minicnn.model import Sequential
    return Sequential([Conv2D(1, 2, 3, padding=1, seed=0), BatchNorm2D(2), ReLU(), GlobalAvgPool2D(),
                       Dense(2, 1, seed=0)], input_shape=(1, 6, 6))


def _npz_bytes(arrays: dict) -> bytes:
    bio = io.BytesIO()
    np.savez(bio, **arrays)
    return bio.getvalue()


def npz_model() -> bytes:
    return _npz_bytes(_tiny_model().to_arrays())


def checkpoint(tmp: Path) -> bytes:
    """``last.npz`` as training writes it (``train.save_checkpoint`` after one optimizer step)."""
    from minicnn.optim import Adam
    from minicnn.train import TrainState, save_checkpoint
    model = _tiny_model()
    opt = Adam(model.params(), lr=1e-3)
    model.forward(np.zeros((2, 1, 6, 6), np.float32), training=True)
    model.backward(np.ones((2, 1), np.float32))
    opt.step(model.grads())
    p = tmp / "last.npz"
    save_checkpoint(p, model, opt, TrainState(epoch=1, history=[{"epoch": 0, "loss": 0.5}]))
    return p.read_bytes()


def safetensors_file() -> bytes:
    from safetensors.numpy import save
    return save({"conv.weight": np.arange(18, dtype=np.float32).reshape(2, 1, 3, 3),
                 "conv.bias": np.zeros(2, np.float32), "fc.weight": np.ones((1, 2), np.float16)})


def _torch_sd():
    import torch
    return {"conv.weight": torch.arange(18, dtype=torch.float32).reshape(2, 1, 3, 3),
            "conv.bias": torch.zeros(2), "bn.running_var": torch.ones(2),
            "bn.num_batches_tracked": torch.tensor(3)}


def _torch_bytes(obj, legacy: bool = False) -> bytes:
    """``torch.save(obj)`` as bytes: the zip serialization, or the legacy (torch < 1.6) one."""
    import torch
    bio = io.BytesIO()
    torch.save(obj, bio, _use_new_zipfile_serialization=not legacy)
    return bio.getvalue()


def pth_zip() -> bytes:
    return _torch_bytes(_torch_sd())


def pth_legacy() -> bytes:
    return _torch_bytes(_torch_sd(), legacy=True)


def keras_h5() -> bytes:
    return (KERAS_SMALL / "tiny_sequential.h5").read_bytes()


def keras_archive() -> bytes:
    return (KERAS_SMALL / "tiny_sequential.keras").read_bytes()


def png() -> bytes:
    from PIL import Image
    bio = io.BytesIO()
    Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8)).save(bio, "PNG")
    return bio.getvalue()


def jpeg() -> bytes:
    from PIL import Image
    bio = io.BytesIO()
    Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8)).save(bio, "JPEG", quality=90)
    return bio.getvalue()


def _dicom(syntax) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, "1.2.3.4"
    ds.PatientID, ds.Modality = "p1", "CR"
    ds.set_pixel_data((np.arange(64).reshape(8, 8) * 60).astype(np.uint16), photometric_interpretation="MONOCHROME2",
                      bits_stored=12)
    ds.WindowCenter, ds.WindowWidth = 2000, 3000
    if syntax is not None:
        ds.compress(syntax)
    bio = io.BytesIO()
    ds.save_as(bio, enforce_file_format=True)
    del generate_uid
    return bio.getvalue()


def dicom() -> bytes:
    return _dicom(None)


def dicom_rle() -> bytes:
    from pydicom.uid import RLELossless
    return _dicom(RLELossless)


def dicom_deflate() -> bytes:
    """Deflated Explicit VR Little Endian: the whole dataset after the file meta is zlib-deflated."""
    from pydicom import dcmread
    from pydicom.uid import DeflatedExplicitVRLittleEndian
    ds = dcmread(io.BytesIO(_dicom(None)))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    bio = io.BytesIO()
    ds.save_as(bio, enforce_file_format=True)
    return bio.getvalue()


def dicom_jpeg() -> bytes:
    """JPEG Baseline (8-bit): a Pillow JPEG encapsulated as pydicom would read it from a modality."""
    from PIL import Image
    from pydicom import dcmread
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit
    ds = dcmread(io.BytesIO(_dicom(None)))
    pixels = (np.arange(64).reshape(8, 8) * 4).astype(np.uint8)
    bio = io.BytesIO()
    Image.fromarray(pixels).save(bio, "JPEG", quality=90)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.WindowCenter, ds.WindowWidth = 128, 256
    ds.PixelData = encapsulate([bio.getvalue()])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


# ----------------------------------------------------------------------- torchxrayvision pickles
def _xrv_tiny():
    """A torchxrayvision ``DenseNet`` of the real classes, shrunk (growth 4, blocks (1, 1)), with
    random batch-norm statistics and ``op_threshs`` set as torchxrayvision sets them."""
    import torch
    import torchxrayvision as xrv
    torch.manual_seed(0)
    m = xrv.models.DenseNet(growth_rate=4, block_config=(1, 1), num_init_features=4, bn_size=2)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.1, 0.1)
            mod.running_var.uniform_(0.5, 2.0)
    m.op_threshs = torch.rand(18)
    return m.eval()


def xrv_zip() -> bytes:
    return _torch_bytes(_xrv_tiny())


def xrv_legacy() -> bytes:
    return _torch_bytes(_xrv_tiny(), legacy=True)


def xrv_full() -> bytes:
    """A full-size torchxrayvision DenseNet121 (``torch.save(model)``, zip), random weights: the seed of
    the ``minicnn.load`` path. Mutated through :func:`mutate_pickle_member` (the 28 MB of weights stay)."""
    import torch
    import torchxrayvision as xrv
    torch.manual_seed(0)
    return _torch_bytes(xrv.models.DenseNet(weights=None).eval())


def xrv_oldtorch(tmp: Path) -> bytes:
    """A torch < 1.6 torchxrayvision file, built by hand without torch (the assembler of
    ``tests/pretrained/test_xrv_pickle.py``): module classes through ``('module', cls, file, source)``
    ids, NEWOBJ + BUILD, ``_rebuild_tensor`` v1 on ``torch.cuda.FloatStorage``, a transposed view,
    ``_backend`` -- forms today's torch no longer writes."""
    from tests.pretrained.test_xrv_pickle import G, I, S, legacy_file, module, tensor_v1
    rng = np.random.default_rng(0)
    conv = rng.standard_normal((2, 1, 3, 3)).astype(np.float32)
    w, b = rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    backend = ("_backend", G("torch.nn.backends.thnn", "_get_thnn_function_backend") + b")R")
    features = module("torch.nn.modules.container.Sequential", modules=[
        ("conv0", module("torch.nn.modules.conv.Conv2d", params=[("weight", tensor_v1("0", 18, 0, (2, 1, 3, 3),
                                                                                        (9, 9, 3, 1)))],
                         attrs=[("in_channels", I(1)), ("out_channels", I(2)), backend])),
        ("relu0", module("torch.nn.modules.activation.ReLU", attrs=[("inplace", b"\x88")]))])
    linear = module("torch.nn.modules.linear.Linear",
                    params=[("weight", tensor_v1("1", 6, 0, (3, 2), (1, 3))), ("bias", tensor_v1("2", 3, 0, (3,), (1,)))],
                    attrs=[("training", b"\x89"), ("in_features", I(2)), ("out_features", I(3)), backend])
    root = module("torchxrayvision.models.DenseNet", modules=[("features", features), ("classifier", linear)],
                  attrs=[("pathologies", b"](" + S("Pneumonia") + S("") + S("Edema") + b"e")])
    p = tmp / "old.pt"
    legacy_file(p, root, [("0", conv.ravel()), ("1", w.T.ravel()), ("2", b)])
    return p.read_bytes()


def pickle_member(data: bytes) -> tuple[dict, str]:
    """The members of a torch zip (name -> bytes) and the name of its ``data.pkl``."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}
    return members, next(n for n in members if n.endswith("/data.pkl"))


def repack_torch_zip(members: dict) -> bytes:
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_STORED) as z:
        for n, b in members.items():
            z.writestr(n, b)
    return bio.getvalue()


# ------------------------------------------------------------------------------------------ ONNX
def _onnx_model():
    """Conv -> BatchNormalization -> Relu -> MaxPool -> GlobalAveragePool -> Flatten -> Gemm -> Softmax."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    inits = {"w": rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "b": np.zeros(4, np.float32),
             "scale": np.ones(4, np.float32), "shift": np.zeros(4, np.float32),
             "mean": rng.uniform(-0.1, 0.1, 4).astype(np.float32), "var": rng.uniform(0.5, 2, 4).astype(np.float32),
             "fc": rng.standard_normal((4, 2)).astype(np.float32), "fcb": np.zeros(2, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1], strides=[1, 1]),
             helper.make_node("BatchNormalization", ["c", "scale", "shift", "mean", "var"], ["n"], name="bn",
                              epsilon=1e-5),
             helper.make_node("Relu", ["n"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("GlobalAveragePool", ["p"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat", axis=1),
             helper.make_node("Gemm", ["f", "fc", "fcb"], ["z"], name="gemm"),
             helper.make_node("Softmax", ["z"], ["y"], name="softmax", axis=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="minicnn-fuzz")
    onnx.checker.check_model(m)
    return m


def onnx_file() -> bytes:
    return _onnx_model().SerializeToString()


#: The external data file of the ``onnx_ext`` seed, written beside each case.
ONNX_EXTERNAL_NAME = "weights.bin"


def onnx_external() -> tuple[bytes, bytes]:
    """The ``onnx`` seed with every initializer in ``weights.bin`` beside it: ``(model bytes, data bytes)``."""
    from onnx import TensorProto
    m = _onnx_model()
    blob = bytearray()
    for t in m.graph.initializer:
        raw = t.raw_data
        offset = len(blob)
        blob += raw
        t.ClearField("raw_data")
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", ONNX_EXTERNAL_NAME), ("offset", str(offset)), ("length", str(len(raw)))):
            t.external_data.add(key=k, value=v)
    return m.SerializeToString(), bytes(blob)


# --------------------------------------------------------------------------- JSON-level mutation
def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def edit_json(obj, which: int, value_index: int, drop: bool):
    """``obj`` with one value (chosen by ``which``) replaced by a hostile value, or its key dropped."""
    paths = list(_paths(obj))[1:]
    if not paths:
        return obj
    path = paths[which % len(paths)]
    obj = json.loads(json.dumps(obj))
    parent = obj
    for p in path[:-1]:
        parent = parent[p]
    if drop and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = HOSTILE_VALUES[value_index % len(HOSTILE_VALUES)]
    return obj


def rewrite_json(fmt: str, data: bytes, which: int, value_index: int, drop: bool) -> bytes:
    """Re-pack a seed file with its JSON edited (npz/checkpoint: ``architecture`` or ``train_state``;
    ``.keras``: ``config.json``; ``.h5``: the ``model_config`` attribute; safetensors: the header);
    other formats come back unchanged."""
    if fmt in ("npz", "checkpoint"):
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        keys = [k for k in ("architecture", "train_state") if k in arrays]
        key = keys[which % len(keys)]
        arrays[key] = np.array(json.dumps(edit_json(json.loads(str(arrays[key])), which // len(keys),
                                                    value_index, drop)))
        return _npz_bytes(arrays)
    if fmt == "keras":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            members = {n: z.read(n) for n in z.namelist()}
        members["config.json"] = json.dumps(edit_json(json.loads(members["config.json"]), which, value_index,
                                                      drop)).encode()
        bio = io.BytesIO()
        with zipfile.ZipFile(bio, "w") as z:
            for n, b in members.items():
                z.writestr(n, b)
        return bio.getvalue()
    if fmt == "h5":
        import h5py
        bio = io.BytesIO(data)
        with h5py.File(bio, "r+") as f:
            cfg = json.loads(f.attrs["model_config"])
            f.attrs["model_config"] = json.dumps(edit_json(cfg, which, value_index, drop))
        return bio.getvalue()
    if fmt == "safetensors":
        n = int.from_bytes(data[:8], "little")
        header = json.dumps(edit_json(json.loads(data[8:8 + n]), which, value_index, drop)).encode()
        return len(header).to_bytes(8, "little") + header + data[8 + n:]
    return data


SEEDS = {"npz": npz_model, "checkpoint": checkpoint, "safetensors": safetensors_file, "pth_zip": pth_zip,
         "pth_legacy": pth_legacy, "h5": keras_h5, "keras": keras_archive, "png": png, "jpeg": jpeg,
         "dicom": dicom, "dicom_rle": dicom_rle, "dicom_deflate": dicom_deflate, "dicom_jpeg": dicom_jpeg,
         "xrv_zip": xrv_zip, "xrv_legacy": xrv_legacy, "xrv_oldtorch": xrv_oldtorch, "xrv_full": xrv_full, "onnx": onnx_file,
         "onnx_ext": onnx_external}
NEEDS_TMP = {"checkpoint", "xrv_oldtorch"}
SUFFIX = {"npz": ".npz", "checkpoint": ".npz", "safetensors": ".safetensors", "pth_zip": ".pth", "pth_legacy": ".pth",
          "h5": ".h5", "keras": ".keras", "png": ".png", "jpeg": ".jpg", "dicom": ".dcm", "dicom_rle": ".dcm",
          "dicom_deflate": ".dcm", "dicom_jpeg": ".dcm", "xrv_zip": ".pt", "xrv_legacy": ".pt", "xrv_oldtorch": ".pt", "xrv_full": ".pt",
          "onnx": ".onnx", "onnx_ext": ".onnx"}

#: The formats :func:`rewrite_json` edits.
JSON_FORMATS = ("npz", "checkpoint", "keras", "h5", "safetensors")
