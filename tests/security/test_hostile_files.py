"""Hostile weight files: HDF5 external storage / links / virtual datasets, zip path traversal and
bombs, wrong dtypes. A marker file proves nothing outside the given file was read: its bytes
appear in no result, message or output file.
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

import minicnn
from minicnn.errors import UnsafeFileError, WeightFileError
from minicnn.layers import Conv2D
from minicnn.model import Sequential
from minicnn.pretrained.keras_import import load_keras
from minicnn.pretrained.mapping import load_arch_weights
from minicnn.readers.detect import detect_format
from minicnn.readers.keras import read_keras3_weights, read_keras_archive, read_keras_h5
from minicnn.readers.npz import read_npz, read_npz_arrays

ROOT = Path(__file__).resolve().parents[2]
TINY_KERAS = ROOT / "tests" / "ref" / "keras_small" / "tiny_sequential.keras"
KERNEL = (3, 3, 2, 3)                    # HWIO of the legacy file's conv1
N = int(np.prod(KERNEL)) * 4
MARK = b"SECRET-MARKER-"


@pytest.fixture
def marker(tmp_path):
    """A raw file of exactly one kernel's bytes, and an HDF5 file holding them as a dataset."""
    raw = tmp_path / "secret.bin"
    raw.write_bytes((MARK * (N // len(MARK) + 1))[:N])
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["data"] = np.frombuffer(raw.read_bytes(), np.float32).reshape(KERNEL)
    return raw, other


def _assert_no_marker(*texts):
    for t in texts:
        b = t if isinstance(t, bytes) else str(t).encode("utf8", "replace")
        assert MARK not in b and MARK.decode() not in str(t)


def _kernel(g, attack, raw, other, name="0"):
    """Write dataset ``name`` of group ``g`` as the attack would."""
    if attack == "external":
        g.create_dataset(name, shape=KERNEL, dtype="<f4", external=[(os.fspath(raw), 0, N)])
    elif attack == "external_link":
        g[name] = h5py.ExternalLink(os.fspath(other), "/data")
    elif attack == "soft_through_external":
        g.file["zz_elsewhere"] = h5py.ExternalLink(os.fspath(other), "/")   # walked after the soft link
        g[name] = h5py.SoftLink("/zz_elsewhere/data")
    elif attack == "dangling_soft":
        g[name] = h5py.SoftLink("/nowhere/data")
    elif attack == "virtual":
        layout = h5py.VirtualLayout(shape=KERNEL, dtype="<f4")
        layout[...] = h5py.VirtualSource(os.fspath(other), "data", shape=KERNEL)
        g.create_virtual_dataset(name, layout)
    else:
        raise AssertionError(attack)


ATTACKS = ["external", "external_link", "soft_through_external", "dangling_soft", "virtual"]
REFUSAL = {"external": "external raw file", "external_link": "external link", "soft_through_external":
           "external link", "dangling_soft": "does not exist", "virtual": "virtual dataset"}


def _legacy_h5(path, attack, raw, other):
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"conv1"]
        g = f.create_group("conv1")
        g.attrs["weight_names"] = [b"conv1/kernel:0", b"conv1/bias:0"]
        sub = g.create_group("conv1")
        _kernel(sub, attack, raw, other, "kernel:0")
        sub["bias:0"] = np.zeros(3, np.float32)
    return path


def _evil_keras(path, attack, raw, other):
    with zipfile.ZipFile(TINY_KERAS) as z:
        members = {n: z.read(n) for n in z.namelist()}
    src = h5py.File(io.BytesIO(members["model.weights.h5"]), "r")
    bio = io.BytesIO()
    with src, h5py.File(bio, "w") as dst:
        for k in src:
            src.copy(src[k], dst, k)
        del dst["layers/conv2d/vars/0"]
        _kernel(dst["layers/conv2d/vars"], attack, raw, other)
    members["model.weights.h5"] = bio.getvalue()
    with zipfile.ZipFile(path, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    return path


def test_the_attacks_are_real(marker, tmp_path):
    """Opened naively with h5py, each attack reads the marker (external/virtual) or leaves the file."""
    raw, other = marker
    for attack in ("external", "external_link", "virtual"):
        p = _legacy_h5(tmp_path / f"{attack}.h5", attack, raw, other)
        with h5py.File(p, "r") as f:
            assert MARK in f["conv1/conv1/kernel:0"][()].tobytes()


@pytest.mark.parametrize("attack", ATTACKS)
def test_legacy_h5_attacks_refused(marker, tmp_path, attack):
    raw, other = marker
    p = _legacy_h5(tmp_path / "evil.h5", attack, raw, other)
    want = UnsafeFileError if attack != "dangling_soft" else WeightFileError
    for call in (lambda: read_keras_h5(p), lambda: detect_format(p),
                 lambda: load_arch_weights(Sequential([Conv2D(2, 3, 3)]), p)):
        with pytest.raises(want, match=REFUSAL[attack]) as e:
            call()
        assert str(p) in str(e.value) and "conv1/conv1/kernel:0" in str(e.value)
        _assert_no_marker(str(e.value))


@pytest.mark.parametrize("attack", ATTACKS)
def test_keras_archive_attacks_refused(marker, tmp_path, attack):
    raw, other = marker
    p = _evil_keras(tmp_path / "evil.keras", attack, raw, other)
    want = UnsafeFileError if attack != "dangling_soft" else WeightFileError
    for call in (lambda: read_keras_archive(p), lambda: load_keras(p)):
        with pytest.raises(want, match=REFUSAL[attack]) as e:
            call()
        assert f"{p}!model.weights.h5" in str(e.value) and "layers/conv2d/vars/0" in str(e.value)
        _assert_no_marker(str(e.value))


@pytest.mark.parametrize("attack", ["external", "external_link", "virtual"])
def test_keras3_weights_file_attack_refused(marker, tmp_path, attack):
    raw, other = marker
    p = tmp_path / "evil.weights.h5"
    with h5py.File(p, "w") as f:
        _kernel(f.create_group("layers/conv2d/vars"), attack, raw, other)
    with pytest.raises(UnsafeFileError, match=REFUSAL[attack]):
        read_keras3_weights(p)
    with open(p, "rb") as fh, pytest.raises(UnsafeFileError, match=REFUSAL[attack]):
        read_keras3_weights(io.BytesIO(fh.read()))


@pytest.mark.parametrize("attack", ["external", "external_link", "virtual"])
def test_cli_convert_refuses_in_one_line(marker, tmp_path, attack):
    raw, other = marker
    p = _evil_keras(tmp_path / "evil.keras", attack, raw, other)
    out = tmp_path / "out.npz"
    r = subprocess.run([sys.executable, "-m", "minicnn.cli", "convert", str(p), str(out), "--preprocess", "tf",
                        "--image-size", "8"], capture_output=True, cwd=ROOT, timeout=120)
    assert r.returncode == 1
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "refused" in lines[0] and "layers/conv2d/vars/0" in lines[0], r.stderr
    assert not out.exists() and not [q for q in tmp_path.iterdir() if q.suffix == ".npz"]
    _assert_no_marker(r.stdout, r.stderr)


def test_non_float_weights_refused_not_cast(tmp_path):
    for dtype, data in (("complex64", np.ones(KERNEL, np.complex64)), ("int32", np.ones(KERNEL, np.int32))):
        p = tmp_path / f"{dtype}.h5"
        with h5py.File(p, "w") as f:
            f.attrs["layer_names"] = [b"conv1"]
            g = f.create_group("conv1")
            g.attrs["weight_names"] = [b"k"]
            g["k"] = data
        with pytest.raises(WeightFileError, match=f"'conv1/k'.*{dtype}|{dtype}.*conv1/k"):
            read_keras_h5(p)
    p = tmp_path / "strings.h5"
    with h5py.File(p, "w") as f:
        f.attrs["layer_names"] = [b"conv1"]
        g = f.create_group("conv1")
        g.attrs["weight_names"] = [b"k"]
        g["k"] = np.array([b"abc", b"def"])
    with pytest.raises(WeightFileError, match="dataset '/conv1/k' has dtype"):
        read_keras_h5(p)


def test_hdf5_dataset_declaring_more_than_it_stores_refused(tmp_path):
    p = tmp_path / "huge.h5"
    with h5py.File(p, "w") as f:
        f.attrs["layer_names"] = [b"conv1"]
        g = f.create_group("conv1")
        g.attrs["weight_names"] = [b"k"]
        g.create_dataset("k", shape=(10**6, 10**6), dtype="<f4", chunks=(1, 1024))   # 4 TB, none written
    with pytest.raises(WeightFileError, match="over the limit|stores only"):
        read_keras_h5(p)


# --------------------------------------------------------------------------------- zip archives
def _npz_with(path, members: dict, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for n, b in members.items():
            z.writestr(n, b)
    return path


def _npy(a) -> bytes:
    bio = io.BytesIO()
    np.save(bio, a, allow_pickle=False)
    return bio.getvalue()


@pytest.mark.parametrize("name", ["../../escape.npy", "/etc/passwd.npy", "a/../../b.npy"])
def test_zip_path_traversal_refused(tmp_path, name):
    good = _npy(np.zeros(3, np.float32))
    p = _npz_with(tmp_path / "evil.npz", {"w:a.npy": good, name: good})
    with pytest.raises(UnsafeFileError, match="outside the archive") as e:
        read_npz_arrays(p)
    assert name in str(e.value)
    with zipfile.ZipFile(TINY_KERAS) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members[name.replace(".npy", ".h5")] = b"x"
    k = _npz_with(tmp_path / "evil.keras", members)
    with pytest.raises(UnsafeFileError, match="outside the archive"):
        read_keras_archive(k)
    assert not (tmp_path.parent / "escape.npy").exists() and not (tmp_path.parent / "escape.h5").exists()


def test_zip_bomb_refused_before_inflating(tmp_path):
    """A member whose directory claims 2 GB from a few KB is refused from the directory alone."""
    p = _npz_with(tmp_path / "bomb.npz", {"w:a.npy": _npy(np.zeros(1000, np.float32))}, zipfile.ZIP_DEFLATED)
    data = bytearray(p.read_bytes())
    cd = data.rfind(b"PK\x01\x02")                    # central directory entry: uncompressed size at +24
    data[cd + 24:cd + 28] = (2_000_000_000).to_bytes(4, "little")
    p.write_bytes(bytes(data))
    with pytest.raises(UnsafeFileError, match="zip bomb"):
        read_npz_arrays(p)


def test_member_cap_and_npy_header_sizes(tmp_path):
    p = _npz_with(tmp_path / "a.npz", {"w:a.npy": _npy(np.zeros(1000, np.float32))})
    with pytest.raises(WeightFileError, match="over the limit of 100"):
        read_npz_arrays(p, max_bytes=100)
    head = _npy(np.zeros(2, np.float32)).replace(b"(2,)", b"(1000000000000,)".ljust(4))   # 10^12 elements
    raw = _npy(np.zeros(2, np.float32))
    hdr_end = raw.index(b"\n") + 1
    shape_txt = b"'shape': (1000000000000,)"
    hdr = raw[10:hdr_end].replace(b"'shape': (2,)", shape_txt)
    hdr = hdr.rstrip(b"\n").rstrip(b" ")
    hdr = hdr + b" " * ((64 - (10 + len(hdr) + 1) % 64) % 64) + b"\n"
    huge = raw[:8] + len(hdr).to_bytes(2, "little") + hdr + raw[hdr_end:]
    p = _npz_with(tmp_path / "huge.npz", {"w:a.npy": huge})
    with pytest.raises(WeightFileError, match="declares shape .1000000000000,. of float32"):
        read_npz_arrays(p)
    del head


@pytest.mark.parametrize("dtype", ["complex64", "int32", "<U3", "datetime64[s]"])
def test_npz_weights_of_wrong_dtype_refused(tmp_path, dtype):
    m = Sequential([Conv2D(1, 2, 3)], input_shape=(1, 5, 5))
    arrays = m.to_arrays()
    k = next(k for k in arrays if k.startswith("w:"))
    arrays[k] = np.zeros(arrays[k].shape, dtype)
    p = tmp_path / "m.npz"
    np.savez(p, **arrays)
    with pytest.raises(WeightFileError, match=k[2:] if dtype != "datetime64[s]" else "dtype"):
        minicnn.load(p)


def test_npz_object_array_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    p = tmp_path / "evil.npz"
    np.savez(p, **{"w:a": np.array([Evil()], dtype=object)})
    with pytest.raises(WeightFileError, match="pickled Python objects"):
        read_npz(p)
    assert not marker.exists()
