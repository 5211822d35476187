"""Weight-file readers: Keras legacy .h5, Keras 3 .weights.h5/.keras, torch .pth (zip and legacy),
.safetensors and .npz -- parsed, never executed."""
import io
import json
import os
import pickle
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from minicnn.readers import (
    FORMATS, KerasLayerWeights, detect_format, normalize_torch_keys, read_keras3_weights, read_keras_archive,
    read_keras_h5, read_torch_state_dict)
from minicnn.readers.npz import read_npz_arrays
from minicnn.readers.torch_pickle import (
    LEGACY_MAGIC_NUMBER, UnsafeFileError, load_torch_checkpoint)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
REF_H5 = SHARED / "ref" / "keras_densenet121_random_notop.h5"


# ------------------------------------------------------------------ the real Keras DenseNet121 file
def test_real_keras_densenet121_h5():
    if not REF_H5.is_file():
        pytest.skip(f"{REF_H5} not present")
    assert detect_format(REF_H5) == "keras_h5"
    layers = read_keras_h5(REF_H5)
    assert len(layers) == 241
    assert sum(len(l.arrays) for l in layers) == 604
    assert all(isinstance(l, KerasLayerWeights) for l in layers)
    first = layers[0]
    assert first.name == "conv1/conv"
    assert first.weight_names == ["conv1/conv/kernel:0"]
    assert first.arrays[0].shape == (7, 7, 3, 64) and first.arrays[0].dtype == np.float32
    bns = [l for l in layers if l.name.endswith("bn")]
    assert len(bns) == 121 and all(len(l.arrays) == 4 for l in bns)
    assert [w.rsplit("/", 1)[1] for w in bns[0].weight_names] == [
        "gamma:0", "beta:0", "moving_mean:0", "moving_variance:0"]
    assert layers[-1].name == "bn"
    # the file's own data, read independently: same bytes, same order
    with h5py.File(REF_H5, "r") as f:
        np.testing.assert_array_equal(first.arrays[0], f["conv1/conv/conv1/conv/kernel:0"][()])
        np.testing.assert_array_equal(layers[-1].arrays[3], f["bn/bn/moving_variance:0"][()])
    # random BN statistics as documented: variance in [0.5, 1.5]
    assert 0.5 <= layers[-1].arrays[3].min() and layers[-1].arrays[3].max() <= 1.5


# ------------------------------------------------------------------ tiny legacy Keras files
def _legacy_spec(rng):
    # alphabetical traps: 'zeta' before 'alpha'; 'kernel' before 'bias'; BN gamma...variance
    return [
        ("input_1", []),
        ("zeta/conv", [("zeta/conv/kernel:0", rng.normal(size=(3, 3, 2, 4)).astype(np.float32)),
                       ("zeta/conv/bias:0", rng.normal(size=(4,)).astype(np.float32))]),
        ("relu", []),
        ("alpha_bn", [(f"alpha_bn/{n}:0", rng.normal(size=(4,)).astype(np.float32))
                      for n in ("gamma", "beta", "moving_mean", "moving_variance")]),
        ("dense", [("dense/kernel:0", rng.normal(size=(4, 3)).astype(np.float32)),
                   ("dense/bias:0", rng.normal(size=(3,)).astype(np.float32))]),
    ]


def _write_legacy(group, spec, *, as_bytes, split):
    names = [n for n, _ in spec]
    def strs(xs):
        return np.array([x.encode() for x in xs], dtype="S") if as_bytes else xs
    def put(obj, key, xs):
        if as_bytes:
            obj.attrs[key] = strs(xs)
        else:
            obj.attrs.create(key, xs, dtype=h5py.string_dtype())
    if split:
        put(group, "layer_names0", names[:2])
        put(group, "layer_names1", names[2:4])
        put(group, "layer_names2", names[4:])
    else:
        put(group, "layer_names", names)
    group.attrs["backend"] = "tensorflow"
    for lname, weights in spec:
        g = group.create_group(lname)
        put(g, "weight_names", [w for w, _ in weights])
        for wname, arr in weights:
            g.create_dataset(wname, data=arr)
    # newer writers add this; it is not in layer_names and must be ignored
    group.create_group("top_level_model_weights").create_dataset("junk", data=np.ones(3))


def _check_legacy(layers, spec):
    expected = [(n, w) for n, w in spec if w]
    assert [l.name for l in layers] == [n for n, _ in expected]
    for l, (_, weights) in zip(layers, expected):
        assert l.weight_names == [w for w, _ in weights]
        assert len(l.arrays) == len(weights)
        for a, (_, b) in zip(l.arrays, weights):
            assert a.shape == b.shape and np.array_equal(a, b)


@pytest.mark.parametrize("as_bytes", [True, False])
@pytest.mark.parametrize("split", [False, True])
def test_keras_legacy_h5_roundtrip(tmp_path, rng, as_bytes, split):
    spec = _legacy_spec(rng)
    p = tmp_path / "w.h5"
    with h5py.File(p, "w") as f:
        _write_legacy(f, spec, as_bytes=as_bytes, split=split)
    assert detect_format(p) == "keras_h5"
    _check_legacy(read_keras_h5(p), spec)


def test_keras_legacy_full_model_h5(tmp_path, rng):
    spec = _legacy_spec(rng)
    p = tmp_path / "model.h5"
    with h5py.File(p, "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Functional"})
        _write_legacy(f.create_group("model_weights"), spec, as_bytes=True, split=False)
        f.create_group("optimizer_weights")
    assert detect_format(p) == "keras_h5_model"
    _check_legacy(read_keras_h5(p), spec)


def test_keras_legacy_h5_missing_weight_is_clear(tmp_path, rng):
    p = tmp_path / "broken.h5"
    with h5py.File(p, "w") as f:
        f.attrs["layer_names"] = np.array([b"conv"])
        g = f.create_group("conv")
        g.attrs["weight_names"] = np.array([b"conv/kernel:0", b"conv/bias:0"])
        g.create_dataset("conv/kernel:0", data=np.ones((1, 1, 1, 1)))
    with pytest.raises(ValueError, match=r"broken\.h5.*conv/bias:0"):
        read_keras_h5(p)


# ------------------------------------------------------------------ Keras 3
def _write_keras3(f, rng):
    ref = {}
    def layer(path, n):
        g = f.create_group(path)
        v = g.create_group("vars")
        arrs = [rng.normal(size=(i + 1,)).astype(np.float32) for i in range(n)]
        for i, a in enumerate(arrs):
            v.create_dataset(str(i), data=a)
        ref[path] = arrs
    f.create_group("vars")
    layer("layers/input_layer", 0)
    layer("layers/conv2d", 2)
    layer("layers/dense", 12)                        # "10", "11" must come after "9"
    layer("layers/functional/layers/batch_normalization", 4)
    layer("layers/functional/layers/conv2d", 1)
    f.create_group("layers/functional/vars")
    layer("layers/bidirectional/forward_layer", 3)
    f.create_group("layers/bidirectional/vars")
    opt = f.create_group("optimizer/vars")
    opt.create_dataset("0", data=np.zeros(5))
    return ref


def _check_keras3(tree, ref):
    assert set(tree) == {"vars", "layers", "children"}
    assert tree["vars"] == [] and "optimizer" not in tree["children"]
    L = tree["layers"]
    assert set(L) == {"input_layer", "conv2d", "dense", "functional", "bidirectional"}
    for path, arrs in ref.items():
        node, parts, i = tree, path.split("/"), 0
        while i < len(parts):
            if parts[i] == "layers":
                node, i = node["layers"][parts[i + 1]], i + 2
            else:
                node, i = node["children"][parts[i]], i + 1
        assert len(node["vars"]) == len(arrs), path
        for a, b in zip(node["vars"], arrs):
            assert np.array_equal(a, b)
    assert [v.shape[0] for v in L["dense"]["vars"]] == list(range(1, 13))
    assert set(L["functional"]["layers"]) == {"batch_normalization", "conv2d"}
    assert len(L["bidirectional"]["children"]["forward_layer"]["vars"]) == 3


def test_keras3_weights_h5(tmp_path, rng):
    p = tmp_path / "model.weights.h5"
    with h5py.File(p, "w") as f:
        ref = _write_keras3(f, rng)
    assert detect_format(p) == "keras3_weights"
    _check_keras3(read_keras3_weights(p), ref)
    with h5py.File(p, "r") as f:          # an open h5py.File is accepted too
        _check_keras3(read_keras3_weights(f), ref)
    with pytest.raises(ValueError, match="read_keras3_weights"):
        read_keras_h5(p)


def test_keras3_bad_var_index(tmp_path):
    p = tmp_path / "bad.weights.h5"
    with h5py.File(p, "w") as f:
        v = f.create_group("layers/dense/vars")
        v.create_dataset("0", data=np.ones(2))
        v.create_dataset("2", data=np.ones(2))
    with pytest.raises(ValueError, match="not 0..n-1"):
        read_keras3_weights(p)


def test_keras_archive(tmp_path, rng):
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        ref = _write_keras3(f, rng)
    config = {"class_name": "Functional", "config": {"name": "m", "layers": []}}
    p = tmp_path / "model.keras"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", buf.getvalue())
    assert detect_format(p) == "keras_archive"
    cfg, tree = read_keras_archive(p)
    assert cfg == config
    _check_keras3(tree, ref)
    assert sorted(os.listdir(tmp_path)) == ["model.keras"]     # nothing extracted

    p2 = tmp_path / "noweights.keras"
    with zipfile.ZipFile(p2, "w") as zf:
        zf.writestr("config.json", "{}")
    with pytest.raises(ValueError, match=r"noweights\.keras"):
        read_keras_archive(p2)


# ------------------------------------------------------------------ torch (reference at test time)
def _legacyfy(key):
    """torchvision key -> the old 'norm.1' style of the original ImageNet DenseNet file."""
    return re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key)


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("torch")
    sd = torchvision.models.densenet121(weights=None).state_dict()
    base = torch.randn(6, 10)
    extra = {
        "half": torch.randn(3, 5).half(),
        "bf16": torch.randn(4, 3).bfloat16(),
        "f64": torch.randn(2, 2, dtype=torch.float64),
        "i64": torch.arange(-5, 7, dtype=torch.int64).reshape(3, 4),
        "i32": torch.tensor([1, -2, 3], dtype=torch.int32),
        "u8": torch.tensor([0, 7, 255], dtype=torch.uint8),
        "u16": torch.tensor([1, 2, 65535], dtype=torch.uint16),    # _rebuild_tensor_v3 + UntypedStorage
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "transposed": base.t(),                        # stride (1, 10), shares base's storage
        "sliced": base[1:5, 2::3],                     # offset + strides
        "expanded": torch.arange(3.0).reshape(3, 1).expand(3, 4),   # stride 0
        "param": torch.nn.Parameter(torch.randn(2, 3)),
    }
    small = dict(extra)
    ref = {"densenet": {k: v.numpy() for k, v in sd.items()},
           "small": {k: (v.detach().float() if v.dtype == torch.bfloat16 else v.detach()).numpy()
                     for k, v in small.items()}}
    paths = {}
    for name, obj in [("densenet", sd), ("small", small)]:
        paths[name, "zip"] = d / f"{name}.pth"
        torch.save(obj, paths[name, "zip"])
        paths[name, "legacy"] = d / f"{name}_legacy.pth.tar"
        torch.save(obj, paths[name, "legacy"], _use_new_zipfile_serialization=False)
    from safetensors.torch import save_file
    paths["densenet", "safetensors"] = d / "densenet.safetensors"
    save_file(sd, str(paths["densenet", "safetensors"]))
    st_small = {k: v.detach().contiguous() for k, v in small.items() if k != "expanded"}
    paths["small", "safetensors"] = d / "small.safetensors"
    save_file(st_small, str(paths["small", "safetensors"]))
    # CheXNet-style checkpoint: DataParallel + wrapper prefixes + legacy keys + metadata
    wrapped = {"module.densenet121." + _legacyfy(k): v for k, v in sd.items()}
    assert sum(k != "module.densenet121." + k2 for k, k2 in zip(wrapped, sd)) > 300
    ckpt = {"epoch": 3, "arch": "densenet121", "state_dict": wrapped, "best_prec1": 0.84,
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.001, "params": [0, 1]}]}}
    for fmt, kw in [("zip", {}), ("legacy", {"_use_new_zipfile_serialization": False})]:
        paths["chexnet", fmt] = d / f"chexnet_{fmt}.pth.tar"
        torch.save(ckpt, paths["chexnet", fmt], **kw)
    np.savez(d / "ref_densenet.npz", **ref["densenet"])
    np.savez(d / "ref_small.npz", **ref["small"])
    return paths, ref, d


def _assert_same(got, want, ordered=True):
    if ordered:
        assert list(got) == list(want)
    else:
        assert set(got) == set(want)
    for k, w in want.items():
        g = got[k]
        assert isinstance(g, np.ndarray) and g.flags.c_contiguous, k
        assert g.dtype == w.dtype and g.shape == w.shape, (k, g.dtype, w.dtype, g.shape, w.shape)
        assert np.array_equal(g, w), k


@pytest.mark.parametrize("fmt", ["zip", "legacy", "safetensors"])
def test_torch_densenet_state_dict(torch_files, fmt):
    paths, ref, _ = torch_files
    p = paths["densenet", fmt]
    assert detect_format(p) == {"zip": "torch_zip", "legacy": "torch_legacy"}.get(fmt, fmt)
    sd = read_torch_state_dict(p)
    _assert_same(sd, ref["densenet"], ordered=(fmt != "safetensors"))
    assert len(sd) == 727
    nbt = [k for k in sd if k.endswith("num_batches_tracked")]     # kept by the reader
    assert len(nbt) == 121 and all(sd[k].dtype == np.int64 for k in nbt)
    assert sd["features.conv0.weight"].shape == (64, 3, 7, 7)        # OIHW, untransposed
    assert sd["classifier.weight"].shape == (1000, 1024)             # (out, in), untransposed


@pytest.mark.parametrize("fmt", ["zip", "legacy", "safetensors"])
def test_torch_dtypes_and_views(torch_files, fmt):
    paths, ref, _ = torch_files
    want = dict(ref["small"])
    if fmt == "safetensors":
        del want["expanded"]
    got = read_torch_state_dict(paths["small", fmt])
    _assert_same(got, want, ordered=(fmt != "safetensors"))
    assert got["bf16"].dtype == np.float32 and got["half"].dtype == np.float16
    assert got["i64"].dtype == np.int64 and got["bool"].dtype == np.bool_
    # 'transposed' and 'sliced' share one storage in the file; the arrays must be independent copies
    assert want["sliced"][0, 0] == want["transposed"][2, 1]
    got["transposed"][2, 1] = 123.0
    assert got["sliced"][0, 0] == want["sliced"][0, 0]


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_torch_checkpoint_unwrapped_and_normalised(torch_files, fmt):
    paths, ref, _ = torch_files
    sd = read_torch_state_dict(paths["chexnet", fmt])
    _assert_same(sd, ref["densenet"])
    raw = read_torch_state_dict(paths["chexnet", fmt], normalize_keys=False)
    assert "module.densenet121.features.denseblock1.denselayer1.norm.1.weight" in raw
    full = load_torch_checkpoint(paths["chexnet", fmt])
    assert full["epoch"] == 3 and full["arch"] == "densenet121" and full["best_prec1"] == 0.84


def test_readers_do_not_import_torch(torch_files):
    """In a fresh interpreter where `import torch` fails, every torch-format file still reads exactly."""
    paths, _, d = torch_files
    code = f"""
import sys
sys.modules['torch'] = None          # any 'import torch' now raises ImportError
import numpy as np
from minicnn.readers.torch import read_torch_state_dict
for name, fmts in [('densenet', ['zip', 'legacy', 'safetensors']), ('small', ['zip', 'legacy'])]:
    ref = np.load({str(d)!r} + '/ref_' + name + '.npz')
    for fmt in fmts:
        p = {str(d)!r} + '/' + {{'zip': name + '.pth', 'legacy': name + '_legacy.pth.tar',
                                'safetensors': name + '.safetensors'}}[fmt]
        sd = read_torch_state_dict(p)
        assert set(sd) == set(ref.files), (p, set(sd) ^ set(ref.files))
        for k in ref.files:
            assert sd[k].dtype == ref[k].dtype and np.array_equal(sd[k], ref[k]), (p, k)
assert 'torch' not in sys.modules or sys.modules['torch'] is None
print('OK')
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "OK"


def test_big_endian_zip_checkpoint(torch_files, tmp_path):
    """A zip written on a big-endian machine (byteorder 'big', byte-swapped storages) reads the same."""
    paths, ref, _ = torch_files
    src = paths["small", "zip"]
    itemsizes = {}
    loaded = load_torch_checkpoint(src)
    with zipfile.ZipFile(src) as zin:
        pkl = next(n for n in zin.namelist() if n.endswith("/data.pkl"))
        root = pkl[: -len("data.pkl")]
        from minicnn.readers.torch_pickle import SafeTorchUnpickler
        up = SafeTorchUnpickler(io.BytesIO(zin.read(pkl)))
        for tref in up.load().values():      # element size from the tensor's dtype (untyped storages too)
            np_name = tref.dtype.np_dtype
            itemsizes[tref.storage.key] = np.dtype("uint16" if np_name == "bfloat16" else np_name).itemsize
        out = tmp_path / "big.pth"
        with zipfile.ZipFile(out, "w") as zout:
            for n in zin.namelist():
                data = zin.read(n)
                if n == root + "byteorder":
                    data = b"big"
                elif n.startswith(root + "data/"):
                    isz = itemsizes[n[len(root + "data/"):]]
                    data = np.frombuffer(data, dtype=f"u{isz}").byteswap().tobytes()
                zout.writestr(n, data)
    got = read_torch_state_dict(out)
    _assert_same(got, ref["small"])
    assert list(loaded) == list(got)


# ------------------------------------------------------------------ malicious checkpoints
class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').system('true')",))


def _evil_zip(path, payload):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")


def _evil_legacy(path, payload):
    parts = [pickle.dumps(LEGACY_MAGIC_NUMBER, protocol=2), pickle.dumps(1001, protocol=2),
             pickle.dumps({"protocol_version": 1001, "little_endian": True,
                           "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2),
             payload, pickle.dumps([], protocol=2)]
    path.write_bytes(b"".join(parts))


def test_evil_payload_is_real(tmp_path):
    """Control: the payload below really runs a command under plain pickle (so the tests can fail)."""
    marker = tmp_path / "control_marker"
    pickle.loads(pickle.dumps({"w": _Evil(marker)}, protocol=2))
    assert marker.exists()


@pytest.mark.parametrize("container", ["zip", "legacy"])
@pytest.mark.parametrize("nested", [False, True])
def test_malicious_checkpoint_refused(tmp_path, container, nested):
    marker = tmp_path / "pwned"
    obj = _Evil(marker)
    if nested:   # hidden inside an otherwise ordinary checkpoint dict
        obj = {"epoch": 1, "state_dict": {"w": obj}}
    payload = pickle.dumps(obj, protocol=2)
    p = tmp_path / f"evil_{container}.pth"
    (_evil_zip if container == "zip" else _evil_legacy)(p, payload)
    assert detect_format(p) == ("torch_zip" if container == "zip" else "torch_legacy")
    with pytest.raises(UnsafeFileError, match=r"(posix|os)\.system") as ei:
        read_torch_state_dict(p)
    assert str(p) in str(ei.value)
    assert isinstance(ei.value, ValueError)
    assert not marker.exists()


def test_malicious_eval_refused(tmp_path):
    p = tmp_path / "eval.pth"
    _evil_zip(p, pickle.dumps({"x": _EvalEvil()}, protocol=4))   # STACK_GLOBAL opcode
    with pytest.raises(UnsafeFileError, match=r"builtins\.eval"):
        read_torch_state_dict(p)


def test_allowed_names_cannot_be_abused(tmp_path):
    """Calling a storage-type stand-in, or a tensor rebuild on a non-storage, is refused cleanly."""
    # GLOBAL torch FloatStorage; EMPTY_TUPLE; REDUCE  -> the stand-in is not callable
    payload = b"\x80\x02ctorch\nFloatStorage\nq\x00)R."
    p = tmp_path / "call_storage.pth"
    _evil_zip(p, payload)
    with pytest.raises(ValueError, match=r"call_storage\.pth"):
        read_torch_state_dict(p)
    # _rebuild_tensor_v2("not a storage", 0, (2,), (1,), False, None)
    payload = (b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(X\x01\x00\x00\x00aK\x00K\x02\x85K\x01\x85"
               b"\x89NtR.")
    p = tmp_path / "bad_rebuild.pth"
    _evil_zip(p, payload)
    with pytest.raises(ValueError, match="not a storage"):
        read_torch_state_dict(p)


def test_out_of_bounds_tensor_is_refused(torch_files, tmp_path):
    """A tensor whose size/stride reach past its storage must not read foreign memory."""
    torch = pytest.importorskip("torch")
    p = tmp_path / "oob.pth"
    torch.save({"w": torch.arange(4.0)}, p)
    with zipfile.ZipFile(p) as zin:
        members = {n: zin.read(n) for n in zin.namelist()}
    pkl = next(n for n in members if n.endswith("/data.pkl"))
    # size (4,) -> (400,) : K\x04\x85 (BININT1 4, TUPLE1) becomes M\x90\x01\x85
    assert members[pkl].count(b"K\x04\x85") == 1
    members[pkl] = members[pkl].replace(b"K\x04\x85", b"M\x90\x01\x85")
    with zipfile.ZipFile(p, "w") as zout:
        for n, data in members.items():
            zout.writestr(n, data)
    with pytest.raises(ValueError, match=r"oob\.pth.*storage"):
        read_torch_state_dict(p)


# ------------------------------------------------------------------ corrupt / wrong files
def test_truncated_torch_files(torch_files, tmp_path):
    paths, _, _ = torch_files
    for fmt in ("zip", "legacy"):
        data = paths["small", fmt].read_bytes()
        for frac in (0.05, 0.3, 0.6, 0.9, 0.99):
            p = tmp_path / f"trunc_{fmt}_{frac}.pth"
            p.write_bytes(data[: int(len(data) * frac)])
            with pytest.raises(ValueError, match=re.escape(str(p))):
                read_torch_state_dict(p)


def test_truncated_safetensors_and_h5(torch_files, tmp_path):
    paths, _, _ = torch_files
    data = paths["small", "safetensors"].read_bytes()
    p = tmp_path / "trunc.safetensors"
    p.write_bytes(data[: len(data) - 10])
    with pytest.raises(ValueError, match=re.escape(str(p))):
        read_torch_state_dict(p)
    if REF_H5.is_file():
        h = tmp_path / "trunc.h5"
        with open(REF_H5, "rb") as f:
            h.write_bytes(f.read(200_000))
        with pytest.raises(ValueError, match=re.escape(str(h))):
            read_keras_h5(h)


@pytest.mark.parametrize("content", [b"", b"hello, not weights at all" * 10,
                                     b"PK\x03\x04 broken zip", b"\x80\x02}q\x00."])
def test_unknown_files(tmp_path, content):
    p = tmp_path / "weights.pth"
    p.write_bytes(content)
    with pytest.raises(ValueError) as ei:
        detect_format(p)
    msg = str(ei.value)
    assert str(p) in msg and "safetensors" in msg and "keras_h5" in msg
    with pytest.raises(ValueError, match=re.escape(str(p))):
        read_torch_state_dict(p)


def test_missing_file(tmp_path):
    p = tmp_path / "nope.h5"
    for fn in (detect_format, read_keras_h5, read_keras3_weights, read_keras_archive,
               read_torch_state_dict, read_npz_arrays):
        with pytest.raises(FileNotFoundError, match=re.escape(str(p))):
            fn(p)


def test_wrong_reader_for_format(tmp_path, rng):
    npz = tmp_path / "w.npz"
    np.savez(npz, a=np.ones(3))
    assert detect_format(npz) == "npz"
    with pytest.raises(ValueError, match=r"w\.npz.*npz"):
        read_torch_state_dict(npz)
    with pytest.raises(ValueError, match=r"w\.npz"):
        read_keras_h5(npz)
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f.create_dataset("x", data=np.ones(2))
    with pytest.raises(ValueError, match=r"plain\.h5"):
        detect_format(plain)


def test_npz_weights(tmp_path, rng):
    arrays = {"conv.w": rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "b": np.arange(4),
              "a": np.float64(2.0) * np.ones(2)}
    p = tmp_path / "m.npz"
    np.savez(p, **arrays)
    got = read_npz_arrays(p)
    assert list(got) == list(arrays)
    for k in arrays:
        assert np.array_equal(got[k], arrays[k]) and got[k].dtype == arrays[k].dtype
    evil = tmp_path / "obj.npz"
    np.savez(evil, ok=np.ones(2), obj=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"obj\.npz.*'obj'.*pickled"):
        read_npz_arrays(evil)


def test_normalize_torch_keys():
    v = np.zeros(1)
    sd = {"module.features.denseblock2.denselayer10.norm.1.weight": v,
          "module.densenet121.features.denseblock1.denselayer1.conv.2.weight": v,
          "features.norm5.running_var": v,
          "features.transition1.norm.weight": v}           # not a denselayer: untouched
    assert list(normalize_torch_keys(sd)) == [
        "features.denseblock2.denselayer10.norm1.weight",
        "features.denseblock1.denselayer1.conv2.weight",
        "features.norm5.running_var", "features.transition1.norm.weight"]
    with pytest.raises(ValueError, match="collide"):
        normalize_torch_keys({"module.a": v, "a": v})


def test_formats_constant():
    assert set(FORMATS) == {"keras_h5", "keras_h5_model", "keras3_weights", "keras_archive",
                            "torch_zip", "torch_legacy", "safetensors", "npz", "onnx"}
