"""One entry point: ``minicnn.load(path_or_name) -> Graph``, recognising what it is given by content.

    minicnn .npz model                          serialization.load (architecture + weights)
    torch whole-module pickle of torchxrayvision's DenseNet        xrv.xrv_densenet121
    torch state_dict (.pth/.pt/.safetensors), architecture from its keys:
        CheXNet (``module.densenet121.``, a 14-way ``classifier.0``)  chexnet.chexnet
        torchxrayvision DenseNet121 / ResNet50 (1 input channel, 18 outputs)
        torchvision densenet121 / resnet50 / vgg16 / inception_v3 (``classes`` from the head)
    Keras full model (.keras archive, .h5 with model_config)   keras_import.load_keras
    ONNX model (a ModelProto by content)        pretrained.onnx_import.load_onnx (the onnx extra)
    a registry name (``xrv-densenet121-all``, ``chexnet-densenet121``, ``densenet121-torchvision-imagenet``,
    or torchxrayvision's own ``densenet121-res224-all``)        fetched into the cache, then as above

A Keras *weights-only* file (``.weights.h5``, legacy weights ``.h5``) names no architecture: build
one (``minicnn.pretrained.densenet121``) and ``load_weights`` it. ``output=`` ('calibrated',
'probabilities', 'logits') is passed to the torchxrayvision builders.
"""
from __future__ import annotations

import os

from ..errors import UnknownNameError, UsageError, WeightFileError, file_not_found
from ..readers.detect import detect_format
from ..readers.torch import read_torch_file
from ..serialization import load as load_npz
from .keras_import import load_keras
from .registry import ARCHITECTURES, WEIGHTS, names

__all__ = ["load", "is_model_name", "TORCHXRAYVISION_NAMES"]

#: torchxrayvision's own weight names -> minicnn's registry names.
TORCHXRAYVISION_NAMES = {f"densenet121-res224-{k}": f"xrv-densenet121-{k}"
                         for k in ("all", "nih", "pc", "chex", "rsna", "mimic_nb", "mimic_ch")}
TORCHXRAYVISION_NAMES["resnet50-res512-all"] = "xrv-resnet50-res512-all"
_XRV_DENSENET_CLASS = "torchxrayvision.models.DenseNet"


def is_model_name(name) -> bool:
    """A registry name (or one of torchxrayvision's weight names)."""
    return isinstance(name, str) and (name in WEIGHTS or name in TORCHXRAYVISION_NAMES)


def _from_name(name: str, output: str):
    entry = WEIGHTS[TORCHXRAYVISION_NAMES.get(name, name)]
    build = ARCHITECTURES[entry.architecture].build
    if entry.architecture.startswith("xrv-"):
        return build(weights=entry.name, output=output)
    if entry.architecture.startswith("chexnet"):
        return build(weights=entry.name)
    return build(weights=entry.name, include_top=entry.include_top)


def _head_rows(sd: dict, key: str | None) -> int | None:
    a = sd.get(key) if key else None
    return None if a is None or a.ndim != 2 else int(a.shape[0])


def _from_torch(path: str, output: str):
    tf = read_torch_file(path)
    if tf.module is not None and tf.module_class != _XRV_DENSENET_CLASS:
        raise WeightFileError(f"{path} is a pickled {tf.module_class} module; minicnn builds torchxrayvision's "
                              f"DenseNet from a whole-module pickle, other models from their state_dict "
                              "(torch.save(model.state_dict(), path))", path=path)
    if tf.module is not None:
        return ARCHITECTURES["xrv-densenet121"].build(weights=path, output=output)
    sd, raw = tf.state_dict, tf.raw_keys
    chex = ARCHITECTURES["chexnet-densenet121"].spec
    if _head_rows(sd, chex.torch_head_weight) == 14 or any(k.startswith("module.densenet121.") for k in raw):
        return ARCHITECTURES["chexnet-densenet121"].build(weights=path)
    for name, arch in ARCHITECTURES.items():
        spec = arch.spec
        if name.startswith(("xrv-", "chexnet")) or spec.torch_signature not in sd:
            continue
        first = next((v for k, v in sd.items() if k.endswith(".weight") and v.ndim == 4), None)
        rows = _head_rows(sd, spec.torch_head_weight)
        xrv = f"xrv-{name}"
        if xrv in ARCHITECTURES and first is not None and first.shape[1] == 1 and rows == 18:
            return ARCHITECTURES[xrv].build(weights=path, output=output)
        if rows is None:
            return arch.build(weights=path, include_top=False)
        return arch.build(weights=path, classes=rows)
    model_keys = {n: ARCHITECTURES[n].spec.torch_signature for n in ARCHITECTURES}
    raise WeightFileError(f"{path}: a torch state_dict of no architecture minicnn knows (it has none of the keys "
                          f"{model_keys}); build the architecture yourself and call "
                          "minicnn.pretrained.load_weights(model, path)", path=path)


def _from_onnx(path: str):
    from .onnx_import import load_onnx           # here, not at the top: the onnx extra is optional
    return load_onnx(path)


def load(path_or_name, output: str = "calibrated"):
    """A model from a file (recognised by its content) or a registry name, as a ``Graph``.

    ``model.predict(x)`` returns what the source model returns; ``model.meta['classes']`` names the
    outputs and ``model.meta['preprocessing']`` describes the input the weights expect.
    """
    if isinstance(path_or_name, str) and not os.path.exists(path_or_name) and is_model_name(path_or_name):
        return _from_name(path_or_name, output)
    path = os.fspath(path_or_name)
    if not os.path.exists(path):
        if os.sep not in path and not os.path.splitext(path)[1]:
            raise UnknownNameError(f"{path!r} is neither a file nor a known model name; known: {', '.join(names())}, "
                                   f"or torchxrayvision's {', '.join(TORCHXRAYVISION_NAMES)}")
        raise file_not_found("model file", path)
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "model.npz")):
        path = os.path.join(path, "model.npz")          # a training run's folder
    try:
        fmt = detect_format(path)
    except WeightFileError:
        if path.lower().endswith(".npz"):
            return load_npz(path)          # a damaged .npz: the npz reader says what is wrong with it
        raise
    if fmt == "npz":
        return load_npz(path)
    if fmt in ("torch_zip", "torch_legacy", "safetensors"):
        return _from_torch(path, output)
    if fmt in ("keras_archive", "keras_h5_model"):
        return load_keras(path)
    if fmt == "onnx":
        return _from_onnx(path)
    raise WeightFileError(f"{path} is a Keras weights-only file ({fmt}): it names no architecture. Build one "
                          "(e.g. minicnn.pretrained.densenet121()) and call minicnn.pretrained.load_weights(model, "
                          "path)", path=path)
