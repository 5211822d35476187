"""File-format readers: weight and model files -> NumPy arrays and configs, never executed.

Readers only parse: they import no layer and no model (``minicnn.errors`` only), and do no layout
transforms (a Keras conv kernel stays HWIO, a torch Linear weight ``(out, in)``). The importers in
:mod:`minicnn.pretrained` turn their output into a ``Graph``.

    detect.detect_format(path)          which format a file is, by content (one of ``FORMATS``)
    keras.read_keras_h5(path)           legacy Keras HDF5 weights: ``[KerasLayerWeights]`` in layer order
    keras.read_keras_h5_model(path)     a full-model legacy ``.h5``: ``(model_config, layers)``
    keras.read_keras3_weights(path)     Keras 3 ``.weights.h5``: the ``layers/<key>/vars/<i>`` tree
    keras.read_keras_archive(path)      Keras 3 ``.keras`` zip: ``(config, weights_tree)``
    torch.read_torch_state_dict(path)   ``.safetensors`` / ``.pth`` (zip or legacy pickle) state dict
    torch.read_torch_file(path)         the same with the pickled module's record (class, attributes) and extras
    torch_pickle.load_torch_checkpoint  the safe unpickler behind it (an allow-list, no code runs; whole
                                        pickled modules become inert ``TorchModuleRecord`` s)
    npz.read_npz(path)                  minicnn's own ``.npz``: ``(arrays, architecture config or None)``
    onnx.read_onnx(path)                an ONNX model: node records, initializers, inferred shapes (the
                                        ``onnx`` extra, imported when called; not imported here)

A missing file raises ``FileNotFoundError``; a corrupt or wrong one ``WeightFileError`` (``.path``,
and ``.field`` when one entry is at fault); a pickle naming a global outside the allow-list
``UnsafeFileError``.
"""
from ._files import FORMATS
from .detect import detect_format
from .keras import KerasLayerWeights, read_keras3_weights, read_keras_archive, read_keras_h5, read_keras_h5_model
from .torch import TorchFile, normalize_torch_keys, read_torch_file, read_torch_state_dict
from .torch_pickle import load_torch_checkpoint

__all__ = ["FORMATS", "detect_format", "KerasLayerWeights", "read_keras_h5", "read_keras_h5_model",
           "read_keras3_weights", "read_keras_archive", "read_torch_state_dict", "normalize_torch_keys",
           "read_torch_file", "TorchFile",
           "load_torch_checkpoint"]
