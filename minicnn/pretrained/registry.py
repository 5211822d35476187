"""Known weight files: where they come from, how to check them, and how their inputs are prepared.

Each entry records the digest the upstream project publishes, so a download is checked against
the same number the framework itself uses: Keras' md5 ``file_hash`` (in
``keras/src/applications/densenet.py``) and torchvision's SHA-256 prefix (the 8 hex digits in the
file name, ``densenet121-a639ec97.pth``, checked by ``torch.hub`` with ``check_hash``).

``fetch(name)`` downloads into the cache, ``$MINICNN_HOME/weights`` (default
``~/.cache/minicnn/weights``), with a progress bar; the file appears there only after its digest
checked out (written beside it, then renamed). Offline, the error says where to place the file by hand.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass

from tqdm.auto import tqdm

from ..errors import FetchError, UnknownNameError


@dataclass(frozen=True)
class WeightsEntry:
    """One known weight file.

    digest: ``('md5', full hex)`` or ``('sha256', hex prefix)``; preprocessing: a mode of
    ``minicnn.pretrained.preprocess`` ('torch', 'caffe', 'tf').
    """
    name: str
    architecture: str
    source: str                 # 'keras' or 'torchvision': the semantics the builder must use
    url: str
    digest: tuple
    include_top: bool
    preprocessing: str
    licence: str
    classes: str = "ImageNet-1k (1000 classes; names: keras imagenet_class_index.json / torchvision _IMAGENET_CATEGORIES)"

    @property
    def filename(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]


_KA = "https://storage.googleapis.com/tensorflow/keras-applications/"
_KERAS = _KA + "densenet/"
_KERAS_LICENCE = ("BSD-3-Clause (keras-applications README: DenseNet weights); trained on ImageNet, "
                  "whose terms restrict use to non-commercial research")
_TV_LICENCE = "BSD-3-Clause (torchvision); trained on ImageNet, whose terms restrict use to non-commercial research"

WEIGHTS: dict[str, WeightsEntry] = {e.name: e for e in (
    WeightsEntry("densenet121-keras-imagenet", "densenet121", "keras",
                 _KERAS + "densenet121_weights_tf_dim_ordering_tf_kernels.h5",
                 ("md5", "9d60b8095a5708f2dcce2bca79d332c7"), True, "torch", _KERAS_LICENCE),
    WeightsEntry("densenet121-keras-imagenet-notop", "densenet121", "keras",
                 _KERAS + "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 ("md5", "30ee3e1110167f948a6b9946edeeb738"), False, "torch", _KERAS_LICENCE),
    WeightsEntry("densenet121-torchvision-imagenet", "densenet121", "torchvision",
                 "https://download.pytorch.org/models/densenet121-a639ec97.pth",
                 ("sha256", "a639ec97"), True, "torch", _TV_LICENCE),
    # md5 digests: keras.applications' ``file_hash`` values; torchvision: the SHA-256 prefix in the file name.
    WeightsEntry("vgg16-keras-imagenet", "vgg16", "keras", _KA + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                 ("md5", "64373286793e3c8b2b4e3219cbf3544b"), True, "caffe", "CC BY 4.0 (Oxford VGG); ImageNet terms"),
    WeightsEntry("vgg16-keras-imagenet-notop", "vgg16", "keras",
                 _KA + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 ("md5", "6d6bbae143d832006294945121d1f1fc"), False, "caffe", "CC BY 4.0 (Oxford VGG); ImageNet terms"),
    WeightsEntry("resnet50-keras-imagenet", "resnet50", "keras", _KA + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5",
                 ("md5", "2cb95161c43110f7111970584f804107"), True, "caffe", "MIT (Kaiming He); ImageNet terms"),
    WeightsEntry("resnet50-keras-imagenet-notop", "resnet50", "keras",
                 _KA + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 ("md5", "4d473c1dd8becc155b73f8504c6f6626"), False, "caffe", "MIT (Kaiming He); ImageNet terms"),
    WeightsEntry("inception_v3-keras-imagenet", "inception_v3", "keras",
                 _KA + "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
                 ("md5", "9a0d58056eeedaa3f26cb7ebd46da564"), True, "tf", "Apache-2.0 (TensorFlow); ImageNet terms"),
    WeightsEntry("inception_v3-keras-imagenet-notop", "inception_v3", "keras",
                 _KA + "inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
                 ("md5", "bcbd6486424b2319ff4ef7d526e38f63"), False, "tf", "Apache-2.0 (TensorFlow); ImageNet terms"),
    WeightsEntry("vgg16-torchvision-imagenet", "vgg16", "torchvision", "https://download.pytorch.org/models/vgg16-397923af.pth",
                 ("sha256", "397923af"), True, "torch", _TV_LICENCE),
    WeightsEntry("resnet50-torchvision-imagenet", "resnet50", "torchvision",
                 "https://download.pytorch.org/models/resnet50-0676ba61.pth", ("sha256", "0676ba61"), True, "torch", _TV_LICENCE),
    WeightsEntry("inception_v3-torchvision-imagenet", "inception_v3", "torchvision",
                 "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth", ("sha256", "0cc3c7bd"), True,
                 "torch", _TV_LICENCE),
)}


def names() -> list[str]:
    return sorted(WEIGHTS)


def get(name: str) -> WeightsEntry:
    if name not in WEIGHTS:
        raise UnknownNameError(f"unknown weights {name!r}; known: {', '.join(names())}")
    return WEIGHTS[name]


def cache_dir() -> str:
    """``$MINICNN_HOME/weights``, default ``~/.cache/minicnn/weights`` (not created here)."""
    home = os.environ.get("MINICNN_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "minicnn")
    return os.path.join(home, "weights")


def file_digest(path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digest_ok(path, digest: tuple) -> bool:
    """Full md5 equality, or the SHA-256 hex digest starting with the published prefix."""
    algorithm, expected = digest
    got = file_digest(path, algorithm)
    return got.startswith(expected.lower()) if algorithm == "sha256" else got == expected.lower()


def fetch(name_or_entry, progress: bool = True, timeout: float = 30.0) -> str:
    """Path of a known weight file in the cache, downloading (and checking) it first if needed.

    Raises ``FetchError`` when the download fails (the message names the file, the URL and where to
    place a copy by hand) or when a file's digest is wrong (nothing is left behind).
    """
    entry = name_or_entry if isinstance(name_or_entry, WeightsEntry) else get(name_or_entry)
    folder = cache_dir()
    dest = os.path.join(folder, entry.filename)
    algorithm, expected = entry.digest
    if os.path.exists(dest):
        if not digest_ok(dest, entry.digest):
            raise FetchError(f"{dest} does not match its published {algorithm} digest {expected}: the file is "
                             f"corrupt or a different one. Delete it and fetch again, or replace it with "
                             f"the file from {entry.url}")
        return dest
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{entry.filename}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            _download(entry.url, out, timeout, progress, entry.filename)
        if not digest_ok(tmp, entry.digest):
            raise FetchError(f"the download of {entry.name} from {entry.url} does not match its published "
                             f"{algorithm} digest {expected} (got {file_digest(tmp, algorithm)}); nothing was "
                             f"kept. Try again, or check the URL.")
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return dest


def _download(url: str, out, timeout: float, progress: bool, label: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            total = int(r.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                      disable=not progress) as bar:
                for chunk in iter(lambda: r.read(1 << 20), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise FetchError(f"could not download {label} from {url} ({reason}). If this machine is offline, "
                         f"download the file elsewhere and place it at {os.path.join(cache_dir(), label)} "
                         f"(or set MINICNN_HOME to a folder whose 'weights' subfolder holds it).") from None
