"""The normalisation arithmetic of NCHW float batches in [0, 255] (used through ``Preprocessing``).

Modes
    dataset         (default) per-channel mean and std fitted ONCE on the training set (after
                    resizing, before augmentation) and applied to every split. Test statistics
                    are never used: ``channel_statistics`` of the training images is the only source.
    sample          each image standardised by its own mean and std (over all its pixels and channels).
    seed            the seed notebook's recipe, reproduced faithfully: training batches are
                    standardised per image (Keras ``samplewise_center`` + ``samplewise_std_normalization``)
                    while validation/test/predict use per-channel training-set statistics
                    (``featurewise_*``, fitted on a training sample). Train and evaluation thus see
                    differently normalised inputs; the mode exists only to reproduce the seed.
    imagenet-torch  x/255, minus ImageNet mean [0.485, 0.456, 0.406], divided by std [0.229, 0.224, 0.225]
                    (Keras ``preprocess_input`` mode ``torch``; torchvision). Needs 3 channels.
    imagenet-caffe  RGB -> BGR, minus [103.939, 116.779, 123.68] (BGR order; Keras mode ``caffe``). 3 channels.
    tf              x / 127.5 - 1 (Keras mode ``tf``).
    xrv             (2 x / 255 - 1) * 1024: torchxrayvision's [-1024, 1024] scale (its ``normalize``);
                    with ``Preprocessing`` it also reads images torchxrayvision's way (``data.xray``).
    none            pixels stay in [0, 255].

These are the only names (files written before format 2 spelled ``torch``/``caffe``; they are
upgraded when read, see ``minicnn.legacy``). Standardisation divides by ``std + eps`` with
eps = 1e-6, as Keras' ImageDataGenerator does.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError, UsageError
from ..legacy import LEGACY_MODE_NAMES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
MODES = ("dataset", "sample", "seed", "imagenet-torch", "imagenet-caffe", "tf", "xrv", "none")
FITTED_MODES = ("dataset", "seed")


def check_mode(mode: str) -> str:
    """``mode`` if it is one of ``MODES``; else a ``UsageError`` (naming today's spelling of an old one)."""
    if mode in MODES:
        return mode
    hint = f" (it is spelled {LEGACY_MODE_NAMES[mode]!r} now)" if mode in LEGACY_MODE_NAMES else ""
    raise UsageError(f"normalisation mode must be one of {MODES}, got {mode!r}{hint}", field="mode")


def _check_batch(x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise DataError(f"normalisation expects an (N, C, H, W) batch, got shape {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    return x


def channel_statistics(batches) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-channel ``(mean, std, images)`` of (N, C, H, W) batches (an array or an iterable of them).

    Accumulated in float64 over every pixel of every image given.
    """
    if isinstance(batches, np.ndarray):
        batches = [batches]
    total = total_sq = None
    pixels = images = 0
    for b in batches:
        b = _check_batch(b).astype(np.float64)
        s, sq = b.sum(axis=(0, 2, 3)), (b * b).sum(axis=(0, 2, 3))
        if total is None:
            total, total_sq = s, sq
        elif len(s) != len(total):
            raise DataError(f"batches with {len(total)} and {len(s)} channels in one fit")
        else:
            total, total_sq = total + s, total_sq + sq
        pixels += b.shape[0] * b.shape[2] * b.shape[3]
        images += b.shape[0]
    if not pixels:
        raise DataError("cannot fit normalisation statistics on zero images")
    mean = total / pixels
    var = np.maximum(total_sq / pixels - mean * mean, 0.0)
    return mean, np.sqrt(var), images


def normalize(batch, mode: str, mean=None, std=None, eps: float = 1e-6, training: bool = False) -> np.ndarray:
    """Normalise an (N, C, H, W) batch in [0, 255]; ``training`` matters only in ``seed`` mode."""
    x = _check_batch(batch)
    dtype = x.dtype
    c = x.shape[1]
    if mode == "none":
        return x
    if mode == "tf":
        return (x / 127.5 - 1.0).astype(dtype, copy=False)
    if mode == "xrv":
        return ((2.0 * (x / 255.0) - 1.0) * 1024.0).astype(dtype, copy=False)
    if mode in ("imagenet-torch", "imagenet-caffe"):
        if c != 3:
            raise DataError(f"normalisation {mode!r} needs 3-channel (RGB) input, got {c} "
                            "channel(s); load images with channels=3")
        if mode == "imagenet-torch":
            m = np.array(IMAGENET_MEAN).reshape(1, 3, 1, 1)
            s = np.array(IMAGENET_STD).reshape(1, 3, 1, 1)
            return ((x / 255.0 - m) / s).astype(dtype)
        return (x[:, ::-1] - np.array(CAFFE_BGR_MEAN).reshape(1, 3, 1, 1)).astype(dtype)
    if mode == "sample" or (mode == "seed" and training):
        m = x.mean(axis=(1, 2, 3), keepdims=True, dtype=np.float64)
        s = x.std(axis=(1, 2, 3), keepdims=True, dtype=np.float64)
        return ((x - m) / (s + eps)).astype(dtype)
    check_mode(mode)
    # dataset mode, or seed mode at evaluation: the training-set statistics
    if mean is None:
        raise UsageError(f"normalisation {mode!r} is not fitted: fit it on the TRAINING images first "
                         "(Preprocessing.fitted) or load the statistics saved with the model")
    mean, std = np.asarray(mean, np.float64).reshape(-1), np.asarray(std, np.float64).reshape(-1)
    if len(mean) not in (1, c):
        raise DataError(f"normalisation statistics have {len(mean)} channel(s), the batch has {c}")
    return ((x - mean.reshape(1, -1, 1, 1)) / (std.reshape(1, -1, 1, 1) + eps)).astype(dtype)
