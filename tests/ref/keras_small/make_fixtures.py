"""Make the small Keras fixtures for tests/pretrained/test_keras_import.py.

Run in a scratch env with TensorFlow + Keras 3 + tf-keras (NOT a minicnn dependency):
    tfenv/bin/python make_fixtures.py OUTDIR
Writes OUTDIR/<name>.keras (Keras 3), OUTDIR/<name>.h5 (tf-keras / Keras 2 full model, same weights)
and OUTDIR/outputs.npz with, per model, 'x_<name>' (NHWC inputs) and 'y_<name>' (Keras outputs).
"""
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import keras
import tf_keras

OUT = sys.argv[1] if len(sys.argv) > 1 else "."
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(0)


def functional(K):
    L = K.layers
    inp = L.Input((12, 12, 3), name="image")
    r = L.Rescaling(1 / 127.5, offset=-1.0, name="rescale")(inp)
    a = L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(r)      # 6x6x8
    a = L.BatchNormalization(epsilon=1e-3, momentum=0.9, name="stem_bn")(a)
    a = L.ReLU(name="stem_relu")(a)
    b = L.SeparableConv2D(8, 3, padding="same", depth_multiplier=2, activation="relu", name="sep")(a)
    c = L.DepthwiseConv2D(3, padding="same", name="dw")(a)                                 # shared input a
    c = L.Activation("swish", name="dw_swish")(c)
    d = L.Add(name="add")([b, c, a])
    m = L.MaxPooling2D(3, strides=2, padding="same", name="maxpool")(d)                    # 3x3x8
    p = L.AveragePooling2D(3, strides=2, padding="same", name="avgpool")(d)                # 3x3x8
    cat = L.Concatenate(name="concat")([m, p])                                             # 3x3x16
    z = L.ZeroPadding2D(((1, 0), (0, 1)), name="pad")(cat)                                 # 4x4x16
    z = L.Conv2D(4, 2, padding="valid", activation="tanh", name="conv2")(z)                # 3x3x4
    z = L.BatchNormalization(center=False, scale=True, name="bn2")(z)
    f = L.Flatten(name="flatten")(z)                                                       # 36
    h = L.Dense(6, activation="elu", name="fc1")(f)
    h = L.Dropout(0.5, name="drop")(h)
    out = L.Dense(3, activation="softmax", name="probs")(h)
    return K.Model(inp, out, name="tiny_functional"), (12, 12, 3)


def sequential(K):
    L = K.layers
    m = K.Sequential([
        L.Input((10, 10, 2)),
        L.Conv2D(4, 3, activation="relu", name="c1"),                                     # 8x8x4
        L.MaxPooling2D(2, name="mp"),                                                      # 4x4x4
        L.Conv2D(5, 3, padding="same", dilation_rate=2, name="c2"),
        L.BatchNormalization(center=False, name="bn"),
        L.Activation("selu", name="act"),
        L.AveragePooling2D(2, padding="valid", name="ap"),                                 # 2x2x5
        L.GlobalMaxPooling2D(name="gmp"),
        L.Dropout(0.5, name="drop"),
        L.Dense(1, activation="sigmoid", name="out"),
    ], name="tiny_sequential")
    return m, (10, 10, 2)


def nested(K):
    L = K.layers
    bi = L.Input((9, 9, 3), name="bb_in")
    x = L.Conv2D(6, 3, strides=2, padding="same", name="bb_conv")(bi)
    x = L.BatchNormalization(name="bb_bn")(x)
    x = L.Activation("relu", name="bb_relu")(x)
    y = L.SeparableConv2D(6, 3, padding="same", use_bias=False, name="bb_sep")(x)
    y = L.BatchNormalization(name="bb_bn2")(y)
    x = L.Add(name="bb_add")([x, y])
    backbone = K.Model(bi, x, name="backbone")      # trainable, but called with training=False:
    inp = L.Input((9, 9, 3), name="img")             # its batch-norms stay in inference mode, and
    f = backbone(inp, training=False)                # tf-keras stores its trainable weights first
    g = L.GlobalAveragePooling2D(name="gap")(f)
    head = L.Dense(2, name="logits")                                                       # linear
    head.trainable = False
    out = head(g)
    return K.Model(inp, out, name="tiny_nested"), (9, 9, 3)


def randomize(model):
    """Random weights everywhere, BN statistics included (positive variances)."""
    ws = []
    for w in model.weights:
        v = np.asarray(w.numpy() if hasattr(w, "numpy") else w)
        name = w.name if isinstance(w.name, str) else ""
        path = getattr(w, "path", name)
        if "variance" in path:
            ws.append(rng.uniform(0.5, 2.0, v.shape).astype(np.float32))
        else:
            ws.append(rng.normal(0, 0.5, v.shape).astype(np.float32))
    return ws


outputs = {}
for build in (functional, sequential, nested):
    m3, shape = build(keras)
    ws = randomize(m3)
    m3.set_weights(ws)
    m2, _ = build(tf_keras)
    m2.set_weights(m3.get_weights())    # same order in both Keras versions for these models
    name = m3.name
    x = rng.uniform(0, 255 if build is functional else 1, (2,) + shape).astype(np.float32)
    if build is not functional:
        x = (x * 2 - 1).astype(np.float32)
    y3 = np.asarray(m3(x, training=False))
    y2 = np.asarray(m2(x, training=False))
    print(name, "keras3 vs tf-keras max diff", np.abs(y3 - y2).max(), y3.shape)
    assert np.abs(y3 - y2).max() < 1e-4
    m3.save(f"{OUT}/{name}.keras")
    m2.save(f"{OUT}/{name}.h5", save_format="h5")
    outputs[f"x_{name}"] = x
    outputs[f"y_{name}"] = y3.astype(np.float32)
    outputs[f"y2_{name}"] = y2.astype(np.float32)
np.savez_compressed(f"{OUT}/outputs.npz", **outputs)
print(sorted(outputs))
