"""The layer contract as the model uses it: need_dx is an argument, random layers get their
generator passed in, and loading weights never orphans the arrays an optimizer holds."""
import numpy as np
import pytest

from minicnn import Sequential, layers, losses, optim
from minicnn.errors import UsageError
from minicnn.train import batch_rngs


def _model(dropout=0.0):
    items = [layers.Conv2D(1, 4, 3, padding=1, bias=False, seed=1), layers.BatchNorm2D(4), layers.ReLU(),
             layers.GlobalAvgPool2D()]
    if dropout:
        items.append(layers.Dropout(dropout, seed=5))
    items.append(layers.Dense(4, 1, seed=2))
    return Sequential(items, output_activation="sigmoid")


def _step(model, opt, x, y, rngs=None):
    loss = losses.WeightedBCE(np.array([1.0]), np.array([1.0]))
    z = model.forward(x, training=True, rngs=rngs)
    loss.forward(z, y)
    model.backward(loss.backward(), input_grad=False)
    opt.step(model.grads())


def test_optimizer_built_before_load_state_dict_updates_the_loaded_parameters():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(4, 1, 8, 8)).astype(np.float32), np.array([[0.], [1.], [1.], [0.]])
    model = _model()
    opt = optim.SGD(model.params(), lr=0.1)
    donor = _model()
    donor.load_state_dict({k: v + 1.0 for k, v in donor.state_dict().items()}, strict=True)
    loaded = {k: v.copy() for k, v in donor.state_dict().items()}
    model.load_state_dict(loaded)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, loaded[k])
    _step(model, opt, x, y)
    changed = [k for k, v in model.params().items() if not np.array_equal(v, loaded[k])]
    assert sorted(changed) == sorted(model.params()), "the optimizer updated arrays the model no longer holds"
    # and the optimizer's arrays are the model's arrays
    for k, v in model.params().items():
        assert v is opt.params[k]


def test_load_state_dict_refuses_mismatches_and_copies_nothing():
    model = _model()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    bad = {k: v + 1 for k, v in before.items()}
    bad["0.W"] = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(UsageError, match="mis-shaped"):
        model.load_state_dict(bad)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_astype_then_an_old_optimizer_refuses_its_next_step():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2, 1, 8, 8)), np.array([[0.], [1.]])
    model = _model()
    opt = optim.Adam(model.params(), lr=1e-3)
    model.astype(np.float64)
    with pytest.raises(UsageError, match="build the optimizer again"):
        _step(model, opt, x, y)
    _step(model, optim.Adam(model.params(), lr=1e-3), x, y)   # a new one works


def test_astype_to_the_same_dtype_keeps_the_arrays():
    model = _model()
    opt = optim.SGD(model.params(), lr=0.1)
    model.astype(np.float32)
    for k, v in model.params().items():
        assert v is opt.params[k]


def test_backward_need_dx_false_skips_dx_but_fills_grads():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 1, 6, 6)).astype(np.float32)
    conv = layers.Conv2D(1, 3, 3, seed=0)
    y = conv.forward(x)
    dx = conv.backward(np.ones_like(y))
    grads = {k: v.copy() for k, v in conv.grads.items()}
    conv.forward(x)
    assert conv.backward(np.ones_like(y), need_dx=False) is None
    for k in grads:
        np.testing.assert_allclose(conv.grads[k], grads[k], rtol=1e-6)
    assert dx.shape == x.shape
    assert not hasattr(conv, "need_input_grad")


def test_dropout_masks_come_from_the_generator_passed_in():
    x = np.ones((4, 1, 8, 8), np.float32)
    model = _model(dropout=0.5)
    names = [n for n, node in model.nodes.items() if node.layer.uses_rng]
    assert len(names) == 1
    r1 = model.forward(x, training=True, rngs=batch_rngs(model, seed=3, epoch=0, batch=7))
    r2 = model.forward(x, training=True, rngs=batch_rngs(model, seed=3, epoch=0, batch=7))
    r3 = model.forward(x, training=True, rngs=batch_rngs(model, seed=3, epoch=0, batch=8))
    np.testing.assert_array_equal(r1, r2)
    assert not np.array_equal(r1, r3)
    # the layer's own generator is untouched by passed-in ones
    d = model[names[0]]
    state = d.rng.bit_generator.state
    model.forward(x, training=True, rngs=batch_rngs(model, seed=3, epoch=1, batch=0))
    assert d.rng.bit_generator.state == state
