"""The model-zoo graphs the onnx package ships (``onnx/backend/test/data/light``: constant weights
from ConstantOfShape, a stored output) load in minicnn and reproduce the stored outputs with the
input the onnx test runner generates (``generate_dummy_data(..., random=False)``: arange / n)."""
import glob
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

import minicnn  # noqa: E402

LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
NAMES = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "vgg19",
         "zfnet512"]


def _dummy_input(path):
    m = onnx.load(path)
    inits = {t.name for t in m.graph.initializer}
    x = next(v for v in m.graph.input if v.name not in inits)
    shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in x.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return m, x.name, (np.arange(n).reshape(shape) / n).astype(np.float32)


def test_every_light_model_is_covered():
    found = sorted(os.path.basename(p)[len("light_"):-len(".onnx")] for p in glob.glob(os.path.join(LIGHT, "*.onnx")))
    assert found == sorted(NAMES + ["squeezenet"])


@pytest.mark.parametrize("name", NAMES)
def test_light_model_reproduces_the_stored_output(name):
    path = os.path.join(LIGHT, f"light_{name}.onnx")
    _, _, x = _dummy_input(path)
    ref = numpy_helper.to_array(onnx.load_tensor(path.replace(".onnx", "_output_0.pb")))
    y = minicnn.load_onnx(path).predict(x)
    np.testing.assert_allclose(y.reshape(ref.shape), ref, rtol=1e-3, atol=1e-7)


def test_squeezenet_logits_match_onnxruntime():
    """SqueezeNet's stored output is the softmax of logits ~1e10 that are equal only in exact arithmetic
    (every weight is the same constant, so every class sums the same numbers): any float32 summation
    order turns it into a different one-hot vector. What is checked instead is the logits themselves
    against onnxruntime."""
    ort = pytest.importorskip("onnxruntime")
    path = os.path.join(LIGHT, "light_squeezenet.onnx")
    m, in_name, x = _dummy_input(path)
    last = m.graph.node[-1]
    assert last.op_type == "Softmax"
    logits = last.input[0]
    del m.graph.output[:]
    m.graph.output.append(onnx.helper.make_tensor_value_info(logits, onnx.TensorProto.FLOAT, None))
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {in_name: x})[0]
    g = minicnn.load_onnx(path)
    gap = [n for n in g.nodes if n.startswith(m.graph.node[-2].name)][-1]
    g.predict(x, keep=[gap])
    y = g.activations[gap]
    assert np.max(np.abs(y - ref)) / np.max(np.abs(ref)) < 1e-5
