"""Inference: the one loop over batches, and image files with the preprocessing saved in the model.

A model trained or converted by minicnn carries in ``model.meta``:

    classes          the dataset's class names (folder names), e.g. ["NORMAL", "PNEUMONIA"]
    outputs          the name of each output column: ["PNEUMONIA"] for a binary model with one
                     sigmoid output, the classes for multi-label or softmax models
    positive_class   the class a binary model's single output is the probability of
    preprocessing    ``Preprocessing.to_dict()``: image size, channels, resize, normalisation
    threshold        one decision threshold per output (p >= threshold is positive)

``predict_batches(model, loader)`` is the loop every evaluation runs (validation in ``train.fit``,
``evaluate``, feature extraction, ``predict_files``): one ``Graph.predict`` per loader batch.
``predict_files(model, paths)`` applies exactly the saved preprocessing (the same loader the
training used for validation and test images) and returns one record per file.
"""
from __future__ import annotations

import csv
import itertools
import json
import os
import textwrap
from pathlib import Path

import numpy as np

from .data.datasets import Dataset
from .data.images import is_image_file
from .data.loader import BatchLoader
from .data.preprocessing import Preprocessing
from . import fileio
from .errors import DataError, file_not_found
from .model import Graph, apply_activation
from .data.datasets import binary_class_names
from .serialization import load


def predict_batches(model: Graph, loader, progress=None):
    """Yield ``(y, z)`` per batch of ``loader``'s evaluation epoch: its labels and the model's logits
    (the output node's values before ``output_activation``); ``(y, z, indices)`` when the loader
    returns indices (``return_indices=True``). ``progress``: called once per batch."""
    for x, y, *idx in loader.epoch(0, training=False):
        z = model.predict(x, batch_size=len(x), logits=True)
        yield (y, z, *idx)
        if progress is not None:
            progress()


def predict_loader(model: Graph, loader, loss=None):
    """Run ``model`` over an evaluation loader: ``(y_true (N, K), y_prob (N, K), mean loss or None)``."""
    ys, ps, total, n = [], [], 0.0, 0
    for y, z in predict_batches(model, loader):
        if loss is not None:
            total += loss.forward(z, y) * len(z)
            n += len(z)
        ys.append(y)
        ps.append(apply_activation(z, model.output_activation))
    return np.concatenate(ys), np.concatenate(ps), (total / n if n else None)


def expand_paths(inputs) -> list[str]:
    """Files and folders (searched recursively for images, sorted) -> a list of image paths."""
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    out = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.is_file() and is_image_file(f))
            if not found:
                raise DataError(f"no images (jpeg, png, dcm) found in folder {p}", path=p)
            out += found
        elif p.is_file():
            out.append(str(p))
        else:
            raise file_not_found("image or folder", p)
    return out


def file_loader(paths, preprocessing: Preprocessing, batch_size: int = 16, on_bad_file: str = "fail",
                warn=None, return_indices: bool = False) -> BatchLoader:
    """An evaluation loader over image files (unlabelled: the labels are zeros)."""
    return BatchLoader(Dataset.from_paths(paths), preprocessing, batch_size=batch_size, training=False,
                       on_bad_file=on_bad_file, warn=warn, return_indices=return_indices)


def output_names(model: Graph) -> list[str]:
    return list(model.meta.get("outputs") or model.meta.get("classes") or [])


def decide(model: Graph, probs: np.ndarray) -> list[str]:
    """Predicted label per row: softmax -> argmax class; one sigmoid output -> positive/other class
    by the saved threshold; several sigmoid outputs -> the findings above their thresholds ('|'-joined)."""
    names = output_names(model) or [str(k) for k in range(probs.shape[1])]
    if model.output_activation == "softmax" or (model.output_activation is None and probs.shape[1] > 1
                                                 and len(names) == probs.shape[1] and "threshold" not in model.meta):
        return [names[k] for k in probs.argmax(axis=1)]
    thr = np.broadcast_to(np.asarray(model.meta.get("threshold", 0.5), dtype=np.float64), (probs.shape[1],))
    if probs.shape[1] == 1:
        neg, pos = binary_class_names(model.meta, names[0])
        return [pos if p >= thr[0] else neg for p in probs[:, 0]]
    return ["|".join(n for n, p, t in zip(names, row, thr) if p >= t) or "No Finding" for row in probs]


def probabilities_by_class(model: Graph, probs: np.ndarray) -> list[dict]:
    """One dict per row: class -> probability (a binary sigmoid model reports both classes)."""
    names = output_names(model) or [str(k) for k in range(probs.shape[1])]
    if probs.shape[1] == 1 and model.meta.get("classes") and len(model.meta["classes"]) == 2:
        neg, pos = binary_class_names(model.meta, names[0])
        return [{neg: float(1 - p), pos: float(p)} for p in probs[:, 0]]
    return [{n: float(v) for n, v in zip(names, row)} for row in probs]


def is_feature_extractor(model: Graph) -> bool:
    """A backbone without its classification head (``include_top=False``): outputs are features."""
    return model.meta.get("include_top") is False and not model.meta.get("outputs")


def true_labels(model: Graph, files) -> list[str | None]:
    """The class of each file from its folder name (``.../PNEUMONIA/x.png``), where that names one of
    the model's classes; None elsewhere."""
    classes = model.meta.get("classes")
    classes = set(classes) if isinstance(classes, (list, tuple)) else set()
    return [Path(f).parent.name if Path(f).parent.name in classes else None for f in files]


PROTOCOLS = ("single", "tencrop")


def predict_files(model, paths, batch_size: int = 16, on_bad_file: str = "fail", warn=None, progress=None,
                  protocol: str = "single"):
    """An iterator of ``{"file", "probabilities": {class: p}, "prediction", "true_label"}`` for image
    files or folders, in input order, computed batch by batch (memory stays flat at any size; take
    ``list(...)`` for a list).

    ``true_label`` is the file's class folder when that is one of the model's classes, else None.
    ``on_bad_file``: ``"fail"`` (default: an unreadable image is an error, never a silently missing
    row) or ``"skip"`` (no record for it; ``warn(message)`` names it). ``progress``: called once per
    batch. The model, the feature-extractor check and the file list are resolved at once (errors
    are raised here, not at the first record).

    ``protocol``: ``"single"`` (the saved preprocessing, one input per image) or ``"tencrop"``
    (CheXNet's published evaluation: ``Resize(256)`` + ``TenCrop(224)``, the model's normalisation,
    the ten crops' outputs averaged; ``Preprocessing.ten_crops``; ``progress`` is called per image)."""
    if protocol not in PROTOCOLS:
        raise DataError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}", field="protocol")
    if isinstance(model, (str, os.PathLike)):
        model = load(model)
    if is_feature_extractor(model):
        raise DataError("this model is a feature extractor (a backbone without a classification head): its "
                        f"{model.meta.get('architecture', '')} outputs are features, not class probabilities; "
                        "use `minicnn features` (or train a head with `minicnn train --backbone`)")
    files = expand_paths(paths)
    if protocol == "tencrop":
        return _ten_crop_records(model, files, on_bad_file, warn, progress)
    loader = file_loader(files, Preprocessing.of(model), batch_size, on_bad_file, warn, return_indices=True)
    return _records(model, files, loader, progress)


def _ten_crop_records(model: Graph, files, on_bad_file, warn, progress):
    pre = Preprocessing.of(model)
    crop = pre.image_size[0]
    resize = int(round(crop * 256 / 224))          # CheXNet: Resize(256) + TenCrop(224)
    for f in files:
        try:
            x = pre.ten_crops(f, resize, crop)
        except (OSError, DataError) as exc:
            if on_bad_file != "skip":
                raise
            if warn is not None:
                warn(f"skipped {f}: {exc}")
            continue
        probs = apply_activation(model.predict(x, batch_size=len(x), logits=True), model.output_activation)
        probs = probs.mean(axis=0, keepdims=True)
        yield {"file": f, "probabilities": probabilities_by_class(model, probs)[0],
               "prediction": decide(model, probs)[0], "true_label": true_labels(model, [f])[0]}
        if progress is not None:
            progress()


def _records(model: Graph, files, loader, progress):
    for _, z, idx in predict_batches(model, loader, progress):
        probs = apply_activation(z, model.output_activation)
        batch = [files[i] for i in idx]
        yield from ({"file": f, "probabilities": pr, "prediction": label, "true_label": truth}
                    for f, pr, label, truth in zip(batch, probabilities_by_class(model, probs), decide(model, probs),
                                                   true_labels(model, batch)))


def decision_rule(model: Graph) -> str:
    """How ``decide`` turns probabilities into a label, in words (threshold and where it came from)."""
    names = output_names(model)
    if model.output_activation == "softmax" or "threshold" not in model.meta:
        return "prediction: the most probable class"
    thr = np.atleast_1d(np.asarray(model.meta["threshold"], dtype=np.float64))
    rule = model.meta.get("threshold_rule")
    origin = f" ({rule})" if rule else ""
    if len(names) == 1:
        return f"prediction: {names[0]} when P({names[0]}) >= {thr[0]:.4f}{origin}"
    return "prediction: each finding whose P >= its threshold " + ", ".join(
        f"{n} {t:.4f}" for n, t in zip(names, np.broadcast_to(thr, (len(names),)))) + origin


def labelled_summary(records, positive: str | None) -> str | None:
    """Accuracy (and sensitivity/specificity for ``positive``) over the records that have a true label."""
    known = [r for r in records if r.get("true_label") is not None]
    if not known:
        return None
    right = sum(r["prediction"] == r["true_label"] for r in known)
    text = f"{len(known)} labelled images: accuracy {right / len(known):.3f} ({right}/{len(known)} correct)"
    if positive is not None:
        pos = [r for r in known if r["true_label"] == positive]
        neg = [r for r in known if r["true_label"] != positive]
        if pos:
            text += f", sensitivity {sum(r['prediction'] == positive for r in pos) / len(pos):.3f}"
        if neg:
            text += f", specificity {sum(r['prediction'] != positive for r in neg) / len(neg):.3f}"
    return text


def format_records(records, model: Graph | None = None) -> str:
    """The table ``minicnn predict`` prints: file, P(class) per class, prediction (and the true label
    where the folder says it), then the decision rule and, for labelled images, a summary."""
    names = list(records[0]["probabilities"]) if records else []
    truth = any(r.get("true_label") is not None for r in records)
    width = max([len(os.path.basename(r["file"])) for r in records] + [4])
    lines = [f"{'file':<{width}}  " + ("true        " if truth else "") + "  ".join(f"P({n})" for n in names)
             + "  prediction"]
    for r in records:
        t = f"{str(r.get('true_label') or '?'):<12}" if truth else ""
        mark = "   <- wrong" if truth and r.get("true_label") not in (None, r["prediction"]) else ""
        lines.append(f"{os.path.basename(r['file']):<{width}}  {t}"
                     + "  ".join(f"{r['probabilities'][n]:>{len(n) + 3}.4f}" for n in names)
                     + f"  {r['prediction']}{mark}")
    if model is not None:
        lines.append(decision_rule(model))
        summary = labelled_summary(records, model.meta.get("positive_class"))
        if summary:
            lines.append(summary)
    return "\n".join(lines)


def write_records(records, path) -> str:
    """Write prediction records (a list or an iterator, consumed as it comes: memory stays flat) to a
    ``.json`` file, or a ``.csv`` (any other suffix), atomically. A folder (existing, or a path
    ending in ``/``) gets ``predictions.csv`` inside it."""
    if os.path.isdir(path) or os.fspath(path).endswith((os.sep, "/")):
        path = Path(path) / "predictions.csv"
    path = Path(path)
    records = iter(records)
    first = next(records, None)
    rows = itertools.chain([first], records) if first is not None else iter(())
    if path.suffix.lower() == ".json":
        with fileio.atomic_write(path, "w") as f:
            f.write("[")
            for k, r in enumerate(rows):
                f.write(("," if k else "") + "\n" + textwrap.indent(json.dumps(r, indent=2), "  "))
            f.write("\n]\n" if first is not None else "]\n")
        return str(path)
    names = list(first["probabilities"]) if first is not None else []
    with fileio.atomic_write(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file"] + [f"P({n})" for n in names] + ["prediction", "true_label"])
        for r in rows:
            w.writerow([r["file"]] + [r["probabilities"][n] for n in names]
                       + [r["prediction"], r.get("true_label") or ""])
    return str(path)
