"""Backward parity with torch for the layers the ONNX importer maps operators onto (float64).

Each case is a minicnn layer and the same function written in torch ops. The layer's forward must
equal torch's, and for a random upstream gradient ``dy`` its backward (``dx`` for every input and
``grads`` for every param) must equal ``torch.autograd``'s. ConvTranspose2D and Resize have theirs
in ``test_onnx_layers.py``.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from minicnn.layers import Activation  # noqa: E402
from minicnn.layers import onnx_ops as O  # noqa: E402

RTOL, ATOL = 1e-10, 1e-12


def _rng(seed=0):
    return np.random.default_rng(seed)


def _x(*shape, seed=0, positive=False, round_=False):
    x = _rng(seed).standard_normal(shape)
    if round_:                  # ties for max: the gradient's split among equal values is compared too
        x = np.round(x)
    return np.abs(x) + 0.5 if positive else x


def _coerced_softmax(x, axis, log):
    v = x.reshape(int(np.prod(x.shape[:axis])), -1)
    return (F.log_softmax if log else F.softmax)(v, dim=1).reshape(x.shape)


def _unfold_taps(x, k, s, p, d):
    """(N, C, k*k, OH, OW): the window taps of a dilated pool, zero-padded (torch's unfold)."""
    N, C, H, W = x.shape
    u = F.unfold(x, k, dilation=d, padding=p, stride=s)
    OH, OW = (H + 2 * p - d * (k - 1) - 1) // s + 1, (W + 2 * p - d * (k - 1) - 1) // s + 1
    return u.reshape(N, C, k * k, OH, OW)


def _avg_pool_dilated(x, k, s, p, d, count_include_pad):
    taps = _unfold_taps(x, k, s, p, d)
    if count_include_pad:
        return taps.mean(dim=2)
    ones = _unfold_taps(torch.ones_like(x[:1, :1]), k, s, p, d)
    return taps.sum(dim=2) / ones.sum(dim=2)


def _slice_index(x, n, sl):
    """x[..., sl] on axis ``n`` with a possibly negative step, by index_select (torch has no negative steps)."""
    idx = torch.tensor(np.arange(x.shape[n])[sl].copy())
    return x.index_select(n, idx)


def _unary_cases():
    pos = dict(positive=True)
    return [
        ("neg", O.Unary("neg"), [_x(2, 3, 4)], lambda x: -x),
        ("abs", O.Unary("abs"), [_x(2, 3, 4)], torch.abs),
        ("sqrt", O.Unary("sqrt"), [_x(2, 3, 4, **pos)], torch.sqrt),
        ("reciprocal", O.Unary("reciprocal"), [_x(2, 3, 4, **pos)], torch.reciprocal),
        ("log", O.Unary("log"), [_x(2, 3, 4, **pos)], torch.log),
        ("erf", O.Unary("erf"), [_x(2, 3, 4)], torch.erf),
        ("pow3", O.Unary("pow", 3.0), [_x(2, 3, 4)], lambda x: x ** 3),
        ("pow2.5", O.Unary("pow", 2.5), [_x(2, 3, 4, **pos)], lambda x: x ** 2.5),
        ("exp", Activation("exponential"), [_x(2, 3, 4)], torch.exp),
        ("tanh", Activation("tanh"), [_x(2, 3, 4)], torch.tanh),
        ("softplus", Activation("softplus"), [_x(2, 3, 4) * 3], F.softplus),
        ("softsign", Activation("softsign"), [_x(2, 3, 4)], F.softsign),
        ("elu", Activation("elu", alpha=0.7), [_x(2, 3, 4)], lambda x: F.elu(x, 0.7)),
        ("selu", Activation("selu"), [_x(2, 3, 4)], F.selu),
        ("leaky_relu", Activation("leaky_relu", alpha=0.1), [_x(2, 3, 4)], lambda x: F.leaky_relu(x, 0.1)),
        ("gelu", Activation("gelu"), [_x(2, 3, 4)], F.gelu),
        ("gelu_tanh", Activation("gelu_tanh"), [_x(2, 3, 4)], lambda x: F.gelu(x, approximate="tanh")),
    ]


def _binary_cases():
    out = []
    a, b = _x(2, 3, 4, seed=1), _x(3, 1, seed=2)
    for op, fn in (("add", torch.add), ("sub", torch.sub), ("mul", torch.mul), ("div", torch.div),
                   ("max", torch.maximum), ("min", torch.minimum)):
        bb = np.abs(b) + 0.5 if op == "div" else b
        out.append((f"binary_{op}", O.Binary(op), [a, bb], fn))
        out.append((f"binary_{op}_rank0_first", O.Binary(op), [_x(seed=3) + 2.0, a], fn))
    out.append(("binary_pow", O.Binary("pow"), [_x(2, 1, 4, positive=True), _x(3, 1)], torch.pow))
    c = O.Binary("sub", const_shape=[1, 3, 1], const_first=True)
    c.buffers["c"] = _x(1, 3, 1, seed=4)
    cc = torch.tensor(c.buffers["c"])
    out.append(("binary_const_first", c, [a], lambda x: cc - x))
    return out


def _prelu():
    layer = O.PRelu([3, 1, 1])
    layer.params["slope"] = _rng(5).uniform(0, 0.5, (3, 1, 1))
    return layer


def _matmul():
    layer = O.MatMul(4, 3, seed=1)
    return layer


CASES = _unary_cases() + _binary_cases() + [
    ("reshape", O.Reshape([0, -1, 2]), [_x(2, 3, 4)], lambda x: x.reshape(2, -1, 2)),
    ("transpose", O.Transpose([2, 0, 3, 1]), [_x(2, 3, 4, 5)], lambda x: x.permute(2, 0, 3, 1)),
    ("pad_constant", O.Pad([0, 0, 1, 2, 0, 0, 2, 1], "constant", 0.5), [_x(2, 3, 4, 5)],
     lambda x: F.pad(x, (2, 1, 1, 2), value=0.5)),
    ("pad_crop", O.Pad([0, 0, -1, 2, 0, 0, 1, -2]), [_x(2, 3, 4, 5)], lambda x: F.pad(x, (2, -2, -1, 1))),
    ("pad_reflect", O.Pad([0, 0, 1, 2, 0, 0, 2, 3], "reflect"), [_x(2, 3, 4, 5)],
     lambda x: F.pad(x, (2, 3, 1, 2), mode="reflect")),
    ("pad_edge", O.Pad([0, 0, 3, 1, 0, 0, 2, 4], "edge"), [_x(2, 3, 4, 5)],
     lambda x: F.pad(x, (1, 4, 3, 2), mode="replicate")),
    ("clip", O.Clip(-0.5, 0.7), [_x(2, 3, 4)], lambda x: torch.clamp(x, -0.5, 0.7)),
    ("clip_min_only", O.Clip(0.1, None), [_x(2, 3, 4)], lambda x: torch.clamp(x, min=0.1)),
    ("matmul", _matmul(), [_x(2, 5, 4)], lambda x, W: x @ W),
    ("batch_matmul", O.BatchMatMul(), [_x(2, 1, 3, 4), _x(3, 4, 2, seed=1)], torch.matmul),
    ("softmax", O.OnnxSoftmax(1), [_x(2, 3, 4)], lambda x: F.softmax(x, dim=1)),
    ("log_softmax", O.OnnxSoftmax(-1, log=True), [_x(2, 3, 4)], lambda x: F.log_softmax(x, dim=-1)),
    ("softmax_coerce_2d", O.OnnxSoftmax(1, coerce_2d=True), [_x(2, 3, 4)],
     lambda x: _coerced_softmax(x, 1, False)),
    ("log_softmax_coerce_2d", O.OnnxSoftmax(2, log=True, coerce_2d=True), [_x(2, 3, 4, 2)],
     lambda x: _coerced_softmax(x, 2, True)),
    ("hardsigmoid", O.HardSigmoid(0.2, 0.5), [_x(2, 3, 4) * 3], lambda x: torch.clamp(0.2 * x + 0.5, 0, 1)),
    # torch's own F.hardsigmoid backward multiplies by a float32 1/6 (3e-8 off in float64): relu6 form
    ("hardsigmoid_sixth", O.HardSigmoid(1 / 6, 0.5), [_x(2, 3, 4) * 3], lambda x: F.relu6(x + 3) / 6),
    ("hardswish", O.HardSigmoid(1 / 6, 0.5, swish=True), [_x(2, 3, 4) * 3], F.hardswish),
    ("prelu", _prelu(), [_x(2, 3, 4, 5)], lambda x, slope: F.prelu(x, slope.reshape(-1))),
    ("reduce_mean", O.Reduce("mean", [1, 3], True), [_x(2, 3, 4, 5)], lambda x: x.mean(dim=(1, 3), keepdim=True)),
    ("reduce_sum", O.Reduce("sum", [2], False), [_x(2, 3, 4, 5)], lambda x: x.sum(dim=2)),
    ("reduce_max", O.Reduce("max", [1, 2], False), [_x(2, 3, 4, 5)], lambda x: x.amax(dim=(1, 2))),
    ("reduce_max_ties", O.Reduce("max", [1], True), [_x(2, 3, 4, round_=True)],
     lambda x: x.amax(dim=1, keepdim=True)),
    ("slice", O.Slice([1, 0], [3, 5], [1, 3], [1, 2]), [_x(2, 3, 4, 5)], lambda x: x[:, 1:3, :, 0:5:2]),
    ("slice_negative_step", O.Slice([-1], [0], [2], [-2]), [_x(2, 3, 5)],
     lambda x: _slice_index(x, 2, slice(-1, 0, -2))),
    ("slice_batch", O.Slice([1], [2 ** 62], [0]), [_x(3, 2, 2)], lambda x: x[1:]),
    ("lrn3", O.LRN(3, 1e-1, 0.75, 2.0), [_x(2, 5, 3, 3)], lambda x: F.local_response_norm(x, 3, 1e-1, 0.75, 2.0)),
    ("lrn5", O.LRN(5, 2e-1, 0.6, 1.0), [_x(2, 6, 2, 3)], lambda x: F.local_response_norm(x, 5, 2e-1, 0.6, 1.0)),
    ("gather", O.Gather([[0, -1], [1, 1]], 1), [_x(2, 3, 4)], lambda x: x[:, torch.tensor([[0, 2], [1, 1]])]),
    ("gather_batch", O.Gather([2, 0, 2], 0), [_x(3, 2, 2)], lambda x: x[torch.tensor([2, 0, 2])]),
    ("expand", O.Expand([3, 1, 3, 1]), [_x(2, 1, 4)], lambda x: torch.broadcast_to(x, (3, 2, 3, 4))),
    ("dilated_max", O.DilatedPool2D("max", 2, 1, 1, 2), [_x(2, 2, 6, 7)],
     lambda x: F.max_pool2d(x, 2, 1, 1, 2)),
    ("dilated_avg", O.DilatedPool2D("avg", 3, 2, 1, 2), [_x(2, 2, 7, 6)],
     lambda x: _avg_pool_dilated(x, 3, 2, 1, 2, False)),
    ("dilated_avg_count_pad", O.DilatedPool2D("avg", 2, 1, 1, 2, count_include_pad=True), [_x(2, 2, 6, 6)],
     lambda x: _avg_pool_dilated(x, 2, 1, 1, 2, True)),
    ("tile", O.Tile([1, 2, 3]), [_x(2, 3, 2)], lambda x: x.repeat(1, 2, 3)),
    ("tile_batch", O.Tile([3, 1, 2]), [_x(2, 3, 2)], lambda x: x.repeat(3, 1, 2)),
]


@pytest.mark.parametrize("name,layer,xs,fn", CASES, ids=[c[0] for c in CASES])
def test_backward_equals_torch_autograd(name, layer, xs, fn):
    layer.astype(np.float64)
    multi = len(xs) > 1
    y = layer.forward(xs if multi else xs[0])
    ts = [torch.tensor(x, requires_grad=True) for x in xs]
    ps = {k: torch.tensor(v, requires_grad=True) for k, v in layer.params.items()}
    yt = fn(*ts, **ps)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=RTOL, atol=ATOL, err_msg=f"{name}: forward")
    dy = _rng(9).standard_normal(y.shape)
    dx = layer.backward(dy)
    yt.backward(torch.tensor(dy))
    for k, (d, t) in enumerate(zip(dx if multi else [dx], ts)):
        assert d.shape == xs[k].shape, (name, k)
        np.testing.assert_allclose(d, t.grad.numpy(), rtol=RTOL, atol=ATOL, err_msg=f"{name}: d input {k}")
    assert set(layer.grads) == set(ps), name
    for k, t in ps.items():
        np.testing.assert_allclose(layer.grads[k], t.grad.numpy(), rtol=RTOL, atol=ATOL, err_msg=f"{name}: d {k}")
