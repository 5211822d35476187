"""Optimizers and learning-rate schedules, with PyTorch's update rules (Adam's update: ``minicnn.kernels.adam``).

An optimizer takes ``model.params()`` (a dict ``name -> array``) and updates those arrays in
place in ``step(grads)``, where ``grads`` is ``model.grads()`` (same keys)::

    opt = Adam(model.params(), lr=1e-3)
    model.backward(loss.backward()); opt.step(model.grads())

SGD (torch.optim.SGD):      g += wd * p;  buf = mu * buf + g (buf = g at the first step);
                            g = g + mu * buf (Nesterov) or buf;  p -= lr * g
Adam (torch.optim.Adam):    g += wd * p (coupled L2);  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
                            p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
AdamW (decoupled=True):     p *= 1 - lr * wd first, then the Adam step without the L2 term.
"""
from __future__ import annotations

import math

import numpy as np

from .errors import UsageError
from .kernels.adam import adam_update


class Optimizer:
    def __init__(self, params: dict, lr: float):
        if not isinstance(params, dict):
            raise TypeError("an optimizer takes model.params(): a dict of name -> array")
        self.params = params
        self.lr = float(lr)
        self.t = 0
        self.state: dict[str, dict[str, np.ndarray]] = {name: {} for name in params}

    def _grads_for(self, grads: dict):
        for name, p in self.params.items():
            g = grads.get(name)
            if g is None:
                raise UsageError(f"no gradient for param {name!r}: call model.backward(...) before step()")
            if g.shape != p.shape or g.dtype != p.dtype:
                raise UsageError(
                    f"gradient for {name!r} is {g.dtype}{list(g.shape)} but this optimizer holds a {p.dtype}"
                    f"{list(p.shape)} parameter: the model's arrays were replaced after the optimizer was built "
                    f"(model.astype?); build the optimizer again from model.params()")
            yield name, p, g

    def step(self, grads: dict) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Arrays and scalars for a checkpoint: ``{'lr', 't', 'state': {param: {slot: array}}}``."""
        return {"lr": self.lr, "t": self.t,
                "state": {n: {k: v.copy() for k, v in s.items()} for n, s in self.state.items()}}

    def load_state_dict(self, sd: dict) -> None:
        self.lr, self.t = float(sd["lr"]), int(sd["t"])
        missing = set(self.params) - set(sd["state"])
        if missing:
            raise UsageError(f"optimizer state lacks params {sorted(missing)}")
        self.state = {n: {k: np.array(v) for k, v in sd["state"][n].items()} for n in self.params}


class SGD(Optimizer):
    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr)
        if nesterov and momentum <= 0:
            raise UsageError("Nesterov momentum needs momentum > 0")
        self.momentum, self.nesterov, self.weight_decay = float(momentum), bool(nesterov), float(weight_decay)

    def step(self, grads):
        self.t += 1
        for name, p, g in self._grads_for(grads):
            g = g + self.weight_decay * p if self.weight_decay else g
            if self.momentum:
                s = self.state[name]
                s["buf"] = g.copy() if "buf" not in s else self.momentum * s["buf"] + g
                g = g + self.momentum * s["buf"] if self.nesterov else s["buf"]
            p -= (self.lr * g).astype(p.dtype, copy=False)


class Adam(Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
        super().__init__(params, lr)
        self.b1, self.b2 = (float(b) for b in betas)
        self.eps, self.weight_decay, self.decoupled = float(eps), float(weight_decay), bool(decoupled)

    def step(self, grads):
        self.t += 1
        bc1, bc2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for name, p, g in self._grads_for(grads):
            if self.weight_decay and self.decoupled:
                p *= 1 - self.lr * self.weight_decay
            elif self.weight_decay:
                g = g + self.weight_decay * p
            s = self.state[name]
            if not s:
                s["m"], s["v"] = np.zeros_like(p), np.zeros_like(p)
            adam_update(p, g, s["m"], s["v"], self.lr, self.b1, self.b2, self.eps, bc1, bc2)   # in place


class AdamW(Adam):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr, betas, eps, weight_decay, decoupled=True)


# -- learning-rate schedules: call ``step()`` (or ``step(metric)``) once per epoch ----------------

class StepLR:
    """``lr = base_lr * gamma ** (epoch // step_size)``."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
        self.opt, self.step_size, self.gamma = optimizer, int(step_size), float(gamma)
        self.base_lr, self.epoch = optimizer.lr, 0

    def step(self, metric=None):
        self.epoch += 1
        self.opt.lr = self.base_lr * self.gamma ** (self.epoch // self.step_size)

    def state_dict(self):
        return {"epoch": self.epoch, "base_lr": self.base_lr}

    def load_state_dict(self, sd):
        self.epoch, self.base_lr = int(sd["epoch"]), float(sd["base_lr"])


class CosineLR(StepLR):
    """``lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``."""

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0):
        self.opt, self.T_max, self.eta_min = optimizer, int(T_max), float(eta_min)
        self.base_lr, self.epoch = optimizer.lr, 0

    def step(self, metric=None):
        self.epoch += 1
        e = min(self.epoch, self.T_max)
        self.opt.lr = self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * e / self.T_max)) / 2


class ReduceLROnPlateau:
    """Multiply lr by ``factor`` after ``patience`` epochs without improvement of ``metric``."""

    def __init__(self, optimizer, mode: str = "max", factor: float = 0.1, patience: int = 2,
                 min_lr: float = 0.0, threshold: float = 1e-4):
        if mode not in ("max", "min"):
            raise UsageError(f"mode must be 'max' or 'min', got {mode!r}")
        self.opt, self.mode, self.factor, self.patience = optimizer, mode, float(factor), int(patience)
        self.min_lr, self.threshold = float(min_lr), float(threshold)
        self.best, self.bad_epochs = None, 0

    def step(self, metric=None):
        if metric is None or not np.isfinite(metric):
            return
        better = self.best is None or (metric > self.best + self.threshold if self.mode == "max"
                                       else metric < self.best - self.threshold)
        if better:
            self.best, self.bad_epochs = float(metric), 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.opt.lr = max(self.opt.lr * self.factor, self.min_lr)
            self.bad_epochs = 0

    def state_dict(self):
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, sd):
        self.best, self.bad_epochs = sd["best"], int(sd["bad_epochs"])
