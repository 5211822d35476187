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

from ..data.preprocessing import Preprocessing
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


def ten_crop_batch(image: np.ndarray, size: int = 224) -> np.ndarray:
    """torchvision's ``TenCrop(size)`` of one (C, H, W) image: the four corners and the centre, then
    the same five of the horizontally flipped image, as a (10, C, size, size) batch."""
    c, h, w = image.shape
    if h < size or w < size:
        raise ValueError(f"TenCrop({size}) needs an image at least {size} x {size}, got {h} x {w}")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    boxes = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size), (top, left)]
    crops = [image[:, y:y + size, x:x + size] for y, x in boxes]
    flipped = image[:, :, ::-1]
    crops += [flipped[:, y:y + size, x:x + size] for y, x in boxes]
    return np.ascontiguousarray(np.stack(crops))


def predict_ten_crop(model: Graph, paths, resize: int = 256, crop: int = 224) -> np.ndarray:
    """CheXNet's published protocol: ``Resize(resize)`` (shorter side, bilinear), ``TenCrop(crop)``,
    ImageNet normalisation, the model's outputs averaged over the ten crops; ``(N, classes)``.

    ``paths``: image files (RGB or grayscale, repeated to 3 channels). ``model.predict`` gives the
    single-crop answer at ``crop`` px; this is the evaluation arnoweng/CheXNet reported AUROC with.
    """
    from PIL import Image

    from ..data.images import load_image

    pre = Preprocessing.of(model)
    out = []
    for p in paths:
        with Image.open(p) as im:
            w, h = im.size
        size = (resize, int(resize * w / h)) if h <= w else (int(resize * h / w), resize)
        img = load_image(p, size=size, color="rgb", interpolation="bilinear", fit="stretch")
        x = pre.normalize(ten_crop_batch(np.ascontiguousarray(img.transpose(2, 0, 1)), crop))
        out.append(model.predict(x.astype(np.float32), batch_size=10).mean(axis=0))
    return np.stack(out)
