"""Normalisation modes; dataset statistics come from the training set only."""
import json

import numpy as np
import pytest

from minicnn.data import Normalizer


def _batch(rng, n, mean, std, c=1, hw=8):
    return np.clip(rng.normal(mean, std, (n, c, hw, hw)), 0, 255).astype(np.float32)


def test_dataset_mode_uses_training_statistics_only():
    rng = np.random.default_rng(0)
    train = _batch(rng, 64, 60.0, 10.0)
    test = _batch(rng, 32, 190.0, 40.0)  # very different statistics
    norm = Normalizer("dataset").fit(train)
    np.testing.assert_allclose(norm.mean, [train.mean(dtype=np.float64)], rtol=1e-6)
    np.testing.assert_allclose(norm.std, [train.std(dtype=np.float64)], rtol=1e-5)
    before = norm.to_dict()
    out = norm(test, training=False)
    # the applied transform is exactly (x - train mean) / (train std + eps): recover it from the output
    scale = (test - test.mean()).std() / out.std()
    shift = test.mean() - out.mean() * scale
    assert scale == pytest.approx(norm.std[0] + 1e-6, rel=1e-3)
    assert shift == pytest.approx(norm.mean[0], rel=1e-3)
    assert out.mean() > 10  # test data was NOT re-centred on its own statistics
    np.testing.assert_allclose(out, (test - train.mean()) / (train.std() + 1e-6), rtol=1e-4, atol=1e-4)
    assert norm.to_dict() == before  # applying never changes the statistics
    np.testing.assert_array_equal(norm(test, training=True), out)  # same for train and eval


def test_dataset_mode_streaming_fit_and_per_channel():
    rng = np.random.default_rng(1)
    x = np.concatenate([_batch(rng, 10, 50, 5), _batch(rng, 10, 120, 20), _batch(rng, 10, 200, 8)], axis=1)
    whole = Normalizer("dataset").fit(x)
    streamed = Normalizer("dataset").fit(iter([x[:7], x[7:20], x[20:]]))
    np.testing.assert_allclose(streamed.mean, whole.mean, rtol=1e-10)
    np.testing.assert_allclose(streamed.std, whole.std, rtol=1e-8)
    assert whole.mean.shape == (3,) and whole.count == 10
    y = whole(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(y.std(axis=(0, 2, 3)), 1, atol=1e-4)
    # statistics of 1 channel broadcast to grayscale repeated into 3 channels
    gray = Normalizer("dataset").fit(x[:, :1])
    rep = np.repeat(x[:, :1], 3, axis=1)
    np.testing.assert_array_equal(gray(rep)[:, 1], gray(x[:, :1])[:, 0])
    with pytest.raises(ValueError, match="channel"):
        whole(x[:, :2])


def test_unfitted_dataset_mode_is_a_clear_error():
    with pytest.raises(RuntimeError, match="fit"):
        Normalizer("dataset")(np.zeros((1, 1, 2, 2), np.float32))


def test_sample_mode_is_per_image():
    rng = np.random.default_rng(2)
    x = np.concatenate([_batch(rng, 1, 30, 5, c=3), _batch(rng, 1, 200, 30, c=3)])
    y = Normalizer("sample")(x, training=False)
    for i in range(2):
        assert y[i].mean() == pytest.approx(0, abs=1e-5) and y[i].std() == pytest.approx(1, abs=1e-4)
    np.testing.assert_array_equal(Normalizer("sample")(x, training=True), y)


def test_seed_mode_per_image_in_training_train_stats_in_evaluation():
    rng = np.random.default_rng(3)
    train = _batch(rng, 50, 80, 15)
    norm = Normalizer("seed").fit(train)
    x = _batch(rng, 4, 170, 30)
    tr = norm(x, training=True)
    np.testing.assert_allclose(tr, Normalizer("sample")(x), rtol=1e-6)
    for i in range(4):
        assert tr[i].mean() == pytest.approx(0, abs=1e-5)
    ev = norm(x, training=False)
    np.testing.assert_allclose(ev, (x - train.mean()) / (train.std() + 1e-6), rtol=1e-4, atol=1e-4)
    assert ev.mean() > 3  # the evaluation batch is not centred on itself


def test_pretrained_presets():
    x = np.random.default_rng(4).uniform(0, 255, (2, 3, 4, 4)).astype(np.float32)
    t = Normalizer("imagenet-torch")(x)
    mean = np.array([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    np.testing.assert_allclose(t, (x / 255 - mean) / std, rtol=1e-5, atol=1e-5)
    c = Normalizer("caffe")(x)
    assert Normalizer("caffe").mode == "imagenet-caffe"
    np.testing.assert_allclose(c[:, 0], x[:, 2] - 103.939, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(c[:, 2], x[:, 0] - 123.68, rtol=1e-6, atol=1e-4)
    tf = Normalizer("tf")(x)
    np.testing.assert_allclose(tf, x / 127.5 - 1, rtol=1e-6, atol=1e-6)
    assert Normalizer("torch").mode == "imagenet-torch"
    assert t.dtype == c.dtype == tf.dtype == np.float32
    with pytest.raises(ValueError, match="3-channel"):
        Normalizer("imagenet-torch")(x[:, :1])
    with pytest.raises(ValueError, match="mode"):
        Normalizer("zscore")


@pytest.mark.parametrize("mode", ["dataset", "sample", "seed", "imagenet-torch", "imagenet-caffe", "tf"])
def test_to_dict_from_dict_roundtrip_through_json(mode):
    rng = np.random.default_rng(5)
    train = _batch(rng, 20, 100, 20, c=3)
    norm = Normalizer(mode).fit(train)
    again = Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert again.mode == norm.mode
    x = _batch(rng, 3, 140, 25, c=3)
    for training in (False, True):
        np.testing.assert_array_equal(again(x, training=training), norm(x, training=training))
