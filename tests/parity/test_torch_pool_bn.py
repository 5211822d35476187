"""Parity with PyTorch (float64) for pooling and batch-norm layers: forward and backward."""
import numpy as np
import pytest

from minicnn.layers.norm import BatchNorm2D
from minicnn.layers.pool import AdaptiveAvgPool2D, AvgPool2D, MaxPool2D

torch = pytest.importorskip("torch")
F = torch.nn.functional


def distinct(shape, seed):
    n = int(np.prod(shape))
    return (np.random.default_rng(seed).permutation(n) * 1e-2 - n * 5e-3).reshape(shape)


def run_torch(fn, x, dy):
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty = fn(tx)
    ty.backward(torch.tensor(dy))
    return ty.detach().numpy(), tx.grad.numpy()


def check(name, ours, ref, tol=1e-10):
    assert ours.shape == ref.shape, f"{name}: {ours.shape} vs {ref.shape}"
    err = np.max(np.abs(ours - ref), initial=0.0)
    assert err < tol * max(1.0, np.max(np.abs(ref), initial=0.0)), f"{name}: max abs diff {err:.3g}"


# torch pads symmetrically: padding (ph, pw) here is (ph, ph, pw, pw)
POOL_CASES = [
    dict(kernel_size=2, stride=2, padding=0, shape=(2, 3, 8, 8)),
    dict(kernel_size=3, stride=2, padding=1, shape=(2, 3, 9, 7)),
    dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 1), shape=(1, 2, 6, 7)),
    dict(kernel_size=3, stride=1, padding=1, shape=(2, 2, 5, 5)),
    dict(kernel_size=(2, 3), stride=(3, 1), padding=(0, 1), shape=(1, 2, 8, 5)),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_maxpool_matches_torch(case):
    shape = case["shape"]
    x = distinct(shape, seed=1)
    layer = MaxPool2D(case["kernel_size"], case["stride"], case["padding"])
    y = layer.forward(x)
    dy = np.random.default_rng(2).standard_normal(y.shape)
    dx = layer.backward(dy)
    ty, tdx = run_torch(lambda t: F.max_pool2d(t, case["kernel_size"], case["stride"], case["padding"]), x, dy)
    check("max y", y, ty)
    check("max dx", dx, tdx)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_avgpool_matches_torch(case, count_include_pad):
    x = np.random.default_rng(3).standard_normal(case["shape"])
    layer = AvgPool2D(case["kernel_size"], case["stride"], case["padding"], count_include_pad=count_include_pad)
    y = layer.forward(x)
    dy = np.random.default_rng(4).standard_normal(y.shape)
    dx = layer.backward(dy)
    ty, tdx = run_torch(lambda t: F.avg_pool2d(t, case["kernel_size"], case["stride"], case["padding"],
                                               count_include_pad=count_include_pad), x, dy)
    check("avg y", y, ty)
    check("avg dx", dx, tdx)


@pytest.mark.parametrize("in_hw, out_hw", [((7, 7), (7, 7)), ((10, 9), (7, 7)), ((5, 11), (3, 4)),
                                            ((14, 14), (7, 7)), ((3, 2), (5, 4))])
def test_adaptive_avgpool_matches_torch(in_hw, out_hw):
    x = np.random.default_rng(5).standard_normal((2, 3, *in_hw))
    layer = AdaptiveAvgPool2D(out_hw)
    y = layer.forward(x)
    dy = np.random.default_rng(6).standard_normal(y.shape)
    dx = layer.backward(dy)
    ty, tdx = run_torch(lambda t: F.adaptive_avg_pool2d(t, out_hw), x, dy)
    check("adaptive y", y, ty)
    check("adaptive dx", dx, tdx)


def torch_bn_twin(layer):
    bn = torch.nn.BatchNorm2d(layer.num_features, eps=layer.eps, momentum=layer.momentum).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(layer.params["gamma"]))
        bn.bias.copy_(torch.tensor(layer.params["beta"]))
        bn.running_mean.copy_(torch.tensor(layer.buffers["running_mean"]))
        bn.running_var.copy_(torch.tensor(layer.buffers["running_var"]))
    return bn


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("eps, momentum", [(1e-5, 0.1), (1.001e-5, 0.01)])
def test_batchnorm_matches_torch(training, eps, momentum):
    rng = np.random.default_rng(7)
    C = 4
    layer = BatchNorm2D(C, eps=eps, momentum=momentum).astype(np.float64)
    layer.params["gamma"] = rng.uniform(0.5, 2, C)
    layer.params["beta"] = rng.standard_normal(C)
    layer.buffers["running_mean"] = rng.standard_normal(C)
    layer.buffers["running_var"] = rng.uniform(0.5, 2, C)
    bn = torch_bn_twin(layer)
    bn.train(training)

    x = rng.standard_normal((3, C, 5, 4)) * 2 + 0.5
    dy = rng.standard_normal(x.shape)
    y = layer.forward(x, training=training)
    dx = layer.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = bn(tx)
    ty.backward(torch.tensor(dy))

    check("bn y", y, ty.detach().numpy())
    check("bn dx", dx, tx.grad.numpy())
    check("bn dgamma", layer.grads["gamma"], bn.weight.grad.numpy())
    check("bn dbeta", layer.grads["beta"], bn.bias.grad.numpy())
    # running statistics after one step (unchanged in eval mode)
    check("bn running_mean", layer.buffers["running_mean"], bn.running_mean.numpy())
    check("bn running_var", layer.buffers["running_var"], bn.running_var.numpy())
