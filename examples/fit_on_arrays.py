"""Train a small CNN on NumPy arrays with ``fit(x, y)`` and evaluate it, Keras-style.

    python examples/fit_on_arrays.py

The task is made up so it runs in seconds: 16x16 "images" of noise where the positive class has a
brighter upper half. ``fit`` runs minicnn's one training loop (``minicnn.train.fit``);
``evaluate`` returns the clinical metrics (ROC-AUC, sensitivity, specificity, PPV, NPV with 95%
intervals) at the threshold saved in the model.
"""
import numpy as np

from minicnn import EarlyStopping, Sequential, layers, metrics


def make_data(n, seed):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.float32)                     # 30% positives
    x = rng.standard_normal((n, 1, 16, 16)).astype(np.float32)
    x[:, :, :8] += 0.3 * y[:, None, None, None]                      # the signal: a brighter upper half
    return x, y


def main():
    x_train, y_train = make_data(256, seed=0)
    x_test, y_test = make_data(128, seed=1)
    model = Sequential([
        layers.Conv2D(1, 4, 3, padding=1, seed=0), layers.ReLU(), layers.MaxPool2D(2),   # -> (4, 8, 8)
        layers.Conv2D(4, 8, 3, padding=1, seed=1), layers.ReLU(), layers.MaxPool2D(2),   # -> (8, 4, 4)
        layers.Flatten(), layers.Dense(8 * 4 * 4, 1, seed=2),
    ], input_shape=(1, 16, 16), output_activation="sigmoid")
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["auc", "accuracy"], learning_rate=3e-3)
    history = model.fit(x_train, y_train, epochs=8, batch_size=32, validation_split=0.25, class_weight="balanced",
                        callbacks=[EarlyStopping("val_loss", patience=2, restore_best_weights=True)], seed=0,
                        verbose=0)
    for epoch, loss, val_auc in zip(history.epoch, history.history["loss"], history.history["val_auc"]):
        print(f"epoch {epoch}: loss {loss:.4f}  val_auc {val_auc:.3f}")
    # a threshold chosen on validation data would go in model.meta["threshold"]; 0.5 is the default
    result = model.evaluate(x_test, y_test)
    print(metrics.format_metrics_table(result))
    print(f"test ROC-AUC {result['roc_auc']:.3f}")
    labels = model.predict_classes(x_test)
    print(f"{int(labels.sum())} of {len(labels)} test images called positive")


if __name__ == "__main__":
    main()
