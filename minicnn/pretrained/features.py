"""The model side of transfer learning: a new head, backbone + head as one model, identities.

    head = build_head(features.shape[1], classes=2, hidden=256, dropout=0.2)
    model = combine(backbone, head); model.save("xray.npz")      # minicnn.load -> predict

``model_fingerprint`` (a hash of a model's architecture and every weight) and ``image_key`` (of an
image file's bytes) name the feature cache of ``minicnn.transfer.extract_features``, which also
trains heads (through ``minicnn.train.fit``).
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from ..errors import UsageError
from ..layers.activation import Dropout, ReLU
from ..layers.dense import Dense
from ..layers.pool import GlobalAvgPool2D
from ..model import Graph, Sequential


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


# ------------------------------------------------------------------------------------------------
# head
# ------------------------------------------------------------------------------------------------
def build_head(in_features: int, classes: int, hidden=None, dropout: float = 0.0, seed=0) -> Sequential:
    """Dense layer(s) to logits, ``output_activation='sigmoid'`` (multi-label; ``minicnn.transfer.train_head``).

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
    head.meta["num_classes"] = int(classes)
    return head


# ------------------------------------------------------------------------------------------------
# one model
# ------------------------------------------------------------------------------------------------
def combine(backbone: Graph, head: Graph, pool_name: str = "pool") -> Graph:
    """One Graph: the backbone's nodes, a global average pool when its output is a map, then the head.

    The result shares the layer objects of both (no copy): save it with ``.save(path)`` and
    ``minicnn.load(path).predict(x)`` gives the same as ``head.predict(pooled(backbone(x)))``.
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
