"""Input preprocessing that goes with pretrained weights (the mode follows the weights, not the architecture).

The arithmetic of each mode lives in ``minicnn.data.normalize`` and is applied through
``minicnn.data.Preprocessing`` (the data pipeline uses the same code); this module resolves the
mode from a weights name or a model and checks input ranges.

Modes (as in ``keras.applications.imagenet_utils.preprocess_input`` — there spelled 'torch',
'caffe', 'tf' — and torchvision's transforms), for pixels ``x`` in [0, 255], RGB:

    'imagenet-torch'  (x / 255 - mean) / std,  mean = (0.485, 0.456, 0.406), std = (0.229, 0.224, 0.225)
    'imagenet-caffe'  RGB -> BGR, then minus (103.939, 116.779, 123.68) (B, G, R means); no scaling
    'tf'              x / 127.5 - 1

``preprocess(images, mode_or_weights_name)`` takes uint8 or float images NHWC or HWC (1 or 3
channels; grayscale is repeated to 3) or HW / NHW grayscale, and returns NCHW float32.
``check_input_range(x, mode)`` warns when a batch does not look like the output of that mode.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..data.normalize import IMAGENET_MEAN, IMAGENET_STD  # noqa: F401 (re-exported)
from ..data.preprocessing import Preprocessing
from ..errors import UsageError
from .registry import WEIGHTS

MODES = ("imagenet-torch", "imagenet-caffe", "tf", "xrv")
#: What a correctly preprocessed batch spans, per mode (from pixels 0 and 255).
EXPECTED_RANGE = {"imagenet-torch": (-2.12, 2.64), "imagenet-caffe": (-123.68, 151.061), "tf": (-1.0, 1.0),
                  "xrv": (-1024.0, 1024.0)}


def resolve_mode(mode_or_weights) -> str:
    """A mode name, a registry weights name, or a model whose ``meta['preprocessing']`` names one."""
    meta = getattr(mode_or_weights, "meta", None)
    if isinstance(meta, dict):
        mode = Preprocessing.of(mode_or_weights).mode
        if mode not in MODES:
            raise UsageError(f"the model's preprocessing mode is {mode!r}; expected one of {MODES}")
        return mode
    if mode_or_weights in MODES:
        return mode_or_weights
    if mode_or_weights in WEIGHTS:
        return WEIGHTS[mode_or_weights].preprocessing
    raise UsageError(f"unknown preprocessing {mode_or_weights!r}: give a mode {MODES}, a weights name "
                     f"({', '.join(sorted(WEIGHTS))}) or a model built by minicnn.pretrained")


def to_nhwc(images) -> np.ndarray:
    """HW, NHW, HWC or NHWC (C in 1, 3) -> NHWC float32 with 3 channels (grayscale repeated)."""
    x = np.asarray(images)
    if x.dtype.kind not in "uif":
        raise TypeError(f"images must be numeric (uint8 or float), got dtype {x.dtype}")
    if x.ndim == 2:                                   # HW
        x = x[None, :, :, None]
    elif x.ndim == 3:
        x = x[None] if x.shape[-1] in (1, 3) else x[..., None]      # HWC, else NHW
    elif x.ndim != 4:
        raise UsageError(f"images must be HW, NHW, HWC or NHWC, got shape {x.shape}")
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if x.shape[-1] != 3:
        raise UsageError(f"images must have 1 or 3 channels last (NHWC), got shape {x.shape}")
    return x.astype(np.float32, copy=False)


def preprocess(images, mode_or_weights_name) -> np.ndarray:
    """Pixels in [0, 255] (NHWC / HWC / grayscale) -> NCHW float32 prepared for the weights' ``mode``."""
    mode = resolve_mode(mode_or_weights_name)
    x = to_nhwc(images)
    if x.size and float(x.max()) <= 1.0 and np.asarray(images).dtype.kind == "f":
        warnings.warn(f"preprocess({mode!r}) expects pixels in [0, 255], but the images' maximum is "
                      f"{float(x.max()):.3g}: are they already scaled to [0, 1]?", stacklevel=2)
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))                            # NHWC -> NCHW
    if mode == "xrv":                       # torchxrayvision: one channel (the mean of R, G, B)
        x = x.mean(axis=1, keepdims=True, dtype=np.float32)
        pre = Preprocessing(image_size=x.shape[2:], channels=1, fit="crop", mode=mode)
    else:
        pre = Preprocessing(image_size=x.shape[2:], channels=3, mode=mode)      # the one implementation
    return pre.normalize(x).astype(np.float32, copy=False)


def check_input_range(x, mode_or_weights, slack: float = 0.5) -> bool:
    """Warn (and return False) when NCHW batch ``x`` does not look preprocessed with ``mode``.

    Raw [0, 255] pixels fed to an 'imagenet-torch' or 'tf' model, or [0, 1]-scaled pixels fed to an
    'imagenet-caffe' model, are the usual mistakes; both give confident nonsense rather than an error.
    """
    mode = resolve_mode(mode_or_weights)
    lo, hi = EXPECTED_RANGE[mode]
    x = np.asarray(x)
    if x.size == 0:
        return True
    xmin, xmax = float(x.min()), float(x.max())
    if mode == "xrv":       # torchxrayvision's own heuristic (utils.warn_normalization, its issue #89)
        if xmin > -255 or xmax < 255 or xmin < -1025 or xmax > 1025:
            warnings.warn(f"inputs span [{xmin:.2f}, {xmax:.2f}], not torchxrayvision's [-1024, 1024] scale: every "
                          "image may get the same outputs. Preprocess with the model's "
                          "Preprocessing (mode 'xrv': pixels * 2048 / 255 - 1024)", stacklevel=2)
            return False
        return True
    width = hi - lo
    if xmin < lo - slack * width or xmax > hi + slack * width:
        warnings.warn(f"inputs span [{xmin:.3g}, {xmax:.3g}] but {mode!r} preprocessing gives about "
                      f"[{lo:.3g}, {hi:.3g}]: were the images preprocessed (minicnn.pretrained.preprocess)?",
                      stacklevel=2)
        return False
    if mode == "imagenet-caffe" and xmax - xmin < 0.05 * width:
        warnings.warn(f"inputs span only [{xmin:.3g}, {xmax:.3g}]; 'imagenet-caffe' preprocessing keeps the 0..255 "
                      f"scale (about [{lo:.3g}, {hi:.3g}]): were the images scaled to [0, 1] first?", stacklevel=2)
        return False
    return True
