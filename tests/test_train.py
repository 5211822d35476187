"""fit(): checkpoints, bit-for-bit resume, Ctrl-C, NaN loss, history files."""
import json
import signal

import numpy as np
import pytest

from minicnn import losses, optim, small_cnn
from minicnn.data.augment import Augmenter
from minicnn.data.datasets import load_dataset
from minicnn.data.loader import BatchLoader, fit_preprocessing
from minicnn.data.preprocessing import Preprocessing
from minicnn.data.synthetic import make_synthetic
from minicnn.train import (TrainingError, TrainingInterrupted, fit, load_checkpoint, resume_state_from)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    make_synthetic(root, n=160, size=24, seed=3)
    return root


def _setup(synth, seed=0, dropout=0.2):
    train_ds = load_dataset(synth, split="train")
    val_ds = load_dataset(synth, split="val")
    pre = fit_preprocessing(Preprocessing(24, channels=1, mode="dataset"), train_ds)
    train = BatchLoader(train_ds, pre, batch_size=16, augment=Augmenter(), seed=seed)
    val = BatchLoader(val_ds, pre, batch_size=16, training=False)
    model = small_cnn.conv_net("tiny", in_channels=1, outputs=1, image_size=24, seed=seed, dropout=dropout)
    loss = losses.WeightedBCE(*losses.class_weights(train_ds.labels))
    opt = optim.Adam(model.params(), lr=3e-3)
    sched = optim.ReduceLROnPlateau(opt, patience=0, factor=0.5)
    return model, loss, opt, sched, train, val


def test_resumed_run_equals_uninterrupted_bit_for_bit(synth, tmp_path):
    model, loss, opt, sched, train, val = _setup(synth)
    state = fit(model, loss, opt, train, val, epochs=3, out_dir=tmp_path / "a", scheduler=sched, progress=False,
                log=lambda s: None)
    assert len(state.history) == 3

    m2, l2, o2, s2, t2, v2 = _setup(synth)
    with pytest.raises(TrainingInterrupted) as e:   # stops mid-epoch 2 (8 batches per epoch)
        fit(m2, l2, o2, t2, v2, epochs=3, out_dir=tmp_path / "b", scheduler=s2, progress=False,
            log=lambda s: None, stop_after_batches=11)
    assert e.value.path.endswith("last.npz")
    m3, info, opt_sd = load_checkpoint(tmp_path / "b" / "last.npz")
    assert info["state"]["epoch"] == 1 and info["state"]["batch"] == 3
    o3 = optim.Adam(m3.params(), lr=1.0)
    o3.load_state_dict(opt_sd)
    s3 = optim.ReduceLROnPlateau(o3, patience=0, factor=0.5)
    s3.load_state_dict(info["scheduler"])
    _, l3, _, _, t3, v3 = _setup(synth)
    state3 = fit(m3, l3, o3, t3, v3, epochs=3, out_dir=tmp_path / "b", scheduler=s3, progress=False,
                 log=lambda s: None, resume_state=resume_state_from(info))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(m3.state_dict()[k], v, err_msg=k)
    assert [r["val_roc_auc"] for r in state3.history] == [r["val_roc_auc"] for r in state.history]
    history = json.loads((tmp_path / "a" / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert (tmp_path / "a" / "history.csv").read_text().startswith("epoch,loss,lr")
    assert (tmp_path / "a" / "model.npz").exists()


def test_ctrl_c_writes_a_checkpoint_after_the_current_batch(synth, tmp_path):
    model, loss, opt, sched, train, val = _setup(synth)
    calls = {"n": 0}
    forward = loss.forward

    def forward_then_interrupt(z, y):
        calls["n"] += 1
        if calls["n"] == 4:
            signal.raise_signal(signal.SIGINT)
        return forward(z, y)
    loss.forward = forward_then_interrupt
    with pytest.raises(TrainingInterrupted):
        fit(model, loss, opt, train, val, epochs=2, out_dir=tmp_path, progress=False, log=lambda s: None)
    _, info, _ = load_checkpoint(tmp_path / "last.npz")
    assert info["state"]["epoch"] == 0 and info["state"]["batch"] == 4
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(synth, tmp_path):
    model, loss, opt, sched, train, val = _setup(synth)
    fit(model, loss, opt, train, val, epochs=1, out_dir=tmp_path, progress=False, log=lambda s: None)
    before = (tmp_path / "last.npz").read_bytes()
    best_before = (tmp_path / "model.npz").read_bytes()
    forward = loss.forward
    loss.forward = lambda z, y: float("nan") if forward(z, y) else 0.0
    state = resume_state_from(load_checkpoint(tmp_path / "last.npz")[1])
    with pytest.raises(TrainingError, match=r"loss became nan at epoch 2, batch 1.*last good checkpoint.*kept.*--lr"):
        fit(model, loss, opt, train, val, epochs=2, out_dir=tmp_path, progress=False, log=lambda s: None,
            resume_state=state)
    assert (tmp_path / "last.npz").read_bytes() == before
    assert (tmp_path / "model.npz").read_bytes() == best_before


def test_load_checkpoint_rejects_a_plain_model(synth, tmp_path):
    model, *_ = _setup(synth)
    path = model.save(tmp_path / "m.npz")
    with pytest.raises(TrainingError, match="not a resumable"):
        load_checkpoint(path)
