"""Dataset sources: a folder of class sub-folders, a CSV of paths and labels, a MedMNIST ``.npz``.

Every source gives a ``Dataset``: images (as file paths, or as an in-memory array), a label matrix
``labels`` (N, K) float32 aligned with them, the class names, and patient ids when known.

Label columns (K):
    * two classes (folder layout, MedMNIST binary) -> ONE column, 1.0 for ``positive_class``.
      The default positive class is the one that is not ``NORMAL`` / ``No Finding``, else the
      second in sorted order. This is what a single sigmoid output is trained on.
    * more classes -> one column per class (``output_names == classes``): one-hot for folders and
      single-label MedMNIST files, multi-label for CSVs and multi-label MedMNIST files.

    load_dataset("chest_xray", split="train")          # chest_xray/train/{NORMAL,PNEUMONIA}/*.jpeg
    load_dataset("chest_xray/val")                      # a single split: <root>/<CLASS>/*
    load_dataset("Data_Entry_2017.csv", image_root="images")   # NIH ChestX-ray14
    load_dataset("pneumoniamnist.npz", split="test")
"""
from __future__ import annotations

import csv
import errno
import dataclasses
import os
import re
from pathlib import Path

import numpy as np

from ..errors import DataError, WeightFileError, file_not_found
from . import rsna
from .images import is_image_file, load_image, prepare_array
from .patients import patient_ids_from_paths

NEGATIVE_CLASS_NAMES = ("normal", "no finding", "no_finding", "nofinding", "healthy", "negative")
NO_FINDING = "No Finding"
UNCERTAIN, BLANK = 1, 2          # Dataset.unknown codes


@dataclasses.dataclass
class Dataset:
    """Images (paths or an in-memory array), labels (N, K) float32 and aligned metadata.

    ``classes`` are all class names, sorted (saved with the model). ``output_names`` names the K
    label columns: ``[positive_class]`` for a two-class problem, else ``classes``.
    ``patient_ids[i]`` is the patient of image i, or None when unknown; ``unparsed`` lists the
    file names whose patient id could not be parsed (reported, never guessed).
    """
    labels: np.ndarray
    classes: list
    paths: list | None = None
    images: np.ndarray | None = None
    patient_ids: list | None = None
    positive_class: str | None = None
    split: str | None = None
    source: str | None = None
    unparsed: list = dataclasses.field(default_factory=list)
    #: Labels the source declares unknown (a CheXpert CSV's -1 and blank entries), (N, K) uint8:
    #: ``UNCERTAIN`` or ``BLANK`` where ``labels`` is NaN (masked), 0 elsewhere; None when all are known.
    unknown: np.ndarray | None = None

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.float32)
        if self.labels.ndim == 1:
            self.labels = self.labels[:, None]
        if self.labels.ndim != 2:
            raise DataError(f"labels must be (N, K), got shape {self.labels.shape}")
        if (self.paths is None) == (self.images is None):
            raise DataError("a Dataset needs exactly one of paths= or images=")
        n = len(self.paths) if self.paths is not None else len(self.images)
        if len(self.labels) != n:
            raise DataError(f"{n} images but {len(self.labels)} label rows")
        if self.patient_ids is not None and len(self.patient_ids) != n:
            raise DataError(f"{n} images but {len(self.patient_ids)} patient ids")
        if self.paths is not None:
            self.paths = [str(p) for p in self.paths]
        if self.unknown is not None:
            self.unknown = np.asarray(self.unknown, np.uint8)
            if self.unknown.shape != self.labels.shape or (np.isnan(self.labels) != (self.unknown > 0)).any():
                raise DataError(f"unknown must be (N, K) like the labels {self.labels.shape}, nonzero where they are NaN")
        elif np.isnan(self.labels).any():
            raise DataError("labels hold NaN but no source declared them unknown (Dataset.unknown)")
        if self.labels.shape[1] != len(self.output_names):
            raise DataError(f"labels have {self.labels.shape[1]} columns but the output names are "
                             f"{self.output_names}")

    @classmethod
    def from_paths(cls, paths, classes=None, positive_class=None) -> "Dataset":
        """Unlabelled images (e.g. for prediction): labels are zeros, one column per model output.

        ``classes`` / ``positive_class`` as saved with the model (both optional).
        """
        paths = [str(p) for p in paths]
        classes = list(classes or [])
        k = 1 if positive_class is not None else len(classes)
        ids, unparsed = patient_ids_from_paths(paths)
        return cls(labels=np.zeros((len(paths), k), np.float32), classes=classes, paths=paths,
                   patient_ids=ids, positive_class=positive_class, unparsed=unparsed)

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        where = f" from {self.source}" if self.source else ""
        return (f"Dataset({len(self)} images, split={self.split!r}, classes={self.classes}, "
                f"outputs={self.output_names}{where})")

    @property
    def output_names(self) -> list:
        """Names of the K label columns (the model's outputs)."""
        if self.positive_class is not None and self.labels.shape[1] == 1:
            return [self.positive_class]
        return list(self.classes)

    @property
    def num_outputs(self) -> int:
        return self.labels.shape[1]

    def name(self, i: int) -> str:
        """A human name for image ``i``: its path, or ``<source>[split][i]`` for in-memory images."""
        if self.paths is not None:
            return self.paths[i]
        return f"{self.source or 'array'}[{self.split}][{i}]"

    def image(self, i: int, size=None, color="grayscale", interpolation="bilinear", fit="stretch"):
        """Decode image ``i`` -> float32 (H, W) or (H, W, 3) in [0, 255] (see ``images.load_image``)."""
        if self.paths is not None:
            return load_image(self.paths[i], size, color, interpolation, fit)
        return prepare_array(self.images[i], size, color, interpolation, fit)

    def subset(self, indices, split=None) -> "Dataset":
        """A new Dataset holding the images at ``indices`` (in that order)."""
        idx = np.asarray(indices, dtype=np.int64)
        keep = set(self.paths[i] for i in idx) if self.paths is not None else None
        return Dataset(
            labels=self.labels[idx].copy(), classes=list(self.classes),
            paths=[self.paths[i] for i in idx] if self.paths is not None else None,
            images=self.images[idx] if self.images is not None else None,
            patient_ids=[self.patient_ids[i] for i in idx] if self.patient_ids is not None else None,
            positive_class=self.positive_class, split=split if split is not None else self.split,
            source=self.source,
            unparsed=[p for p in self.unparsed if keep is None or p in keep],
            unknown=None if self.unknown is None else self.unknown[idx].copy())

    def require_known_labels(self, purpose: str = "training") -> None:
        """``DataError`` when some labels are unknown (masked): only evaluation scores around them."""
        if self.unknown is not None and self.unknown.any():
            counts = ", ".join(f"{k}: {v['uncertain']} uncertain, {v['blank']} blank"
                               for k, v in self.masked_counts().items())
            raise DataError(f"{self.source}: {purpose} needs every label, but some are unknown ({counts}); choose an "
                            "output whose labels are known (positive_class=...) or relabel the -1/blank entries first",
                            path=self.source)

    def masked_counts(self) -> dict:
        """``{output name: {"uncertain": n, "blank": n}}`` of the masked labels (outputs with any)."""
        if self.unknown is None:
            return {}
        return {name: {"uncertain": int((self.unknown[:, j] == UNCERTAIN).sum()),
                       "blank": int((self.unknown[:, j] == BLANK).sum())}
                for j, name in enumerate(self.output_names) if self.unknown[:, j].any()}


def find_images(path) -> list:
    """An image file -> [it]; a folder -> every image file below it (recursively, sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p.name))
    raise file_not_found("image file or folder", path)


# --------------------------------------------------------------------------------------------
# class names and label columns

def default_positive_class(classes) -> str:
    """Of two classes, the one that is not NORMAL / No Finding; else the second in sorted order."""
    classes = sorted(classes)
    if len(classes) != 2:
        raise DataError(f"a positive class only makes sense for two classes, got {classes}")
    negatives = [c for c in classes if c.strip().lower() in NEGATIVE_CLASS_NAMES]
    if len(negatives) == 1:
        return classes[1 - classes.index(negatives[0])]
    return classes[1]


def binary_class_names(meta: dict, output_name: str | None = None) -> tuple[str, str]:
    """``(negative, positive)`` class names of a model with one sigmoid output, from its ``meta``:
    the positive class is ``meta['positive_class']`` (else the output's name), the negative one the
    other of ``meta['classes']`` (else ``'negative'``)."""
    positive = meta.get("positive_class") or output_name or (meta.get("outputs") or ["positive"])[0]
    negative = next((c for c in meta.get("classes") or [] if c != positive), "negative")
    return negative, positive


def _resolve_positive(classes, positive_class):
    if len(classes) != 2:
        if positive_class is not None:
            raise DataError(f"positive_class={positive_class!r} needs exactly two classes, got {classes}")
        return None
    if positive_class is None:
        return default_positive_class(classes)
    if positive_class not in classes:
        raise DataError(f"positive_class={positive_class!r} is not one of the classes {classes}")
    return positive_class


def _labels_from_class_index(class_index, classes, positive):
    class_index = np.asarray(class_index, dtype=np.int64)
    if positive is not None:
        return (class_index == classes.index(positive)).astype(np.float32)[:, None]
    onehot = np.zeros((len(class_index), len(classes)), np.float32)
    onehot[np.arange(len(class_index)), class_index] = 1.0
    return onehot


def class_counts(labels):
    """Per label column: (number of positives, number of negatives), each shape (K,)."""
    y = np.asarray(labels, dtype=np.float64)
    if y.ndim == 1:
        y = y[:, None]
    pos = y.sum(axis=0)
    return pos, len(y) - pos


def class_frequencies(labels):
    """Per label column: (freq_pos, freq_neg), fractions of the N images, each shape (K,).

    The weighted loss uses w_pos = freq_neg and w_neg = freq_pos (``minicnn.losses.class_weights``).
    Compute them on the TRAINING labels only.
    """
    y = np.asarray(labels)
    if len(y) == 0:
        raise DataError("class frequencies of an empty label set are undefined")
    pos, neg = class_counts(y)
    return pos / len(y), neg / len(y)


# --------------------------------------------------------------------------------------------
# folder layout

def _image_files(folder: Path):
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p.name))


def _class_dirs(folder: Path):
    """Sub-folders of ``folder`` that directly hold at least one image file."""
    if not folder.is_dir():
        return []
    return sorted(d for d in folder.iterdir()
                  if d.is_dir() and not d.name.startswith(".") and _image_files(d))


def _folder_splits(root: Path):
    return sorted(d.name for d in root.iterdir()
                  if d.is_dir() and not d.name.startswith(".") and _class_dirs(d))


def load_folder(root, split=None, classes=None, positive_class=None) -> Dataset:
    """``root/<split>/<CLASS>/*`` (or ``root/<CLASS>/*`` with ``split=None``) -> Dataset.

    Class names are the sorted class folder names of all splits under ``root`` (so every split
    agrees), or ``classes`` when given (e.g. the ones saved with a model). Patient ids are parsed
    from the file names (pneumonia dataset conventions); names that do not parse are listed in
    ``Dataset.unparsed``.
    """
    root = Path(root)
    if not root.is_dir():
        raise file_not_found("dataset folder", root)
    splits = _folder_splits(root)
    if split is None:
        folder = root
        if not _class_dirs(root):
            hint = f" It has split folders {splits}: pass split=..." if splits else ""
            raise DataError(f"{root} holds no class folders with images (<CLASS>/*.jpeg).{hint}")
        all_classes = [d.name for d in _class_dirs(root)]
    else:
        folder = root / split
        if split not in splits:
            raise DataError(f"{root} has no split {split!r} holding <CLASS>/<image> folders; "
                             f"available splits: {splits or 'none (single split: pass split=None)'}")
        all_classes = sorted({d.name for s in splits for d in _class_dirs(root / s)})
    classes = sorted(classes) if classes is not None else all_classes
    positive = _resolve_positive(classes, positive_class)
    paths, index = [], []
    for d in _class_dirs(folder):
        if d.name not in classes:
            raise DataError(f"class folder {d} is not one of the classes {classes}")
        files = _image_files(d)
        paths += files
        index += [classes.index(d.name)] * len(files)
    ids, unparsed = patient_ids_from_paths(paths)
    return Dataset(labels=_labels_from_class_index(index, classes, positive), classes=list(classes),
                   paths=paths, patient_ids=ids, positive_class=positive, split=split,
                   source=str(root), unparsed=unparsed)


# --------------------------------------------------------------------------------------------
# CSV

IMAGE_COLUMN_NAMES = ("path", "image", "image index", "image_path", "filename", "file", "image_id")
PATIENT_COLUMN_NAMES = ("patient id", "patient_id", "patientid", "patient")
FINDINGS_COLUMN_NAMES = ("finding labels", "finding_labels", "findings", "labels")
SPLIT_COLUMN_NAMES = ("split", "subset", "fold")


def _find_column(header, candidates):
    lower = {h.strip().lower(): h for h in header}
    for c in candidates:
        if c in lower:
            return lower[c]
    return None


class _Row(dict):
    """One CSV data row (column -> text) that knows its number (``row``, 1 = the first under the
    header) and its ``line`` in the file, for messages."""
    row: int = 0
    line: int = 0


def _read_csv(path: Path):
    if not path.is_file():
        raise file_not_found("CSV file", path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise DataError(f"{path} is empty or has no header row", path=path)
        rows = []
        for fields in reader:
            if not fields:
                continue                  # a blank line
            if len(fields) != len(header):
                raise DataError(f"{path}, line {reader.line_num}: {len(fields)} fields but the header has "
                                f"{len(header)} ({', '.join(header)}); fix or remove that row", path=path,
                                field=f"line {reader.line_num}")
            row = _Row(zip(header, fields))
            row.row, row.line = len(rows) + 1, reader.line_num
            rows.append(row)
    return header, rows


_BINARY = {"0", "1", "0.0", "1.0"}


def _is_binary_column(rows, col):
    values = {r[col].strip() for r in rows}
    return bool(values) and values <= _BINARY


def _looks_like_labels(rows, col) -> bool:
    """Mostly 0/1, the rest numbers or blanks (NaN, 2, 0.5): a label column with bad values."""
    values = [r[col].strip() for r in rows]
    def number(v):
        try:
            float(v)
            return True
        except ValueError:
            return v == ""
    return all(map(number, values)) and 2 * sum(v in _BINARY for v in values) >= len(values)


def _bad_label(path, rows, col):
    """``DataError`` naming the first row of label column ``col`` that is not 0/1."""
    r = next(r for r in rows if r[col].strip() not in _BINARY)
    return DataError(f"{path}: label column {col!r}, row {r.row} (line {r.line}) holds {r[col]!r}; labels "
                     f"must be 0 or 1 (one column per class)", path=path, field=col)


def _check_listed_files(paths, listing, base) -> None:
    """Every image file a CSV lists must exist (relative paths are read from ``base``)."""
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(errno.ENOENT,
            f"{len(missing)} of {len(paths)} image files listed in {listing} do not exist, e.g. {missing[0]}; "
            f"paths are read relative to {base} (set image_root=...)", str(missing[0]))


def load_csv(path, split=None, image_column=None, label_columns=None, findings_column=None,
             patient_column=None, split_column=None, image_root=None, classes=None,
             positive_class=None, check_files=True) -> Dataset:
    """A CSV with one image path per row -> Dataset.

    (Long because every column is found and checked here, in the order a CSV is read: columns,
    split, labels, paths, patients; each step raises a ``DataError`` naming the column.)

    Labels come from either ``label_columns`` (one 0/1 column per class; default: every other
    column whose values are all 0/1) or ``findings_column`` (``|``-separated findings, the NIH
    ChestX-ray14 ``Finding Labels`` format; ``No Finding`` means all zeros; detected by name).
    With ``positive_class`` only that class's column is kept. Paths are relative to
    ``image_root`` (default: the CSV's folder). ``split`` keeps the rows whose ``split_column``
    (default: a column named split/subset/fold) equals it. Columns are found by common names
    (``Image Index``/path/filename, ``Patient ID``/patient_id) unless given.
    """
    path = Path(path)
    header, rows = _read_csv(path)
    image_column = image_column or _find_column(header, IMAGE_COLUMN_NAMES) or header[0]
    patient_column = patient_column or _find_column(header, PATIENT_COLUMN_NAMES)
    split_column = split_column or _find_column(header, SPLIT_COLUMN_NAMES)
    for name, col in (("image_column", image_column), ("patient_column", patient_column),
                      ("split_column", split_column), ("findings_column", findings_column)):
        if col is not None and col not in header:
            raise DataError(f"{path}: {name}={col!r} is not a column; columns are {header}")
    if split is not None:
        if split_column is None:
            raise DataError(f"{path} has no split column (split/subset/fold); pass split=None or split_column=")
        rows = [r for r in rows if r[split_column].strip() == split]
        if not rows:
            raise DataError(f"{path}: no rows with {split_column} == {split!r}; "
                             f"available: {available_splits(path)}")
    if not rows:
        raise DataError(f"{path} has no data rows")

    if label_columns is None and findings_column is None:
        findings_column = _find_column(header, FINDINGS_COLUMN_NAMES)
    if findings_column is not None and label_columns is None:
        per_row = [{f.strip() for f in r[findings_column].split("|") if f.strip()} - {NO_FINDING}
                   for r in rows]
        if classes is None:
            _, all_rows = _read_csv(path)  # classes from every split, so all splits agree
            classes = sorted(set().union(*[{f.strip() for f in r[findings_column].split("|") if f.strip()}
                                           for r in all_rows]) - {NO_FINDING})
        classes = list(classes)
        unknown = set().union(*per_row) - set(classes)
        if unknown:
            raise DataError(f"{path}: findings {sorted(unknown)} are not among the classes {classes}")
        labels = np.array([[c in found for c in classes] for found in per_row], np.float32)
    else:
        if label_columns is None:
            skip = {image_column, patient_column, split_column}
            suspect = [h for h in header if h not in skip and not _is_binary_column(rows, h)
                       and _looks_like_labels(rows, h)]
            if suspect:
                raise _bad_label(path, rows, suspect[0])
            label_columns = [h for h in header if h not in skip and _is_binary_column(rows, h)]
        if not label_columns:
            raise DataError(f"{path}: no label columns found; give label_columns=[...] (0/1 per class) "
                             f"or findings_column=... ('|'-separated)")
        for c in label_columns:
            if c not in header:
                raise DataError(f"{path}: label column {c!r} is not a column; columns are {header}")
            if not _is_binary_column(rows, c):
                raise _bad_label(path, rows, c)
        classes = list(label_columns)
        labels = np.array([[float(r[c]) for c in classes] for r in rows], np.float32)
    if positive_class is not None:
        if positive_class not in classes:
            raise DataError(f"positive_class={positive_class!r} is not one of the classes {classes}")
        labels = labels[:, [classes.index(positive_class)]]
    elif len(classes) == 1:
        positive_class = classes[0]

    base = Path(image_root) if image_root is not None else path.parent
    paths = [base / r[image_column].strip() for r in rows]
    if check_files:
        _check_listed_files(paths, path, base)
    if patient_column is not None:
        ids = [r[patient_column].strip() or None for r in rows]
        unparsed = [str(p) for p, i in zip(paths, ids) if i is None]
    else:
        ids, unparsed = None, []
    return Dataset(labels=labels, classes=classes, paths=paths, patient_ids=ids,
                   positive_class=positive_class if labels.shape[1] == 1 else None,
                   split=split, source=str(path), unparsed=unparsed)


# --------------------------------------------------------------------------------------------
# CheXpert CSV (train.csv / valid.csv of CheXpert-v1.0)

CHEXPERT_LAYOUT = ("Path", "Sex", "Age", "Frontal/Lateral", "AP/PA")
#: The 14 observations, in the order CheXpert's CSVs list them.
CHEXPERT_OBSERVATIONS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
                         "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
                         "Pleural Other", "Fracture", "Support Devices")
_CHEXPERT_VALUES = {"1": 1.0, "1.0": 1.0, "0": 0.0, "0.0": 0.0}


def is_chexpert_header(header) -> bool:
    """The CheXpert layout: ``Path, Sex, Age, Frontal/Lateral, AP/PA``, then the 14 observations."""
    names = [h.strip() for h in header or []]
    return tuple(names[:5]) == CHEXPERT_LAYOUT and tuple(names[5:]) == CHEXPERT_OBSERVATIONS


def load_chexpert(path, split=None, image_root=None, positive_class=None, check_files=True) -> Dataset:
    """A CheXpert CSV -> Dataset of its 14 observations, with the labels it declares unknown masked.

    As torchxrayvision's ``CheX_Dataset`` reads it: ``1``/``0`` are labels, ``-1`` (uncertain) and
    blank are unknown (NaN in ``labels``, recorded in ``Dataset.unknown`` and counted by
    ``masked_counts``), except that a row with ``No Finding`` = 1 is negative for every other
    observation but ``Support Devices``. Any other value is an error naming the column and row.
    Patient ids come from the ``patientNNNNN`` part of ``Path``; paths are relative to ``image_root``
    (default: the CSV's folder).
    """
    path = Path(path)
    header, rows = _read_csv(path)
    if split is not None:
        raise DataError(f"{path} is a CheXpert CSV, one split per file (train.csv, valid.csv): pass split=None",
                        path=path)
    if not rows:
        raise DataError(f"{path} has no data rows", path=path)
    col = {h.strip(): h for h in header}
    labels = np.zeros((len(rows), len(CHEXPERT_OBSERVATIONS)), np.float32)
    unknown = np.zeros(labels.shape, np.uint8)
    for i, r in enumerate(rows):
        healthy = r[col[NO_FINDING]].strip() in ("1", "1.0")
        for j, name in enumerate(CHEXPERT_OBSERVATIONS):
            v = r[col[name]].strip()
            if v in _CHEXPERT_VALUES:
                labels[i, j] = _CHEXPERT_VALUES[v]
            elif v in ("-1", "-1.0", ""):
                labels[i, j], unknown[i, j] = np.nan, UNCERTAIN if v else BLANK
            else:
                raise DataError(f"{path}: label column {name!r}, row {r.row} (line {r.line}) holds {v!r}; a "
                                "CheXpert label is 1, 0, -1 (uncertain) or blank", path=path, field=name)
            if healthy and name not in (NO_FINDING, "Support Devices"):
                labels[i, j], unknown[i, j] = 0.0, 0
    classes = list(CHEXPERT_OBSERVATIONS)
    if positive_class is not None:
        if positive_class not in classes:
            raise DataError(f"positive_class={positive_class!r} is not one of the CheXpert observations {classes}")
        j = classes.index(positive_class)
        labels, unknown = labels[:, [j]], unknown[:, [j]]
    base = Path(image_root) if image_root is not None else path.parent
    paths = [base / r[col["Path"]].strip() for r in rows]
    if check_files:
        _check_listed_files(paths, path, base)
    ids = [m.group(1) if (m := re.search(r"(patient\d+)", r[col["Path"]])) else None for r in rows]
    return Dataset(labels=labels, classes=classes, paths=paths, patient_ids=ids, positive_class=positive_class,
                   source=str(path), unparsed=[str(p) for p, i in zip(paths, ids) if i is None],
                   unknown=unknown if unknown.any() else None)


# --------------------------------------------------------------------------------------------
# output names: a dataset's labels -> a chest X-ray model's pathologies

#: Other datasets' names for torchxrayvision's pathology names, as its dataset classes relabel them
#: (``CheX_Dataset``, ``MIMIC_Dataset``: "Pleural Effusion" -> "Effusion"; ``NIH_Google_Dataset``:
#: "Airspace opacity" -> "Lung Opacity"). Names also match ignoring case, ``_`` vs space
#: (NIH's "Pleural_Thickening") and a folder's capitals ("PNEUMONIA" -> "Pneumonia").
PATHOLOGY_ALIASES = {"pleural effusion": "effusion", "airspace opacity": "lung opacity"}


def _name_key(name) -> str:
    key = " ".join(str(name).replace("_", " ").split()).lower()
    return PATHOLOGY_ALIASES.get(key, key)


def match_output_names(dataset_names, model_names):
    """Which model output each dataset label column is: ``(pairs, unused, skipped)``.

    ``pairs``: ``(dataset column, model output)`` index pairs; ``unused``: the dataset's columns no
    (named) model output is; ``skipped``: the named model outputs the dataset has no labels for.
    Outputs named ``''`` (not trained) match nothing."""
    index = {}
    for j, m in enumerate(model_names):
        if m:
            index.setdefault(_name_key(m), j)
    pairs, unused, used = [], [], set()
    for i, d in enumerate(dataset_names):
        j = index.get(_name_key(d))
        if j is None or j in used:
            unused.append(d)
        else:
            pairs.append((i, j))
            used.add(j)
    skipped = [m for j, m in enumerate(model_names) if m and j not in used]
    return pairs, unused, skipped


# --------------------------------------------------------------------------------------------
# MedMNIST .npz

def load_npz(path, split="train", classes=None, positive_class=None) -> Dataset:
    """A MedMNIST-style ``.npz`` (``<split>_images`` (N,H,W[,3]) uint8, ``<split>_labels``) -> Dataset.

    Labels (N, 1) holding 0/1 are binary (one column); (N, 1) holding 0..K-1 are single-label
    multi-class (one-hot over K = 1 + the largest label in the file); (N, K) are multi-label.
    Class names default to ``class_0 ... class_{K-1}`` (or ``classes=``). Never unpickles.
    """
    path = Path(path)
    if not path.is_file():
        raise file_not_found("npz file", path)
    with _CheckedNpz(path) as z:
        splits = _npz_splits(z.files)
        if split not in splits:
            raise DataError(f"{path} has no split {split!r} (keys {split}_images/{split}_labels); "
                             f"available: {splits}")
        images = z[f"{split}_images"]
        raw = z[f"{split}_labels"]
        all_max = max(int(z[f"{s}_labels"].max()) for s in splits if z[f"{s}_labels"].size)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise DataError(f"{path}: {split}_images must be (N, H, W) or (N, H, W, 3), got {images.shape}")
    raw = raw.reshape(len(raw), -1) if raw.ndim != 2 else raw
    if len(raw) != len(images):
        raise DataError(f"{path}: {len(images)} {split} images but {len(raw)} labels")
    if raw.shape[1] == 1:
        k = max(2, all_max + 1)
        classes = list(classes) if classes is not None else [f"class_{i}" for i in range(k)]
        if len(classes) != k:
            raise DataError(f"{path}: labels take {k} values but {len(classes)} class names were given")
        positive = _resolve_positive(classes, positive_class)
        labels = _labels_from_class_index(raw[:, 0], classes, positive)
    else:
        k = raw.shape[1]
        classes = list(classes) if classes is not None else [f"class_{i}" for i in range(k)]
        if len(classes) != k:
            raise DataError(f"{path}: {k} label columns but {len(classes)} class names were given")
        labels, positive = raw.astype(np.float32), None
    return Dataset(labels=labels, classes=classes, images=images, positive_class=positive,
                   split=split, source=str(path))


class _CheckedNpz:
    """``np.load``'s reading interface (``.files``, ``z[key]``) over the checked npz reader: no pickle,
    member names and sizes checked before inflating; a damaged or hostile file is a DataError naming it."""

    def __init__(self, path):
        self.path = path
        self.files = self._read(None)

    def _read(self, keys):
        from ..readers.npz import npz_keys, read_npz_arrays
        try:
            return npz_keys(self.path, "npz dataset") if keys is None else read_npz_arrays(self.path, "npz dataset",
                                                                                             keys={keys})[keys]
        except WeightFileError as e:
            raise DataError(str(e), path=e.path, field=e.field) from None

    def __getitem__(self, key):
        return self._read(key)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _npz_splits(keys):
    return sorted(k[:-len("_images")] for k in keys
                  if k.endswith("_images") and k[:-len("_images")] + "_labels" in keys)


# --------------------------------------------------------------------------------------------
# dispatch

def load_rsna(labels_csv, image_root=None, split=None, check_files: bool = True,
              patient_ids_from_dicom: bool = True) -> Dataset:
    """The RSNA Pneumonia Detection Challenge layout -> one NORMAL/PNEUMONIA label per patient
    (see ``minicnn.data.rsna``); patient ids from the DICOM PatientID when present."""
    paths, labels, ids = rsna.read_rsna(labels_csv, image_root, split, check_files, patient_ids_from_dicom)
    return Dataset(labels=labels, classes=list(rsna.CLASSES), paths=paths, patient_ids=ids,
                   positive_class="PNEUMONIA", split=split, source=str(labels_csv))


def _kind(source: Path) -> str:
    if source.is_dir():
        return "folder"
    if source.suffix.lower() == ".csv":
        if source.is_file():
            with open(source, newline="", encoding="utf-8-sig") as fh:
                header = next(csv.reader(fh), None)
                if rsna.is_rsna_header(header):
                    return "rsna"
                if is_chexpert_header(header):
                    return "chexpert"
        return "csv"
    if source.suffix.lower() == ".npz":
        return "npz"
    if not source.exists():
        raise file_not_found("dataset", source)
    raise DataError(f"{source}: a dataset is a folder, a .csv or a .npz file")


def available_splits(source) -> list:
    """Split names found in ``source``; ``[]`` for a single-split folder or a CSV without a split column."""
    source = Path(source)
    kind = _kind(source)
    if kind == "folder":
        return _folder_splits(source)
    if kind == "npz":
        with _CheckedNpz(source) as z:
            return _npz_splits(z.files)
    if kind in ("rsna", "chexpert"):
        return []
    header, rows = _read_csv(source)
    col = _find_column(header, SPLIT_COLUMN_NAMES)
    return sorted({r[col].strip() for r in rows}) if col else []


def load_dataset(source, split=None, **options) -> Dataset:
    """Load ``split`` of a folder, CSV or ``.npz`` dataset; ``options`` go to the source's loader.

    Folder: ``classes``, ``positive_class``. CSV: see ``load_csv`` (a CheXpert CSV, recognised by its
    columns: ``load_chexpert``). npz: ``classes``,
    ``positive_class`` (``split`` defaults to ``train`` there).
    """
    source = Path(os.fspath(source))
    kind = _kind(source)
    if kind == "folder":
        return load_folder(source, split=split, **options)
    if kind == "csv":
        return load_csv(source, split=split, **options)
    if kind == "rsna":
        return load_rsna(source, split=split, **options)
    if kind == "chexpert":
        return load_chexpert(source, split=split, **options)
    return load_npz(source, split=split or "train", **options)
