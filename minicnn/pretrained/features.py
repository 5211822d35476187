"""Transfer learning on a frozen backbone: cached features, a new head, one saved model.

    feats = extract_features(backbone, paths, cache="features/", preprocessing="torch")   # (N, F)
    head = build_head(feats.shape[1], classes=2, hidden=256, dropout=0.2)
    fit_head(head, feats, labels, epochs=30)
    model = combine(backbone, head); model.save("xray.npz")      # minicnn.model.load -> predict

The feature cache is one ``.npy`` per image in a folder named by the *model* (a hash of its
architecture and every weight) and the *preprocessing*; each file is named by the image's content
hash (SHA-256 of the file's bytes, or of the array's bytes and shape). A second run over the same
images with the same model and preprocessing runs no forward pass at all.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile

import numpy as np

from ..errors import UsageError
from ..layers.activation import Dropout, ReLU
from ..layers.dense import Dense
from ..layers.pool import GlobalAvgPool2D
from ..model import Graph, Sequential
from .preprocess import preprocess as _preprocess

CACHE_VERSION = 1


# ------------------------------------------------------------------------------------------------
# identities
# ------------------------------------------------------------------------------------------------
def model_fingerprint(model: Graph) -> str:
    """SHA-256 of the architecture (JSON, without ``meta``) and every param and buffer (names, shapes, bytes)."""
    h = hashlib.sha256()
    config = model.to_config()
    config.pop("meta", None)
    for node in config["nodes"]:
        node.pop("trainable", None)           # freezing changes nothing the forward pass computes
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, a in sorted(model.state_dict().items()):
        a = np.ascontiguousarray(a)
        h.update(f"{name}|{a.dtype.str}|{a.shape}".encode())
        h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def image_key(item) -> str:
    """SHA-256 of an image file's bytes, or of an array's dtype, shape and bytes."""
    h = hashlib.sha256()
    if isinstance(item, (str, os.PathLike)):
        with open(item, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()
    a = np.ascontiguousarray(item)
    h.update(f"{a.dtype.str}|{a.shape}|".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _atomic_save_npy(path: str, a: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npy", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, a, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ------------------------------------------------------------------------------------------------
# features
# ------------------------------------------------------------------------------------------------
def _pooled(y: np.ndarray) -> np.ndarray:
    return y.mean(axis=(2, 3)) if y.ndim == 4 else y.reshape(len(y), -1)      # (N, C, H, W) -> (N, C)


def extract_features(backbone: Graph, images, cache=None, batch_size: int = 16, preprocessing=None,
                     size=None, color: str = "rgb", progress: bool = False) -> np.ndarray:
    """Pooled features ``(N, F)`` of a frozen backbone, computed in batches and cached on disk.

    images         a list of image file paths, or an array: NCHW float already preprocessed when
                   ``preprocessing`` is None, else NHWC / HWC pixels in [0, 255].
    cache          a folder (created if needed) or None (no cache).
    preprocessing  a mode / weights name for :func:`minicnn.pretrained.preprocess` (default for
                   paths: ``backbone.meta['preprocessing']``).
    size           ``(H, W)`` files are resized to (default: the backbone's input size); color 'rgb'
                   or 'grayscale' (grayscale is repeated to 3 channels by ``preprocess``).

    A 4-D backbone output is globally average-pooled. Inference only (no caches, ``training=False``).
    """
    is_paths = not isinstance(images, np.ndarray)
    items = list(images) if is_paths else images
    if is_paths and preprocessing is None:
        preprocessing = backbone.meta.get("preprocessing")
        if preprocessing is None:
            raise UsageError("give preprocessing=... for image files (the backbone's meta names none)")
    if size is None and is_paths and backbone.input_shape is not None:
        size = tuple(backbone.input_shape[1:])
    prep = {"mode": preprocessing, "size": list(size) if size is not None else None,
            "color": color if is_paths else None, "version": CACHE_VERSION}
    folder = None
    if cache is not None:
        tag = hashlib.sha256((model_fingerprint(backbone) + json.dumps(prep, sort_keys=True)).encode()).hexdigest()
        folder = os.path.join(os.fspath(cache), tag[:24])
        os.makedirs(folder, exist_ok=True)
        info = os.path.join(folder, "info.json")
        if not os.path.exists(info):
            with open(info, "w") as f:
                json.dump({"model": backbone.name, "meta": backbone.meta, "preprocessing": prep}, f,
                          default=str, indent=1)

    n = len(items)
    keys = [image_key(it) for it in items] if folder is not None else [None] * n
    out: list = [None] * n
    todo = []
    for i, k in enumerate(keys):
        f = os.path.join(folder, k + ".npy") if folder is not None else None
        if f is not None and os.path.exists(f):
            out[i] = np.load(f, allow_pickle=False)
        else:
            todo.append(i)
    from tqdm.auto import tqdm
    for start in tqdm(range(0, len(todo), batch_size), disable=not progress, desc="features"):
        idx = todo[start:start + batch_size]
        x = _load_batch(items, idx, is_paths, preprocessing, size, color)
        feats = _pooled(backbone.predict(x, batch_size=len(idx))).astype(np.float32)
        for i, v in zip(idx, feats):
            out[i] = v
            if folder is not None:
                _atomic_save_npy(os.path.join(folder, keys[i] + ".npy"), v)
    if n == 0:
        raise UsageError("extract_features got no images")
    return np.stack(out)


def _load_batch(items, idx, is_paths, preprocessing, size, color) -> np.ndarray:
    if is_paths:
        from ..data.images import load_image
        pixels = np.stack([load_image(items[i], size=size, color=color) for i in idx])
        return _preprocess(pixels, preprocessing)
    x = np.asarray(items[idx])
    if preprocessing is not None:
        return _preprocess(x, preprocessing)
    if x.ndim != 4:
        raise UsageError(f"without preprocessing, images must be NCHW float arrays, got shape {x.shape}")
    return x.astype(np.float32, copy=False)


# ------------------------------------------------------------------------------------------------
# head
# ------------------------------------------------------------------------------------------------
def build_head(in_features: int, classes: int, hidden=None, dropout: float = 0.0, seed=0) -> Sequential:
    """Dense layer(s) to logits, ``output_activation='sigmoid'`` (multi-label; train with WeightedBCE).

    ``hidden``: None (one Dense), an int or a list of ints (Dense + ReLU each). ``dropout`` before
    every Dense. Nodes are named ``head.*`` so the head can join a backbone (``combine``).
    """
    rng = np.random.default_rng(seed)
    sizes = [] if hidden is None else ([int(hidden)] if np.isscalar(hidden) else [int(h) for h in hidden])
    head = Sequential(input_shape=(int(in_features),), output_activation="sigmoid", name="head")
    width = int(in_features)
    for k, h in enumerate(sizes, start=1):
        if dropout > 0:
            head.add(f"head.dropout{k}", Dropout(dropout, seed=int(rng.integers(2**31))))
        head.add(f"head.fc{k}", Dense(width, h, init="he", seed=rng))
        head.add(f"head.relu{k}", ReLU())
        width = h
    if dropout > 0:
        head.add("head.dropout", Dropout(dropout, seed=int(rng.integers(2**31))))
    head.add("head.logits", Dense(width, int(classes), seed=rng))
    head.meta["classes"] = int(classes)
    return head


def fit_head(head: Graph, features, labels, epochs: int = 50, lr: float = 1e-3, batch_size: int = 64,
             class_weighted: bool = True, seed=0) -> list[float]:
    """Train ``head`` on cached features with Adam and weighted BCE from logits; returns epoch losses."""
    from ..losses import WeightedBCE, class_weights
    from ..optim import Adam
    x = np.asarray(features, np.float32)
    y = np.asarray(labels, np.float32)
    y = y[:, None] if y.ndim == 1 else y
    loss = WeightedBCE(*class_weights(y)) if class_weighted else WeightedBCE()
    opt = Adam(head.params(), lr=lr)
    rng = np.random.default_rng(seed)
    history = []
    for _ in range(epochs):
        order = rng.permutation(len(x))
        total = 0.0
        for s in range(0, len(x), batch_size):
            b = order[s:s + batch_size]
            z = head.forward(x[b], training=True)
            total += loss.forward(z, y[b]) * len(b)
            head.backward(loss.backward(), input_grad=False)
            opt.step(head.grads())
        history.append(total / len(x))
        if not np.isfinite(history[-1]):
            raise FloatingPointError(f"head training diverged (loss {history[-1]}); lower lr={lr}")
    return history


# ------------------------------------------------------------------------------------------------
# one model
# ------------------------------------------------------------------------------------------------
def combine(backbone: Graph, head: Graph, pool_name: str = "pool") -> Graph:
    """One Graph: the backbone's nodes, a global average pool when its output is a map, then the head.

    The result shares the layer objects of both (no copy): save it with ``.save(path)`` and
    ``minicnn.model.load(path).predict(x)`` gives the same as ``head.predict(pooled(backbone(x)))``.
    """
    shapes = backbone.output_shapes()
    clash = set(backbone.nodes) & set(head.nodes)
    if clash:
        raise UsageError(f"backbone and head share node names {sorted(clash)[:5]}; rename the head's nodes")
    g = Graph(inputs=list(backbone.input_names), input_shape=backbone.input_shape,
              output_activation=head.output_activation, name=f"{backbone.name or 'backbone'}+{head.name or 'head'}")
    for n in backbone.nodes.values():
        g.add(n.name, n.layer, inputs=list(n.inputs))
    last = backbone.output_name
    if len(shapes[last]) == 4:
        if pool_name in backbone.nodes:
            raise UsageError(f"node name {pool_name!r} is taken; pass pool_name=...")
        last = g.add(pool_name, GlobalAvgPool2D(), inputs=last)
    head_inputs = set(head.input_names)
    for n in head.nodes.values():
        g.add(n.name, n.layer, inputs=[last if i in head_inputs else i for i in n.inputs])
    g.meta = {**backbone.meta, **head.meta, "backbone": backbone.meta.get("architecture", backbone.name)}
    return g


def unfreeze_last(model: Graph, first: str = "features.denseblock4") -> list[str]:
    """Freeze every node, then unfreeze the nodes from the first one named ``first...`` to the end.

    For fine-tuning the last block (DenseNet121: ``features.denseblock4`` and ``features.norm5``)
    with real backward passes. Returns the unfrozen node names.
    """
    names = list(model.nodes)
    start = next((k for k, n in enumerate(names) if n == first or n.startswith(first + ".")), None)
    if start is None:
        raise UsageError(f"no node named {first!r} or {first}.* in the model")
    model.freeze()
    for n in names[start:]:
        model.nodes[n].layer.unfreeze()
    return [n for n in names[start:] if model.nodes[n].layer.params]
