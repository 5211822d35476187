"""Normalisation modes (applied through Preprocessing); dataset statistics come from the training set only."""
import json

import numpy as np
import pytest

from minicnn.data import Preprocessing


def N(mode, channels=1):
    return Preprocessing((8, 8), channels=channels, mode=mode)


def _batch(rng, n, mean, std, c=1, hw=8):
    return np.clip(rng.normal(mean, std, (n, c, hw, hw)), 0, 255).astype(np.float32)


def test_dataset_mode_uses_training_statistics_only():
    rng = np.random.default_rng(0)
    train = _batch(rng, 64, 60.0, 10.0)
    test = _batch(rng, 32, 190.0, 40.0)  # very different statistics
    norm = N("dataset").fitted(train)
    np.testing.assert_allclose(norm.mean, [train.mean(dtype=np.float64)], rtol=1e-6)
    np.testing.assert_allclose(norm.std, [train.std(dtype=np.float64)], rtol=1e-5)
    before = norm.to_dict()
    out = norm.normalize(test, training=False)
    # the applied transform is exactly (x - train mean) / (train std + eps): recover it from the output
    scale = (test - test.mean()).std() / out.std()
    shift = test.mean() - out.mean() * scale
    assert scale == pytest.approx(norm.std[0] + 1e-6, rel=1e-3)
    assert shift == pytest.approx(norm.mean[0], rel=1e-3)
    assert out.mean() > 10  # test data was NOT re-centred on its own statistics
    np.testing.assert_allclose(out, (test - train.mean()) / (train.std() + 1e-6), rtol=1e-4, atol=1e-4)
    assert norm.to_dict() == before  # applying never changes the statistics
    np.testing.assert_array_equal(norm.normalize(test, training=True), out)  # same for train and eval


def test_dataset_mode_streaming_fit_and_per_channel():
    rng = np.random.default_rng(1)
    x = np.concatenate([_batch(rng, 10, 50, 5), _batch(rng, 10, 120, 20), _batch(rng, 10, 200, 8)], axis=1)
    whole = N("dataset").fitted(x)
    streamed = N("dataset").fitted(iter([x[:7], x[7:20], x[20:]]))
    np.testing.assert_allclose(streamed.mean, whole.mean, rtol=1e-10)
    np.testing.assert_allclose(streamed.std, whole.std, rtol=1e-8)
    assert len(whole.mean) == 3 and whole.count == 10
    y = whole.normalize(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=(0, 2, 3)), 1, atol=1e-4)
    # statistics of 1 channel broadcast to grayscale repeated into 3 channels
    gray = N("dataset").fitted(x[:, :1])
    rep = np.repeat(x[:, :1], 3, axis=1)
    np.testing.assert_array_equal(gray.normalize(rep)[:, 1], gray.normalize(x[:, :1])[:, 0])
    with pytest.raises(ValueError, match="channel"):
        whole.normalize(x[:, :2])


def test_unfitted_dataset_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="fit"):
        N("dataset").normalize(np.zeros((1, 1, 2, 2), np.float32))


def test_sample_mode_is_per_image():
    rng = np.random.default_rng(2)
    x = np.concatenate([_batch(rng, 1, 30, 5, c=3), _batch(rng, 1, 200, 30, c=3)])
    y = N("sample").normalize(x, training=False)
    for i in range(2):
        assert y[i].mean() == pytest.approx(0, abs=1e-5) and y[i].std() == pytest.approx(1, abs=1e-4)
    np.testing.assert_array_equal(N("sample").normalize(x, training=True), y)


def test_seed_mode_per_image_in_training_train_stats_in_evaluation():
    rng = np.random.default_rng(3)
    train = _batch(rng, 50, 80, 15)
    norm = N("seed").fitted(train)
    x = _batch(rng, 4, 170, 30)
    tr = norm.normalize(x, training=True)
    np.testing.assert_allclose(tr, N("sample").normalize(x), rtol=1e-6)
    for i in range(4):
        assert tr[i].mean() == pytest.approx(0, abs=1e-5)
    ev = norm.normalize(x, training=False)
    np.testing.assert_allclose(ev, (x - train.mean()) / (train.std() + 1e-6), rtol=1e-4, atol=1e-4)
    assert ev.mean() > 3  # the evaluation batch is not centred on itself


def test_pretrained_presets():
    x = np.random.default_rng(4).uniform(0, 255, (2, 3, 4, 4)).astype(np.float32)
    t = N("imagenet-torch").normalize(x)
    mean = np.array([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(t, (x / 255 - mean) / std, rtol=1e-5, atol=1e-5)
    c = N("imagenet-caffe").normalize(x)
    np.testing.assert_allclose(c[:, 0], x[:, 2] - 103.939, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(c[:, 2], x[:, 0] - 123.68, rtol=1e-6, atol=1e-4)
    tf = N("tf").normalize(x)
    np.testing.assert_allclose(tf, x / 127.5 - 1, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(N("none").normalize(x), x)
    assert t.dtype == c.dtype == tf.dtype == np.float32
    with pytest.raises(ValueError, match="3-channel"):
        N("imagenet-torch").normalize(x[:, :1])
    with pytest.raises(ValueError, match="mode"):
        N("zscore")
    for old, new in (("torch", "imagenet-torch"), ("caffe", "imagenet-caffe")):   # only when reading old files
        with pytest.raises(ValueError, match=f"spelled '{new}'"):
            N(old)


@pytest.mark.parametrize("mode", ["dataset", "sample", "seed", "imagenet-torch", "imagenet-caffe", "tf"])
def test_to_dict_from_dict_roundtrip_through_json(mode):
    rng = np.random.default_rng(5)
    train = _batch(rng, 20, 100, 20, c=3)
    norm = N(mode, 3).fitted(train)
    again = Preprocessing.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert again == norm
    x = _batch(rng, 3, 140, 25, c=3)
    for training in (False, True):
        np.testing.assert_array_equal(again.normalize(x, training=training), norm.normalize(x, training=training))


def test_preprocessing_is_frozen_and_its_dict_is_the_documented_structure():
    pre = Preprocessing(16, channels=1, mode="dataset").fitted(np.full((2, 1, 4, 4), 10.0, np.float32))
    with pytest.raises(AttributeError):
        pre.mode = "tf"
    assert pre.to_dict() == {"image_size": [16, 16], "channels": 1, "interpolation": "bilinear", "fit": "stretch",
                             "normalization": {"mode": "dataset", "mean": [10.0], "std": [0.0], "eps": 1e-6,
                                               "count": 2}}
    assert Preprocessing.from_dict(json.loads(json.dumps(pre.to_dict()))) == pre
