"""Transfer learning end to end with a small random DenseNet: cached features, a head that learns
(through train.fit), and one saved model (backbone + head) that predicts what the two did separately."""
import json

import numpy as np
import pytest
from PIL import Image

import minicnn
from minicnn.data.images import load_image
from minicnn.errors import TrainingError
from minicnn.metrics import roc_auc
from minicnn.pretrained import build_head, combine, preprocess, unfreeze_last
from minicnn.pretrained.densenet import densenet_graph
from minicnn.pretrained.features import model_fingerprint
from minicnn.transfer import extract_features, train_head


def small_backbone(seed=0):
    g = densenet_graph(blocks=(2, 2), growth_rate=8, num_init_features=16, include_top=False,
                       input_shape=(3, 32, 32), seed=seed, name="tiny-densenet")
    rng = np.random.default_rng(seed)
    for k, v in g.state_dict().items():              # non-trivial batch-norm statistics
        if k.endswith("running_var"):
            v[...] = rng.uniform(0.5, 1.5, v.shape)
        elif k.endswith("running_mean"):
            v[...] = rng.uniform(-0.2, 0.2, v.shape)
    return g.freeze()


def count_forwards(model):
    calls = []
    original = model.forward

    def forward(x, *args, **kwargs):
        calls.append(len(x))
        return original(x, *args, **kwargs)

    model.forward = forward
    return calls


def blob_images(labels, rng, size=32):
    """Noisy gray squares; the positives hold a bright disc (an "opacity") somewhere inside."""
    yy, xx = np.mgrid[:size, :size]
    out = rng.normal(110, 30, (len(labels), size, size))
    for i, positive in enumerate(labels):
        if positive:
            cy, cx, r = rng.uniform(8, size - 8), rng.uniform(8, size - 8), rng.uniform(3, 6)
            out[i] += 70 * ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r)
    return np.clip(out, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("imgs")
    labels = np.array([0, 1] * 50, dtype=bool)
    imgs = blob_images(labels, np.random.default_rng(0))
    paths = []
    for i, im in enumerate(imgs):
        p = folder / f"img{i:03d}.png"
        Image.fromarray(im).save(p)
        paths.append(str(p))
    return paths, labels.astype(np.float32)


def test_features_are_cached_by_content_model_and_preprocessing(image_files, tmp_path):
    paths, _ = image_files
    backbone = small_backbone()
    calls = count_forwards(backbone)
    cache = tmp_path / "cache"
    f1 = extract_features(backbone, paths[:20], cache=cache, batch_size=8)
    assert f1.shape == (20, backbone.output_shapes()["relu"][1]) and sum(calls) == 20
    f2 = extract_features(backbone, paths[:20], cache=cache, batch_size=8)
    assert sum(calls) == 20                                   # second run: no forward pass at all
    np.testing.assert_array_equal(f1, f2)
    f3 = extract_features(backbone, paths[:24], cache=cache, batch_size=8)   # only the 4 new images run
    assert sum(calls) == 24
    np.testing.assert_array_equal(f3[:20], f1)
    # a copy of an image under another name hits the cache (content hash)
    copy = tmp_path / "copy.png"
    copy.write_bytes(open(paths[0], "rb").read())
    np.testing.assert_array_equal(extract_features(backbone, [str(copy)], cache=cache)[0], f1[0])
    assert sum(calls) == 24
    # other preprocessing or other weights -> recomputed, and the uncached result is the same
    extract_features(backbone, paths[:4], cache=cache, preprocessing="tf")
    assert sum(calls) == 28
    np.testing.assert_allclose(extract_features(backbone, paths[:4]), f1[:4], rtol=1e-6)
    other = small_backbone(seed=1)
    assert model_fingerprint(other) != model_fingerprint(backbone)
    oc = count_forwards(other)
    extract_features(other, paths[:4], cache=cache)
    assert sum(oc) == 4
    # arrays (already preprocessed NCHW) are keyed by their bytes
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    a1 = extract_features(backbone, x, cache=cache)
    n = sum(calls)
    np.testing.assert_array_equal(extract_features(backbone, x, cache=cache), a1)
    assert sum(calls) == n


def test_head_learns_and_combined_model_predicts_the_same(image_files, tmp_path):
    paths, labels = image_files
    backbone = small_backbone()
    feats = extract_features(backbone, paths, cache=tmp_path / "cache", batch_size=16)
    tr, te = slice(0, 70), slice(70, None)
    mu, sd = feats[tr].mean(0), feats[tr].std(0) + 1e-6     # the head trains on standardised features
    head = build_head(feats.shape[1], classes=1, hidden=16, dropout=0.1, seed=0)
    assert head.output_activation == "sigmoid"
    first = head["head.fc1"]
    state = train_head(head, (feats[tr] - mu) / sd, labels[tr], epochs=60, lr=3e-3, batch_size=20,
                       out_dir=tmp_path / "head", log=lambda line: None)
    losses = [row["loss"] for row in state.history]
    assert len(losses) == 60 and losses[-1] < losses[0] * 0.5
    assert json.loads((tmp_path / "head" / "history.json").read_text())[-1]["loss"] == pytest.approx(losses[-1])
    assert (tmp_path / "head" / "last.npz").exists() and (tmp_path / "head" / "model.npz").exists()
    p_test = head.predict((feats[te] - mu) / sd)[:, 0]
    auc = roc_auc(labels[te], p_test)
    print(f"head test AUC {auc:.3f}")
    assert auc > 0.85
    # put the standardisation into the first Dense so the head takes raw pooled features
    W, b = first.params["W"], first.params["b"]
    first.params["W"] = (W / sd[:, None]).astype(np.float32)
    first.params["b"] = (b - (mu / sd) @ W).astype(np.float32)
    model = combine(backbone, head)
    path = tmp_path / "xray.npz"
    model.save(path)
    loaded = minicnn.load(path)
    x = preprocess(np.stack([load_image(p, size=(32, 32), color="rgb") for p in paths[70:]]), "imagenet-torch")
    np.testing.assert_allclose(loaded.predict(x)[:, 0], p_test, rtol=1e-4, atol=1e-6)
    assert loaded.output_activation == "sigmoid" and loaded.meta["backbone"] == "tiny-densenet"


def test_unfreeze_last_block():
    backbone = small_backbone()
    names = unfreeze_last(backbone, "features.denseblock2")
    assert names[0].startswith("features.denseblock2.") and names[-1] == "features.norm5"
    trainable = {k.rsplit(".", 1)[0] for k in backbone.params()}
    assert trainable == set(names)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    y = backbone.forward(x, training=False)
    backbone.backward(np.ones_like(y), input_grad=False)
    assert set(backbone.grads()) == set(backbone.params())
    with pytest.raises(ValueError, match="denseblock9"):
        unfreeze_last(backbone, "features.denseblock9")


def test_head_training_has_the_training_loops_nan_guard_and_seeding():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 8)).astype(np.float32), (rng.random(40) < 0.5).astype(np.float32)
    a, b = build_head(8, 1, seed=0), build_head(8, 1, seed=0)
    sa = train_head(a, x, y, x, y, epochs=3, batch_size=8, seed=5, log=lambda line: None)
    sb = train_head(b, x, y, x, y, epochs=3, batch_size=8, seed=5, log=lambda line: None)
    assert [r["val_roc_auc"] for r in sa.history] == [r["val_roc_auc"] for r in sb.history]
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[k], v)
    bad = x.copy()
    bad[3] = np.inf
    with pytest.raises(TrainingError, match="loss became"), np.errstate(invalid="ignore", over="ignore"):
        train_head(build_head(8, 1), bad, y, epochs=1, batch_size=40, log=lambda line: None)
