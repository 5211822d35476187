"""Section 2 of issue 14: what a file describes (minicnn's architecture JSON, a checkpoint's
train_state, a Keras config) is validated before any constructor sees it; each wrong field is
one documented error naming the file and the field."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import minicnn
from minicnn.errors import KerasImportError, UsageError, WeightFileError
from minicnn.layers import Conv2D, Dense, GlobalAvgPool2D, ReLU
from minicnn.model import Sequential
from minicnn.pretrained.keras_import import load_keras
from minicnn.readers.npz import read_npz_arrays
from minicnn.serialization import train_state_from_arrays

ROOT = Path(__file__).resolve().parents[2]
TINY_KERAS = ROOT / "tests" / "ref" / "keras_small" / "tiny_sequential.keras"


def _model():
    return Sequential([Conv2D(1, 2, 3, seed=0), ReLU(), GlobalAvgPool2D(), Dense(2, 1, seed=0)], input_shape=(1, 6, 6))


def _with_config(tmp_path, edit):
    arrays = _model().to_arrays()
    cfg = json.loads(str(arrays["architecture"]))
    edit(cfg)
    arrays["architecture"] = np.array(json.dumps(cfg))
    p = tmp_path / "model.npz"
    np.savez(p, **arrays)
    return p


def _set(path, value):
    def edit(cfg):
        obj = cfg
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value
    return edit


@pytest.mark.parametrize("path, value, message", [
    (("nodes", 0, "config", "kernel_size"), "x", r"nodes\[0\]\.config\.kernel_size must be a positive int or a pair"),
    (("nodes", 0, "config", "kernel_size"), [3, 0], r"nodes\[0\]\.config\.kernel_size must be a positive int"),
    (("nodes", 0, "config", "stride"), [1, 2, 3], r"nodes\[0\]\.config\.stride must be"),
    (("nodes", 0, "config", "out_channels"), 10 ** 7, r"nodes\[0\]\.config\.out_channels must be a positive int"),
    (("nodes", 0, "config", "bias"), "yes", r"nodes\[0\]\.config\.bias must be true or false"),
    (("nodes", 0, "config", "evil"), 1, r"nodes\[0\]\.config has keys Conv2D does not take"),
    (("nodes", 0, "class"), "os.system", r"nodes\[0\]\.class must be one of minicnn's layer classes"),
    (("nodes", 0, "config"), [], r"nodes\[0\]\.config must be a JSON object"),
    (("nodes", 3, "config", "in_features"), 0, r"nodes\[3\]\.config\.in_features must be a positive int"),
    (("nodes",), {"a": 1}, r"nodes must be a list"),
    (("input_shape",), [1, -6, 6], r"input_shape must be null or 1-4 positive ints"),
    (("output",), "nowhere", r"output must name one of the nodes"),
    (("class",), "Evil", r"class must be 'Graph' or 'Sequential'"),
    (("output_activation",), "relu", r"output_activation must be one of"),
    (("format_version",), "2", r"format_version must be a non-negative int"),
])
def test_bad_architecture_field_is_named(tmp_path, path, value, message):
    p = _with_config(tmp_path, _set(path, value))
    with pytest.raises(WeightFileError, match=message) as e:
        minicnn.load(p)
    assert str(e.value).startswith(f"{p}: ") and len(str(e.value).splitlines()) == 1


def test_layer_too_large_to_allocate_refused(tmp_path):
    def edit(cfg):
        cfg["nodes"][0]["config"].update(in_channels=100_000, out_channels=100_000)
    with pytest.raises(WeightFileError, match=r"nodes\[0\]\.config declares more than"):
        minicnn.load(_with_config(tmp_path, edit))


def test_impossible_geometry_refused_at_load(tmp_path):
    def edit(cfg):
        cfg["nodes"][0]["config"].update(stride=[4096, 4096], dilation=[4096, 4096])
    p = _with_config(tmp_path, edit)
    with pytest.raises(WeightFileError, match=r"input_shape: node '0' gives an empty output") as e:
        minicnn.load(p)
    assert str(e.value).startswith(f"{p}: ")


def test_graph_inputs_must_exist_before(tmp_path):
    m = minicnn.Graph(input_shape=(1, 6, 6))
    m.add("c", Conv2D(1, 2, 3))
    m.add("r", ReLU(), "c")
    arrays = m.to_arrays()
    cfg = json.loads(str(arrays["architecture"]))
    cfg["nodes"][0]["inputs"] = ["r"]
    arrays["architecture"] = np.array(json.dumps(cfg))
    p = tmp_path / "g.npz"
    np.savez(p, **arrays)
    with pytest.raises(WeightFileError, match=r"nodes\[0\]\.inputs must list nodes defined before it"):
        minicnn.load(p)


def test_weight_shape_mismatch_names_the_file(tmp_path):
    arrays = _model().to_arrays()
    k = next(k for k in arrays if k.startswith("w:"))
    arrays[k] = np.zeros((1, 1), np.float32)
    p = tmp_path / "m.npz"
    np.savez(p, **arrays)
    with pytest.raises(WeightFileError, match="mis-shaped") as e:
        minicnn.load(p)
    assert str(p) in str(e.value)


def test_damaged_npy_headers(tmp_path):
    good = io.BytesIO()
    np.save(good, np.zeros(3, np.float32))
    raw = good.getvalue()
    for i, bad_header in enumerate([b"{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }   \n"
                                    .replace(b"(3,)", b"(3,"),                      # SyntaxError / tokenize
                                    b"{'descr': 'xyz', 'fortran_order': False, 'shape': (3,), }\n",
                                    b"{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }\n",
                                    b"not a dict at all\n"]):
        hdr = bad_header.rstrip(b"\n")
        hdr += b" " * ((64 - (10 + len(hdr) + 1) % 64) % 64) + b"\n"
        data = raw[:8] + len(hdr).to_bytes(2, "little") + hdr + raw[raw.index(b"\n") + 1:]
        p = tmp_path / f"bad{i}.npz"
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("w:a.npy", data)
        with pytest.raises(WeightFileError, match="damaged .npy header|invalid shape") as e:
            read_npz_arrays(p)
        assert str(p) in str(e.value) and "'w:a'" in str(e.value)


def test_unsupported_zip_compression_is_a_weight_file_error(tmp_path):
    p = tmp_path / "bz.npz"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_BZIP2) as z:
        z.writestr("w:a.npy", b"\x93NUMPY" + b"\x00" * 100)
    with pytest.raises(WeightFileError, match="compression method 12"):
        read_npz_arrays(p)
    data = bytearray(p.read_bytes())              # an unknown method number: zipfile's NotImplementedError
    for sig, off in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        i = data.find(sig)
        data[i + off:i + off + 2] = (99).to_bytes(2, "little")
    p.write_bytes(bytes(data))
    with pytest.raises(WeightFileError):
        read_npz_arrays(p)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["state"].update(epoch=-1), r"train_state\.state\.epoch must be a non-negative int"),
    (lambda s: s["state"].update(loss_sum="x"), r"train_state\.state\.loss_sum must be a finite number"),
    (lambda s: s["state"].update(evil=1), r"train_state\.state\.evil is not a training-state field"),
    (lambda s: s["optimizer"].pop("lr"), r"train_state\.optimizer\.lr must be a positive finite number"),
    (lambda s: s.update(optimizer=[]), r"train_state\.optimizer must be a JSON object"),
    (lambda s: s.update(scheduler=3), r"train_state\.scheduler must be a JSON object"),
])
def test_bad_train_state_is_named(tmp_path, edit, message):
    info = {"checkpoint_version": 1, "state": {"epoch": 1, "batch": 0, "loss_sum": 0.0, "seen": 3, "history": []},
            "optimizer": {"class": "Adam", "lr": 1e-3, "t": 4}, "scheduler": None, "extra": {}}
    edit(info)
    arrays = {"train_state": np.array(json.dumps(info))}
    with pytest.raises(WeightFileError, match=message) as e:
        train_state_from_arrays(arrays, "last.npz")
    assert str(e.value).startswith("last.npz: ")


def _keras_with(tmp_path, edit):
    with zipfile.ZipFile(TINY_KERAS) as z:
        members = {n: z.read(n) for n in z.namelist()}
    cfg = json.loads(members["config.json"])
    edit(cfg)
    members["config.json"] = json.dumps(cfg).encode()
    p = tmp_path / "edited.keras"
    with zipfile.ZipFile(p, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    return p


def _layer(cfg, cls):
    return next(e for e in cfg["config"]["layers"] if e["class_name"] == cls)


@pytest.mark.parametrize("edit, message", [
    (lambda c: _layer(c, "Conv2D")["config"].update(kernel_size="x"), r"Keras layer Conv2D .*size must be a positive int"),
    (lambda c: _layer(c, "Conv2D")["config"].update(strides=[0, 1]), r"size must be a positive int"),
    (lambda c: _layer(c, "Conv2D").update(config=[1, 2]), r"a layer entry must be an object .* and a 'config' object"),
    (lambda c: _layer(c, "Dense")["config"].update(units="many"), r"Keras layer Dense .*malformed config"),
    (lambda c: c["config"]["layers"].append(7), r"a layer entry must be an object"),
    (lambda c: _layer(c, "MaxPooling2D")["config"].update(pool_size=[2, 2, 2]), r"size must be a positive int"),
])
def test_bad_keras_config_is_named(tmp_path, edit, message):
    p = _keras_with(tmp_path, edit)
    with pytest.raises(KerasImportError, match=message) as e:
        load_keras(p)
    assert str(e.value).startswith(f"{p}: ")


def test_limits_configurable_from_the_environment(tmp_path):
    code = ("from minicnn.data.limits import MAX_PIXELS; from minicnn.readers._files import MAX_MEMBER_BYTES;"
            "print(MAX_PIXELS, MAX_MEMBER_BYTES)")
    env = dict(os.environ, MINICNN_MAX_PIXELS="1000", MINICNN_MAX_MEMBER_BYTES="2_000")
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    assert r.stdout.split() == ["1000", "2000"], r.stderr
    env["MINICNN_MAX_PIXELS"] = "lots"
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode != 0 and "MINICNN_MAX_PIXELS='lots' must be a positive integer" in r.stderr
    assert UsageError.__name__ in r.stderr


def test_checkpoint_errors_name_the_file(tmp_path):
    from minicnn.optim import Adam
    from minicnn.train import TrainState, load_checkpoint, save_checkpoint
    m = _model()
    p = tmp_path / "last.npz"
    save_checkpoint(p, m, Adam(m.params(), lr=1e-3), TrainState(epoch=1))
    arrays = dict(np.load(p, allow_pickle=False))
    cfg = json.loads(str(arrays["architecture"]))
    cfg["nodes"][0]["config"]["kernel_size"] = "x"
    arrays["architecture"] = np.array(json.dumps(cfg))
    np.savez(p, **arrays)
    with pytest.raises(WeightFileError, match=r"nodes\[0\]\.config\.kernel_size") as e:
        load_checkpoint(p)
    assert str(e.value).startswith(f"{p}: ")


def test_every_layer_field_has_a_check():
    """A new layer class must say how its saved fields are validated, or its files could not load."""
    import inspect
    from minicnn import layers, serialization as S
    missing = [(name, p) for name, cls in layers.LAYER_CLASSES.items()
               for p, par in inspect.signature(cls.__init__).parameters.items()
               if p != "self" and par.kind not in (par.VAR_KEYWORD, par.VAR_POSITIONAL)
               and S._CLASS_CHECKS.get((name, p), S._CHECKS.get(p)) is None]
    assert not missing, missing
