"""The allow-list unpickler on whole pickled modules (torchxrayvision's ``torch.save(model)``):
inert module records, both serializations, old-torch forms built by hand, and malicious pickles
that must be refused without running anything."""
import pickle
import pickletools
import struct
import zipfile

import numpy as np
import pytest

from minicnn.errors import UnsafeFileError, WeightFileError
from minicnn.readers import read_torch_state_dict
from minicnn.readers.torch import read_torch_file
from minicnn.readers.torch_pickle import (LEGACY_MAGIC_NUMBER, MODULE_CLASSES, TorchModuleRecord,
                                          load_torch_checkpoint, module_state_dict)


# --------------------------------------------------------------------- a tiny pickle assembler
def G(mod, name):                      # GLOBAL opcode
    return b"c" + f"{mod}\n{name}\n".encode()


def S(s):                              # BINUNICODE
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def I(n):                              # BININT
    return b"J" + struct.pack("<i", n)


def T(*items):                         # MARK ... TUPLE
    return b"(" + b"".join(items) + b"t"


def odict(pairs):                      # collections.OrderedDict() then SETITEMS
    body = G("collections", "OrderedDict") + b")R"
    if pairs:
        body += b"(" + b"".join(S(k) + v for k, v in pairs) + b"u"
    return body


def tensor_v1(key, numel, offset, size, stride, storage=("torch.cuda", "FloatStorage")):
    pid = T(S("storage"), G(*storage), S(key), S("cuda:0"), I(numel), b"N") + b"Q"   # BINPERSID
    return G("torch._utils", "_rebuild_tensor") + T(pid, I(offset), T(*map(I, size)), T(*map(I, stride))) + b"R"


def module(cls, params=(), modules=(), attrs=(), legacy=True):
    mod, name = cls.rsplit(".", 1)
    klass = (T(S("module"), G(mod, name), S("/old/models.py"), S("class X: pass")) + b"Q") if legacy else G(mod, name)
    state = b"}(" + S("_parameters") + odict(params) + S("_buffers") + odict([]) + S("_modules") + odict(modules)
    state += b"".join(S(k) + v for k, v in attrs) + b"u"
    return klass + b")\x81" + state + b"b"                       # EMPTY_TUPLE NEWOBJ <state> BUILD


def legacy_file(path, payload, storages):
    """magic, protocol, sys info, the object pickle, the key list, then each storage's bytes."""
    head = [pickle.dumps(LEGACY_MAGIC_NUMBER, protocol=2), pickle.dumps(1001, protocol=2),
            pickle.dumps({"protocol_version": 1001, "little_endian": True,
                          "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)]
    body = b"\x80\x02" + payload + b"."
    keys = pickle.dumps([k for k, _ in storages], protocol=2)
    data = b"".join(struct.pack("<q", a.size) + a.astype("<f4").tobytes() for _, a in storages)
    path.write_bytes(b"".join(head) + body + keys + data)


def zip_file(path, payload, storages=()):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x02" + payload + b".")
        zf.writestr("archive/byteorder", "little")
        for k, a in storages:
            zf.writestr(f"archive/data/{k}", a.astype("<f4").tobytes())


# ------------------------------------------------------------------------ old torch forms, by hand
def test_hand_built_legacy_module_pickle(tmp_path):
    """torch<1.6 forms: module classes through ('module', cls, file, source) ids, NEWOBJ + BUILD,
    _rebuild_tensor v1 on torch.cuda.FloatStorage (saved from a GPU), a strided view, _backend."""
    rng = np.random.default_rng(0)
    w, b = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(3).astype(np.float32)
    linear = module("torch.nn.modules.linear.Linear",
                    params=[("weight", tensor_v1("0", 12, 0, (4, 3), (1, 4))),    # stored transposed
                            ("bias", tensor_v1("1", 3, 0, (3,), (1,)))],
                    attrs=[("training", b"\x89"), ("in_features", I(4)), ("out_features", I(3)),
                           ("_backend", G("torch.nn.backends.thnn", "_get_thnn_function_backend") + b")R")])
    seq = module("torch.nn.modules.container.Sequential", modules=[("0", linear), ("1", module(
        "torch.nn.modules.activation.Sigmoid"))])
    root = module("torchxrayvision.models.DenseNet", modules=[("classifier", seq)],
                  attrs=[("pathologies", b"](" + S("Pneumonia") + S("") + S("Edema") + b"e")])
    p = tmp_path / "old.pt"
    legacy_file(p, root, [("0", w.ravel()), ("1", b)])
    rec = load_torch_checkpoint(p)
    assert isinstance(rec, TorchModuleRecord) and rec.torch_class == "torchxrayvision.models.DenseNet"
    assert rec.attributes["pathologies"] == ["Pneumonia", "", "Edema"]
    sd = module_state_dict(rec)
    assert list(sd) == ["classifier.0.weight", "classifier.0.bias"]
    np.testing.assert_array_equal(sd["classifier.0.weight"], w.T)
    np.testing.assert_array_equal(sd["classifier.0.bias"], b)
    assert read_torch_file(p).module_class == "torchxrayvision.models.DenseNet"


@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_module_pickle_globals_are_the_allow_list(tmp_path, container):
    """pickletools on a torchxrayvision DenseNet saved here: every global it names is allowed."""
    torch = pytest.importorskip("torch")
    xrv = pytest.importorskip("torchxrayvision")
    p = tmp_path / "m.pt"
    torch.save(xrv.models.DenseNet(), p, **({} if container == "zip" else {"_use_new_zipfile_serialization": False}))
    if container == "zip":
        with zipfile.ZipFile(p) as zf:
            data = zf.read(next(n for n in zf.namelist() if n.endswith("/data.pkl")))
    else:
        with open(p, "rb") as f:
            for _ in range(3):
                pickle.load(f)
            data = f.read()
    names = {arg.replace(" ", ".") for op, arg, _ in pickletools.genops(data) if op.name == "GLOBAL"}
    assert {n for n in names if "torchxrayvision" in n or "torch.nn" in n} <= set(MODULE_CLASSES)
    assert names - set(MODULE_CLASSES) == {"__builtin__.set", "collections.OrderedDict", "torch.FloatStorage",
                                           "torch.LongStorage", "torch._utils._rebuild_parameter",
                                           "torch._utils._rebuild_tensor_v2"}
    sd = read_torch_state_dict(p, normalize_keys=False)
    want = torch.load(p, weights_only=False).state_dict()
    assert list(sd) == list(want)
    assert all(np.array_equal(sd[k], v.numpy()) for k, v in want.items())


# ---------------------------------------------------------------------------- malicious pickles
def _marker_payload(marker, how):
    cmd = S(f"touch {marker}")
    if how == "os.system GLOBAL":
        return G("os", "system") + T(cmd) + b"R"
    if how == "posix.system GLOBAL":
        return G("posix", "system") + T(cmd) + b"R"
    if how == "builtins.eval STACK_GLOBAL":
        return (b"\x8c\x08builtins\x8c\x04eval\x93"
                + T(S(f"__import__('os').system('touch {marker}')")) + b"R")
    if how == "subprocess GLOBAL":
        return G("subprocess", "check_call") + T(T(S("touch"), S(str(marker)))) + b"R"
    if how == "subprocess INST":
        return b"(" + T(S("touch"), S(str(marker))) + b"isubprocess\ncheck_call\n"
    if how == "os.system OBJ":
        return b"(" + G("os", "system") + cmd + b"o"
    if how == "disguised module path":          # a dotted name through an allowed module
        return G("torchxrayvision.models", "os.system") + T(cmd) + b"R"
    if how == "disguised module name":
        return G("torch.nn.modules.conv.os", "system") + T(cmd) + b"R"
    if how == "inside a module record":
        return module("torchxrayvision.models.DenseNet", attrs=[("weights", G("os", "system") + T(cmd) + b"R")],
                      legacy=False)
    raise AssertionError(how)


_HOWS = ["os.system GLOBAL", "posix.system GLOBAL", "builtins.eval STACK_GLOBAL", "subprocess GLOBAL",
         "subprocess INST", "os.system OBJ", "disguised module path", "disguised module name",
         "inside a module record"]


def test_marker_payloads_are_real(tmp_path):
    """Control: under plain pickle each payload really runs its command (so the test below can fail)."""
    for i, how in enumerate(h for h in _HOWS if "module" not in h and "posix" not in h):
        marker = tmp_path / f"m{i}"
        pickle.loads(b"\x80\x04" + _marker_payload(marker, how) + b".")
        assert marker.exists(), how


@pytest.mark.parametrize("container", ["zip", "legacy"])
@pytest.mark.parametrize("how", _HOWS)
def test_malicious_pickles_refused(tmp_path, how, container):
    marker = tmp_path / "pwned"
    p = tmp_path / "evil.pt"
    (zip_file if container == "zip" else legacy_file)(p, _marker_payload(marker, how), [])
    with pytest.raises(UnsafeFileError) as ei:
        load_torch_checkpoint(p)
    msg = str(ei.value)
    assert str(p) in msg
    named = {"subprocess INST": "subprocess.check_call", "subprocess GLOBAL": "subprocess.check_call",
             "builtins.eval STACK_GLOBAL": "builtins.eval", "posix.system GLOBAL": "posix.system",
             "disguised module path": "torchxrayvision.models.os.system",
             "disguised module name": "torch.nn.modules.conv.os.system"}.get(how, "os.system")
    assert named in msg
    assert not marker.exists()


def test_allowed_module_class_cannot_be_called(tmp_path):
    """REDUCE on an allowed class (calling it), NEWOBJ with arguments, a 'module' id to a non-module."""
    cases = {"reduce": G("torchxrayvision.models", "DenseNet") + b")R",
             "newobj args": G("torch.nn.modules.conv", "Conv2d") + T(I(1), I(2)) + b"\x81",
             "module id": T(S("module"), G("collections", "OrderedDict"), S("f"), S("s")) + b"Q)\x81"}
    for name, payload in cases.items():
        p = tmp_path / f"{name.replace(' ', '_')}.pt"
        legacy_file(p, payload, [])
        with pytest.raises(WeightFileError) as ei:
            load_torch_checkpoint(p)
        assert str(p) in str(ei.value), name
        if name != "module id":
            assert isinstance(ei.value, UnsafeFileError) and "refusing to call" in str(ei.value), name


def test_damaged_module_pickles_fail_cleanly(tmp_path):
    """Random byte flips and truncations of a module pickle: parsed or refused, never another exception."""
    w = np.arange(12, dtype=np.float32)
    root = module("torchxrayvision.models.DenseNet", modules=[("classifier", module(
        "torch.nn.modules.linear.Linear", params=[("weight", tensor_v1("0", 12, 0, (3, 4), (4, 1)))]))],
        attrs=[("training", b"\x89")])
    p = tmp_path / "good.pt"
    legacy_file(p, root, [("0", w)])
    good = p.read_bytes()
    rng = np.random.default_rng(0)
    outcomes = set()
    for i in range(300):
        data = bytearray(good)
        if i % 3 == 0:
            data = data[:int(rng.integers(1, len(data)))]
        else:
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        q = tmp_path / "bad.pt"
        q.write_bytes(bytes(data))
        try:
            read_torch_state_dict(q)
            outcomes.add("read")
        except WeightFileError:
            outcomes.add("refused")
    assert "refused" in outcomes
