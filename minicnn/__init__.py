"""minicnn: a readable convolutional-network engine in NumPy and Numba.

    from minicnn import layers, losses, optim, Sequential, Graph, gradcheck, load
"""
from . import callbacks, layers, losses, optim
from .callbacks import EarlyStopping, ModelCheckpoint
from .gradient_check import gradcheck
from .model import Graph, Sequential

__version__ = "0.1.0"
__all__ = ["layers", "losses", "optim", "callbacks", "EarlyStopping", "ModelCheckpoint", "Sequential", "Graph",
           "gradcheck", "load", "load_onnx", "predict_files", "profile"]


def load_onnx(path, input_shape=None):
    """An ONNX model file as a minicnn Graph (``minicnn.pretrained.onnx_import``; needs ``minicnn[onnx]``)."""
    from .pretrained.onnx_import import load_onnx as _load_onnx
    return _load_onnx(path, input_shape=input_shape)


def load(path_or_name, **kwargs):
    """A model from a file recognised by its content, or a registry name (see ``minicnn.pretrained.loading``):
    minicnn ``.npz``, torchvision state_dicts, torchxrayvision pickles, CheXNet checkpoints, Keras
    ``.keras``/``.h5``, ONNX (with the importer), ``xrv-densenet121-all`` ... -> ``Graph``."""
    from .pretrained.loading import load as _load
    return _load(path_or_name, **kwargs)


def predict_files(model, paths, **kwargs):
    """Predict image files with the preprocessing saved with the model (see ``minicnn.predict``)."""
    from .predict import predict_files as _predict_files
    return _predict_files(model, paths, **kwargs)


def profile(model, x, **kwargs):
    """Time, FLOPs, GFLOP/s and share of the pass per node and per layer type, measured inside
    ``Graph.predict`` (and training forward + backward with ``training=True``): see ``minicnn.profiling``."""
    from .profiling import profile as _profile
    return _profile(model, x, **kwargs)
