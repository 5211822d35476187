"""Patient ids, leakage between splits, and a patient-aware validation split.

In the public pneumonia dataset (Kermany et al.) a patient's id is in the file name:

    person1946_bacteria_4874.jpeg  -> person1946
    NORMAL2-IM-1427-0001.jpeg      -> NORMAL2-IM-1427
    IM-0115-0001.jpeg              -> IM-0115

A name that matches neither pattern gets ``None`` and is reported; it is never guessed.
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import DataError
from .dicom import read_patient_id

_PATTERNS = (
    re.compile(r"^(person\d+)_.+$", re.IGNORECASE),                     # person1946_bacteria_4874
    re.compile(r"^((?:[A-Za-z0-9]+-)?IM-\d+)-\d+$"),                     # [NORMAL2-]IM-1427-0001
)


def parse_patient_id(name) -> str | None:
    """The patient id in a pneumonia-dataset file name (any folder and extension), or None."""
    stem = Path(str(name)).name
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    for pattern in _PATTERNS:
        m = pattern.match(stem)
        if m:
            return m.group(1)
    return None


def patient_ids_from_paths(paths):
    """``(ids, unparsed)``: the id of each path (None where it does not parse), and those paths.

    A DICOM file's own PatientID (read from its header) comes first; else the id in the file name."""
    ids = [_dicom_patient_id(p) or parse_patient_id(p) for p in paths]
    unparsed = [str(p) for p, i in zip(paths, ids) if i is None]
    return ids, unparsed


def _dicom_patient_id(path):
    if str(path).lower().endswith((".dcm", ".dicom")) and os.path.isfile(path):
        return read_patient_id(path)
    return None


class LeakageReport(frozenset):
    """The set of patient ids present in both splits, plus the images whose id is unknown.

    It *is* a frozenset (``len(report)``, ``'person12' in report``, ``report == {...}``), with
    ``unparsed_a`` / ``unparsed_b`` (names of images without a patient id on each side) and
    ``summary()`` for printing.
    """

    def __new__(cls, shared=(), unparsed_a=(), unparsed_b=()):
        self = super().__new__(cls, shared)
        self.unparsed_a = list(unparsed_a)
        self.unparsed_b = list(unparsed_b)
        return self

    def summary(self, max_items: int = 10) -> str:
        lines = []
        if self:
            ids = sorted(self)
            more = f" ... (+{len(ids) - max_items} more)" if len(ids) > max_items else ""
            lines.append(f"LEAKAGE: {len(ids)} patient(s) appear in both splits: "
                         f"{', '.join(ids[:max_items])}{more}")
        else:
            lines.append("no patient appears in both splits")
        for side, names in (("first", self.unparsed_a), ("second", self.unparsed_b)):
            if names:
                shown = ", ".join(Path(n).name for n in names[:max_items])
                more = f" ... (+{len(names) - max_items} more)" if len(names) > max_items else ""
                lines.append(f"{len(names)} image(s) in the {side} split have no patient id "
                             f"(not checked): {shown}{more}")
        return "\n".join(lines)


def _ids_and_unparsed(split):
    """Accept a Dataset, or an iterable of patient ids (None = unknown)."""
    if hasattr(split, "patient_ids") and hasattr(split, "labels"):
        if split.patient_ids is None:
            return [], [split.name(i) for i in range(len(split))]
        ids = list(split.patient_ids)
        unparsed = [split.name(i) for i, p in enumerate(ids) if p is None]
        return [p for p in ids if p is not None], unparsed
    ids = list(split)
    unparsed = [f"item {i}" for i, p in enumerate(ids) if p is None]
    return [p for p in ids if p is not None], unparsed


def check_leakage(split_a, split_b) -> LeakageReport:
    """Patient ids present in both ``split_a`` and ``split_b`` (Datasets or lists of ids)."""
    ids_a, unparsed_a = _ids_and_unparsed(split_a)
    ids_b, unparsed_b = _ids_and_unparsed(split_b)
    return LeakageReport(set(ids_a) & set(ids_b), unparsed_a, unparsed_b)


def split_by_patient(dataset, fraction=0.1, seed=0, stratify=True, names=("train", "val")):
    """Carve a validation set out of ``dataset`` with no patient on both sides -> ``(train, val)``.

    Each patient's images go to one side; an image without a patient id counts as its own
    patient. About ``fraction`` of the images go to validation. With ``stratify`` the patients
    are grouped by the label row of their first image and each group contributes its share, so
    class balance is kept. Deterministic for a given ``seed`` (and the dataset's order).
    """
    n = len(dataset)
    if not 0.0 < fraction < 1.0:
        raise DataError(f"fraction must be between 0 and 1, got {fraction}")
    if n < 2:
        raise DataError(f"cannot split a dataset of {n} image(s)")
    ids = dataset.patient_ids if dataset.patient_ids is not None else [None] * n
    groups = defaultdict(list)          # patient key -> image indices, in first-seen order
    for i, pid in enumerate(ids):
        groups[("id", pid) if pid is not None else ("image", i)].append(i)
    keys = list(groups)
    strata = defaultdict(list)
    for k in keys:
        row = tuple(dataset.labels[groups[k][0]].tolist()) if stratify else ()
        strata[row].append(k)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7]))
    val_idx = []
    for row in sorted(strata):
        members = strata[row]
        target = fraction * sum(len(groups[k]) for k in members)
        taken = 0
        for j in rng.permutation(len(members)):
            if taken >= target - 1e-9 or (taken and taken + len(groups[members[j]]) > target * 1.5):
                continue
            val_idx += groups[members[j]]
            taken += len(groups[members[j]])
    if not val_idx:  # a tiny dataset: take one patient
        val_idx = list(groups[keys[int(rng.integers(len(keys)))]])
    val_set = set(val_idx)
    if len(val_set) == n:
        raise DataError("the validation split would take every image; use a smaller fraction")
    train_idx = [i for i in range(n) if i not in val_set]
    return dataset.subset(train_idx, split=names[0]), dataset.subset(sorted(val_idx), split=names[1])
