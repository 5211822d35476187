"""Weighted BCE (both forms), class weights, softmax cross-entropy."""
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st

from minicnn.gradient_check import gradcheck
from minicnn.losses import SoftmaxCrossEntropy, WeightedBCE, class_weights


def _problem(seed, n, k):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < 0.4).astype(np.float64)
    w_pos, w_neg = rng.uniform(0.1, 1, k), rng.uniform(0.1, 1, k)
    return rng, y, w_pos, w_neg


@given(seed=st.integers(0, 10_000), n=st.integers(1, 6), k=st.integers(1, 4))
def test_weighted_bce_from_logits_gradcheck(seed, n, k):
    rng, y, w_pos, w_neg = _problem(seed, n, k)
    z = rng.normal(0, 3, (n, k))
    assert gradcheck(WeightedBCE(w_pos, w_neg), (z, y))["x"] < 1e-6


@given(seed=st.integers(0, 10_000), n=st.integers(1, 6), k=st.integers(1, 4))
def test_weighted_bce_from_probabilities_gradcheck(seed, n, k):
    rng, y, w_pos, w_neg = _problem(seed, n, k)
    p = rng.uniform(0.02, 0.98, (n, k))  # far (>> 10h) from the eps clip
    assert gradcheck(WeightedBCE(w_pos, w_neg, from_logits=False), (p, y))["x"] < 1e-6


@given(seed=st.integers(0, 10_000))
def test_both_forms_agree(seed):
    rng, y, w_pos, w_neg = _problem(seed, 5, 3)
    z = rng.normal(0, 2, (5, 3))
    p = 1 / (1 + np.exp(-z))
    a, b = WeightedBCE(w_pos, w_neg), WeightedBCE(w_pos, w_neg, from_logits=False)
    assert a.forward(z, y) == pytest.approx(b.forward(p, y), rel=1e-9)
    # chain rule: dL/dz = dL/dp * p (1 - p)
    np.testing.assert_allclose(a.backward(), b.backward() * p * (1 - p), rtol=1e-7, atol=1e-12)


def test_logits_form_is_stable_at_1000():
    z = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]])
    y = np.array([[1.0, 0.0], [1.0, 0.0]])
    loss = WeightedBCE([0.5, 0.5], [0.5, 0.5])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = loss.forward(z, y)
        grad = loss.backward()
    # row 0 is perfectly right (loss 0); row 1 is wrong by 1000 on both classes: 0.5*1000*2 / N(=2)
    assert value == pytest.approx(500.0)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, [[0, 0], [-0.25, 0.25]], atol=1e-12)


def test_reduction_is_sum_over_classes_mean_over_examples():
    z = np.zeros((4, 3))
    y = np.ones((4, 3))
    assert WeightedBCE(1.0, 1.0).forward(z, y) == pytest.approx(3 * np.log(2))


def test_class_weights_balance_positives_and_negatives():
    labels = np.array([[1, 0], [0, 0], [0, 1], [0, 1]], dtype=float)
    w_pos, w_neg = class_weights(labels)
    np.testing.assert_allclose(w_pos, [0.75, 0.5])
    np.testing.assert_allclose(w_neg, [0.25, 0.5])
    assert w_pos.dtype == np.float64 and w_pos.shape == (2,)
    # the weighted positive and negative contributions are equal per class
    np.testing.assert_allclose(w_pos * labels.sum(0), w_neg * (1 - labels).sum(0))
    w_pos1, w_neg1 = class_weights(np.array([1, 0, 0, 0]))
    assert w_pos1.shape == (1,) and w_pos1[0] == 0.75 and w_neg1[0] == 0.25


def test_class_weights_name_the_degenerate_class():
    with pytest.raises(ValueError, match="Effusion has no positive"):
        class_weights(np.array([[1, 0], [0, 0]]), classes=["Mass", "Effusion"])
    with pytest.raises(ValueError, match="class 0 has no negative"):
        class_weights(np.ones((3, 1)))


def test_shape_mismatch_and_backward_before_forward():
    with pytest.raises(ValueError, match="y_pred.shape"):
        WeightedBCE().forward(np.zeros((2, 1)), np.zeros((2, 2)))
    with pytest.raises(RuntimeError):
        WeightedBCE().backward()


@given(seed=st.integers(0, 10_000), weighted=st.booleans())
def test_softmax_cross_entropy_gradcheck(seed, weighted):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, (4, 3))
    t = rng.integers(0, 3, 4)
    loss = SoftmaxCrossEntropy(rng.uniform(0.2, 2, 3) if weighted else None)
    assert gradcheck(loss, (z, t))["x"] < 1e-6


def test_losses_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng, y, w_pos, w_neg = _problem(7, 6, 3)
    z = rng.normal(0, 3, (6, 3))
    loss = WeightedBCE(w_pos, w_neg)
    ours = loss.forward(z, y)
    zt = torch.tensor(z, requires_grad=True)
    yt = torch.tensor(y)
    weight = yt * torch.tensor(w_pos) + (1 - yt) * torch.tensor(w_neg)
    ref = F.binary_cross_entropy_with_logits(zt, yt, weight=weight, reduction="sum") / 6
    ref.backward()
    assert ours == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), zt.grad.numpy(), rtol=1e-10, atol=1e-14)

    t = rng.integers(0, 3, 6)
    cw = rng.uniform(0.2, 2, 3)
    ce = SoftmaxCrossEntropy(cw)
    ours = ce.forward(z, t)
    zt = torch.tensor(z, requires_grad=True)
    ref = F.cross_entropy(zt, torch.tensor(t), weight=torch.tensor(cw))
    ref.backward()
    assert ours == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(ce.backward(), zt.grad.numpy(), rtol=1e-10, atol=1e-14)
