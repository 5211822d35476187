"""The RSNA Pneumonia Detection Challenge layout: a DICOM folder and ``stage_2_train_labels.csv``.

The labels table has one row per bounding box: ``patientId,x,y,width,height,Target``. A patient with
pneumonia (``Target`` 1) has one row per opacity; a patient without has one row with empty box
fields and ``Target`` 0. Each patient has one DICOM, ``<image_root>/<patientId>.dcm``. minicnn reads
it as one image-level label per patient (classes NORMAL / PNEUMONIA, positive PNEUMONIA); the
boxes are not used. The patient id for the leakage check is the DICOM's own PatientID when it has
one, else the CSV's ``patientId``.

    minicnn.data.load_rsna("rsna/stage_2_train_labels.csv")   # images in rsna/stage_2_train_images/ (or beside)
    minicnn.data.load_dataset("rsna/stage_2_train_labels.csv")   # the same, recognised by its header

This module parses the table and finds the files; ``datasets.load_rsna`` makes the Dataset.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import DataError, file_not_found
from .dicom import read_patient_id

RSNA_COLUMNS = ("patientId", "x", "y", "width", "height", "Target")
CLASSES = ["NORMAL", "PNEUMONIA"]
IMAGE_FOLDERS = ("stage_2_train_images", "stage_1_train_images", "train_images", "images")


def is_rsna_header(header) -> bool:
    return [h.strip() for h in header or []][:6] == list(RSNA_COLUMNS)


def _image_root(csv_path: Path, image_root):
    if image_root is not None:
        return Path(image_root)
    for name in IMAGE_FOLDERS:
        if (csv_path.parent / name).is_dir():
            return csv_path.parent / name
    return csv_path.parent


def _labels_by_patient(path: Path) -> dict:
    """``{patientId: 0/1}`` in first-seen order; every row checked (numbers, consistency)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not is_rsna_header(header):
            raise DataError(f"{path} is not an RSNA labels table: its header must start with "
                            f"{','.join(RSNA_COLUMNS)}, got {header}", path=path)
        labels = {}
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) < 6:
                raise DataError(f"{path} line {line}: expected 6 fields, got {len(row)}", path=path, field=f"line {line}")
            pid, target = row[0].strip(), row[5].strip()
            if not pid or target not in ("0", "1"):
                raise DataError(f"{path} line {line}: Target must be 0 or 1 (got {target!r}) and patientId "
                                f"non-empty", path=path, field="Target")
            if target == "1" and not all(v.strip() for v in row[1:5]):
                raise DataError(f"{path} line {line}: Target 1 without a box (x, y, width, height)",
                                path=path, field="x")
            if pid in labels and labels[pid] != int(target):
                raise DataError(f"{path}: patient {pid} has rows with Target 0 and Target 1", path=path,
                                field="Target")
            labels[pid] = int(target)
    if not labels:
        raise DataError(f"{path} has no data rows", path=path)
    return labels


def read_rsna(labels_csv, image_root=None, split=None, check_files: bool = True,
              patient_ids_from_dicom: bool = True):
    """An RSNA labels table and its DICOM folder -> ``(paths, labels (N, 1), patient_ids)``, one per patient."""
    path = Path(labels_csv)
    if not path.is_file():
        raise file_not_found("RSNA labels CSV", path)
    if split not in (None, "train"):
        raise DataError(f"{path} is the RSNA training table; it has no split {split!r} "
                        "(carve validation out of it with --val-from-train)", path=path)
    labels = _labels_by_patient(path)
    root = _image_root(path, image_root)
    paths = [root / f"{pid}.dcm" for pid in labels]
    if check_files:
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise DataError(f"{len(missing)} of {len(paths)} DICOM files named in {path} are not in {root}, "
                            f"e.g. {missing[0].name} (set image_root=...)", path=missing[0])
    ids = list(labels)
    if patient_ids_from_dicom:
        ids = [(read_patient_id(p) if p.is_file() else None) or pid for p, pid in zip(paths, labels)]
    return paths, np.array([[labels[pid]] for pid in labels], np.float32), ids
