"""End to end: a small CNN trained with the weighted loss on an imbalanced generated task learns."""
import time

import numpy as np

from minicnn import Sequential, layers, optim
from minicnn.losses import WeightedBCE, class_weights


def _task(n, rng, pos_fraction=0.2):
    """Noisy 16x16 images; positives hold a small bright 3x3 blob somewhere (its mean barely moves)."""
    y = (rng.random(n) < pos_fraction).astype(np.float32)
    x = rng.normal(0, 1, (n, 1, 16, 16)).astype(np.float32)
    for i in np.flatnonzero(y):
        r, c = rng.integers(1, 13, 2)
        x[i, 0, r:r + 3, c:c + 3] += 2.5
    return x, y[:, None]


def _auc(y, p):
    pos, neg = p[y == 1], p[y == 0]
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum())
                 / (len(pos) * len(neg)))


def test_small_cnn_learns_an_imbalanced_task_quickly():
    rng = np.random.default_rng(0)
    x, y = _task(600, rng)
    xt, yt = _task(300, rng)
    model = Sequential([
        layers.Conv2D(1, 8, 3, padding=1, seed=1), layers.ReLU(), layers.MaxPool2D(2),
        layers.Conv2D(8, 8, 3, padding=1, seed=2), layers.ReLU(), layers.MaxPool2D(2),
        layers.Conv2D(8, 8, 3, padding=1, seed=3), layers.ReLU(), layers.MaxPool2D(2),
        layers.Flatten(), layers.Dense(8 * 2 * 2, 1, seed=4),
    ], output_activation="sigmoid")
    loss = WeightedBCE(*class_weights(y))
    opt = optim.Adam(model.params(), lr=3e-3)
    start = time.perf_counter()
    auc_before = _auc(yt[:, 0], model.predict(xt)[:, 0])
    order = np.random.default_rng(1)
    for epoch in range(8):
        perm = order.permutation(len(x))
        for b in range(0, len(x), 32):
            idx = perm[b:b + 32]
            z = model.forward(x[idx], training=True)
            loss.forward(z, y[idx])
            model.backward(loss.backward(), input_grad=False)
            opt.step(model.grads())
    auc = _auc(yt[:, 0], model.predict(xt)[:, 0])
    elapsed = time.perf_counter() - start
    print(f"held-out AUC {auc_before:.3f} -> {auc:.3f} in {elapsed:.1f} s")
    assert auc > 0.9, (auc_before, auc)
