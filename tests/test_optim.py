"""Optimizers against torch.optim, and the learning-rate schedules."""
import numpy as np
import pytest

from minicnn import optim


def _run_ours(opt_cls, kwargs, steps=4):
    rng = np.random.default_rng(0)
    params = {"a.W": rng.standard_normal((3, 2)), "a.b": rng.standard_normal(2)}
    grads_seq = [{k: rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(steps)]
    start = {k: v.copy() for k, v in params.items()}
    opt = opt_cls(params, **kwargs)
    for g in grads_seq:
        opt.step(g)
    return start, grads_seq, params


@pytest.mark.parametrize("name, ours, theirs, kwargs", [
    ("sgd", optim.SGD, "SGD", dict(lr=0.1)),
    ("sgd-momentum-wd", optim.SGD, "SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("sgd-nesterov", optim.SGD, "SGD", dict(lr=0.05, momentum=0.8, nesterov=True)),
    ("adam", optim.Adam, "Adam", dict(lr=0.01)),
    ("adam-l2", optim.Adam, "Adam", dict(lr=0.01, weight_decay=0.1)),
    ("adamw", optim.AdamW, "AdamW", dict(lr=0.01, weight_decay=0.1)),
])
def test_optimizer_steps_match_torch(name, ours, theirs, kwargs):
    torch = pytest.importorskip("torch")
    start, grads_seq, result = _run_ours(ours, kwargs)
    tparams = {k: torch.tensor(v, requires_grad=True) for k, v in start.items()}
    topt = getattr(torch.optim, theirs)(list(tparams.values()), **kwargs)
    for g in grads_seq:
        for k, p in tparams.items():
            p.grad = torch.tensor(g[k])
        topt.step()
    for k in result:
        np.testing.assert_allclose(result[k], tparams[k].detach().numpy(), rtol=1e-12, atol=1e-14, err_msg=f"{name}: {k}")


def test_step_needs_every_gradient():
    params = {"x.W": np.zeros(3)}
    with pytest.raises(ValueError, match="no gradient for param 'x.W'"):
        optim.SGD(params, lr=0.1).step({})


def test_state_dict_roundtrip_resumes_identically():
    _, grads_seq, _ = _run_ours(optim.Adam, dict(lr=0.01), steps=4)
    p1 = {"a.W": np.ones((3, 2)), "a.b": np.ones(2)}
    o1 = optim.Adam(p1, lr=0.01)
    for g in grads_seq:
        o1.step(g)
    p2 = {"a.W": np.ones((3, 2)), "a.b": np.ones(2)}
    o2 = optim.Adam(p2, lr=0.01)
    for g in grads_seq[:2]:
        o2.step(g)
    o3 = optim.Adam(p2, lr=0.5)
    o3.load_state_dict(o2.state_dict())
    for g in grads_seq[2:]:
        o3.step(g)
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])


def test_schedules():
    opt = optim.SGD({"w": np.zeros(1)}, lr=1.0)
    s = optim.StepLR(opt, step_size=2, gamma=0.5)
    lrs = []
    for _ in range(4):
        s.step()
        lrs.append(opt.lr)
    assert lrs == [1.0, 0.5, 0.5, 0.25]
    opt.lr = 1.0
    c = optim.CosineLR(opt, T_max=4, eta_min=0.0)
    for _ in range(4):
        c.step()
    assert opt.lr == pytest.approx(0.0, abs=1e-12)
    opt.lr = 1.0
    r = optim.ReduceLROnPlateau(opt, mode="max", factor=0.1, patience=1)
    for metric in [0.5, 0.6, 0.6, 0.6, 0.7]:
        r.step(metric)
    assert opt.lr == pytest.approx(0.1)
