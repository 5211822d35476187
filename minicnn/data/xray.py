"""torchxrayvision's image recipe, for the models trained with it (``Preprocessing`` mode ``'xrv'``).

torchxrayvision (``utils.normalize``, ``utils.read_xray_dcm``, ``datasets.XRayCenterCrop``,
``datasets.XRayResizer``) feeds its models one channel on a [-1024, 1024] scale:

1. pixels scaled from the image's maximum possible value: 255 for 8-bit images, ``2**BitsStored - 1``
   for DICOM (stored values, MONOCHROME1 inverted within that range; no VOI window);
2. the centred square crop of side ``min(H, W)`` (integer offsets ``W // 2 - side // 2``);
3. ``skimage.transform.resize(img, (size, size), mode='constant', preserve_range=True)``: a Gaussian
   anti-aliasing filter of sigma ``max(0, (factor - 1) / 2)`` per axis, then bilinear ``zoom`` with
   ``grid_mode=True``, both padding with 0 on the [-1024, 1024] scale, then clipped to the input's
   range widened to include that 0.

Here the same steps run on the [0, 255] scale (the linear map to [-1024, 1024] is the
normalisation mode ``'xrv'``), so the padding value is 127.5, the mid-grey that maps to 0; the
filter and the zoom are scipy's, called with skimage's arguments.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .dicom import read_dicom_stored
from .images import load_image

#: The grey level of [0, 255] that torchxrayvision's scale maps to 0 (its resize pads with 0).
MID_GREY = 127.5


def read_xray_pixels(path, max_pixels: int | None = None) -> np.ndarray:
    """An X-ray file at full resolution, float32 (H, W) on torchxrayvision's [0, 255] footing.

    8-bit images keep their values (colour: the mean of R, G, B, as torchxrayvision's README does);
    16-bit images are scaled by 255 / 65535; DICOM stored values by 255 / (2**BitsStored - 1)
    (``read_xray_dcm``)."""
    p = Path(path)
    if p.suffix.lower() in (".dcm", ".dicom"):
        return read_dicom_stored(p, max_pixels=max_pixels).pixels
    return load_image(p, size=None, color="rgb", max_pixels=max_pixels).mean(axis=-1, dtype=np.float32)


def center_crop_square(img: np.ndarray) -> np.ndarray:
    """``XRayCenterCrop``: the centred square of side ``min(H, W)``."""
    h, w = img.shape[-2:]
    side = min(h, w)
    top, left = h // 2 - side // 2, w // 2 - side // 2
    return img[..., top:top + side, left:left + side]


def resize_antialiased(img: np.ndarray, size, cval: float = MID_GREY) -> np.ndarray:
    """skimage's ``resize(img, size, order=1, mode='constant', cval=cval, preserve_range=True)`` of an (H, W) image."""
    from scipy import ndimage as ndi

    img = np.asarray(img, dtype=np.float32)
    out_shape = (int(size[0]), int(size[1]))
    factors = np.divide(img.shape, out_shape)
    if any(o < i for o, i in zip(out_shape, img.shape)):
        sigma = np.maximum(0, (factors - 1) / 2)
        img_f = ndi.gaussian_filter(img, sigma, cval=cval, mode="constant")
    else:
        img_f = img
    with warnings.catch_warnings():     # scipy suggests 'grid-constant'; skimage (and so torchxrayvision) uses 'constant'
        warnings.filterwarnings("ignore", message="It is recommended to use mode = grid-constant")
        out = ndi.zoom(img_f, [1 / f for f in factors], order=1, mode="constant", cval=cval, grid_mode=True)
    lo, hi = min(float(img.min()), cval), max(float(img.max()), cval)
    return np.clip(out, lo, hi).astype(np.float32, copy=False)


def prepare_xray(img: np.ndarray, size) -> np.ndarray:
    """Centre square crop, then the anti-aliased resize to ``size``: float32 (H, W) in [0, 255]."""
    return resize_antialiased(center_crop_square(np.asarray(img, dtype=np.float32)), size)
