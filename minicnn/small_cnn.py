"""Small from-scratch architectures for ``minicnn train --arch``.

``small``: three conv-BN-ReLU-maxpool blocks (16, 32, 64 channels) + global average pool + a dense
layer to one logit per output (multi-label sigmoid outputs). ``tiny``: the same with 8/16/32
channels, for tests and quick runs. ``medium``: four blocks (32..256 channels).
"""
from __future__ import annotations

from .errors import UsageError
from . import layers
from .model import Sequential

WIDTHS = {"tiny": (8, 16, 32), "small": (16, 32, 64), "medium": (32, 64, 128, 256)}


def conv_net(arch: str = "small", in_channels: int = 1, outputs: int = 1, image_size=128, seed: int = 0,
             dropout: float = 0.0) -> Sequential:
    """A chain of conv(3x3)-BN-ReLU-maxpool(2) blocks, global average pooling and a dense layer to logits."""
    if arch not in WIDTHS:
        raise UsageError(f"unknown architecture {arch!r}; choose one of {sorted(WIDTHS)} "
                         f"(or a pretrained backbone with --backbone)")
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    items, c = [], in_channels
    for i, f in enumerate(WIDTHS[arch]):
        items += [(f"block{i + 1}.conv", layers.Conv2D(c, f, 3, padding=1, bias=False, seed=seed + i)),
                  (f"block{i + 1}.bn", layers.BatchNorm2D(f)),
                  (f"block{i + 1}.relu", layers.ReLU()),
                  (f"block{i + 1}.pool", layers.MaxPool2D(2))]
        c = f
    items.append(("gap", layers.GlobalAvgPool2D()))
    if dropout:
        items.append(("dropout", layers.Dropout(dropout, seed=seed + 100)))
    items.append(("fc", layers.Dense(c, outputs, seed=seed + 101)))
    return Sequential(items, input_shape=(in_channels,) + size, output_activation="sigmoid", name=arch)
