"""Check minicnn against Keras' own outputs for Keras ``.h5`` weight files (not a CI test).

    python pretrained/verify_keras_refs.py REFS_DIR [vgg16 resnet50 inception_v3 densenet121] [--keras3]

REFS_DIR holds, per architecture NAME (made with tf-keras, e.g. by random weights and random
batch-norm statistics, as in /work/scratch/make_legacy_ref.py):

    NAME.h5          include_top=True weights, legacy layout (``save_weights('NAME.h5')``)
    NAME_notop.h5    include_top=False weights
    NAME_ref.npz     x (preprocessed, NHWC), logits_or_probs (softmax), logits, pooled
                     (include_top=False, pooling='avg'), featuremap (pooling=None, NHWC)

With ``--keras3`` the weights come from ``NAME.weights.h5`` / ``NAME_notop.weights.h5`` instead: the
same weights in the Keras 3 layout, written by Keras 3 (``keras.applications.X(weights=None)``,
``load_weights('NAME.h5')``, ``save_weights('NAME.weights.h5')``).

For each one, minicnn loads the files (``source='keras'`` is read from the file) and prints the
max relative error ``max|a - b| / max|b|`` of probabilities, logits, pooled features and the
feature map against Keras. Exit status 1 if any exceeds the tolerance (default 1e-4).
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np

from minicnn.model import apply_activation
from minicnn.pretrained.densenet import densenet121
from minicnn.pretrained.inception import inception_v3
from minicnn.pretrained.resnet import resnet50
from minicnn.pretrained.vgg import vgg16

BUILDERS = {"vgg16": vgg16, "resnet50": resnet50, "inception_v3": inception_v3, "densenet121": densenet121}


def rel_err(a, b) -> float:
    b = np.asarray(b, np.float64)
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


def verify(refs: Path, name: str, ext: str = ".h5") -> dict:
    ref = np.load(refs / f"{name}_ref.npz", allow_pickle=False)
    x = np.ascontiguousarray(ref["x"].transpose(0, 3, 1, 2), dtype=np.float32)     # NHWC -> NCHW
    shape = x.shape[1:]
    build = BUILDERS[name]
    out = {}

    model = build(refs / f"{name}{ext}", include_top=True, input_shape=shape)
    assert model.meta["source"] == "keras" and model.output_activation == "softmax", model.meta
    logits = model.forward(x)
    out["logits"] = rel_err(logits, ref["logits"])
    out["probs"] = rel_err(apply_activation(logits, model.output_activation), ref["logits_or_probs"])
    del model
    gc.collect()

    model = build(refs / f"{name}_notop{ext}", include_top=False, pooling="avg", input_shape=shape)
    out["pooled"] = rel_err(model.predict(x), ref["pooled"])
    del model
    gc.collect()

    model = build(refs / f"{name}_notop{ext}", include_top=False, pooling=None, input_shape=shape)
    out["featuremap"] = rel_err(model.predict(x), ref["featuremap"].transpose(0, 3, 1, 2))
    del model
    gc.collect()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("refs", type=Path, help="folder with NAME.h5, NAME_notop.h5, NAME_ref.npz")
    ap.add_argument("names", nargs="*", default=["vgg16", "resnet50", "inception_v3", "densenet121"])
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--keras3", action="store_true", help="load NAME.weights.h5 / NAME_notop.weights.h5 "
                    "(Keras 3 layout) instead of the legacy NAME.h5 / NAME_notop.h5")
    args = ap.parse_args(argv)
    ext = ".weights.h5" if args.keras3 else ".h5"
    worst = 0.0
    print(f"{'model':14s} {'probs':>10s} {'logits':>10s} {'pooled':>10s} {'featuremap':>10s}   seconds")
    for name in args.names:
        if name not in BUILDERS:
            ap.error(f"unknown model {name!r}; known: {', '.join(BUILDERS)}")
        need = [f"{name}_ref.npz", f"{name}{ext}", f"{name}_notop{ext}"]
        absent = [f for f in need if not (args.refs / f).exists()]
        if absent:
            print(f"{name:14s} skipped: no {', '.join(absent)} in {args.refs}")
            continue
        t = time.perf_counter()
        r = verify(args.refs, name, ext)
        worst = max(worst, *r.values())
        print(f"{name:14s} {r['probs']:10.2e} {r['logits']:10.2e} {r['pooled']:10.2e} {r['featuremap']:10.2e}"
              f"   {time.perf_counter() - t:7.1f}", flush=True)
    ok = worst < args.tol
    print(f"worst relative error {worst:.2e}: {'OK' if ok else 'FAILED'} (tolerance {args.tol:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
