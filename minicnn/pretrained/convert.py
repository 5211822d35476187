"""``minicnn convert``: turn a Keras or PyTorch model file into a minicnn model that carries its
preprocessing and class names, ready for ``predict``, ``evaluate`` and ``explain``.

A ``.keras`` / Keras 2 ``.h5`` file holds the architecture (imported by ``load_keras``); a
torchvision ``.pth`` / ``.safetensors`` state dict holds only weights, so the architecture is
recognised from its keys (DenseNet121, VGG16, ResNet50, InceptionV3) or named with ``arch=``.
Neither format records the input preprocessing or the class names: they are given here and saved
in ``model.meta`` (see ``minicnn.predict``).
"""
from __future__ import annotations

import os

from ..errors import UnknownNameError, UsageError, file_not_found
from ..data.datasets import default_positive_class
from ..data.preprocessing import Preprocessing
from ..model import Graph
from ..serialization import load
from ..readers.detect import detect_format
from ..readers.torch import read_torch_state_dict
from .keras_import import load_keras
from .registry import ARCHITECTURES


def guess_torch_architecture(sd: dict) -> str:
    """The known architecture whose signature key (``WeightSpec.torch_signature``) the state dict has."""
    for name, arch in ARCHITECTURES.items():
        if arch.spec.torch_signature in sd:
            return name
    raise UsageError(f"could not recognise the architecture of this state dict (looked for the keys of "
                     f"{', '.join(ARCHITECTURES)}); name it with --arch")


def load_any(path, arch: str | None = None) -> Graph:
    """A Graph from a Keras model file, an ONNX model, or a torchvision state dict (architecture
    recognised or given)."""
    if os.fspath(path).lower().endswith(".onnx"):
        from .onnx_import import load_onnx
        return load_onnx(path)
    fmt = detect_format(path)
    if fmt in ("keras_archive", "keras_h5_model"):
        return load_keras(path)
    if fmt in ("torch_zip", "torch_legacy", "safetensors"):
        sd = read_torch_state_dict(path)
        arch = arch or guess_torch_architecture(sd)
        if arch not in ARCHITECTURES:
            raise UnknownNameError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
        head = sd.get(ARCHITECTURES[arch].spec.torch_head_weight)
        n_classes = head.shape[0] if head is not None else 1000
        del sd
        return ARCHITECTURES[arch].build(weights=os.fspath(path), classes=n_classes)
    if fmt == "npz":
        return load(path)
    raise UsageError(f"{path}: a {fmt} file holds weights without an architecture; build the model "
                     f"(e.g. minicnn.pretrained.densenet121(weights=...)) instead of converting it")


def attach_preprocessing(model: Graph, preprocess: str, image_size, resize: str = "bilinear", channels: int = 3,
                         classes=None, positive_class=None, output_activation: str = "auto") -> Graph:
    """Record how images must be prepared for ``model`` and what its outputs mean (in ``model.meta``).

    output_activation 'auto': a model that ends at K >= 2 logits gets 'softmax' (its predictions are
    then probabilities; Grad-CAM still explains the logit), one logit gets 'sigmoid'.
    """
    pre = Preprocessing(image_size=image_size, channels=int(channels), interpolation=resize, mode=preprocess)
    if pre.needs_fit:
        raise UsageError(f"--preprocess {preprocess!r} needs statistics of a training set; use tf, "
                         f"imagenet-torch or imagenet-caffe (the preprocessing the weights were trained with)")
    size = list(pre.image_size)
    k = model.output_shapes((channels, *size))[model.output_name][-1]
    if output_activation == "auto":
        output_activation = model.output_activation or ("softmax" if k >= 2 else "sigmoid")
    model.output_activation = output_activation
    meta = {"preprocessing": pre.to_dict()}
    if classes:
        classes = list(classes)
        if k == 1 and len(classes) == 2:
            pos = positive_class or default_positive_class(classes)
            meta.update(classes=classes, outputs=[pos], positive_class=pos, threshold=[0.5])
        elif k == len(classes):
            meta.update(classes=classes, outputs=classes)
            if k == 2:
                meta["positive_class"] = positive_class or default_positive_class(classes)
        else:
            raise UsageError(f"the model has {k} outputs but {len(classes)} class names were given: {classes}")
    model.meta.update(meta)
    model.input_shape = (int(channels), *size)
    return model


def convert(path, out, preprocess: str, image_size, resize: str = "bilinear", classes=None, channels: int = 3,
            positive_class=None, arch=None, output_activation: str = "auto") -> str:
    """Import ``path`` and save it as a minicnn ``.npz`` with its preprocessing and classes."""
    if not os.path.exists(path):
        raise file_not_found("model file", path)
    model = load_any(path, arch)
    attach_preprocessing(model, preprocess, image_size, resize, channels, classes, positive_class, output_activation)
    return model.save(out)
