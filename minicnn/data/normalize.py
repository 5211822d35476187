"""Normalisation of NCHW float batches in [0, 255], saved with the model as plain JSON data.

Modes
    dataset         (default) per-channel mean and std fitted ONCE on the training set (after
                    resizing, before augmentation) and applied to every split. Test statistics
                    are never used: ``fit`` is the only thing that sets ``mean``/``std``.
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

``torch`` and ``caffe`` are accepted as aliases. Standardisation divides by ``std + eps`` with
eps = 1e-6, as Keras' ImageDataGenerator does.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
MODES = ("dataset", "sample", "seed", "imagenet-torch", "imagenet-caffe", "tf")
ALIASES = {"torch": "imagenet-torch", "caffe": "imagenet-caffe", "imagenet": "imagenet-torch"}
FITTED_MODES = ("dataset", "seed")


def _check_batch(x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise DataError(f"normalisation expects an (N, C, H, W) batch, got shape {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    return x


class Normalizer:
    """``Normalizer(mode, mean=None, std=None)``; ``fit`` on training images, then ``norm(batch, training)``."""

    def __init__(self, mode: str = "dataset", mean=None, std=None, eps: float = 1e-6):
        mode = ALIASES.get(mode, mode)
        if mode not in MODES:
            raise DataError(f"normalisation mode must be one of {MODES} (or {tuple(ALIASES)}), got {mode!r}")
        self.mode = mode
        self.eps = float(eps)
        self.mean = None if mean is None else np.asarray(mean, np.float64).reshape(-1)
        self.std = None if std is None else np.asarray(std, np.float64).reshape(-1)
        if (self.mean is None) != (self.std is None):
            raise DataError("give both mean and std, or neither")
        self.count = 0  # number of images the statistics came from

    def __repr__(self) -> str:
        stats = ""
        if self.mean is not None:
            stats = f", mean={np.round(self.mean, 3).tolist()}, std={np.round(self.std, 3).tolist()}"
        return f"Normalizer({self.mode!r}{stats})"

    @property
    def needs_fit(self) -> bool:
        return self.mode in FITTED_MODES

    @property
    def fitted(self) -> bool:
        return not self.needs_fit or self.mean is not None

    def fit(self, batches) -> "Normalizer":
        """Per-channel mean/std of training images: an (N, C, H, W) array or an iterable of them.

        Accumulated in float64 over every pixel of every image given. Only ``dataset`` and
        ``seed`` modes use them; other modes accept ``fit`` and ignore it.
        """
        if not self.needs_fit:
            return self
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
        self.mean, self.std, self.count = mean, np.sqrt(var), images
        return self

    def __call__(self, batch, training: bool = False) -> np.ndarray:
        """Normalise an (N, C, H, W) batch in [0, 255]; ``training`` matters only in ``seed`` mode."""
        x = _check_batch(batch)
        dtype = x.dtype
        n, c = x.shape[:2]
        if self.mode == "tf":
            return (x / 127.5 - 1.0).astype(dtype, copy=False)
        if self.mode in ("imagenet-torch", "imagenet-caffe"):
            if c != 3:
                raise DataError(f"normalisation {self.mode!r} needs 3-channel (RGB) input, got {c} "
                                 "channel(s); load images with channels=3")
            if self.mode == "imagenet-torch":
                mean = np.array(IMAGENET_MEAN).reshape(1, 3, 1, 1)
                std = np.array(IMAGENET_STD).reshape(1, 3, 1, 1)
                return ((x / 255.0 - mean) / std).astype(dtype)
            return (x[:, ::-1] - np.array(CAFFE_BGR_MEAN).reshape(1, 3, 1, 1)).astype(dtype)
        if self.mode == "sample" or (self.mode == "seed" and training):
            mean = x.mean(axis=(1, 2, 3), keepdims=True, dtype=np.float64)
            std = x.std(axis=(1, 2, 3), keepdims=True, dtype=np.float64)
            return ((x - mean) / (std + self.eps)).astype(dtype)
        # dataset mode, or seed mode at evaluation: the training-set statistics
        if self.mean is None:
            raise RuntimeError(f"Normalizer({self.mode!r}) is not fitted: call fit() on the TRAINING "
                               "images first (or load the statistics saved with the model)")
        if len(self.mean) not in (1, c):
            raise DataError(f"normalisation statistics have {len(self.mean)} channel(s), the batch has {c}")
        mean = self.mean.reshape(1, -1, 1, 1)
        std = self.std.reshape(1, -1, 1, 1)
        return ((x - mean) / (std + self.eps)).astype(dtype)

    def to_dict(self) -> dict:
        """JSON-able description (mode, mean, std, eps, count) for saving with a model."""
        return {"mode": self.mode,
                "mean": None if self.mean is None else [float(v) for v in self.mean],
                "std": None if self.std is None else [float(v) for v in self.std],
                "eps": self.eps, "count": int(self.count)}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        norm = cls(d["mode"], d.get("mean"), d.get("std"), d.get("eps", 1e-6))
        norm.count = int(d.get("count", 0))
        return norm
