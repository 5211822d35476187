"""Grad-CAM for image files, and the HTML evaluation report (``minicnn explain``, ``evaluate --report``).

The heatmap itself is computed by ``minicnn.viz.gradcam`` with minicnn's own backward pass; this
module reads the images with the model's saved preprocessing and draws the overlays.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .data.images import load_image
from .model import binary_class_names
from .predict import decide, load_for_model, output_names, preprocessing_of, probabilities_by_class
from .viz import gradcam, overlay_heatmap


def _display_image(model, path) -> np.ndarray:
    """The image as the model sees it (resized, before normalisation), for drawing."""
    pre = preprocessing_of(model)
    color = "rgb" if int(pre["channels"]) == 3 else "grayscale"
    return load_image(path, size=tuple(pre["image_size"]), color=color,
                      interpolation=pre.get("interpolation", "bilinear"), fit=pre.get("fit", "stretch"))


def explain_file(model, image_path, out_png, target_class=None, node=None) -> dict:
    """Write a Grad-CAM overlay PNG for one image; returns what was explained."""
    x = load_for_model(model, [image_path])
    heat, info = gradcam(model, x, target_class=target_class, node=node)
    probs = info.pop("probs")
    by_class = probabilities_by_class(model, probs)[0]
    p = by_class.get(info["class"], float(probs[0].max()))
    label = f"Grad-CAM: high = more evidence for {info['class']}"
    title = f"{os.path.basename(str(image_path))}: P({info['class']}) = {p:.3f}"
    overlay_heatmap(_display_image(model, image_path), heat, out_png, title=title, label=label)
    return {**info, "probability": p, "probabilities": by_class, "prediction": decide(model, probs)[0],
            "heatmap": heat}


def write_evaluation_report(model, dataset, y_true, y_prob, metrics: dict, out_dir, n_errors: int = 6,
                            threshold: float | None = None) -> str:
    """HTML report: metrics with CIs, ROC, confusion matrix, calibration, most confident errors with Grad-CAM."""
    from .report import write_html_report
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = []
    if dataset.paths is not None and y_true.shape[1] == 1:
        thr = float(np.atleast_1d(model.meta.get("threshold", 0.5))[0]) if threshold is None else float(threshold)
        pred = (y_prob[:, 0] >= thr).astype(float)
        wrong = np.flatnonzero(pred != y_true[:, 0])
        confidence = np.abs(y_prob[wrong, 0] - thr)
        negative, positive = binary_class_names({"classes": dataset.classes, "positive_class": dataset.positive_class})
        names = {1.0: positive, 0.0: negative}
        for i in wrong[np.argsort(-confidence)][:n_errors]:
            path = dataset.paths[i]
            x = load_for_model(model, [path])
            heat, _ = gradcam(model, x, target_class=names[pred[i]])
            images.append({"file": os.path.basename(path), "image": _display_image(model, path), "heatmap": heat,
                           "true_label": names[y_true[i, 0]], "prediction": names[pred[i]],
                           "probabilities": {names[0.0]: float(1 - y_prob[i, 0]), names[1.0]: float(y_prob[i, 0])}})
    return str(write_html_report(out_dir, metrics, y_true, y_prob, output_names(model) or list(dataset.output_names),
                                 images=images, title="minicnn evaluation"))
