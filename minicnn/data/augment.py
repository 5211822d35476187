"""Seeded training-time augmentation of NCHW batches in [0, 255].

Every random draw comes from the ``numpy.random.Generator`` passed in, so the same generator state
gives the same batch. The loader applies it to training batches only, before normalisation.

Per image: a random horizontal flip, then one affine warp combining rotation, zoom and shift
(``scipy.ndimage.affine_transform``, bilinear, edges extended with the nearest pixel as Keras'
``fill_mode='nearest'`` does), then contrast and brightness factors, clipped to [0, 255].
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from ..errors import DataError


@dataclasses.dataclass
class Augmenter:
    """Random flip, rotation (degrees), shift (fraction of size), zoom, brightness and contrast.

    ``zoom=0.1`` scales by a factor in [0.9, 1.1]; ``brightness=0.1`` multiplies by a factor in
    [0.9, 1.1]; ``contrast=0.1`` stretches around the image mean by a factor in [0.9, 1.1].
    """
    hflip: float = 0.5
    rotation: float = 7.0
    shift: float = 0.05
    zoom: float = 0.05
    brightness: float = 0.1
    contrast: float = 0.1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Augmenter":
        return cls(**d)

    def __call__(self, batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment a (N, C, H, W) batch; returns a new float32 array."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"augmentation needs an explicit numpy.random.Generator, got {type(rng).__name__}")
        x = np.asarray(batch, dtype=np.float32)
        if x.ndim != 4:
            raise DataError(f"augmentation expects an (N, C, H, W) batch, got shape {x.shape}")
        out = np.empty_like(x)
        for i in range(len(x)):
            out[i] = self.augment_image(x[i], rng)
        return out

    def augment_image(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment one (C, H, W) image (all channels get the same geometry)."""
        c, h, w = image.shape
        # draw every parameter, used or not, so the stream does not depend on the options' values
        flip = rng.random() < self.hflip
        angle = np.deg2rad(rng.uniform(-self.rotation, self.rotation))
        zoom = 1.0 + rng.uniform(-self.zoom, self.zoom)
        dy, dx = rng.uniform(-self.shift, self.shift, size=2) * (h, w)
        contrast = 1.0 + rng.uniform(-self.contrast, self.contrast)
        brightness = 1.0 + rng.uniform(-self.brightness, self.brightness)

        x = image[:, :, ::-1] if flip else image
        if angle != 0.0 or zoom != 1.0 or dx != 0.0 or dy != 0.0:
            # output pixel p samples input at  M @ (p - centre - shift) + centre
            cos, sin = np.cos(angle), np.sin(angle)
            matrix = np.array([[cos, -sin], [sin, cos]]) / zoom
            centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
            offset = centre - matrix @ (centre + np.array([dy, dx]))
            x = np.stack([ndimage.affine_transform(x[k], matrix, offset=offset, order=1, mode="nearest")
                          for k in range(c)])
        mean = x.mean()
        x = ((x - mean) * contrast + mean) * brightness
        return np.clip(x, 0.0, 255.0).astype(np.float32, copy=False)
