"""``Preprocessing``: the one description of how an image becomes a model's input tensor.

    pre = Preprocessing(image_size=(128, 128), channels=1, normalization="dataset")
    pre = pre.fitted(train_batches)            # per-channel statistics of the TRAINING images
    x = pre.load_files(paths)                  # (N, C, H, W) float32, ready for model.predict
    model.meta["preprocessing"] = pre.to_dict()
    Preprocessing.from_meta(model.meta, model.input_shape) == pre

Steps: decode (JPEG, PNG, DICOM, or an in-memory array) -> grayscale (1 channel) or RGB (3) ->
resize to ``image_size`` with ``interpolation`` and ``fit`` (stretch, pad, crop) -> pixels in
[0, 255] -> normalisation (``minicnn.data.normalize``). The training loader, ``predict``,
Grad-CAM, feature extraction and ``evaluate`` all use this object, so a saved model is always
fed what it was trained on.

``meta['preprocessing']`` is always ``to_dict()``'s structure (model file format 2)::

    {"image_size": [H, W], "channels": 1 | 3, "interpolation": "bilinear" | "nearest" | "bicubic",
     "fit": "stretch" | "pad" | "crop",
     "normalization": {"mode": one of normalize.MODES, "mean": [per channel] | None,
                       "std": [per channel] | None, "eps": 1e-06, "count": images fitted on}}

Older files (a mode string, or a dict with ``"normalizer"``) are upgraded by ``from_meta``.

Mode ``'xrv'`` (torchxrayvision's models) reads the image torchxrayvision's way instead
(:mod:`minicnn.data.xray`): full resolution, DICOM by bit depth, the centred square crop, skimage's
anti-aliased resize; ``fit`` is ``'crop'`` and one channel. ``Preprocessing.for_xrv(224)`` makes it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..errors import DataError, UsageError, WeightFileError
from ..legacy import upgrade_preprocessing
from .images import FITS, INTERPOLATIONS, load_image, normalize_size, prepare_array
from .normalize import FITTED_MODES, channel_statistics, check_mode, normalize
from .xray import prepare_xray, read_xray_pixels

_KEYS = ("image_size", "channels", "interpolation", "fit", "normalization")
_NORM_KEYS = ("mode", "mean", "std", "eps", "count")


def _floats(v):
    return None if v is None else tuple(float(a) for a in np.asarray(v, np.float64).reshape(-1))


@dataclass(frozen=True)
class Preprocessing:
    """Image size ``(H, W)``, channels (1 grayscale, 3 RGB), resize ``interpolation`` and ``fit``,
    normalisation ``mode`` and its fitted per-channel ``mean``/``std`` (None until fitted)."""

    image_size: tuple
    channels: int = 1
    interpolation: str = "bilinear"
    fit: str = "stretch"
    mode: str = "dataset"
    mean: tuple | None = None
    std: tuple | None = None
    eps: float = 1e-6
    count: int = 0

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "image_size", normalize_size(self.image_size))
        if self.channels not in (1, 3):
            raise DataError(f"channels must be 1 or 3, got {self.channels}", field="channels")
        if self.interpolation not in INTERPOLATIONS:
            raise DataError(f"interpolation must be one of {tuple(INTERPOLATIONS)}, got {self.interpolation!r}")
        if self.fit not in FITS:
            raise DataError(f"fit must be one of {FITS}, got {self.fit!r}")
        check_mode(self.mode)
        set_(self, "channels", int(self.channels))
        set_(self, "mean", _floats(self.mean))
        set_(self, "std", _floats(self.std))
        set_(self, "eps", float(self.eps))
        set_(self, "count", int(self.count))
        if (self.mean is None) != (self.std is None):
            raise DataError("give both mean and std, or neither")
        if self.mode == "xrv" and (self.fit != "crop" or self.channels != 1):
            raise DataError("normalisation 'xrv' (torchxrayvision) reads one channel with the centred square "
                            f"crop: use fit='crop', channels=1 (got fit={self.fit!r}, channels={self.channels})")

    def __repr__(self) -> str:
        stats = ""
        if self.mean is not None:
            stats = f", mean={np.round(self.mean, 3).tolist()}, std={np.round(self.std, 3).tolist()}"
        return f"Preprocessing({self.image_size[0]}x{self.image_size[1]}x{self.channels}, {self.mode!r}{stats})"

    # -- statistics -------------------------------------------------------------------------------
    @property
    def needs_fit(self) -> bool:
        return self.mode in FITTED_MODES

    @property
    def is_fitted(self) -> bool:
        return not self.needs_fit or self.mean is not None

    def fitted(self, batches) -> "Preprocessing":
        """A copy with the per-channel statistics of TRAINING images ``batches`` ((N, C, H, W) in
        [0, 255], an array or an iterable); modes without statistics return ``self``."""
        if not self.needs_fit:
            return self
        mean, std, count = channel_statistics(batches)
        return dataclasses.replace(self, mean=mean, std=std, count=count)

    # -- applying ---------------------------------------------------------------------------------
    @property
    def color(self) -> str:
        return "rgb" if self.channels == 3 else "grayscale"

    def read(self, path) -> np.ndarray:
        """One image file, decoded and resized: float32 (H, W) or (H, W, 3) in [0, 255] (for display)."""
        if self.mode == "xrv":
            return prepare_xray(read_xray_pixels(path), self.image_size)
        return load_image(path, size=self.image_size, color=self.color, interpolation=self.interpolation,
                          fit=self.fit)

    def read_array(self, image) -> np.ndarray:
        """``read`` for an in-memory image (H, W), (H, W, 1|3|4)."""
        if self.mode == "xrv":
            a = np.asarray(image)
            a = a[..., :3].mean(axis=-1) if a.ndim == 3 else a
            a = a.astype(np.float32) * np.float32(255.0 / 65535.0) if image.dtype == np.uint16 else a
            return prepare_xray(a, self.image_size)
        return prepare_array(image, size=self.image_size, color=self.color, interpolation=self.interpolation,
                             fit=self.fit)

    def read_item(self, dataset, i: int) -> np.ndarray:
        """``read`` / ``read_array`` of image ``i`` of a ``Dataset`` (what the loaders call)."""
        if self.mode == "xrv":
            return self.read(dataset.paths[i]) if dataset.paths is not None else self.read_array(dataset.images[i])
        return dataset.image(i, self.image_size, self.color, self.interpolation, self.fit)

    @staticmethod
    def stack(images) -> np.ndarray:
        """Resized images (H, W) or (H, W, 3) -> one (N, C, H, W) float32 batch in [0, 255]."""
        x = np.stack(list(images)).astype(np.float32, copy=False)
        return x[:, None] if x.ndim == 3 else np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def normalize(self, x, training: bool = False) -> np.ndarray:
        """(N, C, H, W) pixels in [0, 255] -> the model's input (``training`` matters only in ``seed``)."""
        return normalize(x, self.mode, self.mean, self.std, self.eps, training=training)

    def load_files(self, paths) -> np.ndarray:
        """Image files -> (N, C, H, W) float32, exactly as the model expects."""
        return np.ascontiguousarray(self.normalize(self.stack(self.read(p) for p in paths)), dtype=np.float32)

    def ten_crops(self, path, resize: int = 256, crop: int = 224) -> np.ndarray:
        """CheXNet's published protocol for one image file: ``Resize(resize)`` (the shorter side,
        bilinear, as torchvision), ``TenCrop(crop)`` (:func:`ten_crop_batch`), then this
        normalisation: the model's (10, C, crop, crop) float32 input, whose outputs are averaged."""
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
        size = (resize, int(resize * w / h)) if h <= w else (int(resize * h / w), resize)
        img = load_image(path, size=size, color=self.color, interpolation="bilinear", fit="stretch")
        img = img[None] if img.ndim == 2 else img.transpose(2, 0, 1)
        return np.ascontiguousarray(self.normalize(ten_crop_batch(np.ascontiguousarray(img), crop)), dtype=np.float32)

    def load_arrays(self, images) -> np.ndarray:
        """In-memory images (each (H, W) or (H, W, C)) -> (N, C, H, W) float32, exactly as the model expects."""
        return np.ascontiguousarray(self.normalize(self.stack(self.read_array(a) for a in images)),
                                    dtype=np.float32)

    # -- saving -----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The JSON-able ``meta['preprocessing']`` structure (see the module docstring)."""
        return {"image_size": list(self.image_size), "channels": self.channels,
                "interpolation": self.interpolation, "fit": self.fit,
                "normalization": {"mode": self.mode, "mean": None if self.mean is None else list(self.mean),
                                  "std": None if self.std is None else list(self.std), "eps": self.eps,
                                  "count": self.count}}

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        """The inverse of ``to_dict`` (every key required; old structures go through ``from_meta``)."""
        if not isinstance(d, dict) or set(d) != set(_KEYS) or not isinstance(d["normalization"], dict) \
                or set(d["normalization"]) != set(_NORM_KEYS):
            raise WeightFileError(f"preprocessing must be a dict with keys {_KEYS} and normalization keys "
                                  f"{_NORM_KEYS}, got {d!r}", field="preprocessing")
        n = d["normalization"]
        return cls(image_size=tuple(d["image_size"]), channels=d["channels"], interpolation=d["interpolation"],
                   fit=d["fit"], mode=n["mode"], mean=n["mean"], std=n["std"], eps=n["eps"], count=n["count"])

    @classmethod
    def from_meta(cls, meta: dict, input_shape=None) -> "Preprocessing":
        """The preprocessing a model's ``meta`` records, in any form minicnn has written.

        A mode string (what the pretrained builders store: 'imagenet-torch', or the old 'torch')
        takes the image size and channels from ``input_shape`` (C, H, W), bilinear, stretched.
        """
        pre = (meta or {}).get("preprocessing")
        if pre is None:
            raise UsageError("this model carries no preprocessing (it was not trained or converted by minicnn); "
                             "convert it with `minicnn convert MODEL OUT.npz --preprocess ... --image-size ...`")
        return cls.from_dict(upgrade_preprocessing(pre, input_shape))

    @classmethod
    def for_weights(cls, mode: str, input_shape) -> "Preprocessing":
        """What pretrained weights need: RGB (or ``C``) at the model's ``(C, H, W)`` input size,
        bilinear, stretched, normalised with ``mode`` (e.g. 'imagenet-torch')."""
        c, h, w = (int(v) for v in input_shape)
        return cls(image_size=(h, w), channels=c, mode=mode)

    @classmethod
    def for_xrv(cls, size: int = 224) -> "Preprocessing":
        """torchxrayvision's recipe at ``size`` x ``size`` (see :mod:`minicnn.data.xray`)."""
        return cls(image_size=(size, size), channels=1, interpolation="bilinear", fit="crop", mode="xrv")

    @classmethod
    def of(cls, model) -> "Preprocessing":
        """``from_meta`` of a model (uses its ``input_shape`` for a mode string)."""
        return cls.from_meta(model.meta, model.input_shape)


def ten_crop_batch(image: np.ndarray, size: int = 224) -> np.ndarray:
    """torchvision's ``TenCrop(size)`` of one (C, H, W) image: the four corners and the centre, then
    the same five of the horizontally flipped image, as a (10, C, size, size) batch."""
    c, h, w = image.shape
    if h < size or w < size:
        raise DataError(f"TenCrop({size}) needs an image at least {size} x {size}, got {h} x {w}")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    boxes = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size), (top, left)]
    crops = [image[:, y:y + size, x:x + size] for y, x in boxes]
    flipped = image[:, :, ::-1]
    crops += [flipped[:, y:y + size, x:x + size] for y, x in boxes]
    return np.ascontiguousarray(np.stack(crops))
