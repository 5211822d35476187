"""Callbacks for ``train.fit`` / ``Graph.fit``: early stopping and checkpoints, Keras-style.

``train.fit`` calls, for each callback, ``on_train_begin(model)``, then ``on_epoch_end(epoch,
logs, model)`` after every epoch (``logs`` is the epoch's history row: ``loss``, ``val_loss``,
``val_roc_auc``, and any compiled metrics as ``<name>`` / ``val_<name>``; a true result stops
training), then ``on_train_end(model)``. ``monitor`` names one of those keys; ``mode="auto"``
minimises names holding ``loss`` and maximises the rest (AUC, accuracy, sensitivity, ...).

    model.fit(x, y, validation_split=0.2, epochs=50,
              callbacks=[EarlyStopping("val_loss", patience=3, restore_best_weights=True),
                         ModelCheckpoint("best.npz", monitor="val_roc_auc", save_best_only=True)])

Files are written atomically (``Graph.save`` -> ``minicnn.fileio``).
"""
from __future__ import annotations

import math
import os

import numpy as np

from .errors import UsageError


class Callback:
    """Does nothing; subclass and override the hooks you need."""

    def on_train_begin(self, model) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict, model) -> bool | None:
        return None

    def on_train_end(self, model) -> None:
        pass


class _Monitor(Callback):
    def __init__(self, monitor: str, mode: str, min_delta: float = 0.0):
        if mode not in ("auto", "min", "max"):
            raise UsageError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.mode = ("min" if "loss" in monitor else "max") if mode == "auto" else mode
        self.min_delta = abs(float(min_delta))
        self.best = None
        self.best_epoch = None

    def _value(self, logs: dict) -> float:
        if self.monitor not in logs:
            raise UsageError(f"{type(self).__name__}: monitor={self.monitor!r} is not in this run's history "
                             f"(it has {sorted(logs)}); monitor a val_* entry only when there is validation data")
        value = logs[self.monitor]
        return math.nan if value is None else float(value)

    def _improved(self, value: float) -> bool:
        if not np.isfinite(value):
            return False
        if self.best is None:
            return True
        return value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta


class EarlyStopping(_Monitor):
    """Stop after ``patience`` epochs without improvement of ``monitor``.

    ``restore_best_weights``: at the end, copy the best epoch's weights back into the model (in
    place, so an optimizer built earlier still holds the model's arrays). ``stopped_epoch`` and
    ``best_epoch`` (1-based) say what happened.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 0, min_delta: float = 0.0, mode: str = "auto",
                 restore_best_weights: bool = False):
        super().__init__(monitor, mode, min_delta)
        if int(patience) < 0:
            raise UsageError(f"patience must be >= 0, got {patience}")
        self.patience = int(patience)
        self.restore_best_weights = bool(restore_best_weights)
        self.wait = 0
        self.stopped_epoch = None
        self._best_weights = None

    def on_train_begin(self, model) -> None:
        self.best = self.best_epoch = self.stopped_epoch = self._best_weights = None
        self.wait = 0

    def on_epoch_end(self, epoch, logs, model):
        value = self._value(logs)
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch + 1, 0
            if self.restore_best_weights:
                self._best_weights = {k: v.copy() for k, v in model.state_dict().items()}
            return False
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_epoch = epoch + 1
            return True
        return False

    def on_train_end(self, model) -> None:
        if self.restore_best_weights and self._best_weights is not None:
            model.load_state_dict(self._best_weights)


class ModelCheckpoint(_Monitor):
    """Save the model (``Graph.save``: one ``.npz``, atomically) after each epoch, or only when
    ``monitor`` improved (``save_best_only``). ``path`` may hold ``{epoch}`` (1-based)."""

    def __init__(self, path, monitor: str = "val_loss", save_best_only: bool = False, mode: str = "auto"):
        super().__init__(monitor, mode)
        self.path = os.fspath(path)
        self.save_best_only = bool(save_best_only)
        self.saved: list[str] = []

    def on_train_begin(self, model) -> None:
        self.best = self.best_epoch = None

    def on_epoch_end(self, epoch, logs, model):
        if self.save_best_only:
            value = self._value(logs)
            if not self._improved(value):
                return False
            self.best, self.best_epoch = value, epoch + 1
        path = self.path.format(epoch=epoch + 1)
        model.meta["checkpoint_epoch"] = epoch + 1
        model.save(path)
        self.saved.append(path)
        return False
