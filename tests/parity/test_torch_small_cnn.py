"""A whole small CNN, forward and backward, against the same network in PyTorch with identical weights."""
import numpy as np
import pytest

from minicnn import Sequential, layers
from minicnn.losses import WeightedBCE

torch = pytest.importorskip("torch")


def test_small_cnn_matches_torch_forward_and_backward():
    nn = torch.nn
    rng = np.random.default_rng(0)
    ours = Sequential([
        layers.Conv2D(3, 8, 3, stride=1, padding=1, seed=1), layers.BatchNorm2D(8), layers.ReLU(),
        layers.MaxPool2D(2),
        layers.Conv2D(8, 8, 3, stride=2, padding=(0, 1, 0, 1), groups=2, seed=2), layers.ReLU(),
        layers.AvgPool2D(2), layers.Flatten(), layers.Dense(8 * 2 * 2, 3, seed=3),
    ])
    bn = ours["1"]
    bn.params["gamma"][:] = rng.uniform(0.5, 1.5, 8)
    bn.params["beta"][:] = rng.uniform(-0.2, 0.2, 8)
    ref = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(8, 8, 3, stride=2, groups=2), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(32, 3)).double()
    with torch.no_grad():
        ref[0].weight.copy_(torch.tensor(ours["0"].params["W"]))
        ref[0].bias.copy_(torch.tensor(ours["0"].params["b"]))
        ref[1].weight.copy_(torch.tensor(bn.params["gamma"]))
        ref[1].bias.copy_(torch.tensor(bn.params["beta"]))
        ref[5].weight.copy_(torch.tensor(ours["4"].params["W"]))
        ref[5].bias.copy_(torch.tensor(ours["4"].params["b"]))
        ref[9].weight.copy_(torch.tensor(ours["8"].params["W"].T))
        ref[9].bias.copy_(torch.tensor(ours["8"].params["b"]))
    ours.astype(np.float64)
    x = rng.standard_normal((4, 3, 16, 16))
    y = (rng.random((4, 3)) < 0.5).astype(np.float64)
    w_pos, w_neg = np.array([0.7, 0.5, 0.2]), np.array([0.3, 0.5, 0.8])

    loss = WeightedBCE(w_pos, w_neg)
    z = ours.forward(x, training=True)
    value = loss.forward(z, y)
    dx = ours.backward(loss.backward())

    xt = torch.tensor(x, requires_grad=True)
    ref.train()
    zt = ref(xt)
    yt = torch.tensor(y)
    weight = yt * torch.tensor(w_pos) + (1 - yt) * torch.tensor(w_neg)
    lt = torch.nn.functional.binary_cross_entropy_with_logits(zt, yt, weight=weight, reduction="sum") / 4
    lt.backward()

    np.testing.assert_allclose(z, zt.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert value == pytest.approx(lt.item(), rel=1e-10)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-8, atol=1e-12)
    g = ours.grads()
    pairs = {"0.W": ref[0].weight, "0.b": ref[0].bias, "1.gamma": ref[1].weight, "1.beta": ref[1].bias,
             "4.W": ref[5].weight, "4.b": ref[5].bias, "8.b": ref[9].bias}
    for k, t in pairs.items():
        np.testing.assert_allclose(g[k], t.grad.numpy(), rtol=1e-8, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(g["8.W"], ref[9].weight.grad.numpy().T, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(bn.buffers["running_mean"], ref[1].running_mean.numpy(), rtol=1e-10)
    np.testing.assert_allclose(bn.buffers["running_var"], ref[1].running_var.numpy(), rtol=1e-10)
    ref.eval()
    np.testing.assert_allclose(ours.forward(x), ref(xt).detach().numpy(), rtol=1e-10, atol=1e-12)
