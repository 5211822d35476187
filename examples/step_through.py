"""Step through a tiny CNN: one forward, one backward, then a gradient check of every layer.

    python examples/step_through.py

The network: Conv2D(stride 2, padding 1) -> ReLU -> MaxPool2D -> Flatten -> Dense -> one logit,
trained with the weighted binary cross-entropy from logits; the model's ``output_activation`` is
'sigmoid', so ``predict`` returns a probability. Read alongside ``minicnn/layers/*.py`` and
``minicnn/kernels/*.py`` (each layer names the kernel it calls).
"""
import numpy as np

from minicnn import Sequential, gradcheck, layers
from minicnn.losses import WeightedBCE


def show(name, a):
    a = np.asarray(a)
    flat = ", ".join(f"{v:+.3f}" for v in a.reshape(-1)[:4])
    return f"{name:<9}{str(a.shape):<16}[{flat}{', ...' if a.size > 4 else ''}]"


def main():
    rng = np.random.default_rng(0)
    model = Sequential([
        layers.Conv2D(1, 2, 3, stride=2, padding=1, seed=1),  # (1, 1, 8, 8) -> (1, 2, 4, 4)
        layers.ReLU(),
        layers.MaxPool2D(2),                                   # -> (1, 2, 2, 2)
        layers.Flatten(),                                      # -> (1, 8)
        layers.Dense(8, 1, seed=2),                            # -> (1, 1): a logit
    ], input_shape=(1, 8, 8), output_activation="sigmoid")
    print(model.summary(), "\n")

    x = rng.standard_normal((1, 1, 8, 8)).astype(np.float32)  # one small "image"
    y = np.array([[1.0]], dtype=np.float32)                    # its label: positive
    loss = WeightedBCE(w_pos=0.8, w_neg=0.2)                   # positives are rare: weigh them up

    print("forward: each layer's input and output")
    h = x
    for name, node in model.nodes.items():
        out = node.layer.forward(h, training=True)
        print(f"  {name} {node.layer!r}\n    {show('in', h)}\n    {show('out', out)}")
        h = out
    value = loss.forward(h, y)
    print(f"  loss = {value:.4f}   P(positive) = sigmoid(logit) = {1 / (1 + np.exp(-h[0, 0])):.3f}\n")

    print("backward: the gradient flowing into each layer, and its parameter gradients")
    d = loss.backward()
    print(f"  {show('dL/dz', d)}")
    for name, node in reversed(model.nodes.items()):
        d = node.layer.backward(d)
        print(f"  {name} {node.layer!r}\n    {show('dx', d)}")
        for k, g in node.layer.grads.items():
            print(f"    {show('d' + k, g)}")

    print("\ngradient check (float64, central differences): max relative error per tensor")
    checks = [(layers.Conv2D(1, 2, 3, stride=2, padding=1, seed=1), rng.standard_normal((1, 1, 8, 8))),
              (layers.ReLU(), rng.choice([-1, 1], (1, 2, 4, 4)) * rng.uniform(0.1, 1, (1, 2, 4, 4))),
              (layers.MaxPool2D(2), rng.permutation(32).reshape(1, 2, 4, 4) / 10.0),
              (layers.Flatten(), rng.standard_normal((1, 2, 2, 2))),
              (layers.Dense(8, 1, seed=2), rng.standard_normal((1, 8)))]
    for layer, xin in checks:
        errs = gradcheck(layer, xin)
        print(f"  {layer!r:<40} " + "  ".join(f"{k}: {v:.1e}" for k, v in errs.items()))
    errs = gradcheck(loss, (rng.standard_normal((3, 1)), np.array([[1.0], [0.0], [1.0]])))
    print(f"  {loss!r:<40} x: {errs['x']:.1e}")


if __name__ == "__main__":
    main()
