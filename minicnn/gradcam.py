"""Grad-CAM: which regions of an image raised the score of a class (``minicnn explain``).

    heat, info = gradcam(model, x, target_class="PNEUMONIA")      # x: one preprocessed image (1, C, H, W)
    explain_file(model, "image.png", "image_gradcam.png")         # read with the model's preprocessing, drawn

The heatmap uses minicnn's own backward pass (head -> the explained node); the overlay is drawn by
``minicnn.viz.overlay_heatmap``.
"""
from __future__ import annotations

import os

import numpy as np

from .data.preprocessing import Preprocessing
from .errors import UsageError
from .model import apply_activation
from .data.datasets import binary_class_names
from .predict import decide, probabilities_by_class
from .viz import overlay_heatmap


def default_gradcam_node(model) -> str:
    """The input of the last global-pooling node: the last feature map, after its activation."""
    for name in reversed(list(model.nodes)):
        node = model.nodes[name]
        if type(node.layer).__name__ in ("GlobalAvgPool2D", "GlobalMaxPool2D"):
            return node.inputs[0]
    raise UsageError("the model has no global-pooling node; name the feature-map node to explain (node=...)")


def _target(model, z: np.ndarray, target_class):
    """(output column, sign, class name) of the score to explain, from a class name/index or the prediction."""
    names = list(model.meta.get("outputs") or model.meta.get("classes") or [str(k) for k in range(z.shape[1])])
    if z.shape[1] == 1:  # one sigmoid output: the positive class is +logit, the other class -logit
        negative, positive = binary_class_names(model.meta, names[0])
        classes = [negative, positive]
        if target_class is None:
            thr = float(np.atleast_1d(model.meta.get("threshold", 0.5))[0])
            p = float(apply_activation(z.astype(np.float64), "sigmoid")[0, 0])
            target_class = positive if p >= thr else negative
        if target_class in (positive, 1, "1"):
            return 0, 1.0, positive
        if target_class in (negative, 0, "0"):
            return 0, -1.0, negative
        raise UsageError(f"unknown class {target_class!r}; the model's classes are {classes}")
    if target_class is None:
        k = int(np.argmax(z[0]))
    elif isinstance(target_class, (int, np.integer)):
        k = int(target_class)
    elif target_class in names:
        k = names.index(target_class)
    else:
        raise UsageError(f"unknown class {target_class!r}; the model's outputs are {names}")
    return k, 1.0, names[k]


def gradcam(model, x, target_class=None, node=None):
    """Grad-CAM heatmap of one preprocessed image ``x`` (1, C, H, W) for a Graph model.

    With A (K, h, w) the output of ``node`` (default: the input of the final global pooling) and
    s the target class's score *before* softmax/sigmoid (the logit; its negative for the other
    class of a one-output binary model)::

        alpha_k = mean_{i,j} ds/dA[k, i, j]          (minicnn's own backward pass, head -> node)
        cam     = ReLU( sum_k alpha_k * A[k] )        scaled to [0, 1] by its maximum

    Returns ``(heatmap (h, w) float64 in [0, 1], info)`` with ``info = {"node", "class",
    "output", "score", "probs"}`` (``probs``: the model's prediction for ``x``, (1, K)). Deterministic: the same model and image give the same map.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 4 or x.shape[0] != 1:
        raise UsageError(f"gradcam explains one image: x must be (1, C, H, W), got {x.shape}")
    node = node or default_gradcam_node(model)
    if node not in model.nodes:
        raise UsageError(f"{node!r} is not a node of the model")
    try:
        z = model.forward(x, training=False, keep=[node])
        A = model.activations[node]
        if A.ndim != 4:
            raise UsageError(f"node {node!r} outputs shape {A.shape}; Grad-CAM needs a feature map (1, K, h, w)")
        k, sign, name = _target(model, z, target_class)
        dz = np.zeros_like(z)
        dz[0, k] = sign
        dA = model.backward(dz, input_grad=False, wrt=node)
    finally:
        for layer in model.layers:
            layer.clear_cache()
        model.activations = {}
    alpha = dA[0].astype(np.float64).mean(axis=(1, 2))                    # (K,)
    cam = np.maximum(np.tensordot(alpha, A[0].astype(np.float64), axes=1), 0.0)  # (h, w)
    top = cam.max()
    heat = cam / top if top > 0 else cam
    probs = apply_activation(z.astype(np.float64), model.output_activation)
    return heat, {"node": node, "class": name, "output": k, "score": float(sign * z[0, k]), "probs": probs}


def display_image(model, path) -> np.ndarray:
    """The image as the model sees it (resized, before normalisation), for drawing."""
    return Preprocessing.of(model).read(path)


def explain_file(model, image_path, out_png, target_class=None, node=None) -> dict:
    """Write a Grad-CAM overlay PNG for one image; returns what was explained."""
    pre = Preprocessing.of(model)
    heat, info = gradcam(model, pre.load_files([image_path]), target_class=target_class, node=node)
    probs = info.pop("probs")
    by_class = probabilities_by_class(model, probs)[0]
    p = by_class.get(info["class"], float(probs[0].max()))
    label = f"Grad-CAM: high = more evidence for {info['class']}"
    title = f"{os.path.basename(str(image_path))}: P({info['class']}) = {p:.3f}"
    overlay_heatmap(pre.read(image_path), heat, out_png, title=title, label=label)
    return {**info, "probability": p, "probabilities": by_class, "prediction": decide(model, probs)[0],
            "heatmap": heat}


def explain_files(model, image_paths, out_dir, target_class=None, node=None) -> list[dict]:
    """Grad-CAM overlays for many images (``minicnn predict --gradcam DIR``): one PNG per image in
    ``out_dir``, named ``<image stem>_gradcam.png`` (``<stem>_<k>_gradcam.png`` when stems repeat).
    Each image's predicted class is explained unless ``target_class`` names one. Returns one
    ``explain_file`` result per image, with ``"file"`` and ``"overlay"`` added."""
    os.makedirs(out_dir, exist_ok=True)
    seen: dict[str, int] = {}
    results = []
    for path in image_paths:
        stem = os.path.splitext(os.path.basename(str(path)))[0]
        seen[stem] = seen.get(stem, 0) + 1
        name = f"{stem}_gradcam.png" if seen[stem] == 1 else f"{stem}_{seen[stem]}_gradcam.png"
        out = os.path.join(out_dir, name)
        info = explain_file(model, path, out, target_class=target_class, node=node)
        info.pop("heatmap")
        results.append({"file": str(path), "overlay": out, **info})
    return results
