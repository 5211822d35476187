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


DEFAULT_VAL_FRACTION = 0.1
SMALL_VALIDATION = 100    # fewer validation images than this make checkpoint selection noisy


def training_splits(source, train_split="train", val_split=None, val_from_train=None, test_split="test",
                    positive_class=None, seed=0, warn=_warn):
    """``(train, val, how)``: Datasets for training and a sentence saying where validation came from.

    train_split: the split to train on (ignored for a single-split folder or a CSV without splits).
    Validation, in this order: ``val_split`` if given; else, unless ``val_from_train`` is given, the
    dataset's own ``val`` split when it has one; else a patient-aware fraction ``val_from_train``
    (default 0.1) of the training split (no patient on both sides; 0 = no validation set).
    Patients shared between train and val, or train and ``test_split``, are reported through ``warn``
    (they inflate the held-out metrics), and so is a validation set of under 100 images.
    """
    splits = available_splits(source)
    if not splits:
        train_split = None
    elif train_split not in splits:
        raise DataError(f"{source} has no split {train_split!r}; it has {splits}")
    if val_split is None and val_from_train is None and "val" in splits and train_split != "val":
        val_split = "val"
    train = load_dataset(source, split=train_split, positive_class=positive_class)
    fraction = DEFAULT_VAL_FRACTION if val_from_train is None else float(val_from_train)
    if val_split:
        if val_split not in splits:
            raise DataError(f"{source} has no split {val_split!r} to validate on; it has {splits}")
        val = load_dataset(source, split=val_split, positive_class=positive_class)
        how = f"the dataset's own {val_split!r} split ({len(val)} images)"
        if len(val) < SMALL_VALIDATION:
            warn(f"the validation split {val_split!r} has only {len(val)} images: choosing the best epoch "
                 f"by it is noisy; --val-from-train {DEFAULT_VAL_FRACTION} carves a larger one out of "
                 f"{train_split!r} instead")
    elif fraction > 0:
        train, val = split_by_patient(train, fraction=fraction, seed=seed)
        how = f"{fraction:g} of {train_split or 'the data'!r} carved out by patient ({len(val)} images)"
    else:
        val, how = None, "none (--val-from-train 0)"
    if val is not None:
        leak = check_leakage(train, val)
        if len(leak):
            warn(f"{len(leak)} patient(s) appear in both the training and validation data "
                 f"(patient leakage inflates validation metrics): {leak.summary()}")
    if test_split and test_split in splits:
        leak = check_leakage(train, load_dataset(source, split=test_split, positive_class=positive_class))
        if len(leak):
            warn(f"{len(leak)} patient(s) appear in both the training and test data: {leak.summary()}")
    return train, val, how
