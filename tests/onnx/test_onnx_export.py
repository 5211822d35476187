"""Graph.to_onnx / minicnn export: onnx.checker passes, onnxruntime reproduces minicnn, the batch
is symbolic, the output activation is in the graph, meta round-trips through load_onnx, a layer
without an ONNX equivalent is an error naming it."""
import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import minicnn  # noqa: E402
from minicnn import layers as L, losses, optim, small_cnn  # noqa: E402
from minicnn.errors import OnnxImportError  # noqa: E402
from minicnn.model import Graph, Sequential  # noqa: E402


def _ort(path, x):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny CNN trained by minicnn.train.fit on synthetic X-rays, saved as a model .npz."""
    from minicnn.data.datasets import load_dataset
    from minicnn.data.loader import BatchLoader, fit_preprocessing
    from minicnn.data.preprocessing import Preprocessing
    from minicnn.data.synthetic import make_synthetic
    from minicnn.train import fit
    root = tmp_path_factory.mktemp("synth")
    make_synthetic(root, n=96, size=24, seed=3)
    tr, va = load_dataset(root, split="train"), load_dataset(root, split="val")
    pre = fit_preprocessing(Preprocessing(24, channels=1, mode="dataset"), tr)
    model = small_cnn.conv_net("tiny", in_channels=1, outputs=1, image_size=24, seed=0, dropout=0.2)
    loss = losses.WeightedBCE(*losses.class_weights(tr.labels))
    fit(model, loss, optim.Adam(model.params(), lr=3e-3), BatchLoader(tr, pre, batch_size=16, seed=0),
        BatchLoader(va, pre, batch_size=16, training=False), epochs=2, progress=False, log=lambda s: None)
    model.output_activation = "sigmoid"
    model.meta.update(classes=["NORMAL", "PNEUMONIA"], threshold=[0.42], preprocessing=pre.to_dict())
    path = tmp_path_factory.mktemp("model") / "model.npz"
    model.save(path)
    return path


def test_a_trained_model_round_trips_through_onnxruntime(trained, tmp_path, rng):
    model = minicnn.load(trained)
    out = model.to_onnx(tmp_path / "m.onnx")
    proto = onnx.load(out)
    onnx.checker.check_model(proto, full_check=True)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    assert proto.graph.node[-1].op_type == "Sigmoid"            # the output activation is in the graph
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["minicnn.meta"])["threshold"] == [0.42]
    for n in (1, 3):
        x = rng.standard_normal((n, 1, 24, 24)).astype(np.float32)
        np.testing.assert_allclose(_ort(out, x), model.predict(x), rtol=1e-5, atol=1e-6)
    back = minicnn.load_onnx(out)
    assert back.output_activation == "sigmoid" and back.meta["classes"] == ["NORMAL", "PNEUMONIA"]
    assert back.meta["preprocessing"] == model.meta["preprocessing"]
    x = rng.standard_normal((3, 1, 24, 24)).astype(np.float32)
    np.testing.assert_allclose(back.predict(x), model.predict(x), rtol=1e-5, atol=1e-6)


def test_the_export_command_and_convert_back(trained, tmp_path, rng):
    from minicnn.cli import main
    out = tmp_path / "m.onnx"
    assert main(["export", str(trained), str(out), "--opset", "18"]) == 0
    assert onnx.load(out).opset_import[0].version == 18
    npz = tmp_path / "back.npz"
    assert main(["convert", str(out), str(npz), "--preprocess", "imagenet-torch", "--image-size", "24",
                 "--channels", "1"]) == 0
    again = minicnn.load(npz)
    x = rng.standard_normal((2, 1, 24, 24)).astype(np.float32)
    np.testing.assert_allclose(again.predict(x), minicnn.load(trained).predict(x), rtol=1e-5, atol=1e-6)


def _every_layer_model(rng):
    g = Graph(input_shape=(3, 8, 8))
    add = lambda name, layer, inputs=None: g.add(name, layer, inputs)
    add("conv", L.Conv2D(3, 4, 3, padding="same", seed=1))
    add("bn", L.BatchNorm2D(4))
    g["bn"].buffers["running_mean"][:] = rng.uniform(-0.1, 0.1, 4)
    g["bn"].buffers["running_var"][:] = rng.uniform(0.5, 2, 4)
    add("relu", L.ReLU())
    add("dw", L.DepthwiseConv2D(4, 3, padding=1, depth_multiplier=2, seed=2))
    add("sep", L.SeparableConv2D(8, 4, 3, padding="same", seed=3))
    add("act", L.Activation("swish"))
    add("gelu", L.Activation("gelu"))
    add("lrelu", L.Activation("leaky_relu", alpha=0.1))
    add("resc", L.Rescaling([1.0, 2.0, 0.5, 1.5], 0.1))
    add("sum", L.Add(), ["resc", "relu"])
    add("cat", L.Concat(), ["sum", "conv"])
    add("pad", L.ZeroPad2D((1, 0, 0, 1)))
    add("mp", L.MaxPool2D(2, padding=0))
    add("ap", L.AvgPool2D(3, 1, padding=1, count_include_pad=False))
    add("clip", L.Clip(-1.0, 1.0))
    add("hs", L.HardSigmoid(1 / 6, 0.5, swish=True))
    c = L.Binary("mul", const_shape=[1, 8, 1, 1])
    c.buffers["c"][:] = rng.uniform(0.5, 1.5, (1, 8, 1, 1))
    add("scale", c)
    add("drop", L.Dropout(0.3))
    add("up", L.ConvTranspose2D(8, 8, 2, stride=2, padding=(0, 1, 1, 0), output_padding=1, init="he", seed=5))
    add("lrn", L.LRN(3, 1e-2, 0.75, 1.0))
    add("resize", L.Resize(scales=[1.5, 0.5], mode="linear"))
    add("gap", L.GlobalAvgPool2D())
    add("fc", L.Dense(8, 3, seed=4))
    g.output_activation = "softmax"
    return g


def test_every_exportable_layer_kind_matches_onnxruntime(tmp_path, rng):
    g = _every_layer_model(rng)
    path = g.to_onnx(tmp_path / "all.onnx", opset=17)
    x = rng.standard_normal((3, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_ort(path, x), g.predict(x), rtol=1e-5, atol=1e-6)
    back = minicnn.load_onnx(path)
    np.testing.assert_allclose(back.predict(x), g.predict(x), rtol=1e-5, atol=1e-6)


def test_a_layer_without_an_onnx_equivalent_is_named(tmp_path):
    class Odd(L.Identity):
        pass
    g = Sequential([("conv", L.Conv2D(1, 2, 3)), ("odd", Odd())], input_shape=(1, 8, 8))
    with pytest.raises(OnnxImportError, match=r"odd \(Odd\)"):
        g.to_onnx(tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_densenet121_exports_and_onnxruntime_agrees(tmp_path):
    from minicnn.pretrained import densenet121
    g = densenet121(weights=None, classes=2)
    r = np.random.default_rng(0)
    for n in g.nodes.values():
        if isinstance(n.layer, L.BatchNorm2D):
            n.layer.buffers["running_mean"][:] = r.uniform(-0.1, 0.1, n.layer.num_features)
            n.layer.buffers["running_var"][:] = r.uniform(0.5, 2, n.layer.num_features)
    g.input_shape = (3, 64, 64)
    path = g.to_onnx(tmp_path / "d121.onnx")
    x = r.standard_normal((2, 3, 64, 64)).astype(np.float32)
    ref, y = _ort(path, x), g.predict(x)
    assert np.max(np.abs(y - ref)) / np.max(np.abs(ref)) < 1e-5


def _one(layer):
    g = Sequential([("layer", layer)], input_shape=(4, 6, 6))
    return g


def _two(layer, left, right):
    g = Graph(input_shape=(4, 6, 6))
    g.add("left", left, ["input"])
    g.add("right", right, ["input"])
    g.add("layer", layer, ["left", "right"])
    return g


def _cases():
    r = np.random.default_rng(7)
    b = L.Binary("sub", const_shape=[1, 4, 1, 1], const_first=True)
    b.buffers["c"][:] = r.standard_normal((1, 4, 1, 1))
    pr = L.PRelu((4, 1, 1))
    pr.params["slope"][:] = r.uniform(0, 0.5, (4, 1, 1))
    ct = L.ConvTranspose2D(4, 2, 3, stride=2, padding=1, output_padding=1, init="he", seed=3)
    return {
        "binary_const": _one(b), "binary_two": _two(L.Binary("mul"), L.ReLU(), L.Sigmoid()),
        "reshape": _one(L.Reshape([0, -1, 3])), "transpose": _one(L.Transpose([0, 2, 3, 1])),
        "pad_reflect": _one(L.Pad([0, 0, 1, 2, 0, 0, 2, 1], "reflect")), "pad_crop": _one(L.Pad([0, 0, -1, 1, 0, 0, 0, -2])),
        "clip": _one(L.Clip(None, 0.5)), "matmul": _one(L.MatMul(6, 3, seed=1)),
        "logsoftmax_2d": _one(L.OnnxSoftmax(1, True, True)), "softmax": _one(L.OnnxSoftmax(-1)),
        "hardsigmoid": _one(L.HardSigmoid(0.3, 0.4)), "hardswish": _one(L.HardSigmoid(1 / 6, 0.5, swish=True)),
        "prelu": _one(pr), "abs": _one(L.Unary("abs")), "pow": _one(L.Unary("pow", 2.0)),
        "reduce_max": _one(L.Reduce("max", [1], False)), "reduce_sum": _one(L.Reduce("sum", [2, 3], True)),
        "reduce_mean": _one(L.Reduce("mean", [3], True)), "slice": _one(L.Slice([1, -1], [5, 0], [3, 2], [2, -1])),
        "lrn": _one(L.LRN(3)), "conv_transpose": _one(ct), "resize_sizes": _one(L.Resize(sizes=[9, 5], mode="linear")),
        "resize_nearest": _one(L.Resize(scales=[2.0, 2.0])),
        "batch_matmul": _two(L.BatchMatMul(), L.Identity(), L.Transpose([0, 1, 3, 2])),
        "gather": _one(L.Gather([0, 2], 1)), "dilated_max": _one(L.DilatedPool2D("max", 2, 1, 1, 2)),
 "expand": _one(L.Expand([1, 4, 6, 6])), "tile": _one(L.Tile([1, 2, 1, 3])),
    }


@pytest.mark.parametrize("opset", [17, 18, 19])
def test_every_onnx_ops_layer_exports_and_onnxruntime_agrees(tmp_path, opset):
    x = np.random.default_rng(0).standard_normal((3, 4, 6, 6)).astype(np.float32)
    cases = _cases()
    avg = _one(L.DilatedPool2D("avg", 2, 2, 0, 2, True))
    if opset >= 19:
        cases["dilated_avg"] = avg
    else:
        with pytest.raises(OnnxImportError, match="opset >= 19"):
            avg.to_onnx(tmp_path / "avg.onnx", opset=opset)
    for name, g in cases.items():
        path = g.to_onnx(tmp_path / f"{name}.onnx", opset=opset)
        np.testing.assert_allclose(_ort(path, x), g.predict(x), rtol=1e-5, atol=1e-6, err_msg=name)
        back = minicnn.load_onnx(path)
        np.testing.assert_allclose(back.predict(x), g.predict(x), rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_tile_of_the_batch_axis_exports_and_predicts_whole(tmp_path):
    """Tile repeating axis 0: the native graph, onnxruntime and the re-imported graph agree, and
    predict runs the whole input at once (its rows are not one per input row)."""
    g = _one(L.Tile([2, 1, 1, 2]))
    assert g.works_along_batch()
    x = np.random.default_rng(1).standard_normal((3, 4, 6, 6)).astype(np.float32)
    want = np.tile(x, (2, 1, 1, 2))
    np.testing.assert_array_equal(g.predict(x, batch_size=2), want)
    path = g.to_onnx(tmp_path / "tile.onnx")
    np.testing.assert_allclose(_ort(path, x), want, rtol=1e-6)
    np.testing.assert_array_equal(minicnn.load_onnx(path).predict(x, batch_size=1), want)
