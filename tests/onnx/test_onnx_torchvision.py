"""torchvision CNNs exported with torch.onnx.export (random weights, random batch-norm statistics:
variance in [0.5, 2], mean in [-0.1, 0.1]) and imported by minicnn: equal to onnxruntime within
1e-4 relative (max |diff| / max |reference|) on real chest X-rays at batch 1 and 3.

Each model is exported once per test session (a session fixture under tmp_path_factory).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

import minicnn  # noqa: E402
from minicnn.data.images import load_image  # noqa: E402
from minicnn.layers import BatchNorm2D, Conv2D  # noqa: E402

SIZE = 160
MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)


def _randomize(net, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
                m.running_mean.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)       # mean in [-0.1, 0.1]
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)        # var in [0.5, 2]
    return net.eval()


@pytest.fixture(scope="session")
def xrays(shared_dir):
    files = sorted((shared_dir / "data" / "chest_xray_val16").rglob("*.jpeg"))[:3]
    assert len(files) == 3
    x = np.stack([load_image(f, size=SIZE, color="rgb") for f in files]).transpose(0, 3, 1, 2) / 255.0
    return ((x - MEAN) / STD).astype(np.float32)


def _export(tmp_path_factory, name, build, dynamo):
    torch.manual_seed(0)
    net = _randomize(build(weights=None), seed=1)
    path = tmp_path_factory.mktemp("onnx") / f"{name}_{'dynamo' if dynamo else 'ts'}.onnx"
    x = torch.zeros(2, 3, SIZE, SIZE)
    if dynamo:
        torch.onnx.export(net, (x,), str(path), dynamo=True, input_names=["x"],
                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    else:
        torch.onnx.export(net, (x,), str(path), dynamo=False, input_names=["x"], dynamic_axes={"x": {0: "N"}})
    return str(path)


MODELS = {"densenet121": torchvision.models.densenet121, "resnet50": torchvision.models.resnet50,
          "mobilenet_v2": torchvision.models.mobilenet_v2, "efficientnet_b0": torchvision.models.efficientnet_b0}
CASES = [("densenet121", True), ("densenet121", False), ("resnet50", True), ("mobilenet_v2", True),
         ("efficientnet_b0", True)]


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    cache = {}

    def get(name, dynamo):
        if (name, dynamo) not in cache:
            cache[name, dynamo] = _export(tmp_path_factory, name, MODELS[name], dynamo)
        return cache[name, dynamo]
    return get


def rel(y, ref):
    return float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))


@pytest.mark.parametrize("name,dynamo", CASES, ids=[f"{n}-{'dynamo' if d else 'torchscript'}" for n, d in CASES])
def test_imported_torchvision_model_equals_onnxruntime(exported, xrays, name, dynamo):
    path = exported(name, dynamo)
    g = minicnn.load_onnx(path)
    assert "fixed_batch" not in g.meta, "the batch dimension must stay symbolic"
    import onnx
    ops = [n.op_type for n in onnx.load(path, load_external_data=False).graph.node]
    # every ONNX Conv / BatchNormalization became minicnn's own layer (the dynamo exporter folds the
    # batch norms that follow a conv into it; DenseNet's pre-activation ones, 62, stay)
    assert sum(isinstance(l, Conv2D) for l in g.layers) == ops.count("Conv") > 10
    assert sum(isinstance(l, BatchNorm2D) for l in g.layers) == ops.count("BatchNormalization")
    if name == "densenet121":
        assert ops.count("BatchNormalization") >= 60
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for n in (1, 3):
        ref = sess.run(None, {sess.get_inputs()[0].name: xrays[:n]})[0]
        y = g.predict(xrays[:n])
        assert y.dtype == np.float32 and y.shape == ref.shape == (n, 1000)
        assert rel(y, ref) < 1e-4, (name, dynamo, n, rel(y, ref))


def test_an_imported_densenet_trains_a_step_and_explains(exported, xrays):
    """Imported graphs are minicnn graphs: Grad-CAM runs on them (the feature map before the global
    pooling), and freeze / unfreeze the last layer / a training-mode backward fine-tune only that layer."""
    from minicnn.gradcam import gradcam
    g = minicnn.load_onnx(exported("densenet121", False))
    heat, info = gradcam(g, xrays[:1])
    assert heat.ndim == 2 and np.all(np.isfinite(heat)) and heat.max() > heat.min()
    assert info["node"] in g.nodes
    g.freeze()
    last = list(g.nodes)[-1]
    g.unfreeze(last)
    z = g.forward(xrays[:2], training=True)
    g.backward(np.ones_like(z) / z.size, input_grad=False)
    grads = g.grads()
    assert set(grads) == {f"{last}.W", f"{last}.b"} and all(np.all(np.isfinite(v)) for v in grads.values())
