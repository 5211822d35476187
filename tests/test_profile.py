"""minicnn.profile / `minicnn profile`: per-node times measured inside Graph.predict, FLOPs from the
layer geometry, shares; the CLI table. Timings are never asserted, only their bookkeeping."""
import json

import numpy as np
import pytest

import minicnn
from minicnn import layers
from minicnn.cli import main
from minicnn.model import Graph
from minicnn.profiling import layer_flops, layer_kind
from minicnn.small_cnn import conv_net


def _branchy():
    g = Graph(input_shape=(3, 12, 12), name="branchy")
    g.add("conv", layers.Conv2D(3, 8, 3, padding=1, seed=0))
    g.add("bn", layers.BatchNorm2D(8))
    g.add("relu", layers.ReLU())
    g.add("grouped", layers.Conv2D(8, 6, (3, 1), stride=2, padding=(1, 0), groups=2, seed=1))
    g.add("side", layers.Conv2D(8, 6, 1, stride=2, seed=2), inputs="relu")
    g.add("sum", layers.Add(), inputs=["grouped", "side"])
    g.add("cat", layers.Concat(), inputs=["sum", "side"])
    g.add("pool", layers.MaxPool2D(2))
    g.add("gap", layers.GlobalAvgPool2D())
    g.add("fc", layers.Dense(12, 5, seed=3))
    return g


@pytest.fixture(scope="module")
def branchy_profile():
    g = _branchy()
    x = np.random.default_rng(0).standard_normal((4, 3, 12, 12)).astype(np.float32)
    return g, x, minicnn.profile(g, x, repeats=2, training=True)


def test_nodes_are_the_graphs_nodes_in_order_with_their_shapes(branchy_profile):
    g, x, p = branchy_profile
    assert [n.node for n in p.nodes] == list(g.nodes)
    shapes = g.output_shapes()
    for n in p.nodes:
        assert n.out_shape == (4,) + tuple(shapes[n.node][1:])
        assert n.seconds > 0 and n.train_forward_seconds > 0
    assert p.nodes[5].in_shapes == [(4, 6, 6, 6), (4, 6, 6, 6)]          # the Add saw both inputs


def test_conv_flops_follow_the_formula(branchy_profile):
    _, _, p = branchy_profile
    by = {n.node: n for n in p.nodes}
    assert by["conv"].flops == 2 * 4 * 12 * 12 * 8 * 3 * 3 * 3               # 2 N OH OW F C/G KH KW
    assert by["grouped"].flops == 2 * 4 * 6 * 6 * 6 * (8 // 2) * 3 * 1
    assert by["side"].flops == 2 * 4 * 6 * 6 * 6 * 8
    assert by["fc"].flops == 2 * 4 * 12 * 5
    assert by["bn"].flops == 2 * 4 * 8 * 12 * 12 and by["relu"].flops == 4 * 8 * 12 * 12
    assert by["sum"].flops == 4 * 6 * 6 * 6 and by["cat"].flops == 0
    assert by["pool"].flops == 4 * 12 * 3 * 3 * 2 * 2
    assert p.flops == sum(n.flops for n in p.nodes)
    # backward: weights once for dW and once for dx; the lowest conv returns no dx
    assert by["conv"].backward_flops == by["conv"].flops
    assert by["grouped"].backward_flops == 2 * by["grouped"].flops


def test_separable_and_depthwise_flops():
    sep = layers.SeparableConv2D(4, 6, 3, padding=1, depth_multiplier=2, seed=0)
    assert layer_flops(sep, [(2, 4, 5, 5)], (2, 6, 5, 5)) == 2 * 2 * 5 * 5 * (8 * 9 + 6 * 8)
    dw = layers.DepthwiseConv2D(4, 3, stride=2, padding=1, seed=0)
    assert layer_flops(dw, [(2, 4, 6, 6)], (2, 4, 3, 3)) == 2 * 2 * 3 * 3 * 4 * 1 * 9
    assert layer_kind(dw) == "DepthwiseConv2D 3x3 s2" and layer_kind(layers.ReLU()) == "ReLU"


def test_shares_sum_to_one_per_node_and_per_type(branchy_profile):
    _, _, p = branchy_profile
    assert sum(n.share for n in p.nodes) == pytest.approx(1.0)
    assert sum(n.train_share for n in p.nodes) == pytest.approx(1.0)
    types = p.by_type()
    assert sum(t.share for t in types) == pytest.approx(1.0)
    assert sum(t.count for t in types) == len(p.nodes)
    assert {t.kind for t in types} == {"Conv2D 3x3", "Conv2D 3x1 s2", "Conv2D 1x1 s2", "BatchNorm2D", "ReLU", "Add",
                                       "Concat", "MaxPool2D 2x2 s2", "GlobalAvgPool2D", "Dense"}
    assert [t.seconds for t in types] == sorted((t.seconds for t in types), reverse=True)
    assert p.wall_seconds > 0 and p.train_wall_seconds > 0


def test_training_profile_puts_the_state_back(branchy_profile):
    g, x, _ = branchy_profile
    before = {k: v.copy() for k, v in g.state_dict().items()}
    minicnn.profile(g, x, repeats=1, warmup=0, training=True)
    after = g.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)     # running statistics restored
    g.forward(x, training=True)                                         # what the profile undid
    assert not np.array_equal(g.state_dict()["bn.running_mean"], before["bn.running_mean"])


def test_predict_timer_sees_every_node_once_and_outputs_are_unchanged():
    g = _branchy()
    x = np.random.default_rng(1).standard_normal((3, 3, 12, 12)).astype(np.float32)
    seen = []
    y = g.predict(x, batch_size=3, timer=lambda node, a, b, s: seen.append((node.name, np.shape(b), s)))
    assert [s[0] for s in seen] == list(g.nodes) and all(s[2] >= 0 for s in seen)
    np.testing.assert_array_equal(y, g.predict(x, batch_size=3))


def test_the_table_names_types_and_nodes(branchy_profile):
    _, _, p = branchy_profile
    text = p.table(top=3)
    assert "layer type" in text and "Conv2D 3x3" in text and "GFLOP/s" in text and "train ms" in text
    assert "slowest nodes (3 of 10" in text
    d = json.loads(json.dumps(p.to_dict()))
    assert [n["node"] for n in d["nodes"]] == [n.node for n in p.nodes] and d["flops"] == p.flops


def test_cli_prints_the_profile_table(tmp_path, capsys):
    model = tmp_path / "m.npz"
    conv_net("tiny", image_size=16).save(model)
    out = tmp_path / "p.json"
    assert main(["profile", str(model), "--batch", "2", "--repeats", "1", "--top", "0", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "layer type" in text and "Conv2D 3x3" in text and "block1.conv" in text and "input (2, 1, 16, 16)" in text
    assert json.loads(out.read_text())["input_shape"] == [2, 1, 16, 16]


def test_cli_profiles_an_architecture_name_with_random_weights(capsys):
    assert main(["profile", "tiny", "--image-size", "16", "--repeats", "1", "--training"]) == 0
    text = capsys.readouterr().out
    assert "random weights" in text and "training forward + backward" in text


def test_cli_refuses_an_unknown_model(capsys):
    assert main(["profile", "no-such-model"]) == 1
    assert "neither a model file nor a known name" in capsys.readouterr().err
