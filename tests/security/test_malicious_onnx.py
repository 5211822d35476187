"""Malicious ONNX files: external data that reaches outside the model's folder, and tensors that
declare absurd sizes. An audit hook proves the outside file is never opened, and a marker in its
bytes proves none of them reached the model or the message (tests/onnx covers the plain
refusals of ``../../etc/passwd``, an absolute path and a symlinked file by their messages)."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import minicnn  # noqa: E402
from minicnn.errors import UnsafeFileError, WeightFileError  # noqa: E402

from tests.fuzz.harness import Worker  # noqa: E402

MARK = b"SECRET-ONNX-MARKER"
_OPENED: list = []
_WATCH = {"on": False}


def _audit(event, args):
    if _WATCH["on"] and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


def _model(dims=(1, 3, 1, 1)):
    c = numpy_helper.from_array(np.ones(dims, np.float32), "c")
    g = helper.make_graph([helper.make_node("Mul", ["x", "c"], ["y"], name="mul")], "t",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 4, 4])], [c])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def _external(folder, location, length=12, dims=None):
    m = _model()
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    if dims is not None:
        del t.dims[:]
        t.dims.extend(dims)
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", str(length))):
        t.external_data.add(key=k, value=v)
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / "m.onnx"
    p.write_bytes(m.SerializeToString())
    return p


@pytest.fixture
def secret(tmp_path):
    """A file outside the model's folder whose 12 bytes would make a valid tensor."""
    s = tmp_path / "outside" / "secret.bin"
    s.parent.mkdir()
    s.write_bytes(MARK[:12])
    return s


def _refused(p, secret, want=UnsafeFileError, match="external data"):
    _OPENED.clear()
    _WATCH["on"] = True
    try:
        with pytest.raises(want, match=match) as e:
            minicnn.load_onnx(p)
    finally:
        _WATCH["on"] = False
    assert str(p) in str(e.value)
    assert MARK.decode()[:12] not in str(e.value)
    assert not [o for o in _OPENED if os.path.realpath(o) == os.path.realpath(secret)], _OPENED
    return e.value


def _attack(model, secret, how):
    """The model file and the location it names, for each way of leaving the folder."""
    rel = os.path.relpath(secret, model)
    if how == "relative ..":
        loc = rel
    elif how == "absolute":
        loc = os.fspath(secret)
    elif how == "dotdot inside":
        loc = "sub/../" + rel
    elif how == "symlinked file":
        loc = "w.bin"
    else:
        loc = "data/secret.bin"
    p = _external(model, loc)
    if how == "symlinked file":
        os.symlink(secret, model / "w.bin")
    elif how == "symlinked folder":
        os.symlink(secret.parent, model / "data")
        (model / "sub").mkdir()
    if how == "dotdot inside":
        (model / "sub").mkdir(exist_ok=True)
    return p, loc


HOWS = ["relative ..", "absolute", "dotdot inside", "symlinked file", "symlinked folder"]


@pytest.mark.parametrize("how", HOWS)
def test_external_data_outside_the_folder_is_never_opened(tmp_path, secret, how):
    model = tmp_path / "model"
    p, loc = _attack(model, secret, how)
    with open(os.path.join(model, loc), "rb") as f:      # control: resolved naively, the marker is reached
        assert f.read() == MARK[:12]
    err = _refused(p, secret, match="leaves the model's folder" if how.startswith("symlinked") else "external data")
    assert err.field == "c"


def test_a_hardlink_inside_the_folder_is_a_plain_file_and_is_read(tmp_path, secret):
    """The limit of the rule, stated: a hard link is a plain file inside the folder (same inode as
    one outside); it is read, as any file beside the model is."""
    model = tmp_path / "model"
    p = _external(model, "w.bin")
    os.link(secret, model / "w.bin")
    _OPENED.clear()
    _WATCH["on"] = True
    try:
        g = minicnn.load_onnx(p)
    finally:
        _WATCH["on"] = False
    assert os.fspath(model / "w.bin") in _OPENED      # the audit hook sees the reader's opens
    assert np.frombuffer(MARK[:12], np.float32).tolist() == g.nodes["mul"].layer.buffers["c"].ravel().tolist()


@pytest.mark.parametrize("where", ["in the file", "external"])
def test_a_tensor_declaring_10_to_the_12_elements_is_refused_before_allocation(tmp_path, where):
    """dims [10^6, 10^6] (4 TB of float32) with 12 bytes of data: refused from the header, in the
    worker under RLIMIT_AS = 2 GiB (a MemoryError, a crash or a timeout would fail)."""
    folder = tmp_path / "model"
    if where == "external":
        p = _external(folder, "w.bin", length=12, dims=[10 ** 6, 10 ** 6])
        (folder / "w.bin").write_bytes(b"\0" * 12)
    else:
        m = _model()
        t = m.graph.initializer[0]
        del t.dims[:]
        t.dims.extend([10 ** 6, 10 ** 6])
        folder.mkdir()
        p = folder / "m.onnx"
        p.write_bytes(m.SerializeToString())
    with pytest.raises(WeightFileError, match=r"declares dims \[1000000, 1000000\] \(4,000,000,000,000 bytes\)") as e:
        minicnn.load_onnx(p)
    assert str(p) in str(e.value) and e.value.field == "c"
    w = Worker(timeout=20.0)
    try:
        rep = w.run("onnx", str(p))
    finally:
        w.close()
    assert rep["outcome"] == "WeightFileError" and rep["minicnn"], rep


def test_external_length_beyond_the_file_and_a_declared_size_mismatch(tmp_path):
    folder = tmp_path / "model"
    p = _external(folder, "w.bin", length=4 * 10 ** 12)
    (folder / "w.bin").write_bytes(b"\0" * 12)
    with pytest.raises(WeightFileError, match="asks for bytes 0..4000000000000"):
        minicnn.load_onnx(p)
    p = _external(folder, "w.bin", length=8)
    with pytest.raises(WeightFileError, match=r"declares dims \[1, 3, 1, 1\] \(12 bytes\) but its external data"):
        minicnn.load_onnx(p)
    p = _external(folder, "w.bin", length=12)
    t = onnx.load(os.fspath(p), load_external_data=False)
    for e in t.graph.initializer[0].external_data:
        if e.key == "offset":
            e.value = "nan"
    p.write_bytes(t.SerializeToString())
    with pytest.raises(WeightFileError, match="external data offset 'nan' of tensor 'c' is not a non-negative"):
        minicnn.load_onnx(p)


@pytest.mark.parametrize("op", ["ConstantOfShape", "Expand", "Tile"])
def test_a_folded_constant_of_10_to_the_12_elements_is_refused_before_allocation(tmp_path, op):
    """Shape-making nodes with constant inputs are folded at import: one asking for 10^12 elements is
    refused by its size, in the worker under RLIMIT_AS (never a MemoryError or an out-of-memory kill)."""
    inits = {"ConstantOfShape": {"s": np.array([10 ** 6, 10 ** 6], np.int64)},
             "Expand": {"v": np.ones((1, 1), np.float32), "s": np.array([10 ** 6, 10 ** 6], np.int64)},
             "Tile": {"v": np.ones((1, 1), np.float32), "s": np.array([10 ** 6, 10 ** 6], np.int64)}}[op]
    node = helper.make_node(op, (["s"] if op == "ConstantOfShape" else ["v", "s"]), ["k"], name="big")
    g = helper.make_graph([node, helper.make_node("Add", ["x", "k"], ["y"], name="add")], "t",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(v, k) for k, v in inits.items()])
    p = tmp_path / "big.onnx"
    p.write_bytes(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString())
    with pytest.raises(WeightFileError, match=r"'big' \(" + op + r"\) would build a constant of 1,000,000,000,000"):
        minicnn.load_onnx(p)
    w = Worker(timeout=20.0)
    try:
        rep = w.run("onnx", str(p))
    finally:
        w.close()
    assert rep["outcome"] == "OnnxImportError", rep
