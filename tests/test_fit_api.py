"""Keras-style compile/fit/evaluate, callbacks, predict_proba/predict_classes, PyTorch-style parameters.

fit must be the one training loop: the same seed gives bit-identical weights to train.fit called
by hand with the loaders and loss it documents.
"""
import numpy as np
import pytest

from minicnn import Sequential, layers, losses, load, metrics, optim, train
from minicnn.callbacks import Callback, EarlyStopping, ModelCheckpoint
from minicnn.data import ArrayLoader, Dataset, Preprocessing
from minicnn.errors import UsageError
from minicnn.fitting import History


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32)
    y = (x[:, 0, :4].mean(axis=(1, 2)) > 0).astype(np.float32)
    return x, y


def _model(outputs=1, activation="sigmoid"):
    return Sequential([layers.Conv2D(1, 3, 3, padding=1, seed=0), layers.ReLU(), layers.MaxPool2D(2),
                       layers.Flatten(), layers.Dense(3 * 16, outputs, seed=1)], output_activation=activation)


class Recorder(Callback):
    def __init__(self):
        self.weights, self.logs = [], []

    def on_epoch_end(self, epoch, logs, model):
        self.weights.append({k: v.copy() for k, v in model.state_dict().items()})
        self.logs.append(dict(logs))


def test_fit_on_arrays_is_train_fit_with_the_documented_loaders():
    x, y = _data()
    a = _model()
    a.compile(loss="binary_crossentropy", optimizer="adam", metrics=["auc", "accuracy"], learning_rate=1e-2)
    h = a.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, class_weight="balanced", seed=5, verbose=0)

    b = _model()
    tr = ArrayLoader(x[:48], y[:48], batch_size=16, training=True, seed=5)
    va = ArrayLoader(x[48:], y[48:], batch_size=16, training=False)
    train.fit(b, losses.WeightedBCE(*losses.class_weights(y[:48])), optim.Adam(b.params(), lr=1e-2), tr, va,
              epochs=3, seed=5, progress=False, log=lambda s: None)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k], err_msg=k)

    assert isinstance(h, History) and h.epoch == [1, 2, 3]
    for key in ("loss", "val_loss", "auc", "accuracy", "val_auc", "val_accuracy", "val_roc_auc"):
        assert len(h.history[key]) == 3, key
    assert h.history["val_auc"] == h.history["val_roc_auc"]
    assert h.history["loss"][-1] < h.history["loss"][0]
    p_val = a.predict(x[48:])
    assert h.history["val_auc"][-1] == pytest.approx(metrics.roc_auc(y[48:], p_val[:, 0]))


def test_fit_arguments_instead_of_compile_and_validation_data_equal_split():
    x, y = _data()
    a, b = _model(), _model()
    a.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, loss="binary_crossentropy", optimizer="sgd",
          verbose=0)
    b.fit(x[:48], y[:48], epochs=2, batch_size=16, validation_data=(x[48:], y[48:]), optimizer="sgd", verbose=0)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])


def test_fit_continued_with_initial_epoch_equals_one_fit():
    x, y = _data()
    a, b = _model(), _model()
    a.compile(optimizer="adam")
    b.compile(optimizer="adam")
    a.fit(x, y, epochs=3, batch_size=16, verbose=0)
    b.fit(x, y, epochs=2, batch_size=16, verbose=0)
    h = b.fit(x, y, epochs=3, initial_epoch=2, batch_size=16, verbose=0)
    assert h.epoch == [3]
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])


def test_fit_on_a_loader_equals_fit_on_arrays():
    x, y = _data()
    a, b = _model(), _model()
    a.fit(x, y, epochs=2, batch_size=16, seed=3, verbose=0)
    b.fit(ArrayLoader(x, y, batch_size=16, seed=3), epochs=2, seed=3, verbose=0)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])


def test_fit_on_a_dataset_with_preprocessing_records_classes():
    x, y = _data(48)
    images = (np.clip(x[:, 0] * 40 + 128, 0, 255)).astype(np.uint8)
    ds = Dataset(labels=y, classes=["NORMAL", "PNEUMONIA"], images=images, positive_class="PNEUMONIA")
    m = _model()
    h = m.fit(ds, epochs=1, batch_size=16, preprocessing=Preprocessing(8, channels=1, mode="dataset"), verbose=0)
    assert len(h.history["loss"]) == 1 and np.isfinite(h.history["loss"][0])
    assert m.meta["classes"] == ["NORMAL", "PNEUMONIA"] and m.meta["preprocessing"]["normalization"]["mean"] is not None
    r = m.evaluate(ds, n_boot=50)
    assert r["positive_class"] == "PNEUMONIA" and r["n"] == 48
    m2 = _model()
    h2 = m2.fit(ds.subset(np.arange(32)), validation_data=ds.subset(np.arange(32, 48)), epochs=1, batch_size=16,
                preprocessing=Preprocessing(8, channels=1, mode="dataset"), verbose=0)
    assert np.isfinite(h2.history["val_loss"][0])      # validated with the statistics of the training subset


def test_evaluate_returns_the_clinical_metrics_at_the_saved_threshold():
    x, y = _data()
    m = _model()
    m.fit(x, y, epochs=2, batch_size=16, verbose=0)
    m.meta["threshold"] = [0.4]
    r = m.evaluate(x, y, n_boot=100)
    want = metrics.evaluate_predictions(y, m.predict(x), ["positive"], 0.4, n_boot=100)
    for key in ("roc_auc", "sensitivity", "specificity", "ppv", "npv", "sensitivity_ci95", "confusion"):
        assert r[key] == want[key], key
    assert r["threshold"] == 0.4 and np.isfinite(r["loss"])


def test_predict_proba_and_predict_classes():
    x, _ = _data(10)
    m = _model()
    np.testing.assert_array_equal(m.predict_proba(x), m.predict(x))
    p = m.predict(x)[:, 0]
    m.meta["threshold"] = [float(np.median(p))]
    np.testing.assert_array_equal(m.predict_classes(x), (p >= np.median(p)).astype(int))
    assert m.predict_classes(x).shape == (10,)
    s = _model(3, "softmax")
    np.testing.assert_array_equal(s.predict_classes(x), s.predict(x).argmax(axis=1))


def test_softmax_fit_takes_integer_classes():
    x, y = _data()
    cls = (y + (x[:, 0, 4:].mean(axis=(1, 2)) > 0)).astype(int)     # 0, 1, 2
    m = _model(3, "softmax")
    h = m.fit(x, cls, epochs=2, batch_size=16, metrics=["accuracy"], class_weight="balanced", verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    acc = np.mean(m.predict_classes(x) == cls)
    assert h.history["accuracy"][-1] == pytest.approx(acc, abs=0.25)   # running accuracy vs final weights
    assert 0 <= m.evaluate(x, cls, n_boot=20)["roc_auc"] <= 1
    four = _model(4, "softmax")                 # a class with no examples still gets its one-hot column
    four.fit(x, cls, epochs=1, batch_size=16, verbose=0)
    assert four.predict(x).shape == (64, 4)


def test_early_stopping_stops_and_restores_the_best_weights():
    x, y = _data()
    m, rec = _model(), Recorder()
    # "loss" in max mode never improves after epoch 1 (the loss falls): stop after 1 + patience + 1 epochs
    stop = EarlyStopping("loss", patience=1, mode="max", restore_best_weights=True)
    h = m.fit(x, y, epochs=10, batch_size=16, callbacks=[rec, stop], verbose=0, optimizer="adam")
    assert h.epoch == [1, 2, 3] and stop.stopped_epoch == 3 and stop.best_epoch == 1
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, rec.weights[0][k])
    assert not np.array_equal(rec.weights[0]["4.W"], rec.weights[2]["4.W"])


def test_early_stopping_names_a_missing_monitor():
    x, y = _data()
    with pytest.raises(UsageError, match="val_loss"):
        _model().fit(x, y, epochs=1, callbacks=[EarlyStopping("val_loss")], verbose=0)


def test_model_checkpoint_saves_the_best_epoch_atomically(tmp_path):
    x, y = _data()
    m, rec = _model(), Recorder()
    best = ModelCheckpoint(tmp_path / "best.npz", monitor="val_loss", save_best_only=True)
    every = ModelCheckpoint(str(tmp_path / "e{epoch}.npz"))
    m.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, callbacks=[rec, best, every], verbose=0)
    losses_ = [r["val_loss"] for r in rec.logs]
    k = int(np.argmin(losses_))
    assert best.best_epoch == k + 1
    saved = load(tmp_path / "best.npz")
    for name, v in saved.state_dict().items():
        np.testing.assert_array_equal(v, rec.weights[k][name])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.npz", "e1.npz", "e2.npz", "e3.npz"]


def test_parameters_and_named_parameters_are_the_trainable_arrays():
    m = _model()
    named = list(m.named_parameters())
    assert [n for n, _ in named] == list(m.params())
    assert all(a is b for a, b in zip(m.parameters(), m.params().values()))
    m.freeze("0")
    assert "0.W" not in dict(m.named_parameters())


def test_bad_names_are_usage_errors():
    x, y = _data(16)
    m = _model()
    with pytest.raises(UsageError, match="unknown loss"):
        m.compile(loss="mse")
    with pytest.raises(UsageError, match="unknown optimizer"):
        m.compile(optimizer="rmsprop")
    with pytest.raises(UsageError, match="unknown metric"):
        m.compile(metrics=["auroc2"])
    with pytest.raises(UsageError, match="labels y"):
        m.fit(x)
    with pytest.raises(UsageError, match="not both"):
        m.fit(x, y, validation_split=0.5, validation_data=(x, y))
