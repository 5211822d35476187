"""Export a Keras application's weights to the legacy HDF5 layout of the official files, for minicnn.

    python pretrained/export_keras.py densenet121 out.h5                    # ImageNet, with the top
    python pretrained/export_keras.py resnet50 out_notop.h5 --notop         # ImageNet, no top
    python pretrained/export_keras.py vgg16 out.h5 --weights none           # random weights

Run it where TensorFlow and **tf-keras** are installed (``pip install tensorflow-cpu tf-keras``):
tf-keras writes the legacy ``.h5`` layout (root ``layer_names``, one group per layer with
``weight_names``) with the same code that wrote the official
``*_weights_tf_dim_ordering_tf_kernels[_notop].h5`` files. Keras 3 cannot write it
(``save_weights`` demands ``.weights.h5``); a Keras 2 installation (``keras<3``) works too.
``--weights imagenet`` downloads Keras' official file (md5-checked by Keras); ``none`` exports a
randomly initialised model. The file is written to a temporary name and renamed when complete.

Load it with ``minicnn.pretrained.<arch>(weights='out.h5')`` (``source='keras'`` is read from the
file). Preprocessing: VGG16 and ResNet50 'caffe', InceptionV3 'tf', DenseNet121 'torch'.
"""
from __future__ import annotations

import argparse
import os
import sys

APPLICATIONS = {"densenet121": "DenseNet121", "vgg16": "VGG16", "resnet50": "ResNet50",
                "inception_v3": "InceptionV3"}


def _keras_with_legacy_h5():
    """tf-keras, or Keras 2; Keras 3 cannot write the legacy layout."""
    try:
        import tf_keras
        return tf_keras
    except ImportError:
        pass
    try:
        import keras
    except ImportError:
        raise RuntimeError("neither tf-keras nor keras is installed: pip install tensorflow-cpu tf-keras") from None
    if int(keras.__version__.split(".")[0]) >= 3:
        raise RuntimeError(f"keras {keras.__version__} cannot write legacy .h5 weights; "
                           "pip install tf-keras (it is used automatically when present)")
    return keras


def export(arch: str, out: str, weights: str = "imagenet", include_top: bool = True) -> tuple[int, int]:
    """Write ``arch``'s weights to ``out``; returns (layers, layers with weights)."""
    if not out.endswith(".h5") or out.endswith(".weights.h5"):
        raise ValueError(f"{out}: the file name must end in .h5 (not .weights.h5, Keras 3's format)")
    keras = _keras_with_legacy_h5()
    model = getattr(keras.applications, APPLICATIONS[arch])(
        weights=None if weights == "none" else "imagenet", include_top=include_top)
    tmp = out[:-3] + ".part.h5"
    model.save_weights(tmp, save_format="h5") if keras.__name__ == "tf_keras" else model.save_weights(tmp)
    os.replace(tmp, out)
    return len(model.layers), sum(1 for layer in model.layers if layer.weights)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Export a Keras application's weights as a legacy .h5 for minicnn.")
    ap.add_argument("arch", choices=sorted(APPLICATIONS))
    ap.add_argument("out", help="output file, .h5")
    ap.add_argument("--weights", choices=("imagenet", "none"), default="imagenet")
    ap.add_argument("--notop", action="store_true", help="include_top=False (the official *_notop.h5 layout)")
    args = ap.parse_args(argv)
    try:
        n_layers, n_weighted = export(args.arch, args.out, args.weights, include_top=not args.notop)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: Keras {APPLICATIONS[args.arch]} ({args.weights} weights, "
          f"include_top={not args.notop}), {n_layers} layers, {n_weighted} with weights")
    return 0


if __name__ == "__main__":
    sys.exit(main())
