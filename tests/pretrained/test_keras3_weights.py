"""Keras 3 ``.weights.h5`` files through ``minicnn.pretrained.load_weights`` / ``densenet121(weights=...)``.

The fixture is the shared legacy DenseNet121 file (../shared/ref, tf-keras ``save_weights``) rewritten
in the Keras 3 layout, key by key, following the rules of docs/weight-formats.md *without* minicnn's
own code: the file's ``layer_names`` (Keras' layer order, InputLayer and weightless layers included)
give each layer its class; the key is the snake_case class name, bare for the first layer of that
class and ``_1``, ``_2``, ... after; the arrays go to ``layers/<key>/vars/<i>`` in weight order.
(The four real architectures, written by Keras 3 itself, are checked against Keras' outputs by
``pretrained/verify_keras_refs.py REFS --keras3``, outside the test suite: the files are too big.)

rel err = max|a - b| / max|b|; the bound is 1e-4.
"""
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from minicnn.pretrained import densenet121, load_weights
from minicnn.readers.detect import detect_format
from minicnn.readers.keras import read_keras_h5

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
KERAS_H5 = SHARED / "ref" / "keras_densenet121_random_notop.h5"
KERAS_NPZ = SHARED / "ref" / "keras_densenet121_random.npz"

pytestmark = pytest.mark.skipif(not (KERAS_H5.exists() and KERAS_NPZ.exists()),
                                reason="../shared/ref (Keras DenseNet121 reference) not present")


def rel_err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


def keras_class_key(name: str, n_weights: int) -> str:
    """The snake_case class of a Keras DenseNet121 layer, from its (Keras 2) name."""
    last = re.split(r"[/_]", name)[-1]
    if re.fullmatch(r"input_\d+", name):
        return "input_layer"
    if name.startswith("zero_padding2d"):
        return "zero_padding2d"
    if name == "pool1":
        return "max_pooling2d"
    kind = {"conv": "conv2d", "bn": "batch_normalization", "relu": "activation", "concat": "concatenate",
            "pool": "average_pooling2d"}[last]
    assert (n_weights > 0) == (kind in ("conv2d", "batch_normalization")), name
    return kind


@pytest.fixture(scope="module")
def keras3_groups():
    """``{key: [arrays]}`` of the shared file in Keras 3 layout, in Keras' layer order (dicts keep it)."""
    with h5py.File(KERAS_H5, "r") as f:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f.attrs["layer_names"]]
    arrays = {kl.name: kl.arrays for kl in read_keras_h5(KERAS_H5)}
    groups, used = {}, {}
    for name in names:
        cls = keras_class_key(name, len(arrays.get(name, [])))
        used[cls] = used.get(cls, -1) + 1
        groups[cls + (f"_{used[cls]}" if used[cls] else "")] = list(arrays.get(name, []))
    assert len(groups) == 427 and sum(len(v) for v in groups.values()) == 604
    assert used["conv2d"] == 119 and used["batch_normalization"] == 120 and used["input_layer"] == 0   # 120 + 121
    return groups


def write_keras3(path, groups, nest=None):
    """Write ``groups`` as a Keras 3 ``.weights.h5`` (``nest``: put them under ``layers/<nest>/``)."""
    with h5py.File(path, "w") as f:
        root = f
        if nest is not None:
            f.create_group("layers/input_layer/vars")
            root = f.create_group(f"layers/{nest}")
            root.create_group("vars")
        layers = root.create_group("layers")
        for key, arrays in groups.items():
            v = layers.create_group(f"{key}/vars")
            for i, a in enumerate(arrays):
                v.create_dataset(str(i), data=a)
        f.require_group("vars")
    return path


@pytest.fixture(scope="module")
def keras3_file(keras3_groups, tmp_path_factory):
    return write_keras3(tmp_path_factory.mktemp("k3") / "densenet121_notop.weights.h5", keras3_groups)


def test_keras3_layout_holds_the_traps(keras3_groups):
    """The fixture is a real test of the key rules: keys are not names, and classes interleave."""
    keys = list(keras3_groups)
    assert keys[:7] == ["input_layer", "zero_padding2d", "conv2d", "batch_normalization", "activation",
                        "zero_padding2d_1", "max_pooling2d"]
    # conv2_block1_0_bn is the second BatchNormalization: key batch_normalization_1, and the first
    # dense layer's 1x1 conv (conv2_block1_1_conv) is conv2d_1, whose input has 64 channels
    assert keras3_groups["batch_normalization_1"][0].shape == (64,)
    assert keras3_groups["conv2d_1"][0].shape == (1, 1, 64, 128)
    assert keras3_groups["activation"] == [] and keras3_groups["concatenate_57"] == []


def test_densenet121_keras3_matches_keras_featuremap(keras3_file):
    assert detect_format(keras3_file) == "keras3_weights"
    ref = np.load(KERAS_NPZ, allow_pickle=False)
    model = densenet121(weights=keras3_file, include_top=False)
    assert model.meta["source"] == "keras" and model.meta["dropped"] == []
    assert model.meta["weights"] == keras3_file.name
    x = np.ascontiguousarray(ref["x"].transpose(0, 3, 1, 2), dtype=np.float32)
    out = model.predict(x, batch_size=2)
    err = rel_err(out, ref["featuremap"].transpose(0, 3, 1, 2))
    assert out.shape == (2, 1024, 7, 7) and err < 1e-4, err

    legacy = densenet121(weights=KERAS_H5, include_top=False)          # the same arrays, the same places
    a, b = model.state_dict(), legacy.state_dict()
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_keras3_head_is_dropped_or_loaded(keras3_groups, tmp_path):
    rng = np.random.default_rng(0)
    head = [rng.standard_normal((1024, 5)).astype(np.float32), rng.standard_normal(5).astype(np.float32)]
    path = write_keras3(tmp_path / "top.weights.h5", {**keras3_groups, "dense": head})
    notop = densenet121(source="keras", include_top=False)
    load_weights(notop, path)
    assert notop.meta["dropped"] == ["predictions/layers/dense/vars/0", "predictions/layers/dense/vars/1"]
    top = densenet121(weights=path, classes=5)
    assert top.meta["dropped"] == [] and top.output_activation == "softmax"
    p, q = top.params(), notop.params()
    assert np.array_equal(p["classifier.W"], head[0]) and np.array_equal(p["classifier.b"], head[1])
    assert np.array_equal(p["features.conv0.W"], q["features.conv0.W"])


def _error(path, **kwargs) -> str:
    with pytest.raises(ValueError) as e:
        densenet121(weights=path, include_top=False, **kwargs)
    return str(e.value)


def test_keras3_missing_group_is_named(keras3_groups, tmp_path):
    groups = {k: v for k, v in keras3_groups.items() if k != "conv2d_5"}
    msg = _error(write_keras3(tmp_path / "missing.weights.h5", groups))
    assert "missing (1)" in msg and "layers/conv2d_5/" in msg
    assert "features.denseblock1.denselayer3.conv1" in msg and "conv2_block3_1_conv" in msg
    assert "unexpected" not in msg and "mis-shaped" not in msg


def test_keras3_wrong_shape_is_named(keras3_groups, tmp_path):
    groups = dict(keras3_groups)
    groups["batch_normalization_7"] = [a[:-1] if i == 2 else a for i, a in enumerate(groups["batch_normalization_7"])]
    groups["conv2d"] = [groups["conv2d"][0].transpose(3, 2, 0, 1)]        # OIHW instead of HWIO
    msg = _error(write_keras3(tmp_path / "shape.weights.h5", groups))
    assert "mis-shaped (2)" in msg
    assert "layers/batch_normalization_7/vars/2" in msg and "moving_mean" in msg
    assert "layers/conv2d/vars/0" in msg and "file (64, 3, 7, 7) vs expected (7, 7, 3, 64)" in msg
    assert "missing" not in msg and "unexpected" not in msg


def test_keras3_extra_group_and_array_are_named(keras3_groups, tmp_path):
    groups = dict(keras3_groups)
    groups["conv2d_120"] = [np.zeros((1, 1, 1024, 8), np.float32)]
    groups["batch_normalization_3"] = groups["batch_normalization_3"] + [np.zeros(3, np.float32)]
    msg = _error(write_keras3(tmp_path / "extra.weights.h5", groups))
    assert "unexpected (2)" in msg
    assert "layers/conv2d_120/vars/0 (1, 1, 1024, 8)" in msg and "layers/batch_normalization_3/vars/4" in msg
    assert "missing" not in msg and "mis-shaped" not in msg


def test_keras3_several_problems_listed_together(keras3_groups, tmp_path):
    groups = {k: v for k, v in keras3_groups.items() if k != "batch_normalization_120"}   # the last BN
    groups["dense_1"] = [np.zeros((4, 4), np.float32)]
    groups["conv2d_2"] = [groups["conv2d_2"][0][..., :16]]
    msg = _error(write_keras3(tmp_path / "several.weights.h5", groups))
    for part in ("missing (1)", "layers/batch_normalization_120/", "features.norm5 (Keras 'bn')",
                 "unexpected (1)", "layers/dense_1/vars/0", "mis-shaped (1)", "layers/conv2d_2/vars/0"):
        assert part in msg, (part, msg)


def test_keras3_wrapped_model_is_refused(keras3_groups, tmp_path):
    msg = _error(write_keras3(tmp_path / "wrapped.weights.h5", keras3_groups, nest="functional"))
    assert "layers/functional/" in msg and "wraps" in msg and "save_weights" in msg


def test_keras3_needs_keras_source_and_known_architecture(keras3_file):
    with pytest.raises(ValueError, match="source='keras'"):
        load_weights(densenet121(source="torchvision", include_top=False), keras3_file)
    from minicnn.pretrained.densenet import densenet_graph
    other = densenet_graph((2, 2), source="keras", include_top=False, input_shape=(3, 64, 64), name="tinydense")
    with pytest.raises(ValueError, match="not of 'tinydense'.*keras_import"):
        load_weights(other, keras3_file)
