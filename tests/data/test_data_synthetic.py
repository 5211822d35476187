"""The synthetic chest-X-ray-like generator: layout, determinism, non-triviality, visible signal."""
import numpy as np
import pytest
from scipy import ndimage

from minicnn.data import available_splits, check_leakage, load_dataset
from minicnn.data.synthetic import make_synthetic, synthetic_images

pytest.importorskip("sklearn")
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    counts = make_synthetic(out, n=1600, size=64, pneumonia_fraction=0.5,
                            splits=(("train", 0.6), ("val", 0.05), ("test", 0.35)), seed=0)
    return out, counts


def test_layout_counts_patients_and_no_leakage(synth):
    out, counts = synth
    assert available_splits(out) == ["test", "train", "val"]
    assert counts["train"] == {"NORMAL": 480, "PNEUMONIA": 480}
    train, test = load_dataset(out, "train"), load_dataset(out, "test")
    assert len(train) == 960 and len(test) == 560 and train.output_names == ["PNEUMONIA"]
    assert train.unparsed == [] and test.unparsed == []
    assert check_leakage(train, test) == set()
    assert len(set(train.patient_ids)) < len(train)  # some patients have several images
    assert train.image(0).shape == (64, 64)


def test_same_seed_same_pixels(tmp_path):
    kw = dict(n=40, size=32, splits=(("train", 30), ("test", 10)))
    make_synthetic(tmp_path / "a", seed=5, **kw)
    make_synthetic(tmp_path / "b", seed=5, **kw)
    make_synthetic(tmp_path / "c", seed=6, **kw)
    a, b, c = (load_dataset(tmp_path / d, "train") for d in "abc")
    assert [p.split("/")[-1] for p in a.paths] == [p.split("/")[-1] for p in b.paths]
    xa = np.stack([a.image(i) for i in range(len(a))])
    np.testing.assert_array_equal(xa, np.stack([b.image(i) for i in range(len(b))]))
    assert not np.array_equal(xa, np.stack([c.image(i) for i in range(len(c))]))
    with pytest.raises(FileExistsError, match="overwrite"):
        make_synthetic(tmp_path / "a", seed=5, **kw)
    make_synthetic(tmp_path / "a", seed=6, overwrite=True, **kw)
    np.testing.assert_array_equal(load_dataset(tmp_path / "a", "train").image(3), c.image(3))


def _means_and_labels(ds):
    return np.array([ds.image(i).mean() for i in range(len(ds))])[:, None], ds.labels[:, 0]


def test_mean_intensity_is_a_poor_classifier(synth):
    out, _ = synth
    x_train, y_train = _means_and_labels(load_dataset(out, "train"))
    x_test, y_test = _means_and_labels(load_dataset(out, "test"))
    model = LogisticRegression().fit(x_train, y_train)
    auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    assert auc <= 0.75, f"mean intensity alone separates the classes (AUC {auc:.3f})"


def test_opacities_are_locally_visible():
    # a fixed local blob detector + logistic regression finds the signal the mean misses
    rng = np.random.default_rng(1)
    labels = rng.random(1200) < 0.5
    im = synthetic_images(labels, 64, rng).astype(np.float32)
    x = (im - im.mean(axis=(1, 2), keepdims=True)) / im.std(axis=(1, 2), keepdims=True)
    band = ndimage.gaussian_filter(x, (0, 3, 3)) - ndimage.gaussian_filter(x, (0, 8, 8))
    feats = band.reshape(len(x), 8, 8, 8, 8).max(axis=(2, 4)).reshape(len(x), -1)
    model = LogisticRegression(C=0.1, max_iter=2000).fit(feats[:800], labels[:800])
    auc = roc_auc_score(labels[800:], model.predict_proba(feats[800:])[:, 1])
    assert auc >= 0.85, f"opacities are not locally detectable (AUC {auc:.3f})"


def test_bad_arguments():
    with pytest.raises(ValueError, match="fmt"):
        make_synthetic("unused", fmt="gif")
    with pytest.raises(ValueError, match="add up"):
        make_synthetic("unused", splits=(("train", 0.9), ("test", 0.2)))
