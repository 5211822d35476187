"""Training and validation splits of a dataset source, with the patient-leakage checks."""
from __future__ import annotations

import sys
import warnings

from ..errors import DataError
from .datasets import available_splits, load_dataset
from .patients import check_leakage, split_by_patient


class LeakageWarning(UserWarning):
    """The same patient appears in two splits."""


def _warn(message: str) -> None:
    warnings.warn(message, LeakageWarning, stacklevel=3)


def warn_to_stderr(message: str) -> None:
    """For command lines: the warning on its own line, loudly."""
    print(f"WARNING: {message}", file=sys.stderr)


def training_splits(source, train_split="train", val_split=None, val_from_train=0.1, test_split="test",
                    positive_class=None, seed=0, warn=_warn):
    """``(train, val)`` Datasets for training.

    train_split: the split to train on (ignored for a single-split folder or a CSV without splits).
    val_split: a split to validate on; otherwise a patient-aware fraction ``val_from_train`` of the
    training split (no patient on both sides; 0 = no validation set).
    Patients shared between train and val, or train and ``test_split``, are reported through ``warn``
    (they inflate the held-out metrics).
    """
    splits = available_splits(source)
    if not splits:
        train_split = None
    elif train_split not in splits:
        raise DataError(f"{source} has no split {train_split!r}; it has {splits}")
    train = load_dataset(source, split=train_split, positive_class=positive_class)
    if val_split:
        val = load_dataset(source, split=val_split, positive_class=positive_class)
    elif val_from_train > 0:
        train, val = split_by_patient(train, fraction=val_from_train, seed=seed)
    else:
        val = None
    if val is not None:
        leak = check_leakage(train, val)
        if len(leak):
            warn(f"{len(leak)} patient(s) appear in both the training and validation data "
                 f"(patient leakage inflates validation metrics): {leak.summary()}")
    if test_split and test_split in splits:
        leak = check_leakage(train, load_dataset(source, split=test_split, positive_class=positive_class))
        if len(leak):
            warn(f"{len(leak)} patient(s) appear in both the training and test data: {leak.summary()}")
    return train, val
