"""Transfer learning from the command line: ``minicnn train DATA --backbone NAME --weights FILE``.

Kermany et al.'s protocol: a frozen pretrained backbone turns every image into a pooled feature
vector once (cached on disk by image content, model and preprocessing, so a second run costs
nothing); a new head (dense to one logit per output, sigmoid, weighted BCE from logits) is trained
on those features; the threshold is chosen on the validation split (Youden's J); the backbone and
the head are saved together as one model, which ``predict``, ``evaluate`` and ``explain`` use like
any other.
"""
from __future__ import annotations

import json
import os

import numpy as np

from ..errors import UsageError
from .. import metrics
from ..model import Graph

DEFAULT_SIZES = {"inception_v3": 299}
# The last block of each backbone: what ``--fine-tune`` unfreezes (with everything after it).
LAST_BLOCK = {"densenet121": "features.denseblock4", "resnet50": "layer4", "vgg16": "features.24",
              "inception_v3": "Mixed_7c"}


def _backbone(name: str, weights, image_size: int | None, seed: int = 0) -> tuple[Graph, str, int]:
    from .. import pretrained
    builder = getattr(pretrained, name, None)
    if builder is None or not callable(builder):
        raise UsageError(f"unknown backbone {name!r}; choose densenet121, vgg16, resnet50 or inception_v3")
    size = image_size or DEFAULT_SIZES.get(name, 224)
    model = builder(weights=weights, include_top=False, pooling="avg", input_shape=(3, size, size), seed=seed)
    model.freeze()
    mode = model.meta.get("preprocessing")
    if not isinstance(mode, str):
        raise UsageError(f"backbone {name!r} does not say which preprocessing its weights need")
    return model, mode, size


def _features(backbone, dataset, mode, size, cache, batch_size):
    from .features import extract_features
    if dataset.paths is None:
        raise UsageError("transfer learning reads image files (a folder or CSV dataset)")
    return extract_features(backbone, dataset.paths, cache=cache, batch_size=batch_size, preprocessing=mode,
                            size=(size, size), color="rgb", progress=True)


def _cache_dir(a) -> str:
    from .registry import cache_dir
    return os.path.join(os.path.dirname(cache_dir()), "features")


def train_head_cli(a):
    from ..data.splits import training_splits, warn_to_stderr
    from .features import build_head, combine, fit_head

    if a.weights is None:
        print("WARNING: --weights not given: the backbone has random weights, so its features are not pretrained")
    backbone, mode, size = _backbone(a.backbone, a.weights, a.image_size, a.seed)
    train_ds, val_ds = training_splits(a.data, train_split=a.train_split, val_split=a.val_split,
                                       val_from_train=a.val_from_train, test_split=a.test_split,
                                       positive_class=a.positive_class, seed=a.seed, warn=warn_to_stderr)
    cache = _cache_dir(a)
    print(f"extracting {a.backbone} features ({size}x{size}, preprocessing {mode!r}; cached in {cache}) ...")
    f_train = _features(backbone, train_ds, mode, size, cache, a.batch_size)
    f_val = _features(backbone, val_ds, mode, size, cache, a.batch_size) if val_ds is not None else None
    head = build_head(f_train.shape[1], train_ds.labels.shape[1], seed=a.seed)
    losses = fit_head(head, f_train, train_ds.labels, epochs=max(a.epochs, 1) * 10, lr=a.lr, seed=a.seed,
                      class_weighted=a.class_weights)
    model = combine(backbone, head)
    threshold, rule, score = [0.5] * train_ds.labels.shape[1], "default-0.5", None
    if f_val is not None:
        p_val = head.predict(f_val)
        y_val = val_ds.labels
        threshold, rule = metrics.youden_thresholds(y_val, p_val), "youden-validation"
        score = metrics.macro_roc_auc(y_val, p_val)
        score = None if np.isnan(score) else score
    model.meta = {**backbone.meta, "backbone": a.backbone, "classes": list(train_ds.classes),
                  "outputs": list(train_ds.output_names), "positive_class": train_ds.positive_class,
                  "preprocessing": {"image_size": [size, size], "channels": 3, "interpolation": "bilinear",
                                    "fit": "stretch", "normalizer": {"mode": mode}},
                  "threshold": threshold, "threshold_rule": rule}
    os.makedirs(a.out, exist_ok=True)
    model.save(os.path.join(a.out, "model.npz"))
    history = [{"epoch": i + 1, "loss": float(v)} for i, v in enumerate(losses)]
    tmp = os.path.join(a.out, ".head_history.json.tmp")
    with open(tmp, "w") as f:
        json.dump(history, f, indent=1)
    os.replace(tmp, os.path.join(a.out, "head_history.json"))
    if a.fine_tune:
        _fine_tune(a, model, train_ds, val_ds, mode, size, score)
    auc = f"; validation ROC-AUC {score:.4f}" if score is not None else ""
    print(f"head trained on {len(train_ds)} images ({f_train.shape[1]} features){auc}; "
          f"backbone + head saved to {os.path.join(a.out, 'model.npz')}")


def features_cli(a):
    from ..data.datasets import available_splits, load_dataset
    from ..train import set_threads
    set_threads(a.threads)
    backbone, mode, size = _backbone(a.backbone, a.weights, a.image_size, a.seed)
    splits = available_splits(a.data)
    ds = load_dataset(a.data, split=a.split if a.split in splits else None)
    feats = _features(backbone, ds, mode, size, _cache_dir(a), a.batch_size)
    print(f"{len(ds)} images -> features {feats.shape} (cached)")
    if a.out:
        from ..model import atomic_savez
        atomic_savez(a.out, {"features": feats, "labels": ds.labels, "paths": np.array(ds.paths),
                             "classes": np.array(ds.classes)})
        print(f"wrote {a.out}")


def _fine_tune(a, model, train_ds, val_ds, mode, size, head_score=None):
    """Unfreeze the backbone's last block (and the head) and train them with real backward passes."""
    from ..data.augment import Augmenter
    from ..data.loader import BatchLoader
    from ..data.normalize import Normalizer
    from ..losses import WeightedBCE, class_weights
    from ..optim import Adam
    from ..train import TrainState, fit
    from .features import unfreeze_last
    first = a.fine_tune_from or LAST_BLOCK.get(a.backbone)
    names = unfreeze_last(model, first=first)
    common = dict(batch_size=a.batch_size, image_size=size, channels=3, normalizer=Normalizer(mode), seed=a.seed)
    train = BatchLoader(train_ds, training=True, augment=Augmenter() if a.augment else None, **common)
    val = BatchLoader(val_ds, training=False, **common) if val_ds is not None else None
    weights = class_weights(train_ds.labels, train_ds.output_names) if a.class_weights else (1.0, 1.0)
    opt = Adam(model.params(), lr=a.lr * 0.1)
    print(f"fine-tuning {len(names)} nodes from {first!r} on for {a.fine_tune} epoch(s) at lr {opt.lr:g}")
    # The head-only model (saved above) stays the best one unless fine-tuning beats its validation AUC.
    start = TrainState(best_score=head_score, best_epoch=0 if head_score is not None else None)
    args = {k: v for k, v in vars(a).items() if k != "func"}
    fit(model, WeightedBCE(*weights), opt, train, val, epochs=a.fine_tune, out_dir=a.out, seed=a.seed,
        progress=not a.quiet, resume_state=start, checkpoint_extra={"args": args})
