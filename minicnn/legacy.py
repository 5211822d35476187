"""What older minicnn versions wrote, mapped to what minicnn writes today (read side only).

Model files of format version 1 (up to commit 8bb06d8) stored ``meta['preprocessing']`` in
three forms, and spelled the ImageNet modes two ways:

    'torch' | 'caffe' | 'tf'                        a pretrained builder (size from input_shape)
    {"image_size", "channels", "interpolation", "fit", "normalizer": {"mode", ...} | None}
                                                    a trained, converted or transfer-learned model
    normalizer mode 'torch' / 'caffe' / 'imagenet'  == 'imagenet-torch' / 'imagenet-caffe' / 'imagenet-torch'

``upgrade_preprocessing`` turns any of them into today's structure (see
``minicnn.data.preprocessing``). Nothing here is used when writing.
"""
from __future__ import annotations

from .errors import WeightFileError

#: Old spellings of normalisation modes -> today's names.
LEGACY_MODE_NAMES = {"torch": "imagenet-torch", "caffe": "imagenet-caffe", "imagenet": "imagenet-torch"}


def upgrade_mode(mode):
    """An old mode spelling -> today's (None -> 'none'); today's names pass through."""
    if mode is None:
        return "none"
    return LEGACY_MODE_NAMES.get(mode, mode)


def upgrade_preprocessing(pre, input_shape=None) -> dict | None:
    """``meta['preprocessing']`` as format version 1 stored it -> the format 2 dict (None stays None)."""
    if pre is None:
        return None
    if isinstance(pre, str):
        if input_shape is None or len(input_shape) != 3:
            raise WeightFileError(f"meta['preprocessing'] is the mode {pre!r} but the model records no "
                                  f"(C, H, W) input_shape to take the image size from", field="preprocessing")
        c, h, w = (int(s) for s in input_shape)
        pre = {"image_size": [h, w], "channels": c, "normalizer": {"mode": pre}}
    if not isinstance(pre, dict) or "image_size" not in pre:
        raise WeightFileError(f"meta['preprocessing'] must be a mode name or a dict with image_size, got {pre!r}",
                              field="preprocessing")
    if "normalization" in pre:
        return pre                                          # already today's structure
    norm = pre.get("normalizer") or {}
    return {"image_size": [int(s) for s in pre["image_size"]], "channels": int(pre.get("channels", 1)),
            "interpolation": pre.get("interpolation", "bilinear"), "fit": pre.get("fit", "stretch"),
            "normalization": {"mode": upgrade_mode(norm.get("mode")), "mean": norm.get("mean"),
                              "std": norm.get("std"), "eps": float(norm.get("eps", 1e-6)),
                              "count": int(norm.get("count", 0))}}


def upgrade_meta(meta: dict, input_shape=None) -> dict:
    """A format 1 model's ``meta`` -> format 2 (``preprocessing``, and ``classes`` as below)."""
    meta = upgrade_classes(meta)
    if "preprocessing" in meta:
        meta["preprocessing"] = upgrade_preprocessing(meta["preprocessing"], input_shape)
    return meta


def upgrade_classes(meta: dict) -> dict:
    """``meta['classes']`` always names the outputs; the pretrained builders once stored their output
    count there (an int): it is ``meta['num_classes']`` now. Applied to files of every version."""
    meta = dict(meta or {})
    if isinstance(meta.get("classes"), int) and not isinstance(meta.get("classes"), bool):
        meta.setdefault("num_classes", meta.pop("classes"))
    return meta
