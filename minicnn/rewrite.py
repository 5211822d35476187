"""Graph rewrites for inference that keep a network's outputs (within float32 rounding).

``fold_batchnorm(model)``
    An inference-mode batch-norm right after a conv is an affine map per output channel,
    ``y = a * conv(x) + (beta - mean * a)`` with ``a = gamma / sqrt(var + eps)``, so it can live in
    the conv's own weights::

        W'[f] = a[f] * W[f]          b'[f] = a[f] * (b[f] - mean[f]) + beta[f]     (b = 0 without bias)

    Folded only where the BN's single input is a conv that feeds nothing else (DenseNet:
    conv0 -> norm0 and each dense layer's conv1 -> norm2). Computed in float64, stored float32.
    Training the folded model is not the same as training the original (batch statistics are gone).

``use_concat_buffers(model)``
    A dense block concatenates its growing feature map with 32 new channels at every layer; plain
    ``np.concatenate`` copies everything written so far each time (quadratic). ``BufferedConcat``
    allocates the block's final ``(N, C_total, H, W)`` buffer once, writes each layer's new
    channels into their slot, and returns the view ``buf[:, :c]``: every value is written once.

``pool_before_pointwise_conv(model)``
    A 1x1 conv (stride 1, no padding) followed by an unpadded average pool is two linear maps that
    commute: the conv mixes channels at each pixel, the pool averages pixels within each channel,
    and a bias survives averaging unchanged. Pooling first is the same result with fewer FLOPs (a
    2x2 pool: 4x fewer). DenseNet's transitions are norm -> relu -> conv 1x1 -> avg pool 2x2, so
    about 0.6 of its 5.7 GFLOP per image shrink to 0.15. Rewritten only where the pool is the conv's
    only consumer; the pool node now reads the conv's input, the conv reads the pool, and whatever
    read the pool reads the conv.

Each returns a new Graph; the input model is not changed. ``minicnn.pretrained.fast_densenet``
applies both to a DenseNet.
"""
from __future__ import annotations

import copy

import numpy as np

from .errors import UsageError
from .layers.norm import BatchNorm2D
from .layers.pool import AvgPool2D
from .layers.shape import BufferedConcat, Concat
from .model import Graph


def _copy_graph_shell(model: Graph) -> Graph:
    g = Graph(inputs=list(model.input_names), input_shape=model.input_shape,
              output_activation=model.output_activation, name=model.name)
    g.meta = copy.deepcopy(model.meta)
    return g


def _consumers(model: Graph) -> dict[str, list[str]]:
    out = {name: [] for name in list(model.input_names) + list(model.nodes)}
    for n in model.nodes.values():
        for i in n.inputs:
            out[i].append(n.name)
    return out


def _is_conv(layer) -> bool:
    return "W" in layer.params and layer.params["W"].ndim == 4 and hasattr(layer, "get_config")


def foldable_pairs(model: Graph) -> list[tuple[str, str]]:
    """``(conv, bn)`` node pairs where the BN's only input is a conv whose only consumer is the BN."""
    consumers = _consumers(model)
    pairs = []
    for n in model.nodes.values():
        if isinstance(n.layer, BatchNorm2D) and len(n.inputs) == 1 and n.inputs[0] in model.nodes:
            src = model.nodes[n.inputs[0]]
            if _is_conv(src.layer) and consumers[src.name] == [n.name] and src.name != model.output_name:
                pairs.append((src.name, n.name))
    return pairs


def fold_batchnorm(model: Graph) -> Graph:
    """A new Graph with every foldable batch-norm merged into the conv before it (see module doc).

    The folded conv keeps its node name and gains a bias; the BN node disappears and its consumers
    read the conv. ``meta['folded']`` lists the BN nodes removed.
    """
    pairs = dict(foldable_pairs(model))            # conv -> bn
    bn_to_conv = {bn: conv for conv, bn in pairs.items()}
    g = _copy_graph_shell(model)
    for n in model.nodes.values():
        if n.name in bn_to_conv:
            continue
        layer = copy.deepcopy(n.layer)
        if n.name in pairs:
            layer = _folded_conv(n.layer, model.nodes[pairs[n.name]].layer)
        g.add(n.name, layer, inputs=[bn_to_conv.get(i, i) for i in n.inputs])
    g.output_name = bn_to_conv.get(model.output_name, model.output_name)
    g.meta["folded"] = sorted(bn_to_conv)
    return g


def _folded_conv(conv, bn: BatchNorm2D):
    cfg = dict(conv.get_config())
    cfg["bias"] = True
    new = type(conv).from_config(cfg)
    W = conv.params["W"].astype(np.float64)
    F = W.shape[0]
    gamma = bn.params["gamma"].astype(np.float64) if "gamma" in bn.params else np.ones(F)
    beta = bn.params["beta"].astype(np.float64) if "beta" in bn.params else np.zeros(F)
    mean = bn.buffers["running_mean"].astype(np.float64)
    a = gamma / np.sqrt(bn.buffers["running_var"].astype(np.float64) + bn.eps)
    b = conv.params["b"].astype(np.float64) if "b" in conv.params else np.zeros(F)
    new.params["W"] = (W * a[:, None, None, None]).astype(conv.params["W"].dtype)
    new.params["b"] = (a * (b - mean) + beta).astype(conv.params["W"].dtype)
    if not conv.trainable:
        new.freeze()
    return new


def use_concat_buffers(model: Graph) -> Graph:
    """A new Graph whose chains of channel Concats ``c_k = concat(c_{k-1}, new_k)`` share one buffer each."""
    if model.input_shape is None:
        raise UsageError("use_concat_buffers needs model.input_shape to size the buffers")
    shapes = model.output_shapes()
    concat = {name for name, n in model.nodes.items()
              if type(n.layer) is Concat and n.layer.axis in (1, -3) and len(n.inputs) == 2}
    # c continues p's buffer when p = c's first input is a concat read by no other concat
    consumers = _consumers(model)
    nxt = {}
    for c in concat:
        p = model.nodes[c].inputs[0]
        if p in concat and [u for u in consumers[p] if u in concat] == [c]:
            nxt[p] = c
    continues = set(nxt.values())
    capacity = {}
    for c in concat:
        end = c
        while end in nxt:
            end = nxt[end]
        capacity[c] = shapes[end][1]
    g = _copy_graph_shell(model)
    for n in model.nodes.values():
        layer = (BufferedConcat(capacity[n.name], continues=n.name in continues) if n.name in concat
                 else copy.deepcopy(n.layer))
        g.add(n.name, layer, inputs=list(n.inputs))
    g.output_name = model.output_name
    return g



def _is_pointwise_conv(layer) -> bool:
    """A 1x1, stride-1, dilation-1, unpadded conv (any groups): it acts on each pixel alone."""
    if not _is_conv(layer) or type(layer).__name__ == "SeparableConv2D":
        return False
    if tuple(layer.kernel_size) != (1, 1) or tuple(layer.stride) != (1, 1):
        return False
    return isinstance(layer.padding, str) or not any(layer._pads((1, 1)))


def _is_unpadded_avg_pool(layer) -> bool:
    if type(layer) is not AvgPool2D:
        return False
    if isinstance(layer.padding, str):
        return layer.padding.lower() == "valid"
    pad = layer.padding if isinstance(layer.padding, (list, tuple)) else [layer.padding]
    return not any(pad)


def poolable_pairs(model: Graph) -> list[tuple[str, str]]:
    """``(conv, pool)`` node pairs where a pointwise conv's only consumer is an unpadded average pool."""
    consumers = _consumers(model)
    pairs = []
    for n in model.nodes.values():
        if _is_unpadded_avg_pool(n.layer) and len(n.inputs) == 1 and n.inputs[0] in model.nodes:
            src = model.nodes[n.inputs[0]]
            if _is_pointwise_conv(src.layer) and consumers[src.name] == [n.name]:
                pairs.append((src.name, n.name))
    return pairs


def pool_before_pointwise_conv(model: Graph) -> Graph:
    """A new Graph where each ``conv 1x1 -> avg pool`` pair runs as ``avg pool -> conv 1x1`` (module doc).

    Node names are kept; ``meta['pooled_first']`` lists the conv nodes moved after their pool.
    """
    pairs = dict(poolable_pairs(model))            # conv -> pool
    pool_to_conv = {pool: conv for conv, pool in pairs.items()}
    g = _copy_graph_shell(model)
    for n in model.nodes.values():
        if n.name in pairs:                        # the conv: added right after its pool
            continue
        if n.name in pool_to_conv:
            conv = model.nodes[pool_to_conv[n.name]]
            g.add(n.name, copy.deepcopy(n.layer), inputs=list(conv.inputs))
            g.add(conv.name, copy.deepcopy(conv.layer), inputs=[n.name])
            continue
        g.add(n.name, copy.deepcopy(n.layer), inputs=[pool_to_conv.get(i, i) for i in n.inputs])
    g.output_name = pool_to_conv.get(model.output_name, model.output_name)
    g.meta["pooled_first"] = sorted(pairs)
    return g
