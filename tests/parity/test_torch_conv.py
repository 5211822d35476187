"""minicnn's conv kernels against torch.nn.functional.conv2d (forward and dx, dW, db)."""
import numpy as np
import pytest

from minicnn.kernels.conv import conv2d_backward, conv2d_forward
from minicnn.layers.conv import Conv2D, SeparableConv2D

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = {np.float32: 2e-5, np.float64: 1e-12}

CASES = [  # (N, C, H, W, F, KH, KW, stride, padding (ph, pw), dilation, groups)
    (2, 3, 9, 9, 4, 3, 3, 1, (1, 1), 1, 1),
    (2, 4, 11, 10, 6, 3, 3, 2, (1, 1), 1, 1),
    (1, 3, 16, 16, 8, 7, 7, 2, (3, 3), 1, 1),
    (2, 6, 9, 8, 4, 1, 1, 1, (0, 0), 1, 1),          # pointwise, no im2col
    (2, 6, 9, 8, 4, 1, 1, 2, (0, 0), 1, 2),          # strided 1x1, grouped
    (2, 4, 12, 12, 6, 3, 3, 1, (2, 2), 2, 2),        # dilated, grouped
    (2, 4, 8, 9, 4, 3, 3, 1, (1, 1), 1, 4),          # depthwise
    (2, 3, 9, 9, 6, 5, 5, 2, (2, 2), 1, 3),          # depthwise, multiplier 2
    (1, 3, 10, 12, 6, 3, 3, (1, 2), (0, 2), (2, 1), 3),
    (2, 2, 7, 15, 3, 1, 7, 1, (0, 3), 1, 1),         # 1x7
    (2, 2, 15, 7, 3, 7, 1, 1, (3, 0), 1, 1),         # 7x1
    (2, 1, 10, 10, 5, 3, 3, 1, (1, 1), 1, 1),        # one input channel
]


def max_rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def torch_conv(x, W, b, dy, **kw):
    tx, tW, tb = (torch.tensor(v, requires_grad=True) for v in (x, W, b))
    y = F.conv2d(tx, tW, tb, **kw)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), tx.grad.numpy(), tW.grad.numpy(), tb.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_conv2d_matches_torch(case, dtype):
    N, C, H, W_, Fo, KH, KW, stride, (ph, pw), dilation, groups = case
    rng = np.random.default_rng(sum(case[:7]))
    x = rng.standard_normal((N, C, H, W_)).astype(dtype)
    W = rng.standard_normal((Fo, C // groups, KH, KW)).astype(dtype)
    b = rng.standard_normal(Fo).astype(dtype)
    kw = dict(stride=stride, dilation=dilation, groups=groups)
    y = conv2d_forward(x, W, b, padding=(ph, ph, pw, pw), **kw)
    dy = rng.standard_normal(y.shape).astype(dtype)
    y_t, dx_t, dW_t, db_t = torch_conv(x, W, b, dy, padding=(ph, pw), **kw)
    dx, dW, db = conv2d_backward(dy, x, W, padding=(ph, ph, pw, pw), **kw)
    for name, ours, theirs in (("y", y, y_t), ("dx", dx, dx_t), ("dW", dW, dW_t), ("db", db, db_t)):
        assert ours.shape == theirs.shape and ours.dtype == dtype, name
        err = max_rel(ours, theirs)
        assert err < TOL[dtype], f"{name}: max rel diff {err:.3g}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("pads, groups", [((0, 1, 0, 1), 1), ((2, 0, 1, 3), 1), ((1, 2, 0, 1), 3)])
def test_asymmetric_padding_matches_torch_pad_then_conv(pads, groups, dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 8, 9)).astype(dtype)
    W = rng.standard_normal((6, 3 // groups, 3, 3)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    y = conv2d_forward(x, W, b, stride=2, padding=pads, groups=groups)
    dy = rng.standard_normal(y.shape).astype(dtype)
    top, bottom, left, right = pads
    tx, tW, tb = (torch.tensor(v, requires_grad=True) for v in (x, W, b))
    y_t = F.conv2d(F.pad(tx, (left, right, top, bottom)), tW, tb, stride=2, groups=groups)
    y_t.backward(torch.tensor(dy))
    dx, dW, db = conv2d_backward(dy, x, W, stride=2, padding=pads, groups=groups)
    for name, ours, theirs in (("y", y, y_t.detach().numpy()), ("dx", dx, tx.grad.numpy()),
                               ("dW", dW, tW.grad.numpy()), ("db", db, tb.grad.numpy())):
        err = max_rel(ours, theirs)
        assert err < TOL[dtype], f"{name}: max rel diff {err:.3g}"


def test_separable_layer_matches_torch_depthwise_then_pointwise():
    rng = np.random.default_rng(0)
    layer = SeparableConv2D(4, 5, 3, stride=2, padding=1, depth_multiplier=2, seed=0).astype(np.float64)
    layer.params["b"] = rng.standard_normal(5)
    x = rng.standard_normal((2, 4, 9, 9))
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in layer.params.items()}
    y_t = F.conv2d(F.conv2d(tx, tp["depthwise_W"], None, stride=2, padding=1, groups=4), tp["pointwise_W"], tp["b"])
    y_t.backward(torch.tensor(dy))
    assert max_rel(y, y_t.detach().numpy()) < 1e-12
    assert max_rel(dx, tx.grad.numpy()) < 1e-12
    for k in tp:
        assert max_rel(layer.grads[k], tp[k].grad.numpy()) < 1e-12, k


def test_conv2d_layer_float32_matches_torch_module():
    rng = np.random.default_rng(1)
    layer = Conv2D(3, 8, 3, stride=2, padding=1, seed=0)
    layer.params["b"] = rng.standard_normal(8).astype(np.float32)
    module = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(layer.params["W"]))
        module.bias.copy_(torch.from_numpy(layer.params["b"]))
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    y_t = module(torch.from_numpy(x)).detach().numpy()
    assert max_rel(layer.forward(x), y_t) < 2e-5
