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

from dataclasses import dataclass
from typing import Callable

from ..errors import FetchError, UnknownNameError
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
    return load_arch_weights(model, path, spec_for(model))
