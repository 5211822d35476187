"""The training loop: ``fit(model, loss, optimizer, train, val, epochs, ...)``.

Each epoch: a tqdm progress bar with the running loss and throughput (images/s); then the
validation loss and ROC-AUC; the best model by validation AUC is saved as ``model.npz``, a
resumable ``last.npz`` (weights, optimizer state, epoch and batch, scheduler, history) after every
epoch, and ``history.csv`` / ``history.json``. All files are written atomically.

Write order (what a kill or a full disk can leave): ``last.npz`` before the first batch, then per
epoch ``model.npz`` (when best) -> ``last.npz`` -> ``history.csv/json``. So ``model.npz`` never
exists without ``last.npz``, and ``last.npz`` is at most the one epoch behind ``model.npz`` that a
resume recomputes (bit for bit, rewriting the same ``model.npz``).

Determinism: given a seed and a thread count, a run is reproducible bit for bit. The loader
derives each epoch's shuffle and each batch's augmentation from ``SeedSequence([seed, ..., epoch,
batch])``; Dropout layers get a generator from ``SeedSequence([seed, DROPOUT, epoch, batch, node])``
before every batch. So nothing random is carried from batch to batch, and a run resumed from
``last.npz`` (even mid-epoch, after Ctrl-C) continues exactly as the uninterrupted run would.

A NaN/Inf loss stops training with ``TrainingError`` before anything is written, so the last good
checkpoint stays intact. Ctrl-C finishes the current batch, writes ``last.npz`` and raises
``TrainingInterrupted``.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import threading
import time
import dataclasses
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm.auto import tqdm

from . import fileio, metrics, runtime
from .errors import TrainingError
from .model import Graph, apply_activation
from .serialization import model_from_arrays, train_state_from_arrays
from .readers.npz import read_npz
from .predict import predict_loader

DROPOUT_STREAM = 4
CHECKPOINT_VERSION = 1


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``fit``: ``last.npz`` was written; ``path`` names it."""

    def __init__(self, path):
        super().__init__(f"training interrupted; resumable checkpoint written to {path}")
        self.path = path


@dataclass
class TrainState:
    epoch: int = 0                 # the epoch in progress (0-based)
    batch: int = 0                 # the next batch of that epoch
    loss_sum: float = 0.0          # running loss of the epoch in progress
    seen: int = 0
    best_score: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0
    history: list = field(default_factory=list)


@dataclass
class TrainConfig:
    """Everything ``minicnn train`` is given (saved in ``last.npz`` so ``--resume`` continues the run)."""
    data: str | None = None
    out: str = "runs/run"
    arch: str = "small"
    backbone: str | None = None        # transfer learning on a pretrained backbone (minicnn.transfer)
    weights: str | None = None
    fine_tune: int = 0
    fine_tune_from: str | None = None
    image_size: int | None = None      # default 64; a backbone's own size with --backbone
    channels: int = 1
    epochs: int = 8
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.0
    patience: int | None = None
    normalize: str = "dataset"
    norm_sample: int = 1000
    augment: bool = True
    class_weights: bool = True
    positive_class: str | None = None
    train_split: str = "train"
    val_split: str | None = None
    test_split: str = "test"
    val_from_train: float | None = None   # None: the dataset's own val split if it has one, else 0.1
    head_epochs: int | None = None        # with backbone: epochs of head training (default 10 x epochs)
    overwrite: bool = False
    cache_mb: int = 512
    on_bad_file: str = "skip"          # an unreadable training image: "skip" (warned, listed in bad_files.txt) or "fail"
    dask: str | None = None            # with backbone: extract the features on this Dask cluster (minicnn.distributed)
    deterministic: bool = False        # results independent of the thread count (runtime.configure); kept on --resume
    seed: int = 0
    quiet: bool = False

    @classmethod
    def from_saved(cls, saved: dict, **override) -> "TrainConfig":
        """The config a checkpoint recorded (older ones stored every CLI argument), with ``override``."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in saved.items() if k in names}, **override})


def set_threads(n: int | None) -> None:
    """Apply minicnn's thread policy with ``n`` threads in Numba kernels and in BLAS (for the whole
    process; ``None``: the default counts). The command line's ``--threads``; see ``minicnn.runtime``."""
    runtime.configure(threads=int(n) if n else None)


def batch_rngs(model: Graph, seed: int, epoch: int, batch: int) -> dict:
    """One generator per random layer (Dropout) for this batch, from (seed, epoch, batch, layer
    position) alone: a resumed run draws exactly the masks the uninterrupted run drew."""
    return {name: np.random.default_rng(np.random.SeedSequence([seed, DROPOUT_STREAM, epoch, batch, k]))
            for k, (name, node) in enumerate(model.nodes.items()) if node.layer.uses_rng}


# -- checkpoints -----------------------------------------------------------------------------------
def save_checkpoint(path, model: Graph, optimizer, state: TrainState, scheduler=None, extra=None) -> str:
    """Everything needed to resume, in one ``.npz`` (no pickle), written atomically."""
    arrays = model.to_arrays()
    osd = optimizer.state_dict()
    for name, slots in osd["state"].items():
        for slot, value in slots.items():
            arrays[f"opt:{slot}:{name}"] = value
    info = {"checkpoint_version": CHECKPOINT_VERSION, "state": asdict(state),
            "optimizer": {"class": type(optimizer).__name__, "lr": osd["lr"], "t": osd["t"]},
            "scheduler": scheduler.state_dict() if scheduler is not None else None, "extra": extra or {}}
    arrays["train_state"] = np.array(json.dumps(info))
    fileio.savez(path, arrays)
    return os.fspath(path)


def load_checkpoint(path):
    """Read ``last.npz``: returns ``(model, info, optimizer_state_dict)``."""
    arrays, config = read_npz(path)
    if config is None or "train_state" not in arrays:
        raise TrainingError(f"{path} is not a resumable minicnn checkpoint (expected last.npz from a run)")
    info = train_state_from_arrays(arrays, path)
    model = model_from_arrays(arrays, config)
    state = {}
    for key, value in arrays.items():
        if key.startswith("opt:"):
            _, slot, name = key.split(":", 2)
            state.setdefault(name, {})[slot] = value
    for name in model.params():
        state.setdefault(name, {})
    opt_sd = {"lr": info["optimizer"]["lr"], "t": info["optimizer"]["t"], "state": state}
    return model, info, opt_sd


def _write_history(out_dir, history) -> None:
    if not history:
        return
    with fileio.atomic_write(os.path.join(out_dir, "history.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
    fileio.write_json(os.path.join(out_dir, "history.json"), metrics.to_jsonable(history), indent=1)


class _StopFlag:
    """Ctrl-C sets a flag (the batch in progress finishes); a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.requested = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def fit(model: Graph, loss, optimizer, train, val=None, epochs: int = 10, *, out_dir=None, scheduler=None,
        patience: int | None = None, seed: int = 0, resume_state: TrainState | None = None,
        progress: bool = True, log=print, stop_after_batches: int | None = None,
        checkpoint_extra: dict | None = None, export=None, metrics_fns: dict | None = None,
        callbacks=()) -> TrainState:
    """Train ``model`` in place; returns the final ``TrainState`` (history, best epoch and score).

    train / val: ``minicnn.data.BatchLoader`` or ``ArrayLoader`` objects (val optional; without it the
        last epoch is "best").
    out_dir: run directory for ``model.npz`` (best), ``last.npz``, ``history.csv/json`` (None: write nothing).
    export: ``export(model) -> Graph``, the model saved as ``model.npz`` when the epoch is the best
        (default ``model`` itself; a head trained on cached features exports backbone + head).
    scheduler: an ``optim`` schedule, stepped once per epoch with the validation AUC.
    patience: early stopping after this many epochs without a better validation AUC.
    resume_state: the ``TrainState`` from ``load_checkpoint`` to continue a run.
    stop_after_batches: stop (as Ctrl-C would) after this many batches — for tests of resuming.
    checkpoint_extra: JSON-able facts stored in every ``last.npz`` (the CLI keeps its arguments there).
    metrics_fns: ``{name: fn(y_true, y_prob) -> float}`` added to each history row: ``name`` over the
        epoch's training batches (probabilities after ``output_activation``), ``val_<name>`` on validation.
    callbacks: ``minicnn.callbacks`` objects: ``on_train_begin(model)``, ``on_epoch_end(epoch, row,
        model)`` (a true result stops training after this epoch), ``on_train_end(model)``.
    """
    state = resume_state or TrainState()
    if val is not None:
        _check_validation(val)
    if out_dir is not None:
        os.makedirs(out_dir, exist_ok=True)
    last_path = os.path.join(out_dir, "last.npz") if out_dir else None
    if last_path and resume_state is None:    # write order: last.npz first, so model.npz never exists without it
        save_checkpoint(last_path, model, optimizer, state, scheduler, checkpoint_extra)
    budget, first_epoch = [stop_after_batches], state.epoch
    metrics_fns = dict(metrics_fns or {})
    for cb in callbacks:
        cb.on_train_begin(model)
    with _StopFlag() as stop:
        while state.epoch < epochs and (patience is None or state.bad_epochs < patience):  # (resumed after a stop)
            epoch = state.epoch
            row = _train_epoch(model, loss, optimizer, train, state, epochs, seed, progress, stop, budget,
                               lambda: last_path and save_checkpoint(last_path, model, optimizer, state, scheduler,
                                                                    checkpoint_extra),
                               last_path, metrics_fns)
            score, y_val, p_val = None, None, None
            if val is not None:
                y_val, p_val, val_loss = predict_loader(model, val, loss)
                score = metrics.macro_roc_auc(y_val, p_val)
                row.update({"val_loss": val_loss, "val_roc_auc": score})
                row.update({f"val_{name}": float(fn(y_val, p_val)) for name, fn in metrics_fns.items()})
            state.history.append(row)
            log(_format_row(row))
            if scheduler is not None:
                scheduler.step(score)
            improved = val is None or (np.isfinite(score) and (state.best_score is None or score > state.best_score))
            if improved:
                state.best_score, state.best_epoch, state.bad_epochs = score, epoch + 1, 0
                if out_dir:
                    _save_best(model, export, out_dir, epoch, y_val, p_val)
            else:
                state.bad_epochs += 1
            state.epoch, state.batch, state.loss_sum, state.seen = epoch + 1, 0, 0.0, 0
            if out_dir:
                save_checkpoint(last_path, model, optimizer, state, scheduler, checkpoint_extra)
                _write_history(out_dir, state.history)
            if patience is not None and state.bad_epochs >= patience:
                log(f"early stopping: no better validation AUC for {patience} epoch(s)")
                break
            if any([cb.on_epoch_end(epoch, row, model) for cb in callbacks]):   # every callback sees the epoch
                break
    if out_dir and state.epoch == first_epoch:   # resumed after its last checkpoint: history may not be written yet
        _write_history(out_dir, state.history)
    for cb in callbacks:
        cb.on_train_end(model)
    return state


def _check_validation(val) -> None:
    yv = np.asarray(val.labels)
    if not any(0 < yv[:, k].sum() < len(yv) for k in range(yv.shape[1])):
        raise TrainingError(f"the validation set ({len(yv)} images) holds only one class in every output, so "
                            f"its ROC-AUC is undefined and no best model can be chosen; give a larger "
                            f"--val-from-train fraction or a validation split with both classes")


def _train_epoch(model, loss, optimizer, train, state, epochs, seed, progress, stop, budget, checkpoint,
                 last_path, metrics_fns=None) -> dict:
    """One epoch's batches (from ``state.batch`` on): forward, loss, backward, step. Returns its history row.

    ``budget``: a one-item list, batches left before stopping as Ctrl-C would (None: no limit).
    ``metrics_fns``: ``{name: fn(y, p)}`` computed over this epoch's batches (their probabilities)."""
    epoch = state.epoch
    bar = tqdm(total=len(train), initial=state.batch, desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
               disable=None if progress else True, leave=True, dynamic_ncols=True)  # None: bars only on a terminal
    t0, images = time.perf_counter(), 0
    seen_y, seen_p = [], []
    batches = train.epoch(epoch, training=True, start_batch=state.batch)
    try:
        for x, y in batches:
            z = model.forward(x, training=True, rngs=batch_rngs(model, seed, epoch, state.batch))
            value = loss.forward(z, y)
            if not np.isfinite(value):
                kept = f"; the last good checkpoint {last_path} is kept" if last_path and os.path.exists(last_path) else ""
                raise TrainingError(f"the loss became {value} at epoch {epoch + 1}, batch {state.batch + 1}: "
                                    f"training diverged{kept}. Lower the learning rate (--lr) and retry.")
            model.backward(loss.backward(), input_grad=False)
            optimizer.step(model.grads())
            if metrics_fns:
                seen_y.append(np.asarray(y))
                seen_p.append(apply_activation(np.asarray(z, dtype=np.float64), model.output_activation))
            state.batch += 1
            state.loss_sum += value * len(x)
            state.seen += len(x)
            images += len(x)
            bar.update(1)
            bar.set_postfix(loss=f"{state.loss_sum / state.seen:.4f}",
                            img_s=f"{images / max(time.perf_counter() - t0, 1e-9):.0f}")
            if budget[0] is not None:
                budget[0] -= 1
            if stop.requested or (budget[0] is not None and budget[0] <= 0):
                checkpoint()
                raise TrainingInterrupted(last_path)
    finally:
        bar.close()
        close = getattr(batches, "close", None)
        if close:
            close()
    seconds = time.perf_counter() - t0
    row = {"epoch": epoch + 1, "loss": state.loss_sum / max(state.seen, 1), "lr": optimizer.lr,
           "seconds": round(seconds, 3), "images_per_s": round(images / max(seconds, 1e-9), 1)}
    if seen_y:   # a resumed epoch: over the batches this process ran
        y_all, p_all = np.concatenate(seen_y), np.concatenate(seen_p)
        row.update({name: float(fn(y_all, p_all)) for name, fn in metrics_fns.items()})
    return row


def _save_best(model, export, out_dir, epoch, y_val, p_val) -> None:
    """``model.npz`` for a new best epoch, with the Youden thresholds chosen on validation."""
    if y_val is not None:
        model.meta["threshold"] = metrics.youden_thresholds(y_val, p_val)
        model.meta["threshold_rule"] = "youden-validation"
    model.meta["best_epoch"] = epoch + 1
    (model if export is None else export(model)).save(os.path.join(out_dir, "model.npz"))


def _format_row(row: dict) -> str:
    parts = [f"epoch {row['epoch']}", f"loss {row['loss']:.4f}"]
    if "val_loss" in row:
        parts += [f"val_loss {row['val_loss']:.4f}", f"val_auc {row['val_roc_auc']:.4f}"]
    standard = {"epoch", "loss", "val_loss", "val_roc_auc", "val_auc", "lr", "seconds", "images_per_s"}  # val_auc: shown
    parts += [f"{k} {v:.4f}" for k, v in row.items() if k not in standard and isinstance(v, float)]  # compiled metrics
    parts += [f"lr {row['lr']:.2e}", f"{row['images_per_s']:.0f} img/s"]
    return "  ".join(parts)


def resume_state_from(info: dict) -> TrainState:
    return TrainState(**info["state"])
