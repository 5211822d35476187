"""Inference on image files with the preprocessing saved in the model.

A model trained or converted by minicnn carries in ``model.meta``:

    classes          the dataset's class names (folder names), e.g. ["NORMAL", "PNEUMONIA"]
    outputs          the name of each output column: ["PNEUMONIA"] for a binary model with one
                     sigmoid output, the classes for multi-label or softmax models
    positive_class   the class a binary model's single output is the probability of
    preprocessing    {"image_size": [H, W], "channels": 1|3, "interpolation", "fit", "normalizer": {...}}
    threshold        one decision threshold per output (p >= threshold is positive)

``predict_files(model, paths)`` applies exactly that preprocessing (the same code path the
training loader used for validation and test images) and returns one record per file.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import DataError, UsageError, file_not_found
from .data.images import is_image_file, load_image
from .data.normalize import Normalizer
from .model import Graph, binary_class_names


def preprocessing_of(model: Graph) -> dict:
    """The model's preprocessing as a dict. A pretrained backbone names only its mode (e.g. 'torch'):
    its input size and channels then come from ``model.input_shape``, resized bilinearly."""
    pre = model.meta.get("preprocessing")
    if isinstance(pre, str) and model.input_shape is not None:
        c, h, w = model.input_shape
        pre = {"image_size": [h, w], "channels": c, "interpolation": "bilinear", "fit": "stretch",
               "normalizer": {"mode": pre}}
    if not isinstance(pre, dict):
        raise UsageError("this model carries no preprocessing (it was not trained or converted by minicnn); "
                         "convert it with `minicnn convert MODEL OUT.npz --preprocess ... --image-size ...`")
    return pre


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


def load_for_model(model: Graph, paths) -> np.ndarray:
    """Read, resize and normalise images exactly as the model expects: (N, C, H, W) float32."""
    pre = preprocessing_of(model)
    color = "rgb" if int(pre["channels"]) == 3 else "grayscale"
    images = [load_image(p, size=tuple(pre["image_size"]), color=color, interpolation=pre.get("interpolation", "bilinear"),
                         fit=pre.get("fit", "stretch")) for p in paths]
    x = np.stack([im[None] if im.ndim == 2 else im.transpose(2, 0, 1) for im in images]).astype(np.float32)
    norm = pre.get("normalizer")
    return Normalizer.from_dict(norm)(x, training=False) if norm else x


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


def predict_files(model, paths, batch_size: int = 16) -> list[dict]:
    """``[{"file", "probabilities": {class: p}, "prediction"}]`` for image files or folders."""
    if isinstance(model, (str, os.PathLike)):
        from .model import load
        model = load(model)
    files = expand_paths(paths)
    records = []
    for start in range(0, len(files), batch_size):
        chunk = files[start:start + batch_size]
        probs = model.predict(load_for_model(model, chunk), batch_size=batch_size)
        for f, pr, label in zip(chunk, probabilities_by_class(model, probs), decide(model, probs)):
            records.append({"file": f, "probabilities": pr, "prediction": label})
    return records
