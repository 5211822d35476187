"""Pretrained networks: architectures built from minicnn layers, weight files mapped onto them.

    densenet121 / vgg16 / resnet50 / inception_v3(weights=None | path | registry name, include_top=True,
                                     pooling=None, classes=1000, source=None)
    load(path_or_name, output=...)     any model file (by content) or registry name -> Graph (= minicnn.load)
    xrv_densenet121 / xrv_resnet50(weights, output='calibrated')   torchxrayvision's chest X-ray models
    chexnet(weights)                   arnoweng/CheXNet's 14-class DenseNet121
    load_keras(path)                   a Keras .keras / .h5 model file (architecture + weights) as a Graph
    load_weights(model, path)          any supported weight file -> model (strict, all mismatches listed)
    preprocess(images, mode_or_name)   NHWC pixels in [0, 255] -> NCHW float32 for the weights
    fetch(name)                        download a known weight file into $MINICNN_HOME (digest checked)
    build_head / combine / unfreeze_last     transfer learning on a frozen backbone (see minicnn.transfer)
    fold_batchnorm / fast_densenet     inference speed-ups that keep outputs equal (float32 tolerance)

Imports go one way: ``registry`` (knows every architecture) -> ``densenet``/``vgg``/``resnet``/
``inception`` (builder + weight spec) -> ``mapping``/``keras3_weights``/``_common``/``spec``/
``layout`` (generic conversion) -> ``minicnn.readers`` (file formats).
"""
from ..errors import FetchError, KerasImportError
from ..rewrite import fold_batchnorm, use_concat_buffers
from .densenet import densenet121, fast_densenet
from .inception import inception_v3
from .keras_import import load_keras
from .resnet import resnet50
from .vgg import vgg16
from .features import build_head, combine, unfreeze_last
from .preprocess import check_input_range, preprocess
from .registry import checked_builder, fetch, load_weights
from .chexnet import chexnet
from .xrv import xrv_densenet121, xrv_resnet50
from .loading import load

# the builders users call: a weight file of another architecture is named as such
densenet121, vgg16, resnet50, inception_v3 = (checked_builder(n) for n in ("densenet121", "vgg16", "resnet50",
                                                                          "inception_v3"))

__all__ = ["densenet121", "vgg16", "resnet50", "inception_v3", "load_keras", "KerasImportError", "load_weights", "preprocess", "check_input_range", "fetch", "FetchError",
           "build_head", "combine", "unfreeze_last", "fold_batchnorm",
           "use_concat_buffers", "fast_densenet", "load", "xrv_densenet121", "xrv_resnet50", "chexnet"]
