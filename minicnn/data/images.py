"""Decode one image file (or an in-memory array) into a float32 array in [0, 255].

    load_image(path, size=(128, 128), color="grayscale")  -> (H, W)    float32
    load_image(path, size=(150, 150), color="rgb")        -> (H, W, 3) float32

Sizes are ``(height, width)`` like Keras' ``target_size``; Pillow itself speaks ``(width, height)``,
so the swap happens in exactly one place (``_pil_size``).

How the image is fitted into ``size``:
    fit="stretch"  resize to exactly ``size`` (the aspect ratio may change; Keras ``load_img``)
    fit="pad"      keep the aspect ratio, shrink/grow to fit inside, pad the rest with zeros (black)
    fit="crop"     keep the aspect ratio, take the centred box of the target's aspect ratio, resize it

``interpolation="nearest"`` on an 8-bit image is exactly Keras ``load_img(path, target_size=...,
interpolation="nearest")``: convert to ``RGB`` (or ``L``) with Pillow, then ``Image.resize(...,
Image.NEAREST)``.

Bit depths: 8-bit images keep their values (0..255). 16-bit grayscale images (Pillow modes
``I;16``, ``I``) are scaled by 255 / 65535 so the full 16-bit range maps onto [0, 255]; they are
resized in floating point (Pillow mode ``F``) so no precision is lost to rounding. Alpha channels
are dropped (as Keras does), palette images are expanded.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError, ImageLoadError
from .dicom import read_dicom
from .limits import MAX_PIXELS

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".dcm", ".dicom")
INTERPOLATIONS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
                  "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}
FITS = ("stretch", "pad", "crop")
COLORS = ("grayscale", "rgb")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def is_image_file(path) -> bool:
    """True for a visible file whose extension is one we can decode."""
    name = os.path.basename(str(path))
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def normalize_size(size) -> tuple[int, int] | None:
    """``None`` -> None (keep the image's size), ``128`` -> (128, 128), ``(h, w)`` -> (h, w)."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    if not (isinstance(size, (tuple, list)) and len(size) == 2):
        raise DataError(f"size must be an int or (height, width), got {size!r}")
    h, w = int(size[0]), int(size[1])
    if h < 1 or w < 1:
        raise DataError(f"size must be positive, got {size!r}")
    return h, w


def _check_options(color, interpolation, fit):
    if color not in COLORS:
        raise DataError(f"color must be one of {COLORS}, got {color!r}")
    if interpolation not in INTERPOLATIONS:
        raise DataError(f"interpolation must be one of {tuple(INTERPOLATIONS)}, got {interpolation!r}")
    if fit not in FITS:
        raise DataError(f"fit must be one of {FITS}, got {fit!r}")


def _pil_size(hw):
    return (hw[1], hw[0])


def _to_float_channels(img: Image.Image, color: str) -> list[Image.Image]:
    """Split ``img`` into Pillow images, one per output channel: 8-bit ``L`` or float ``F``."""
    if img.mode in _SIXTEEN_BIT_MODES or img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if img.mode != "F":
            arr = arr * np.float32(255.0 / 65535.0)
        chan = Image.fromarray(arr.astype(np.float32), mode="F")
        return [chan] if color == "grayscale" else [chan, chan, chan]
    if color == "grayscale":
        if img.mode == "P" and "transparency" in img.info:
            img = img.convert("RGBA")
        return [img.convert("L")]
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return list(img.convert("RGB").split())


def _fit_channels(chans: list[Image.Image], size, interpolation: str, fit: str) -> list[np.ndarray]:
    resample = INTERPOLATIONS[interpolation]
    w0, h0 = chans[0].size
    if size is None:
        return [np.asarray(c, dtype=np.float32) for c in chans]
    h, w = size
    if fit == "stretch":
        if (h0, w0) == (h, w):
            return [np.asarray(c, dtype=np.float32) for c in chans]
        return [np.asarray(c.resize(_pil_size(size), resample), dtype=np.float32) for c in chans]
    if fit == "crop":
        # the largest centred box with the target's aspect ratio, resized to the target
        scale = min(w0 / w, h0 / h)
        bw, bh = w * scale, h * scale
        left, top = (w0 - bw) / 2.0, (h0 - bh) / 2.0
        box = (left, top, left + bw, top + bh)
        return [np.asarray(c.resize(_pil_size(size), resample, box=box), dtype=np.float32) for c in chans]
    # pad: fit inside, centre on a black canvas
    scale = min(w / w0, h / h0)
    nw, nh = max(1, min(w, round(w0 * scale))), max(1, min(h, round(h0 * scale)))
    top, left = (h - nh) // 2, (w - nw) // 2
    out = []
    for c in chans:
        small = np.asarray(c.resize((nw, nh), resample), dtype=np.float32)
        canvas = np.zeros((h, w), np.float32)
        canvas[top:top + nh, left:left + nw] = small
        out.append(canvas)
    return out


def prepare_pil(img: Image.Image, size=None, color="grayscale", interpolation="bilinear",
                fit="stretch") -> np.ndarray:
    """Pillow image -> float32 (H, W) for ``grayscale`` or (H, W, 3) for ``rgb``, values in [0, 255]."""
    _check_options(color, interpolation, fit)
    chans = _fit_channels(_to_float_channels(img, color), normalize_size(size), interpolation, fit)
    arr = chans[0] if color == "grayscale" else np.stack(chans, axis=-1)
    return np.clip(arr, 0.0, 255.0).astype(np.float32, copy=False)


def prepare_array(image: np.ndarray, size=None, color="grayscale", interpolation="bilinear",
                  fit="stretch") -> np.ndarray:
    """The same as ``load_image`` for an in-memory image: (H, W), (H, W, 1) or (H, W, 3).

    ``uint8`` arrays are treated as 8-bit images (identical to loading the same pixels from a PNG);
    ``uint16`` as 16-bit; float arrays must already be in [0, 255]. RGB -> grayscale uses Pillow's
    ITU-R 601-2 luma transform, like ``Image.convert('L')``.
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
        raise DataError(f"an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {a.shape}")
    if a.dtype == np.uint8:
        img = Image.fromarray(a, mode="L" if a.ndim == 2 else "RGB")
        return prepare_pil(img, size, color, interpolation, fit)
    _check_options(color, interpolation, fit)
    a = a.astype(np.float32)
    if image.dtype == np.uint16:
        a *= np.float32(255.0 / 65535.0)
    if a.ndim == 3 and color == "grayscale":
        chans = [Image.fromarray(a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114, mode="F")]
    elif a.ndim == 3:
        chans = [Image.fromarray(np.ascontiguousarray(a[..., i]), mode="F") for i in range(3)]
    else:
        chan = Image.fromarray(a, mode="F")
        chans = [chan] if color == "grayscale" else [chan, chan, chan]
    chans = _fit_channels(chans, normalize_size(size), interpolation, fit)
    arr = chans[0] if color == "grayscale" else np.stack(chans, axis=-1)
    return np.clip(arr, 0.0, 255.0).astype(np.float32, copy=False)


def load_image(path, size=None, color="grayscale", interpolation="bilinear", fit="stretch",
               max_pixels: int | None = None) -> np.ndarray:
    """Read ``path`` (JPEG, PNG, ... or DICOM) and return float32 in [0, 255]: (H, W) or (H, W, 3).

    ``size`` is ``None`` (keep), an int or ``(height, width)``. A missing, unreadable or corrupt file
    raises ``ImageLoadError`` naming the file; so does an image of more than ``max_pixels``
    (default ``limits.MAX_PIXELS``, 50 million), checked on its header before it is decoded.
    """
    path = Path(path)
    _check_options(color, interpolation, fit)
    limit = MAX_PIXELS if max_pixels is None else int(max_pixels)
    if path.suffix.lower() in (".dcm", ".dicom"):
        return prepare_array(read_dicom(path, max_pixels=limit).pixels, size, color, interpolation, fit)
    if not path.is_file():
        raise ImageLoadError(f"image file not found: {path}")
    img = None
    try:
        img = Image.open(path)
        w, h = img.size
        if w * h * max(getattr(img, "n_frames", 1), 1) > limit:
            raise ImageLoadError(f"{path} is {w} x {h} pixels, over minicnn's limit of {limit:,} "
                                 "(pass max_pixels= to allow it for a file you trust)", path=path)
        img.load()
    except ImageLoadError:
        img.close()
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        if img is not None:
            img.close()
        raise ImageLoadError(f"cannot read image {path}: {exc} (is the file complete and an image?)") from exc
    with img:
        return prepare_pil(img, size, color, interpolation, fit)


def load_dicom(path) -> np.ndarray:
    """A DICOM X-ray as a viewer shows it -> float32 (H, W) in [0, 255] (see ``minicnn.data.dicom``)."""
    return read_dicom(path).pixels
