"""Weights that are not floating point are refused (never silently cast), and the other places
that read ``.npy``/``.npz`` data a user or a third party can hand over -- MedMNIST datasets and
the transfer-learning feature cache -- go through the checked npz reader (no pickle, member
names and sizes checked): a hostile file is a documented error and runs nothing."""
from __future__ import annotations

import io
import pickle
import zipfile

import numpy as np
import pytest

from minicnn.data.datasets import available_splits, load_dataset
from minicnn.errors import DataError, WeightFileError
from minicnn.layers import Conv2D, Dense, GlobalAvgPool2D
from minicnn.model import Sequential
from minicnn.pretrained.mapping import load_arch_weights


def _model():
    return Sequential([Conv2D(1, 2, 3, seed=0), GlobalAvgPool2D(), Dense(2, 1, seed=0)], input_shape=(1, 6, 6))


@pytest.mark.parametrize("bad", [np.int64, np.complex64, np.bool_, "str"])
def test_load_state_dict_refuses_non_floating_weights(bad):
    m = _model()
    sd = {k: v.copy() for k, v in m.state_dict().items()}
    before = {k: v.copy() for k, v in sd.items()}
    key = next(k for k in sd if k.endswith(".W") and sd[k].ndim == 4)
    sd[key] = np.full(sd[key].shape, "1") if bad == "str" else np.ones(sd[key].shape, bad)
    with pytest.raises(WeightFileError, match="not floating point; refused rather than cast") as e:
        m.load_state_dict(sd)
    assert key in str(e.value) and e.value.field == key
    assert all(np.array_equal(v, before[k]) for k, v in m.state_dict().items())    # nothing copied


def test_load_state_dict_casts_floating_point_of_another_precision():
    m = _model()
    sd = {k: (v + 1).astype(np.float64) for k, v in m.state_dict().items()}
    m.load_state_dict(sd)
    assert all(v.dtype == np.float32 and np.allclose(v, sd[k]) for k, v in m.state_dict().items())


@pytest.mark.parametrize("prefix", ["w:", ""])
def test_npz_weights_that_are_not_floating_point_are_refused(tmp_path, prefix):
    m = _model()
    arrays = {prefix + k: v for k, v in m.state_dict().items()}
    key = next(k for k in arrays if k.endswith(".b"))
    arrays[key] = np.arange(arrays[key].size, dtype=np.int32).reshape(arrays[key].shape)
    p = tmp_path / "w.npz"
    np.savez(p, **arrays)
    with pytest.raises(WeightFileError, match=f"weight '{key.removeprefix('w:')}' has dtype int32") as e:
        load_arch_weights(_model(), p)
    assert str(p) in str(e.value)


# ------------------------------------------------------------------------- hostile .npy / .npz
def _object_npy(marker) -> bytes:
    """An object-dtype .npy whose pickle runs ``touch marker`` when unpickled."""
    class Evil:
        def __reduce__(self):
            import os
            return os.system, (f"touch {marker}",)
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += " " * (63 - len(header) % 64 - 10) + "\n"
    raw = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()
    return raw + pickle.dumps([Evil()], protocol=2)


def _medmnist(path, extra=None, evil_labels=None):
    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 256, (4, 8, 8), dtype=np.uint8),
              "train_labels": np.array([[0], [1], [0], [1]], np.uint8)}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:      # as np.savez_compressed writes it
        for k, v in arrays.items():
            bio = io.BytesIO()
            np.save(bio, v)
            z.writestr(f"{k}.npy", evil_labels if k == "train_labels" and evil_labels else bio.getvalue())
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return path


def test_the_object_payload_is_real(tmp_path):
    """Control: loaded with pickle allowed, the member runs its command."""
    marker = tmp_path / "pwned"
    p = _medmnist(tmp_path / "evil.npz", {"val_labels.npy": _object_npy(marker)})
    with np.load(p, allow_pickle=True) as z:
        z["val_labels"]
    assert marker.exists()


def test_a_clean_medmnist_npz_still_loads(tmp_path):
    p = _medmnist(tmp_path / "ok.npz")
    assert available_splits(p) == ["train"]
    ds = load_dataset(p, split="train")
    assert ds.images.shape == (4, 8, 8) and ds.labels[:, 0].tolist() == [0, 1, 0, 1]


@pytest.mark.parametrize("attack", ["object array", "zip traversal", "absolute member", "zip bomb"])
def test_hostile_medmnist_npz_is_a_data_error_and_runs_nothing(tmp_path, attack):
    marker = tmp_path / "pwned"
    if attack == "object array":                 # the labels of the split that is read
        extra, want = {}, "holds pickled Python objects"
    elif attack == "zip traversal":
        extra, want = {"../../train_extra.npy": b"x"}, "names a path outside the archive"
    elif attack == "absolute member":
        extra, want = {"/tmp/evil.npy": b"x"}, "names a path outside the archive"
    else:
        extra, want = {}, "zip bomb"
    p = _medmnist(tmp_path / "evil.npz", extra, evil_labels=_object_npy(marker) if attack == "object array" else None)
    if attack == "zip bomb":                       # a member claiming 10 GB from a few bytes
        data = bytearray(p.read_bytes())
        cd = data.rfind(b"PK\x01\x02")
        data[cd + 24:cd + 28] = (10 ** 10 % 2 ** 32).to_bytes(4, "little")
        p.write_bytes(bytes(data))
    calls = [lambda: load_dataset(p, split="train")]
    if attack != "object array":
        calls.append(lambda: available_splits(p))
    for call in calls:
        with pytest.raises(DataError, match=want) as e:
            call()
        assert str(p) in str(e.value)
    assert not marker.exists()


def test_a_tampered_feature_cache_entry_is_refused_not_unpickled(tmp_path):
    """extract_features reads its cache through the checked reader: an entry replaced by an object
    array (or truncated) is a WeightFileError naming it, and its pickle never runs."""
    from minicnn.transfer import extract_features
    marker = tmp_path / "pwned"
    backbone = Sequential([Conv2D(1, 2, 3, seed=0), GlobalAvgPool2D()], input_shape=(1, 6, 6))
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6)).astype(np.float32)
    cache = tmp_path / "cache"
    first = extract_features(backbone, x, cache=cache)
    np.testing.assert_array_equal(extract_features(backbone, x, cache=cache), first)      # served from the cache
    entries = sorted(cache.rglob("*.npy"))
    assert len(entries) == 2
    entries[0].write_bytes(_object_npy(marker))
    with pytest.raises(WeightFileError, match="holds pickled Python objects") as e:
        extract_features(backbone, x, cache=cache)
    assert str(entries[0]) in str(e.value) and not marker.exists()
    entries[0].write_bytes(entries[1].read_bytes()[:-3])               # truncated: named, not numpy's ValueError
    with pytest.raises(WeightFileError, match="damaged"):
        extract_features(backbone, x, cache=cache)
