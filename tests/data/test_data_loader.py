"""Augmentation and the prefetching batch loader: determinism, training-only augmentation, errors, shutdown."""
import threading
import time

import numpy as np
import pytest
from PIL import Image

from minicnn.data import (ArrayLoader, Augmenter, BatchLoader, Dataset, ImageLoadError, LoaderError, Preprocessing,
                          batch_rng, epoch_rng, fit_preprocessing, load_dataset)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    rng = np.random.default_rng(0)
    for cls in ("NORMAL", "PNEUMONIA"):
        (root / cls).mkdir()
        for i in range(11):
            name = f"IM-{i:04d}-0001.png" if cls == "NORMAL" else f"person{i}_x_0.png"
            Image.fromarray(rng.integers(0, 256, (20 + i, 18), dtype=np.uint8)).save(root / cls / name)
    return root


def _loader(ds, channels=1, pre=None, **kw):
    base = dict(batch_size=5, augment=Augmenter(), seed=7, return_indices=True)
    base.update(kw)
    return BatchLoader(ds, pre or Preprocessing(16, channels, mode="none"), **base)


def _alive_loader_threads():
    return [t for t in threading.enumerate() if t.name.startswith("minicnn-loader")]


def test_augmenter_deterministic_per_generator_and_changes_images():
    x = np.random.default_rng(0).uniform(0, 255, (4, 1, 24, 24)).astype(np.float32)
    aug = Augmenter(hflip=0.5, rotation=10, shift=0.1, zoom=0.1, brightness=0.2, contrast=0.2)
    a = aug(x, np.random.default_rng(1))
    b = aug(x, np.random.default_rng(1))
    c = aug(x, np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, x)
    assert a.shape == x.shape and a.dtype == np.float32 and a.min() >= 0 and a.max() <= 255
    with pytest.raises(TypeError, match="Generator"):
        aug(x, 3)


def test_augmenter_flip_only_is_a_mirror():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    flip = Augmenter(hflip=1.0, rotation=0, shift=0, zoom=0, brightness=0, contrast=0)
    np.testing.assert_allclose(flip(x, np.random.default_rng(0)), x[..., ::-1], atol=1e-4)


def test_batches_shapes_and_channels(folder):
    ds = load_dataset(folder)
    x, y, idx = next(iter(_loader(ds, augment=None, training=False).epoch(0)))
    assert x.shape == (5, 1, 16, 16) and x.dtype == np.float32 and y.shape == (5, 1) and y.dtype == np.float32
    np.testing.assert_array_equal(idx, np.arange(5))
    np.testing.assert_array_equal(y, ds.labels[:5])
    x3, _, _ = next(iter(_loader(ds, augment=None, training=False, channels=3).epoch(0)))
    assert x3.shape == (5, 3, 16, 16)
    np.testing.assert_array_equal(x3[:, 0], x[:, 0])
    np.testing.assert_array_equal(x3[:, 2], x[:, 0])
    np.testing.assert_array_equal(x[1, 0], ds.image(1, size=16))
    assert len(_loader(ds)) == 5 and len(_loader(ds, drop_last=True)) == 4


def test_same_batches_with_and_without_prefetch_and_resume(folder):
    ds = load_dataset(folder)
    norm = fit_preprocessing(Preprocessing(16, mode="dataset"), ds)
    runs = []
    for prefetch in (0, 1, 3):
        loader = _loader(ds, prefetch=prefetch, pre=norm, cache_bytes=10_000 if prefetch == 3 else 0)
        runs.append([[b for b in loader.epoch(e)] for e in (0, 1)])
    for other in runs[1:]:
        for ep_a, ep_b in zip(runs[0], other):
            assert len(ep_a) == len(ep_b) == 5
            for (xa, ya, ia), (xb, yb, ib) in zip(ep_a, ep_b):
                np.testing.assert_array_equal(xa, xb)
                np.testing.assert_array_equal(ya, yb)
                np.testing.assert_array_equal(ia, ib)
    # epochs differ in order; a resumed epoch equals the tail of the uninterrupted one
    assert not np.array_equal(np.concatenate([b[2] for b in runs[0][0]]), np.concatenate([b[2] for b in runs[0][1]]))
    resumed = list(_loader(ds, pre=norm).epoch(1, start_batch=3))
    for (xa, _, ia), (xb, _, ib) in zip(runs[0][1][3:], resumed):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ia, ib)
    # every image appears exactly once per epoch
    assert sorted(np.concatenate([b[2] for b in runs[0][1]]).tolist()) == list(range(len(ds)))


def test_augmentation_only_in_training(folder):
    ds = load_dataset(folder)
    plain = list(_loader(ds, augment=None).epoch(2, training=False))
    evaluated = list(_loader(ds).epoch(2, training=False))  # has an Augmenter, but evaluation
    for (xa, _, ia), (xb, _, ib) in zip(plain, evaluated):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ia, ib)
    train = list(_loader(ds).epoch(2, training=True))
    train_plain = list(_loader(ds, augment=None).epoch(2, training=True))
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(train, train_plain))
    # the augmentation of a batch is the Augmenter applied with that batch's generator
    loader = _loader(ds, augment=None)
    raw = loader.images(train_plain[1][2])
    np.testing.assert_array_equal(train[1][0], Augmenter()(raw, batch_rng(7, 2, 1)))
    np.testing.assert_array_equal(train[1][2], train_plain[1][2])


def test_worker_exception_reaches_consumer_naming_the_file(folder, tmp_path):
    ds = load_dataset(folder)
    bad = tmp_path / "person99_bad_0.png"
    bad.write_bytes(b"not a png at all")
    broken = Dataset(labels=np.zeros((len(ds) + 1, 1)), classes=ds.classes, paths=ds.paths + [str(bad)],
                     positive_class="PNEUMONIA")
    with pytest.raises(ImageLoadError, match="person99_bad_0.png"):
        for _ in _loader(broken, prefetch=2, training=False).epoch(0):
            pass
    assert not _alive_loader_threads()

    class Exploding:
        def __call__(self, x, rng):
            raise FloatingPointError("boom")

    with pytest.raises(LoaderError, match="boom") as info:
        list(_loader(ds, augment=Exploding()).epoch(0))
    assert "epoch 0 batch 0" in str(info.value) and isinstance(info.value.__cause__, FloatingPointError)
    assert not _alive_loader_threads()


def test_early_stop_leaves_no_thread(folder):
    ds = load_dataset(folder)
    loader = _loader(ds, prefetch=2, batch_size=1)
    for i, _ in enumerate(loader.epoch(0)):
        if i == 1:
            break
    time.sleep(0.05)
    assert not _alive_loader_threads()
    it = iter(loader.epoch(1))
    next(it)
    assert _alive_loader_threads()
    it.close()
    assert not _alive_loader_threads()


def test_iter_runs_successive_epochs_and_cache_is_bounded(folder):
    ds = load_dataset(folder)
    loader = _loader(ds, cache_bytes=16 * 16 * 4 * 3, augment=None)
    first = [b[2] for b in loader]
    second = [b[2] for b in loader]
    assert not np.array_equal(np.concatenate(first), np.concatenate(second))
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate([b[2] for b in loader.epoch(0)]))
    assert len(loader._cache) == 3 and loader._cached_bytes <= loader.cache_bytes


def test_fit_preprocessing_on_a_seeded_sample(folder):
    ds = load_dataset(folder)
    a = fit_preprocessing(Preprocessing(16, mode="seed"), ds, sample=10, seed=1)
    b = fit_preprocessing(Preprocessing(16, mode="seed"), ds, sample=10, seed=1)
    c = fit_preprocessing(Preprocessing(16, mode="seed"), ds, sample=10, seed=2)
    assert a.to_dict() == b.to_dict() and a.count == 10 and a.to_dict() != c.to_dict()
    with pytest.raises(ValueError, match="not fitted"):
        BatchLoader(ds, Preprocessing(16, mode="dataset"))
    full = fit_preprocessing(Preprocessing(16, mode="dataset"), ds)
    x = np.concatenate([ds.image(i, size=16)[None, None] for i in range(len(ds))])
    np.testing.assert_allclose(full.mean, [x.mean(dtype=np.float64)], rtol=1e-6)


def test_in_memory_dataset_batches():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    ds = Dataset(labels=rng.integers(0, 2, (7, 1)), classes=["a", "b"], images=images, positive_class="b")
    batches = list(BatchLoader(ds, Preprocessing(28, mode="none"), batch_size=4, training=False).epoch(0))
    x = np.concatenate([b[0] for b in batches])
    np.testing.assert_array_equal(x[:, 0], images.astype(np.float32))


def test_array_loader_shuffles_like_the_batch_loader_and_resumes():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((23, 6)).astype(np.float32), rng.integers(0, 2, 23)
    loader = ArrayLoader(x, y, batch_size=5, seed=4)
    assert len(loader) == 5 and loader.labels.shape == (23, 1)
    for epoch in (0, 3):
        order = epoch_rng(4, epoch).permutation(23)
        got = list(loader.epoch(epoch))
        np.testing.assert_array_equal(np.concatenate([b[0] for b in got]), x[order])
        np.testing.assert_array_equal(np.concatenate([b[1] for b in got])[:, 0], y[order])
        tail = list(loader.epoch(epoch, start_batch=2))
        for (xa, ya), (xb, yb) in zip(got[2:], tail):
            np.testing.assert_array_equal(xa, xb)
    evaluated = list(loader.epoch(0, training=False))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in evaluated]), x)
    with pytest.raises(ValueError, match="label rows"):
        ArrayLoader(x, y[:5])


def test_preprocessing_applies_to_files_and_arrays_as_the_loader_does(folder):
    ds = load_dataset(folder)
    pre = fit_preprocessing(Preprocessing((12, 14), channels=3, interpolation="bicubic", fit="pad"), ds)
    x_loader = np.concatenate([b[0] for b in BatchLoader(ds, pre, batch_size=4, training=False).epoch(0)])
    np.testing.assert_array_equal(pre.load_files(ds.paths), x_loader)
    pixels = [np.asarray(Image.open(p)) for p in ds.paths]
    np.testing.assert_array_equal(pre.load_arrays(pixels), x_loader)
