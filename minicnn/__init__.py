"""minicnn: a readable convolutional-network engine in NumPy and Numba.

    from minicnn import layers, losses, optim, Sequential, Graph, gradcheck, load
"""
from . import layers, losses, optim
from .gradient_check import gradcheck
from .model import Graph, Sequential

__version__ = "0.1.0"
__all__ = ["layers", "losses", "optim", "Sequential", "Graph", "gradcheck", "load", "predict_files"]


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
