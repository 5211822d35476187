"""CheXNet checkpoints (arnoweng/CheXNet ``model.pth.tar``) as a minicnn graph.

Reference (read, not copied): arnoweng/CheXNet ``model.py``; Rajpurkar et al., "CheXNet:
Radiologist-Level Pneumonia Detection on Chest X-Rays with Deep Learning" (2017).

The checkpoint is a legacy-serialized dict ``{'epoch', 'arch', 'state_dict', 'best_prec1', 'optimizer'}``
whose ``state_dict`` belongs to ``DataParallel(DenseNet121(14))``: keys
``module.densenet121.features...`` with the old torchvision names (``norm.1``, ``conv.2``) and the
head ``module.densenet121.classifier.0.weight/bias`` of ``Sequential(Linear(1024, 14), Sigmoid())``.
:func:`minicnn.readers.normalize_torch_keys` strips the prefixes and renames the old keys; the head
becomes the graph's ``classifier`` node with ``output_activation='sigmoid'``, so ``predict``
returns the 14 probabilities. Input: RGB 224 x 224, ImageNet normalisation. The published
evaluation (mean AUROC 0.847 over the 14 classes) used ``Resize(256)`` + ``TenCrop(224)`` with
the ten crops' outputs averaged (:func:`ten_crop_batch`).
"""
from __future__ import annotations

import os

import numpy as np

from ..data.preprocessing import Preprocessing, ten_crop_batch  # noqa: F401 (re-exported)
from ..model import Graph
from ..readers.torch import read_torch_file
from .densenet import DENSENET121_BLOCKS, densenet_graph
from .mapping import convert_torch_state_dict, resolve_weights
from .spec import WeightSpec, WeightsEntry

#: arnoweng/CheXNet ``CLASS_NAMES`` (ChestX-ray14), the order of its 14 outputs.
CHEXNET_CLASSES = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
                   "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
PROTOCOL = ("Resize(256) + TenCrop(224), ImageNet mean/std, the ten crops' sigmoid outputs averaged "
            "(arnoweng/CheXNet model.py); reported mean AUROC 0.847 on the ChestX-ray14 test split")

CHEXNET_SPEC = WeightSpec(
    architecture="chexnet-densenet121", head_nodes=("classifier",),
    torch_signature="features.denseblock4.denselayer16.conv2.weight", torch_head_weight="classifier.0.weight",
    weights=(WeightsEntry(
        "chexnet-densenet121", "chexnet-densenet121", "torchvision",
        "https://github.com/arnoweng/CheXNet/raw/master/model.pth.tar", ("sha256", None), True, "imagenet-torch",
        "the arnoweng/CheXNet repository's licence (not checked from this machine); trained on NIH "
        "ChestX-ray14, whose terms apply",
        classes="ChestX-ray14, 14 classes: " + ", ".join(CHEXNET_CLASSES), outputs=CHEXNET_CLASSES,
        image_size=224, protocol=PROTOCOL),))


def _head_renamed(sd: dict) -> dict:
    """``classifier.0.*`` (the Linear inside ``Sequential(Linear, Sigmoid)``) -> ``classifier.*``."""
    return {("classifier." + k[len("classifier.0."):] if k.startswith("classifier.0.") else k): v
            for k, v in sd.items()}


def chexnet(weights=None, seed=None) -> Graph:
    """CheXNet: torchvision DenseNet121 with a 14-way sigmoid head; ``predict`` gives the 14 probabilities.

    ``weights``: None (random), a ``model.pth.tar`` checkpoint (zip or legacy) or ``'chexnet-densenet121'``.
    """
    model = densenet_graph(DENSENET121_BLOCKS, classes=len(CHEXNET_CLASSES), input_shape=(3, 224, 224), seed=seed,
                           name="chexnet-densenet121")
    model.output_activation = "sigmoid"
    model.meta.update({"classes": list(CHEXNET_CLASSES), "outputs": list(CHEXNET_CLASSES), "protocol": PROTOCOL,
                       "pathology_outputs": True, "preprocessing": Preprocessing.for_weights("imagenet-torch", (3, 224, 224)).to_dict()})
    if weights is not None:
        path = resolve_weights(weights, CHEXNET_SPEC)
        tf = read_torch_file(path)
        converted, dropped = convert_torch_state_dict(model, _head_renamed(tf.state_dict), source=path,
                                                      spec=CHEXNET_SPEC)
        model.load_state_dict(converted, strict=True)
        model.meta.update({"source": "torchvision", "weights": os.path.basename(path), "dropped": dropped})
    return model


def predict_ten_crop(model: Graph, paths, resize: int = 256, crop: int = 224) -> np.ndarray:
    """CheXNet's published protocol: ``Resize(resize)`` (shorter side, bilinear), ``TenCrop(crop)``,
    the model's normalisation, its outputs averaged over the ten crops; ``(N, classes)``
    (``Preprocessing.ten_crops``; ``minicnn.predict_files(..., protocol="tencrop")`` is the same).

    ``paths``: image files (RGB or grayscale, repeated to 3 channels). ``model.predict`` gives the
    single-crop answer at ``crop`` px; this is the evaluation arnoweng/CheXNet reported AUROC with.
    """
    pre = Preprocessing.of(model)
    return np.stack([model.predict(pre.ten_crops(p, resize, crop), batch_size=10).mean(axis=0) for p in paths])
