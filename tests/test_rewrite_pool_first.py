"""rewrite.pool_before_pointwise_conv: a 1x1 conv then an unpadded average pool run as pool then conv
(both linear, so the same values with fewer FLOPs); only where exact."""
import numpy as np

from minicnn import layers
from minicnn.model import Graph
from minicnn.pretrained import densenet121
from minicnn.rewrite import pool_before_pointwise_conv, poolable_pairs


def _rel(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def test_densenet_transitions_pool_first_same_outputs():
    m = densenet121(input_shape=(3, 64, 64), seed=0)
    assert poolable_pairs(m) == [(f"features.transition{k}.conv", f"features.transition{k}.pool") for k in (1, 2, 3)]
    g = pool_before_pointwise_conv(m)
    assert g.meta["pooled_first"] == [f"features.transition{k}.conv" for k in (1, 2, 3)]
    names = list(g.nodes)
    assert names.index("features.transition1.pool") < names.index("features.transition1.conv")
    assert g.nodes["features.transition1.pool"].inputs == m.nodes["features.transition1.conv"].inputs
    assert sorted(g.state_dict()) == sorted(m.state_dict())                   # the same weight names
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    assert _rel(g.predict(x, logits=True), m.predict(x, logits=True)) < 1e-5
    # new weights loaded into both by name (e.g. after training the original): still equal
    rng = np.random.default_rng(1)
    sd = {k: (v * rng.uniform(0.5, 1.5, v.shape)).astype(v.dtype) for k, v in m.state_dict().items()}
    m.load_state_dict(sd)
    g.load_state_dict(sd)
    assert _rel(g.predict(x, logits=True), m.predict(x, logits=True)) < 1e-5


def test_bias_groups_odd_sizes_and_the_output_node():
    g = Graph(input_shape=(4, 9, 7))
    g.add("conv", layers.Conv2D(4, 6, 1, groups=2, bias=True, seed=0))
    g.add("pool", layers.AvgPool2D(2))                       # 9x7 -> 4x3 (floors): still exact
    g.params()["conv.b"][:] = np.arange(6, dtype=np.float32)
    r = pool_before_pointwise_conv(g)
    assert r.output_name == "conv" and list(r.nodes) == ["pool", "conv"]
    x = np.random.default_rng(2).standard_normal((3, 4, 9, 7))
    assert _rel(r.predict(x), g.predict(x)) < 1e-12                          # float64 in, float64 out
    assert r.predict(x).shape == (3, 6, 4, 3)


def test_left_alone_where_it_would_not_be_exact_or_not_apply():
    g = Graph(input_shape=(4, 8, 8))
    g.add("conv", layers.Conv2D(4, 4, 1, seed=0))
    g.add("padded", layers.AvgPool2D(2, padding=1))          # padding: conv(0) = bias, not 0
    g.add("conv3", layers.Conv2D(4, 4, 3, padding=1, seed=1))
    g.add("pool3", layers.AvgPool2D(2))                      # a 3x3 conv does not commute with pooling
    g.add("conv1", layers.Conv2D(4, 4, 1, seed=2))
    g.add("pool", layers.AvgPool2D(2))
    g.add("sum", layers.Add(), inputs=["pool", "conv1"])     # conv1 has a second consumer
    assert poolable_pairs(g) == []
    r = pool_before_pointwise_conv(g)
    assert [(n.name, n.inputs) for n in r.nodes.values()] == [(n.name, n.inputs) for n in g.nodes.values()]
