"""The one module that knows every architecture: name -> builder and weight spec, and the known weight files.

    ARCHITECTURES["vgg16"].build(weights=..., ...)    the builder (``minicnn.pretrained.vgg16``)
    ARCHITECTURES["vgg16"].spec                        its :class:`~minicnn.pretrained.spec.WeightSpec`
    names() / get(name)                                the known weight files (every spec's ``weights``)
    fetch(name)                                        download one into ``$MINICNN_HOME/weights``
    load_weights(model, path)                          any supported weight file -> a built model

Each entry records the digest the upstream project publishes, so a download is checked against
the same number the framework itself uses: Keras' md5 ``file_hash`` (in
``keras/src/applications/densenet.py``) and torchvision's SHA-256 prefix (the 8 hex digits in the
file name, ``densenet121-a639ec97.pth``, checked by ``torch.hub`` with ``check_hash``).
torchxrayvision and CheXNet publish no digest: their SHA-256 is recorded on first download and
checked on every later use (:mod:`minicnn.pretrained.download`).

``fetch(name)`` downloads into the cache, ``$MINICNN_HOME/weights`` (default
``~/.cache/minicnn/weights``), with a progress bar; the file appears there only after its digest
checked out (written beside it, then renamed). Offline, the error says where to place the file by hand.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Callable

from ..errors import FetchError, UnknownNameError, UsageError, WeightFileError
from ..readers.detect import detect_format
from ..readers.keras import read_keras3_weights, read_keras_archive, read_keras_h5, read_keras_h5_model
from ..readers.npz import read_npz_arrays
from ..readers.torch import read_torch_state_dict
from .chexnet import CHEXNET_SPEC, chexnet
from .densenet import DENSENET121_SPEC, densenet121
from .download import cache_dir, download
from .inception import INCEPTION_V3_SPEC, inception_v3
from .mapping import GENERIC, load_arch_weights
from .resnet import RESNET50_SPEC, resnet50
from .spec import WeightSpec, WeightsEntry
from .vgg import VGG16_SPEC, vgg16
from .xrv import XRV_DENSENET121_SPEC, XRV_RESNET50_SPEC, xrv_densenet121, xrv_resnet50

__all__ = ["ARCHITECTURES", "Architecture", "WEIGHTS", "WeightsEntry", "FetchError", "names", "get", "fetch",
           "cache_dir", "load_weights", "spec_for"]


@dataclass(frozen=True)
class Architecture:
    """A known architecture: its builder (``weights=``, ``include_top=``, ...) and its weight spec."""
    build: Callable
    spec: WeightSpec


ARCHITECTURES: dict[str, Architecture] = {
    "densenet121": Architecture(densenet121, DENSENET121_SPEC),
    "vgg16": Architecture(vgg16, VGG16_SPEC),
    "resnet50": Architecture(resnet50, RESNET50_SPEC),
    "inception_v3": Architecture(inception_v3, INCEPTION_V3_SPEC),
    # chest X-ray models: whole classifiers (their own outputs, preprocessing and calibration)
    "xrv-densenet121": Architecture(xrv_densenet121, XRV_DENSENET121_SPEC),
    "xrv-resnet50": Architecture(xrv_resnet50, XRV_RESNET50_SPEC),
    "chexnet-densenet121": Architecture(chexnet, CHEXNET_SPEC),
}

# how people write the names (error messages, minicnn summary)
DISPLAY_NAMES = {"densenet121": "DenseNet121", "vgg16": "VGG16", "resnet50": "ResNet50", "inception_v3": "InceptionV3"}

WEIGHTS: dict[str, WeightsEntry] = {e.name: e for a in ARCHITECTURES.values() for e in a.spec.weights}


def names() -> list[str]:
    return sorted(WEIGHTS)


def get(name: str) -> WeightsEntry:
    if name not in WEIGHTS:
        raise UnknownNameError(f"unknown weights {name!r}; known: {', '.join(names())}")
    return WEIGHTS[name]


def fetch(name_or_entry, progress: bool = True, timeout: float = 30.0) -> str:
    """Path of a known weight file in the cache, downloading (and checking) it first if needed.

    Raises ``FetchError`` when the download fails (the message names the file, the URL and where to
    place a copy by hand) or when a file's digest is wrong (nothing is left behind).
    """
    entry = name_or_entry if isinstance(name_or_entry, WeightsEntry) else get(name_or_entry)
    return download(entry, progress=progress, timeout=timeout)


def spec_for(model) -> WeightSpec:
    """The weight spec of the model's architecture (``meta['architecture']``); generic for any other graph."""
    arch = ARCHITECTURES.get(model.meta.get("architecture"))
    return arch.spec if arch is not None else GENERIC


def load_weights(model, path):
    """Detect the weight file's format, load it strictly into ``model`` and record where it came from.

    Sets ``model.meta['source']`` ('keras' / 'torchvision' / the file's own for ``.npz``),
    ``model.meta['weights']`` (the file name) and ``model.meta['dropped']`` (what was left out on
    purpose: ``num_batches_tracked`` counters, a head the model does not have). Returns the model.
    The architecture's :class:`~minicnn.pretrained.spec.WeightSpec` decides the names and layout
    quirks (ResNet50's name matching, InceptionV3's creation order, VGG16's fc1 rows).
    """
    spec = spec_for(model)
    try:
        return load_arch_weights(model, path, spec)
    except (WeightFileError, UsageError):
        check_file_architecture(spec.architecture, path)   # "this is a DenseNet121 file" beats a list of keys
        raise


def checked_builder(name: str):
    """``ARCHITECTURES[name]``'s builder, which names the architecture of a weight file that belongs
    to another one ("x.pth is a DenseNet121 file, not ResNet50") instead of listing missing layers.
    ``minicnn.pretrained`` exports these (the architecture files cannot import the registry)."""
    builder = ARCHITECTURES[name].build

    @functools.wraps(builder)
    def build(*args, **kwargs):
        try:
            return builder(*args, **kwargs)
        except (WeightFileError, UsageError):
            weights = kwargs.get("weights", args[0] if args else None)
            if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
                check_file_architecture(name, weights)
            raise
    return build


def check_file_architecture(architecture: str | None, path) -> None:
    """Raise ``WeightFileError`` ("PATH is a DenseNet121 file, not ResNet50: use --backbone densenet121")
    when the weight file's keys belong to another known architecture; otherwise do nothing."""
    other = recognise_file(path) if architecture in ARCHITECTURES else None
    if other is not None and other != architecture:
        raise WeightFileError(f"{path} is a {DISPLAY_NAMES[other]} file, not {DISPLAY_NAMES[architecture]}: "
                              f"use --backbone {other} (or minicnn.pretrained.{other}(weights=...))",
                              path=os.fspath(path))


def recognise_keys(keys) -> str | None:
    """The known architecture a weight file's keys belong to: its ``torch_signature`` state-dict key,
    or the Keras layer name of that node (``conv5_block16_2_conv``); None if none matches."""
    keys = set(keys)
    for name, arch in ARCHITECTURES.items():
        sig = arch.spec.torch_signature
        if sig in keys or (sig and arch.spec.keras_name(sig.rsplit(".", 1)[0]) in keys - {None}):
            return name
    return None


def file_keys(path) -> tuple[str, list[str]]:
    """``(format, names)`` of a weight file without building anything: torch state-dict keys, Keras
    layer names (weights-only ``.h5``, Keras 3 ``.weights.h5``, or a model file's config), npz arrays."""
    fmt = detect_format(path)
    if fmt in ("torch_zip", "torch_legacy", "safetensors"):
        return fmt, list(read_torch_state_dict(path))
    if fmt == "keras_h5":
        return fmt, [layer.name for layer in read_keras_h5(path)]
    if fmt == "keras3_weights":
        return fmt, _tree_names(read_keras3_weights(path))
    if fmt == "keras_archive":
        return fmt, _config_layer_names(read_keras_archive(path)[0])
    if fmt == "keras_h5_model":
        return fmt, _config_layer_names(read_keras_h5_model(path)[0])
    return fmt, [k[2:] if k.startswith("w:") else k for k in read_npz_arrays(path)]


def _tree_names(tree, prefix="") -> list[str]:
    out = []
    for k, v in (tree.items() if isinstance(tree, dict) else ()):
        out.append(k)
        out += _tree_names(v, k + "/")
    return out


def _config_layer_names(config) -> list[str]:
    """Every layer name in a Keras model config (nested models included)."""
    out, stack = [], [config]
    while stack:
        c = stack.pop()
        if isinstance(c, dict):
            if isinstance(c.get("config"), dict) and "name" in c["config"]:
                out.append(str(c["config"]["name"]))
            stack.extend(c.values())
        elif isinstance(c, list):
            stack.extend(c)
    return out


def recognise_file(path) -> str | None:
    """The known architecture of a weight file (``recognise_keys`` of ``file_keys``); None if unknown
    or unreadable."""
    try:
        return recognise_keys(file_keys(path)[1])
    except (WeightFileError, UsageError, OSError, ValueError):
        return None
