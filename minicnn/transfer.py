"""Transfer learning on a frozen pretrained backbone: cached features, a head trained by ``train.fit``.

    feats = extract_features(backbone, paths, cache="features/")                     # (N, F)
    head = build_head(feats.shape[1], classes=1)                                      # minicnn.pretrained
    train_head(head, feats, labels, epochs=30)                                        # train.fit underneath
    model = combine(backbone, head); model.save("xray.npz")

``transfer_learn(config)`` is ``minicnn train DATA --backbone NAME --weights FILE`` (Kermany et
al.'s protocol): every image becomes a pooled feature vector once; a new head (dense to one logit
per output, sigmoid, weighted BCE from logits) is trained on them with ``train.fit`` over an
``ArrayLoader`` (same NaN guard, checkpoints, progress bar and history as any run); the threshold
is chosen on the validation split (Youden's J); backbone + head are saved as one model, which
``predict``, ``evaluate`` and ``explain`` use like any other.

The feature cache is one ``.npy`` per image in a folder named by the *model* (a hash of its
architecture and every weight) and the *preprocessing*; each file is named by the image's content
hash (SHA-256 of the file's bytes, or of the array's bytes and shape). A second run over the same
images with the same model and preprocessing runs no forward pass at all.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from . import fileio, pretrained
from .data.augment import Augmenter
from .data.datasets import available_splits, load_dataset
from .data.loader import ArrayLoader, BatchLoader
from .data.preprocessing import Preprocessing
from .data.splits import training_splits, warn_to_stderr
from .errors import UsageError, WeightFileError
from .losses import WeightedBCE, class_weights
from .model import Graph, apply_activation
from .serialization import load
from .optim import Adam
from .predict import file_loader, predict_batches
from .pretrained.features import build_head, combine, image_key, model_fingerprint, unfreeze_last
from .pretrained.preprocess import preprocess, resolve_mode
from .pretrained import registry
from .pretrained.registry import cache_dir
from .readers.npz import read_npy
from .train import TrainConfig, TrainState, fit

CACHE_VERSION = 2
DEFAULT_SIZES = {"inception_v3": 299}
# The last block of each backbone: what ``--fine-tune`` unfreezes (with everything after it).
LAST_BLOCK = {"densenet121": "features.denseblock4", "resnet50": "layer4", "vgg16": "features.24",
              "inception_v3": "Mixed_7c"}


# ------------------------------------------------------------------------------------------------
# features
# ------------------------------------------------------------------------------------------------
def _pooled(y: np.ndarray) -> np.ndarray:
    return y.mean(axis=(2, 3)) if y.ndim == 4 else y.reshape(len(y), -1)      # (N, C, H, W) -> (N, C)


def _preprocessing_for(backbone: Graph, preprocessing) -> Preprocessing:
    if isinstance(preprocessing, Preprocessing):
        return preprocessing
    if preprocessing is None:
        if backbone.meta.get("preprocessing") is None:
            raise UsageError("give preprocessing=... for image files (the backbone's meta names none)")
        return Preprocessing.of(backbone)
    if backbone.input_shape is None:
        raise UsageError("the backbone records no input_shape; give preprocessing=Preprocessing(...)")
    return Preprocessing.for_weights(resolve_mode(preprocessing), (3, *backbone.input_shape[1:]))


def _cache_folder(cache, backbone: Graph, key: dict) -> str:
    tag = hashlib.sha256((model_fingerprint(backbone) + json.dumps(key, sort_keys=True)).encode()).hexdigest()
    folder = os.path.join(os.fspath(cache), tag[:24])
    info = os.path.join(folder, "info.json")
    if not os.path.exists(info):
        fileio.write_json(info, {"model": backbone.name, "meta": backbone.meta, "preprocessing": key},
                          default=str, indent=1)
    return folder


def extract_features(backbone: Graph, images, cache=None, batch_size: int = 16, preprocessing=None,
                     progress: bool = False, on_bad_file: str = "fail", warn=None,
                     skipped: dict | None = None) -> np.ndarray:
    """Pooled features ``(N, F)`` of a frozen backbone, computed in batches and cached on disk.

    images         a list of image file paths, or an array: NCHW float already preprocessed when
                   ``preprocessing`` is None, else NHWC / HWC pixels in [0, 255].
    cache          a folder (created if needed) or None (no cache).
    preprocessing  a ``Preprocessing``, or a mode / weights name (then at the backbone's input size,
                   RGB); default for files: the backbone's own (``Preprocessing.of(backbone)``).

    on_bad_file    for image files: ``"fail"`` (an unreadable image is an error) or ``"skip"``: its
                   row is NaN, ``warn(message)`` names it and ``skipped`` (a dict, if given) gets
                   ``{index: reason}``.

    A 4-D backbone output is globally average-pooled. Inference only (``predict.predict_batches``).
    """
    is_paths = not isinstance(images, np.ndarray)
    items = list(images) if is_paths else images
    if len(items) == 0:
        raise UsageError("extract_features got no images")
    pre = _preprocessing_for(backbone, preprocessing) if is_paths or preprocessing is not None else None
    key = {"preprocessing": pre.to_dict() if pre is not None else None, "arrays": not is_paths,
           "version": CACHE_VERSION}
    folder = _cache_folder(cache, backbone, key) if cache is not None else None
    keys = [image_key(it) for it in items] if folder is not None else [None] * len(items)
    out: list = [None] * len(items)
    todo = []
    for i, k in enumerate(keys):
        f = os.path.join(folder, k + ".npy") if folder is not None else None
        if f is not None and os.path.exists(f):
            out[i] = read_npy(f, "feature cache file")
        else:
            todo.append(i)
    if todo:
        if is_paths:
            loader = file_loader([items[i] for i in todo], pre, batch_size, on_bad_file, warn, return_indices=True)
        else:
            x = np.asarray(items[todo])
            x = preprocess(x, pre.mode) if pre is not None else x
            if x.ndim != 4:
                raise UsageError(f"without preprocessing, images must be NCHW float arrays, got shape {x.shape}")
            loader = ArrayLoader(x, np.zeros((len(x), 0)), batch_size, training=False)
        done = 0
        with tqdm(total=len(loader), disable=None if progress else True, desc="features") as bar:
            for _, z, *idx in predict_batches(backbone, loader, progress=lambda: bar.update(1)):
                feats = _pooled(apply_activation(z, backbone.output_activation)).astype(np.float32)
                rows = [todo[j] for j in idx[0]] if idx else todo[done:done + len(feats)]
                for i, v in zip(rows, feats):
                    out[i] = v
                    if folder is not None:
                        fileio.save_npy(os.path.join(folder, keys[i] + ".npy"), v)
                done += len(feats)
        for j, reason in getattr(loader, "skipped", {}).items():   # on_bad_file="skip": NaN rows
            if skipped is not None:
                skipped[todo[j]] = reason
    width = next(v.shape[0] for v in out if v is not None)
    return np.stack([v if v is not None else np.full(width, np.nan, np.float32) for v in out])


# ------------------------------------------------------------------------------------------------
# the head
# ------------------------------------------------------------------------------------------------
def train_head(head: Graph, features, labels, val_features=None, val_labels=None, *, epochs: int = 50,
               lr: float = 1e-3, batch_size: int = 64, class_weighted: bool = True, seed: int = 0,
               out_dir=None, export=None, progress: bool = False, log=print,
               checkpoint_extra: dict | None = None) -> TrainState:
    """Train ``head`` on cached features with Adam and weighted BCE from logits, through ``train.fit``.

    Features are served by an ``ArrayLoader`` (shuffled per epoch from ``seed``); with validation
    features the best epoch (validation ROC-AUC) is kept and its Youden threshold saved. Returns
    the ``TrainState`` (``history``: one row per epoch with its loss).
    """
    train = ArrayLoader(features, labels, batch_size, training=True, seed=seed)
    val = ArrayLoader(val_features, val_labels, batch_size, training=False) if val_features is not None else None
    loss = WeightedBCE(*class_weights(train.labels)) if class_weighted else WeightedBCE()
    opt = Adam(head.params(), lr=lr)
    return fit(head, loss, opt, train, val, epochs, out_dir=out_dir, seed=seed, progress=progress, log=log,
               export=export, checkpoint_extra=checkpoint_extra)


# ------------------------------------------------------------------------------------------------
# `minicnn train --backbone` and `minicnn features`
# ------------------------------------------------------------------------------------------------
@dataclass
class TransferResult:
    model_path: str
    images: int
    features: int
    val_roc_auc: float | None
    state: TrainState
    skipped: dict = dataclasses.field(default_factory=dict)   # unreadable images left out: name -> reason


def xrv_backbones() -> list[str]:
    """The registry names of torchxrayvision's models, usable as ``--backbone`` (the name names the weights)."""
    return sorted(n for n, e in registry.WEIGHTS.items() if e.architecture.startswith("xrv-"))


def last_block(backbone: str) -> str | None:
    """The node ``--fine-tune`` unfreezes from for ``backbone`` (a torchxrayvision model: its architecture's)."""
    entry = registry.WEIGHTS.get(backbone)
    if entry is not None and entry.architecture.startswith("xrv-"):
        return LAST_BLOCK.get(entry.architecture[len("xrv-"):])
    return LAST_BLOCK.get(backbone)


def _xrv_backbone(name: str, weights, image_size: int | None, seed: int) -> Graph:
    """torchxrayvision's 1-channel feature extractor (its own preprocessing): the registry file when
    ``weights`` is None, else ``weights`` (a file saved as torchxrayvision saves it, or a minicnn .npz)."""
    entry = registry.WEIGHTS[name]
    if image_size not in (None, entry.image_size):
        raise UsageError(f"backbone {name} takes {entry.image_size} x {entry.image_size} images (its weights were "
                         f"trained so); drop --image-size {image_size}")
    build = registry.ARCHITECTURES[entry.architecture].build
    return build(weights=name if weights is None else weights, include_top=False, pooling="avg", seed=seed)


def load_backbone(name: str, weights, image_size: int | None, seed: int = 0) -> tuple[Graph, Preprocessing]:
    """A frozen pretrained backbone (global average pooling) and the preprocessing its weights need.

    ``name``: densenet121, vgg16, resnet50, inception_v3 (``weights`` a file or registry name, None:
    random), or a torchxrayvision registry name (``xrv-densenet121-all``...; ``weights`` optional)."""
    if name in xrv_backbones():
        model = _xrv_backbone(name, weights, image_size, seed)
        model.freeze()
        return model, Preprocessing.of(model)
    builder = getattr(pretrained, name, None)
    if name not in LAST_BLOCK or not callable(builder):
        raise UsageError(f"unknown backbone {name!r}; choose densenet121, vgg16, resnet50, inception_v3 or one of "
                         f"torchxrayvision's {', '.join(xrv_backbones())}")
    size = image_size or DEFAULT_SIZES.get(name, 224)
    try:
        model = builder(weights=weights, include_top=False, pooling="avg", input_shape=(3, size, size), seed=seed)
    except (WeightFileError, UsageError):
        if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
            registry.check_file_architecture(name, weights)   # another architecture's file: say which
        raise
    model.freeze()
    if model.meta.get("preprocessing") is None:
        raise UsageError(f"backbone {name!r} does not say which preprocessing its weights need")
    return model, Preprocessing.of(model)


def feature_cache_dir() -> str:
    return os.path.join(os.path.dirname(cache_dir()), "features")


def _dataset_features(backbone, dataset, pre, batch_size, extract=None, on_bad_file="fail", skipped=None):
    """Features of ``dataset``'s image files: cached here, or by ``extract(backbone, paths, batch_size)``
    (e.g. ``minicnn.distributed.feature_extractor``: the same numbers, computed on a cluster).
    With ``on_bad_file="skip"`` an unreadable image's row is NaN and ``skipped[name] = reason``."""
    if dataset.paths is None:
        raise UsageError("transfer learning reads image files (a folder or CSV dataset)")
    if extract is not None:
        feats = extract(backbone, list(dataset.paths), batch_size)
        reasons = {}
    else:
        reasons = {}
        feats = extract_features(backbone, dataset.paths, cache=feature_cache_dir(), batch_size=batch_size,
                                 preprocessing=pre, progress=True, on_bad_file=on_bad_file, warn=warn_to_stderr,
                                 skipped=reasons)
    if skipped is not None:
        for i in np.flatnonzero(~np.isfinite(feats).all(axis=1)):
            skipped[dataset.name(int(i))] = reasons.get(int(i), "unreadable image (left out on the cluster)")
    return feats


def _readable(dataset, feats):
    """``(dataset, features)`` without the rows of unreadable images (NaN rows)."""
    keep = np.flatnonzero(np.isfinite(feats).all(axis=1))
    return (dataset, feats) if len(keep) == len(feats) else (dataset.subset(keep), feats[keep])


def dataset_features(data, backbone: str, weights=None, split: str = "train", image_size=None,
                     batch_size: int = 16, seed: int = 0, extract=None):
    """``minicnn features``: ``(features (N, F), dataset)`` of one split, cached (or by ``extract``)."""
    model, pre = load_backbone(backbone, weights, image_size, seed)
    ds = load_dataset(data, split=split if split in available_splits(data) else None)
    return _dataset_features(model, ds, pre, batch_size, extract), ds


def head_epochs(config: TrainConfig) -> int:
    """Epochs of head training: ``--head-epochs``, else 10 per ``--epochs`` (a head on cached features
    is cheap, and needs many more passes than a whole network)."""
    return int(config.head_epochs) if config.head_epochs else max(config.epochs, 1) * 10


def transfer_learn(config: TrainConfig, log=print, extract=None) -> TransferResult:
    """Features of the frozen backbone, a head trained on them, optionally the last block fine-tuned.

    ``extract(backbone, paths, batch_size)``: computes the features instead of the local cached
    extraction (``minicnn train --backbone ... --dask ADDRESS``)."""
    c = config
    backbone, pre = load_backbone(c.backbone, c.weights, c.image_size, c.seed)
    train_ds, val_ds, how = training_splits(c.data, train_split=c.train_split, val_split=c.val_split,
                                       val_from_train=c.val_from_train, test_split=c.test_split,
                                       positive_class=c.positive_class, seed=c.seed, warn=warn_to_stderr)
    for ds in (train_ds, val_ds):
        if ds is not None:
            ds.require_known_labels("training a head")
    h, w = pre.image_size
    log(f"validation: {how}; head: {head_epochs(c)} epochs on cached features"
        + ("" if c.head_epochs else f" (10 x --epochs {c.epochs}; set --head-epochs)"))
    log(f"extracting {c.backbone} features ({h}x{w}, preprocessing {pre.mode!r}; cached in {feature_cache_dir()}) ...")
    skipped = {}
    f_train = _dataset_features(backbone, train_ds, pre, c.batch_size, extract, c.on_bad_file, skipped)
    train_ds, f_train = _readable(train_ds, f_train)
    f_val = None
    if val_ds is not None:
        f_val = _dataset_features(backbone, val_ds, pre, c.batch_size, extract, c.on_bad_file, skipped)
        val_ds, f_val = _readable(val_ds, f_val)
    if skipped:
        log(f"left out {len(skipped)} unreadable image(s) (--on-bad-file skip; listed in {c.out}/bad_files.txt)")
    head = build_head(f_train.shape[1], train_ds.labels.shape[1], seed=c.seed)
    model = combine(backbone, head)
    model.meta = {**backbone.meta, "backbone": c.backbone, "classes": list(train_ds.classes),
                  "outputs": list(train_ds.output_names), "positive_class": train_ds.positive_class,
                  "preprocessing": pre.to_dict(), "threshold": [0.5] * train_ds.labels.shape[1],
                  "threshold_rule": "default-0.5", "class_weighted": bool(c.class_weights)}

    def export(trained_head):       # the best head so far, saved with its backbone as one model
        model.meta.update({k: trained_head.meta[k] for k in ("threshold", "threshold_rule") if k in trained_head.meta})
        return model

    state = train_head(head, f_train, train_ds.labels, f_val, val_ds.labels if val_ds is not None else None,
                       epochs=head_epochs(c), lr=c.lr, seed=c.seed, class_weighted=c.class_weights,
                       out_dir=c.out, export=export, progress=not c.quiet, log=log,
                       checkpoint_extra={"args": dataclasses.asdict(c)})
    path = os.path.join(c.out, "model.npz")
    score = state.best_score
    if c.fine_tune:
        fine_tune(c, load(path), train_ds, val_ds, pre, score, log=log)
    return TransferResult(path, len(train_ds), int(f_train.shape[1]), score, state, skipped)


def fine_tune(config: TrainConfig, model: Graph, train_ds, val_ds, pre: Preprocessing, head_score=None,
              log=print) -> TrainState:
    """Unfreeze the backbone's last block (and the head) and train them with real backward passes."""
    c = config
    first = c.fine_tune_from or last_block(c.backbone)
    names = unfreeze_last(model, first=first)
    common = dict(batch_size=c.batch_size, seed=c.seed)
    train = BatchLoader(train_ds, pre, training=True, augment=Augmenter() if c.augment else None, **common)
    val = BatchLoader(val_ds, pre, training=False, **common) if val_ds is not None else None
    weights = class_weights(train_ds.labels, train_ds.output_names) if c.class_weights else (1.0, 1.0)
    opt = Adam(model.params(), lr=c.lr * 0.1)
    log(f"fine-tuning {len(names)} nodes from {first!r} on for {c.fine_tune} epoch(s) at lr {opt.lr:g}")
    # The head-only model (saved above) stays the best one unless fine-tuning beats its validation AUC.
    start = TrainState(best_score=head_score, best_epoch=0 if head_score is not None else None)
    return fit(model, WeightedBCE(*weights), opt, train, val, epochs=c.fine_tune, out_dir=c.out, seed=c.seed,
               progress=not c.quiet, log=log, resume_state=start, checkpoint_extra={"args": dataclasses.asdict(c)})
