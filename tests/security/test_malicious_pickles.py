"""Pickle opcodes that call a global, beyond the GLOBAL/STACK_GLOBAL + REDUCE payloads of
tests/pretrained/test_readers.py: INST, OBJ, NEWOBJ, NEWOBJ_EX, BUILD on an allowed object and a
persistent id that is not a storage -- inside a ``.pth`` zip and a legacy ``.pth``. A marker file
proves nothing ran: each payload does run under plain ``pickle.loads`` (the control test)."""
from __future__ import annotations

import pickle
import zipfile

import pytest

from minicnn.errors import WeightFileError
from minicnn.readers.torch import read_torch_state_dict
from minicnn.readers.torch_pickle import LEGACY_MAGIC_NUMBER


def _payloads(marker) -> dict:
    cmd = f"touch {marker}".encode()
    n = len(cmd).to_bytes(4, "little")
    return {
        # protocol 0: MARK, STRING arg, INST os system -> os.system(arg)
        "INST": b"(S'" + cmd + b"'\nios\nsystem\n.",
        # protocol 1: MARK, GLOBAL os.system, BINUNICODE arg, OBJ -> os.system(arg)
        "OBJ": b"\x80\x01(cos\nsystem\nX" + n + cmd + b"o.",
        # protocol 2: GLOBAL, args tuple, NEWOBJ -> cls.__new__(cls, *args); then REDUCE-free BUILD
        "NEWOBJ": b"\x80\x02csubprocess\nPopen\nX" + n + cmd + b"\x85\x81.",
        # protocol 4: SHORT_BINUNICODE module/name, STACK_GLOBAL, args, empty kwargs, NEWOBJ_EX
        "NEWOBJ_EX": b"\x80\x04\x8c\nsubprocess\x8c\x05Popen\x93X" + n + cmd + b"\x85}\x92.",
        # an allowed OrderedDict, then BUILD with a state that names os.system through GLOBAL
        "BUILD": b"\x80\x02ccollections\nOrderedDict\n)R}X\x01\x00\x00\x00acos\nsystem\nsb.",
    }


def _zip(path, payload):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/byteorder", "little")
    return path


def _legacy(path, payload):
    parts = [pickle.dumps(LEGACY_MAGIC_NUMBER, protocol=2), pickle.dumps(1001, protocol=2),
             pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2), payload,
             pickle.dumps([], protocol=2)]
    path.write_bytes(b"".join(parts))
    return path


@pytest.mark.parametrize("opcode", ["INST", "OBJ"])
def test_control_payloads_run_under_plain_pickle(tmp_path, opcode):
    marker = tmp_path / "control"
    pickle.loads(_payloads(marker)[opcode])
    assert marker.exists()


@pytest.mark.parametrize("container", ["zip", "legacy"])
@pytest.mark.parametrize("opcode", ["INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD"])
def test_global_calling_opcodes_refused(tmp_path, container, opcode):
    marker = tmp_path / "pwned"
    p = (_zip if container == "zip" else _legacy)(tmp_path / f"evil.pth", _payloads(marker)[opcode])
    with pytest.raises(WeightFileError) as e:          # UnsafeFileError for a refused global
        read_torch_state_dict(p)
    assert str(p) in str(e.value)
    if opcode != "BUILD":
        assert "os.system" in str(e.value) or "posix.system" in str(e.value) or "subprocess.Popen" in str(e.value)
    assert not marker.exists()


@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_persistent_id_that_is_not_a_storage_refused(tmp_path, container):
    marker = tmp_path / "pwned"
    # BINPERSID of the tuple ('module', 'os', 'system', 'touch ...')
    cmd = f"touch {marker}".encode()
    payload = (b"\x80\x02(X\x06\x00\x00\x00moduleX\x02\x00\x00\x00osX\x06\x00\x00\x00systemX"
               + len(cmd).to_bytes(4, "little") + cmd + b"tQ.")
    p = (_zip if container == "zip" else _legacy)(tmp_path / "pid.pth", payload)
    with pytest.raises(WeightFileError, match="pid.pth"):
        read_torch_state_dict(p)
    assert not marker.exists()
