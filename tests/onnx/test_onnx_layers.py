"""The layers the ONNX importer added (minicnn/layers/onnx_ops.py): float64 gradient checks over
hypothesis geometries, forward values against ``onnx.reference.ReferenceEvaluator``, configs that
rebuild the layer."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from minicnn.gradient_check import gradcheck
from minicnn.layers import LAYER_CLASSES
from minicnn.layers.onnx_ops import (LRN, Binary, Clip, HardSigmoid, MatMul, OnnxSoftmax, Pad, PRelu, Reduce, Reshape,
                                     Slice, Tile, Transpose, Unary, unbroadcast)

TOL = 1e-6


@st.composite
def broadcastable(draw):
    """Two shapes NumPy broadcasts together (rank 0-5 each), stretching 1s on either side."""
    rank = draw(st.integers(1, 5))
    full = draw(st.lists(st.integers(1, 3), min_size=rank, max_size=rank))
    def side():
        r = draw(st.integers(0, rank))
        return [1 if draw(st.booleans()) else s for s in full[rank - r:]]
    return side(), side()


def _reference(op_type, inputs, opset=17, **attrs):
    onnx = pytest.importorskip("onnx")
    from onnx import helper
    from onnx.reference import ReferenceEvaluator
    names = [f"i{k}" for k in range(len(inputs))]
    node = helper.make_node(op_type, names, ["y"], **attrs)
    g = helper.make_graph([node], "t", [helper.make_tensor_value_info(n, onnx.TensorProto.DOUBLE, a.shape)
                                        for n, a in zip(names, inputs)],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.DOUBLE, None)])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    return ReferenceEvaluator(m).run(None, dict(zip(names, inputs)))[0]


@given(shapes=broadcastable(), op=st.sampled_from(["add", "sub", "mul", "div", "max", "min"]), seed=st.integers(0, 99))
def test_binary_two_activations_broadcast_like_onnx_and_gradcheck(shapes, op, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shapes[0])
    b = rng.standard_normal(shapes[1])
    if op == "div":
        b = np.sign(b) * (np.abs(b) + 0.5)
    layer = Binary(op)
    ref = _reference({"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min"}[op], [a, b])
    np.testing.assert_allclose(layer.forward([a, b]), ref, rtol=1e-12)
    errs = gradcheck(Binary(op), [a, b], seed=seed)
    assert set(errs) == {"x0", "x1"} and max(errs.values()) < TOL, errs


@given(shapes=broadcastable(), op=st.sampled_from(["add", "sub", "mul", "div"]), first=st.booleans(),
       seed=st.integers(0, 99))
def test_binary_with_a_constant_gradcheck(shapes, op, first, seed):
    rng = np.random.default_rng(seed)
    x, c = rng.standard_normal(shapes[0]), rng.standard_normal(shapes[1]) + 3.0
    if op == "div" and not first:
        pass
    elif op == "div":
        x = x + np.sign(x) * 0.5
    layer = Binary(op, const_shape=c.shape, const_first=first)
    layer.buffers["c"] = c
    assert gradcheck(layer, x, seed=seed)["x"] < TOL
    a, b = (c, x) if first else (x, c)
    ref = _reference({"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div"}[op], [a, b])
    np.testing.assert_allclose(layer.forward(x), ref, rtol=1e-12)


def test_unbroadcast_sums_the_stretched_axes():
    g = np.ones((2, 3, 4))
    assert unbroadcast(g, (3, 1)).tolist() == [[8.0]] * 3
    assert unbroadcast(g, ()).shape == () and float(unbroadcast(g, ())) == 24


@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=6), seed=st.integers(0, 99))
def test_transpose_and_reshape_any_rank_gradcheck(shape, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    perm = list(rng.permutation(len(shape)))
    t = Transpose(perm)
    np.testing.assert_array_equal(t.forward(x), _reference("Transpose", [x], perm=perm))
    assert gradcheck(Transpose(perm), x)["x"] < TOL
    r = Reshape([0, -1]) if len(shape) > 1 else Reshape([-1, 1])
    assert gradcheck(r, x)["x"] < TOL


@given(pads=st.lists(st.integers(-1, 2), min_size=8, max_size=8), mode=st.sampled_from(Pad.MODES),
       seed=st.integers(0, 99))
def test_pad_modes_match_onnx_and_gradcheck(pads, mode, seed):
    x = np.random.default_rng(seed).standard_normal((2, 2, 4, 5))
    if mode != "constant":
        pads = [max(p, 0) for p in pads]
    layer = Pad(pads, mode, 0.5)
    grow = [max(p, 0) for p in pads]            # onnx.reference pads only outward; a negative pad crops
    ref = _reference_pad(x, grow, mode)
    y = layer.forward(x)
    if mode != "constant" or min(pads) >= 0:
        np.testing.assert_allclose(y, ref, rtol=1e-12)
    else:   # crop first, then pad: equal to the ONNX definition on the cropped input
        xc = x[tuple(slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(zip(pads[:4], pads[4:])))]
        np.testing.assert_allclose(y, _reference_pad(xc, grow, mode), rtol=1e-12)
    assert gradcheck(Pad(pads, mode, 0.5), x)["x"] < TOL


def _reference_pad(x, pads, mode):
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator
    node = helper.make_node("Pad", ["x", "p", "v"], ["y"], mode=mode)
    g = helper.make_graph([node], "t", [helper.make_tensor_value_info("x", onnx.TensorProto.DOUBLE, x.shape)],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.DOUBLE, None)],
                          [numpy_helper.from_array(np.array(pads, np.int64), "p"),
                           numpy_helper.from_array(np.array(0.5), "v")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    return ReferenceEvaluator(m).run(None, {"x": x})[0]


@given(seed=st.integers(0, 99), lo=st.sampled_from([None, -0.5]), hi=st.sampled_from([None, 0.7]))
def test_clip_hardsigmoid_prelu_unary_gradcheck(seed, lo, hi):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 2, 2))
    x[np.abs(x - 0.0) < 1e-3] = 0.1          # keep away from kinks
    assert gradcheck(Clip(lo, hi), x)["x"] < TOL
    for layer in (HardSigmoid(0.3, 0.4), HardSigmoid(1 / 6, 0.5, swish=True)):
        assert gradcheck(layer, x)["x"] < TOL
    p = PRelu((3, 1, 1))
    p.params["slope"] = rng.standard_normal((3, 1, 1))
    errs = gradcheck(p, x)
    assert set(errs) == {"x", "slope"} and max(errs.values()) < TOL
    pos = np.abs(x) + 0.5
    for name, arg, p_ in (("neg", x, None), ("abs", x, None), ("sqrt", pos, None), ("reciprocal", pos, None),
                          ("log", pos, None), ("erf", x, None), ("pow", pos, 2.5)):
        assert gradcheck(Unary(name, p_), arg)["x"] < TOL, name


@given(axis=st.integers(-3, 2), log=st.booleans(), coerce=st.booleans(), seed=st.integers(0, 99))
def test_onnx_softmax_gradcheck(axis, log, coerce, seed):
    x = np.random.default_rng(seed).standard_normal((2, 3, 4))
    assert gradcheck(OnnxSoftmax(axis, log, coerce), x)["x"] < TOL
    opset = 11 if coerce else 13
    if opset == 13:
        ref = _reference("LogSoftmax" if log else "Softmax", [x], axis=axis)
        np.testing.assert_allclose(OnnxSoftmax(axis, log).forward(x), ref, rtol=1e-10, atol=1e-12)


@given(op=st.sampled_from(["mean", "sum", "max"]), keep=st.booleans(), seed=st.integers(0, 99))
def test_reduce_slice_matmul_lrn_gradcheck(op, keep, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 4, 3, 3))
    assert gradcheck(Reduce(op, [2, 3], keep), x)["x"] < TOL
    assert gradcheck(Slice([1, 0], [3, -1], [1, 3]), x)["x"] < TOL
    assert gradcheck(Slice([-1], [-2 ** 63], [2], [-1]), x)["x"] < TOL
    m = MatMul(3, 2, seed=seed)
    errs = gradcheck(m, x)
    assert set(errs) == {"x", "W"} and max(errs.values()) < TOL
    lrn = LRN(3, alpha=0.5, beta=0.75, bias=2.0)
    assert gradcheck(lrn, x)["x"] < TOL
    np.testing.assert_allclose(lrn.forward(x), _lrn_loops(x, 3, 0.5, 0.75, 2.0), rtol=1e-12)


def _lrn_loops(x, size, alpha, beta, bias):
    """The ONNX LRN definition as plain loops (onnx.reference's LRN loops over the batch axis
    instead of the channels, so it is not used here)."""
    C = x.shape[1]
    y = np.empty_like(x)
    for c in range(C):
        lo, hi = max(0, c - (size - 1) // 2), min(C - 1, c + -(-(size - 1) // 2))
        s = sum(x[:, i] ** 2 for i in range(lo, hi + 1))
        y[:, c] = x[:, c] / (bias + alpha / size * s) ** beta
    return y


@settings(max_examples=5)
@given(seed=st.integers(0, 99))
def test_lrn_even_size(seed):
    x = np.random.default_rng(seed).standard_normal((1, 6, 2, 2))
    np.testing.assert_allclose(LRN(4, 0.3, 0.6, 1.5).forward(x), _lrn_loops(x, 4, 0.3, 0.6, 1.5), rtol=1e-12)
    assert gradcheck(LRN(4, 0.3, 0.6, 1.5), x)["x"] < TOL


def test_every_new_layer_rebuilds_from_its_config():
    layers = [Binary("mul", const_shape=[1, 3, 1, 1]), Binary("add"), Reshape([0, -1]), Transpose([0, 2, 1]),
              Pad([0, 1, 0, 1], "edge"), Clip(0, 6), MatMul(3, 2), OnnxSoftmax(1, True, True),
              HardSigmoid(0.2, 0.5), PRelu([3, 1, 1]), Unary("pow", 2.0), Reduce("max", [1]),
              Slice([0], [2], [1]), LRN(5), Tile([1, 2, 3])]
    for layer in layers:
        cls = LAYER_CLASSES[type(layer).__name__]
        again = cls.from_config(layer.get_config())
        assert again.get_config() == layer.get_config()
        assert {k: v.shape for k, v in again.buffers.items()} == {k: v.shape for k, v in layer.buffers.items()}


@given(C=st.integers(1, 3), Fg=st.integers(1, 3), G=st.integers(1, 2), k=st.integers(1, 3), s=st.integers(1, 3),
       p=st.integers(0, 1), d=st.integers(1, 2), seed=st.integers(0, 99))
def test_conv_transpose_gradcheck_and_torch_parity(C, Fg, G, k, s, p, d, seed):
    from minicnn.layers.onnx_ops import ConvTranspose2D
    torch = pytest.importorskip("torch")
    op = min(s, d) - 1
    layer = ConvTranspose2D(C * G, Fg * G, k, s, p, d, G, op, init="he", seed=seed)
    rng = np.random.default_rng(seed)
    layer.params["b"][:] = rng.standard_normal(Fg * G)
    x = rng.standard_normal((2, C * G, 3, 4))
    if min(layer.output_shape(x.shape)[2:]) < 1:
        return
    errs = gradcheck(layer, x, seed=seed)
    assert set(errs) == {"x", "W", "b"} and max(errs.values()) < TOL, errs
    W = layer.params["W"].astype(np.float64)
    xt = torch.tensor(x, requires_grad=True)
    Wt, bt = torch.tensor(W, requires_grad=True), torch.tensor(layer.params["b"].astype(np.float64), requires_grad=True)
    yt = torch.nn.functional.conv_transpose2d(xt, Wt, bt, s, p, op, G, d)
    l64 = LAYER_CLASSES["ConvTranspose2D"].from_config(layer.get_config()).astype(np.float64)
    l64.params["W"][...] = W
    l64.params["b"][...] = layer.params["b"]
    y = l64.forward(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(dy))
    np.testing.assert_allclose(l64.backward(dy), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(l64.grads["W"], Wt.grad.numpy(), rtol=1e-10, atol=1e-12)


@given(mode=st.sampled_from(["nearest", "linear"]), coord=st.sampled_from(
    ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric"]),
    nearest=st.sampled_from(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]),
    sh=st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0]), sw=st.sampled_from([0.75, 1.0, 2.0]), seed=st.integers(0, 99))
def test_resize_matches_onnx_reference_and_gradchecks(mode, coord, nearest, sh, sw, seed):
    from minicnn.layers.onnx_ops import Resize
    x = np.random.default_rng(seed).standard_normal((1, 2, 4, 4))
    layer = Resize(scales=[sh, sw], mode=mode, coordinate_transformation_mode=coord, nearest_mode=nearest)
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator
    node = helper.make_node("Resize", ["x", "", "s"], ["y"], mode=mode, coordinate_transformation_mode=coord,
                            nearest_mode=nearest)
    g = helper.make_graph([node], "t", [helper.make_tensor_value_info("x", onnx.TensorProto.DOUBLE, x.shape)],
                          [helper.make_tensor_value_info("y", onnx.TensorProto.DOUBLE, None)],
                          [numpy_helper.from_array(np.array([1, 1, sh, sw], np.float32), "s")])
    ref = ReferenceEvaluator(helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])).run(None, {"x": x})[0]
    np.testing.assert_allclose(layer.forward(x), ref, rtol=1e-6, atol=1e-9)
    assert gradcheck(layer, x)["x"] < TOL


def test_resize_equals_torch_interpolate_forward_and_backward():
    from minicnn.layers.onnx_ops import Resize
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 6))
    for layer, kw in ((Resize(sizes=[9, 4], mode="linear", coordinate_transformation_mode="pytorch_half_pixel"),
                       dict(size=(9, 4), mode="bilinear", align_corners=False)),
                      (Resize(sizes=[9, 4], mode="linear", coordinate_transformation_mode="align_corners"),
                       dict(size=(9, 4), mode="bilinear", align_corners=True)),
                      (Resize(scales=[2.0, 2.0], mode="nearest", coordinate_transformation_mode="asymmetric",
                              nearest_mode="floor"), dict(scale_factor=2.0, mode="nearest"))):
        xt = torch.tensor(x, requires_grad=True)
        yt = torch.nn.functional.interpolate(xt, **kw)
        np.testing.assert_allclose(layer.forward(x), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        dy = np.random.default_rng(1).standard_normal(yt.shape)
        yt.backward(torch.tensor(dy))
        np.testing.assert_allclose(layer.backward(dy), xt.grad.numpy(), rtol=1e-10, atol=1e-12)


@given(seed=st.integers(0, 99), lead=st.sampled_from([(), (2,), (1, 3)]), axis=st.integers(1, 2))
def test_batch_matmul_gather_expand_gradcheck(seed, lead, axis):
    from minicnn.layers.onnx_ops import BatchMatMul, Expand, Gather
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((2,) + lead + (3, 4)), rng.standard_normal(lead + (4, 2))
    np.testing.assert_allclose(BatchMatMul().forward([a, b]), _reference("MatMul", [a, b]), rtol=1e-12)
    errs = gradcheck(BatchMatMul(), [a, b], seed=seed)
    assert max(errs.values()) < TOL, errs
    x = rng.standard_normal((2, 3, 4))
    idx = np.array([[0, -1], [1, 1]])
    np.testing.assert_array_equal(Gather(idx, axis).forward(x), np.take(x, idx, axis=axis))
    assert gradcheck(Gather(idx, axis), x)["x"] < TOL
    e = Expand([3, 1, 3, 1])
    y = rng.standard_normal((2, 1, 4))
    assert e.forward(y).shape == (3, 2, 3, 4)
    assert gradcheck(Expand([3, 1, 3, 1]), y)["x"] < TOL


@given(k=st.integers(1, 3), s=st.integers(1, 2), d=st.integers(1, 3), p=st.integers(0, 1), cip=st.booleans(),
       seed=st.integers(0, 99))
def test_dilated_pools_gradcheck_torch_and_onnx(k, s, d, p, cip, seed):
    from minicnn.layers.onnx_ops import DilatedPool2D
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(seed).standard_normal((2, 2, 7, 8))
    mp = DilatedPool2D("max", k, s, p, d)
    if p * 2 > k or (k - 1) * d + 1 > 7:
        return
    ref = torch.nn.functional.max_pool2d(torch.tensor(x), k, s, p, d).numpy()
    np.testing.assert_array_equal(mp.forward(x), ref)
    assert mp.output_shape((None, 2, 7, 8)) == (None,) + ref.shape[1:]
    assert gradcheck(DilatedPool2D("max", k, s, p, d), x)["x"] < TOL
    ap = DilatedPool2D("avg", k, s, p, d, cip)
    onnx_ref = _reference("AveragePool", [x], opset=19, kernel_shape=[k, k], strides=[s, s], pads=[p] * 4, dilations=[d, d],
                          count_include_pad=int(cip))
    np.testing.assert_allclose(ap.forward(x), onnx_ref, rtol=1e-12)
    assert gradcheck(DilatedPool2D("avg", k, s, p, d, cip), x)["x"] < TOL


@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=4), data=st.data(), seed=st.integers(0, 99))
def test_tile_matches_onnx_and_gradchecks(shape, data, seed):
    """Tile's forward is ONNX Tile's (np.tile; the node/test_tile* conformance cases run it against
    ONNX's data); its backward sums dy over the tiles (a 0 repeat gives dx = 0)."""
    reps = data.draw(st.lists(st.integers(0, 3), min_size=len(shape), max_size=len(shape)))
    x = np.random.default_rng(seed).standard_normal(shape)
    np.testing.assert_array_equal(Tile(reps).forward(x), np.tile(x, reps))
    if min(reps) > 0:
        assert gradcheck(Tile(reps), x, seed=seed)["x"] < TOL
    layer = Tile(reps)
    y = layer.forward(x)
    dy = np.random.default_rng(seed + 1).standard_normal(y.shape)
    want = sum(dy[tuple(slice(k * n, (k + 1) * n) for k, n in zip(ks, shape))]
               for ks in np.ndindex(*reps)) if min(reps) > 0 else np.zeros(shape)
    np.testing.assert_allclose(layer.backward(dy), want, rtol=1e-12, atol=1e-14)
