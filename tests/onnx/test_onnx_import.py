"""minicnn.load_onnx on small hand-built graphs: the reader's refusals (external data outside the
model's folder), every unsupported operator listed, the symbolic batch, fixed-batch chunks,
fine-tuning an imported graph."""
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import minicnn  # noqa: E402
from minicnn.errors import OnnxImportError, UnsafeFileError, WeightFileError  # noqa: E402
from minicnn.gradient_check import gradcheck  # noqa: E402
from minicnn.layers import BatchNorm2D, Conv2D, Dropout  # noqa: E402


def _model(nodes, inits, in_shape=("N", 3, 8, 8), out="y", opset=17, metadata=None):
    g = helper.make_graph(nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(np.asarray(v, np.float32) if np.asarray(v).dtype.kind == "f"
                                                   else np.asarray(v), k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    for k, v in (metadata or {}).items():
        m.metadata_props.add(key=k, value=v)
    return m


def _small_cnn(rng, hw=8):
    W = rng.standard_normal((4, 3, 3, 3)) * 0.3
    nodes = [helper.make_node("Conv", ["x", "W", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["n"], name="bn"),
             helper.make_node("Relu", ["n"], ["r"], name="relu"),
             helper.make_node("Dropout", ["r"], ["d"], name="drop"),
             helper.make_node("Shape", ["d"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["batch"], axis=0),
             helper.make_node("Unsqueeze", ["batch", "zero1"], ["b1"]),
             helper.make_node("Concat", ["b1", "minus1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["d", "shape"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fcW", "fcb"], ["y"], transB=1, alpha=0.5, beta=2.0, name="fc")]
    inits = {"W": W, "b": rng.standard_normal(4) * 0.1, "g": rng.uniform(0.5, 1.5, 4), "be": rng.standard_normal(4),
             "m": rng.uniform(-0.1, 0.1, 4), "v": rng.uniform(0.5, 2, 4), "zero": np.array(0, np.int64),
             "zero1": np.array([0], np.int64), "minus1": np.array([-1], np.int64),
             "fcW": rng.standard_normal((2, 4 * hw * hw)) * 0.05, "fcb": rng.standard_normal(2)}
    return _model(nodes, inits, in_shape=("N", 3, hw, hw))


def _reference(m, x):
    from onnx.reference import ReferenceEvaluator
    return ReferenceEvaluator(m).run(None, {"x": x})[0]


def test_a_small_cnn_imports_with_a_symbolic_batch(tmp_path, rng):
    m = _small_cnn(rng)
    path = tmp_path / "m.onnx"
    onnx.save(m, path)
    g = minicnn.load_onnx(path)
    assert isinstance(g["conv"], Conv2D) and isinstance(g["bn"], BatchNorm2D) and isinstance(g["drop"], Dropout)
    assert g.meta["onnx"]["input"] == "x" and g.meta["onnx"]["input_shape"] == ["N", 3, 8, 8]
    assert g.meta["onnx"]["outputs"][0]["name"] == "y" and "fixed_batch" not in g.meta
    for n in (1, 3):
        x = rng.standard_normal((n, 3, 8, 8)).astype(np.float32)
        y = g.predict(x)
        assert y.dtype == np.float32 and y.shape == (n, 2)
        np.testing.assert_allclose(y, _reference(m, x), rtol=1e-4, atol=1e-5)


def test_an_imported_graph_trains_and_gradient_checks(rng):
    from minicnn.pretrained.onnx_import import graph_from_onnx
    from minicnn.readers.onnx import parse_model
    g = graph_from_onnx(parse_model(_small_cnn(rng, hw=3)))
    x = rng.standard_normal((2, 3, 3, 3))
    errs = gradcheck(g, x, seed=1)
    assert max(errs.values()) < 1e-5, errs
    assert g["bn"].buffers["running_mean"].tolist() == g["bn"].buffers["running_mean"].tolist()
    g.freeze("conv")
    assert "conv.W" not in g.params() and "fc.W" in g.params()


def test_a_fixed_batch_graph_predicts_in_chunks_of_it(tmp_path, rng):
    nodes = [helper.make_node("Reshape", ["x", "s"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["y"])]
    W = rng.standard_normal((12, 2))
    m = _model(nodes, {"s": np.array([2, 12], np.int64), "W": W}, in_shape=(2, 3, 2, 2))
    onnx.save(m, tmp_path / "m.onnx")
    g = minicnn.load_onnx(tmp_path / "m.onnx")
    assert g.meta["fixed_batch"] == 2
    x = rng.standard_normal((3, 3, 2, 2)).astype(np.float32)
    np.testing.assert_allclose(g.predict(x), x.reshape(3, 12) @ W, rtol=1e-5)


def test_every_unsupported_op_is_listed_with_its_nodes(tmp_path):
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="c0"),
             helper.make_node("TopK", ["c", "k"], ["t", "i"], name="top1"),
             helper.make_node("TopK", ["t", "k"], ["t2", "i2"], name="top2"),
             helper.make_node("NonMaxSuppression", ["t2"], ["y"], name="nms")]
    m = _model(nodes, {"W": np.ones((2, 3, 1, 1)), "k": np.array([1], np.int64)})
    onnx.save(m, tmp_path / "m.onnx")
    with pytest.raises(OnnxImportError) as e:
        minicnn.load_onnx(tmp_path / "m.onnx")
    msg = str(e.value)
    assert "TopK: top1, top2" in msg and "NonMaxSuppression: nms" in msg and "2 unsupported" in msg


def test_unsupported_attribute_values_are_named(tmp_path):
    for node, what in ((helper.make_node("Pad", ["x", "p"], ["y"], mode="wrap"), "mode='wrap'"),
                       (helper.make_node("Resize", ["x", "", "sc"], ["y"], antialias=1, mode="linear"), "antialias=1"),
                       (helper.make_node("BatchNormalization", ["x", "s", "s", "s", "s"], ["y"], training_mode=1),
                        "training_mode=1")):
        m = _model([node], {"p": np.zeros(8, np.int64), "sc": np.array([1, 1, 2, 2], np.float32),
                            "s": np.ones(3, np.float32)}, opset=19)
        onnx.save(m, tmp_path / "m.onnx")
        with pytest.raises(OnnxImportError, match=what.replace("[", r"\[").replace("]", r"\]")):
            minicnn.load_onnx(tmp_path / "m.onnx")


def _external_model(tmp_path, location):
    m = _model([helper.make_node("Mul", ["x", "c"], ["y"])], {"c": np.arange(3, dtype=np.float32).reshape(1, 3, 1, 1)})
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "12")):
        t.external_data.add(key=k, value=v)
    d = tmp_path / "model"
    d.mkdir(exist_ok=True)
    onnx.save(m, d / "m.onnx")
    return d / "m.onnx"


def test_external_data_is_read_from_inside_the_folder_only(tmp_path):
    path = _external_model(tmp_path, "weights.bin")
    (path.parent / "weights.bin").write_bytes(np.arange(3, dtype=np.float32).tobytes())
    g = minicnn.load_onnx(path)
    x = np.ones((1, 3, 8, 8), np.float32)
    assert g.predict(x)[0, :, 0, 0].tolist() == [0.0, 1.0, 2.0]
    for loc in ("../../etc/passwd", "/etc/passwd", "sub/../../x.bin"):
        with pytest.raises(UnsafeFileError, match="external data"):
            minicnn.load_onnx(_external_model(tmp_path, loc))
    outside = tmp_path / "secret.bin"
    outside.write_bytes(b"\0" * 12)
    p = _external_model(tmp_path, "link.bin")
    os.symlink(outside, p.parent / "link.bin")
    with pytest.raises(UnsafeFileError, match="leaves the model's folder"):
        minicnn.load_onnx(p)
    with pytest.raises(WeightFileError, match="missing"):
        minicnn.load_onnx(_external_model(tmp_path, "absent.bin"))


def test_a_file_that_is_not_onnx_is_a_weight_file_error(tmp_path):
    p = tmp_path / "x.onnx"
    p.write_bytes(b"\x08\x07garbage that is not protobuf \xff\xff")
    with pytest.raises(WeightFileError):
        minicnn.load_onnx(p)
    with pytest.raises(FileNotFoundError):
        minicnn.load_onnx(tmp_path / "missing.onnx")


def test_opset_6_broadcast_axis_and_old_attributes(tmp_path, rng):
    nodes = [helper.make_node("Add", ["x", "bias"], ["a"], broadcast=1, axis=1),
             helper.make_node("Clip", ["a"], ["c"], min=-0.5, max=0.5),
             helper.make_node("BatchNormalization", ["c", "g", "be", "m", "v"], ["y"], is_test=1)]
    inits = {"bias": rng.standard_normal(3), "g": np.ones(3), "be": np.zeros(3), "m": np.zeros(3), "v": np.ones(3)}
    m = _model(nodes, inits, in_shape=(1, 3, 2, 2), opset=6)
    onnx.save(m, tmp_path / "m.onnx")
    g = minicnn.load_onnx(tmp_path / "m.onnx")
    x = rng.standard_normal((1, 3, 2, 2)).astype(np.float32)
    expect = np.clip(x + inits["bias"].reshape(1, 3, 1, 1), -0.5, 0.5) / np.sqrt(1 + 1e-5)
    np.testing.assert_allclose(g.predict(x), expect, rtol=1e-5, atol=1e-6)


def test_mutated_files_fail_only_with_minicnn_errors(tmp_path):
    """Random byte mutations of a valid model: each one imports and predicts, or raises one of
    minicnn's own errors (never an IndexError, a UnicodeDecodeError, ... from deep inside)."""
    from minicnn.errors import MinicnnError
    data = _small_cnn(np.random.default_rng(0), hw=4).SerializeToString()
    rng = np.random.default_rng(1)
    outcomes = {"ok": 0, "refused": 0}
    path = tmp_path / "m.onnx"
    for _ in range(150):
        d = bytearray(data)
        for _ in range(int(rng.integers(1, 6))):
            d[int(rng.integers(len(d)))] = int(rng.integers(256))
        path.write_bytes(bytes(d))
        try:
            with np.errstate(all="ignore"):
                minicnn.load_onnx(path).predict(np.zeros((1, 3, 4, 4), np.float32))
            outcomes["ok"] += 1
        except MinicnnError:
            outcomes["refused"] += 1
    assert outcomes["ok"] > 10 and outcomes["refused"] > 10, outcomes


@pytest.mark.parametrize("b_runtime", [False, True])
@pytest.mark.parametrize("c_kind", ["none", "vector", "matrix", "column", "runtime"])
def test_gemm_every_form_matches_onnx_and_gradchecks(rng, b_runtime, c_kind):
    """Gemm with B and/or C computed at run time, a (M, N) / (M, 1) / (N,) C, transA, transB, alpha, beta."""
    from onnx.reference import ReferenceEvaluator
    from minicnn.pretrained.onnx_import import graph_from_onnx
    from minicnn.readers.onnx import parse_model
    M, K, N = 3, 4, 5
    vals = {"a": rng.standard_normal((K, M)), "b": rng.standard_normal((N, K))}
    vals["c"] = {"none": None, "vector": rng.standard_normal(N), "matrix": rng.standard_normal((M, N)),
                 "column": rng.standard_normal((M, 1)), "runtime": rng.standard_normal((M, N))}[c_kind]
    runtime = ["a"] + (["b"] if b_runtime else []) + (["c"] if c_kind == "runtime" else [])
    ins = ["a", "b"] + ([] if c_kind == "none" else ["c"])
    node = helper.make_node("Gemm", ins, ["y"], transA=1, transB=1, alpha=0.7, beta=-1.3)
    g = helper.make_graph([node], "t", [helper.make_tensor_value_info(k, TensorProto.DOUBLE, vals[k].shape)
                                        for k in runtime],
                          [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)],
                          [numpy_helper.from_array(vals[k], k) for k in ins if k not in runtime])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    ref = ReferenceEvaluator(m).run(None, {k: vals[k] for k in runtime})[0]
    graph = graph_from_onnx(parse_model(m))
    xs = [vals[k] for k in runtime]
    y = graph.forward(xs if len(xs) > 1 else xs[0])
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)     # constants are stored as float32
    errs = gradcheck(graph.astype(np.float64), xs if len(xs) > 1 else xs[0], seed=2)
    assert max(errs.values()) < 1e-5, errs


def _batch_axis_graph(in_shape):
    """y = concat(x[0:N:2], x[[-1]], split(x)[1]) along axis 0: three ways of working along the batch."""
    nodes = [helper.make_node("Slice", ["x", "s0", "e0", "a0", "st"], ["sl"], name="slice"),
             helper.make_node("Gather", ["x", "last"], ["ga"], axis=0, name="gather"),
             helper.make_node("Split", ["x", "parts"], ["p0", "p1"], axis=0, name="split"),
             helper.make_node("Concat", ["sl", "ga", "p1"], ["y"], axis=0, name="cat")]
    n = in_shape[0] if isinstance(in_shape[0], int) else 5
    inits = {"s0": np.array([0], np.int64), "e0": np.array([2 ** 62], np.int64), "a0": np.array([0], np.int64),
             "st": np.array([2], np.int64), "last": np.array([-1], np.int64), "parts": np.array([1, n - 1], np.int64)}
    return _model(nodes, inits, in_shape=in_shape, opset=13)


def _batch_axis_expected(x):
    return np.concatenate([x[0::2], x[[-1]], x[1:]])


@pytest.mark.parametrize("in_shape", [("N", 2, 3), (5, 2, 3)])
def test_slice_split_gather_of_the_batch_axis_predict_on_the_whole_input(tmp_path, rng, in_shape):
    """A graph working along axis 0 (works_along_batch): predict runs the whole input at once
    (chunks of batch_size would slice each chunk), with a fixed batch only that batch."""
    m = _batch_axis_graph(in_shape)
    onnx.save(m, tmp_path / "m.onnx")
    g = minicnn.load_onnx(tmp_path / "m.onnx")
    assert g.works_along_batch()
    x = rng.standard_normal((5, 2, 3)).astype(np.float32)
    want = _batch_axis_expected(x)
    np.testing.assert_array_equal(g.predict(x, batch_size=2), want)
    np.testing.assert_array_equal(want, _reference(m, x))
    errs = gradcheck(g.astype(np.float64), x.astype(np.float64), seed=3)
    assert max(errs.values()) < 1e-6, errs
    back = tmp_path / "back.onnx"
    g.to_onnx(back)
    np.testing.assert_array_equal(_reference(onnx.load(back), x), want)
    if isinstance(in_shape[0], int):
        with pytest.raises(minicnn.errors.UsageError, match="exactly 5 rows"):
            g.predict(x[:3])


def test_a_graph_without_batch_axis_ops_is_not_whole_batch(tmp_path, rng):
    onnx.save(_small_cnn(rng), tmp_path / "m.onnx")
    assert not minicnn.load_onnx(tmp_path / "m.onnx").works_along_batch()


@pytest.mark.parametrize("shapes", [(("N", 3, 4), (4,)), ((4,), ("N", 4, 2)), ((4,), (4,))])
def test_matmul_of_two_activations_with_a_1d_operand(rng, shapes):
    """NumPy's 1-D rule: (K,) is a row on the left, a column on the right, the 1 dropped after."""
    from onnx.reference import ReferenceEvaluator
    from minicnn.pretrained.onnx_import import graph_from_onnx
    from minicnn.readers.onnx import parse_model
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    g = helper.make_graph([node], "t", [helper.make_tensor_value_info(k, TensorProto.DOUBLE, list(s))
                                        for k, s in zip("ab", shapes)],
                          [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    graph = graph_from_onnx(parse_model(m)).astype(np.float64)
    for n in (1, 3):
        xs = [rng.standard_normal([n if d == "N" else d for d in s]) for s in shapes]
        np.testing.assert_allclose(graph.forward(xs), ReferenceEvaluator(m).run(None, dict(zip("ab", xs)))[0],
                                   rtol=1e-12)
    errs = gradcheck(graph, xs, seed=4)
    assert max(errs.values()) < 1e-6, errs
