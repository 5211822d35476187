"""minicnn: a readable convolutional-network engine in NumPy and Numba.

    from minicnn import layers, losses, optim, Sequential, Graph, gradcheck, load
"""
from . import callbacks, layers, losses, optim
from .callbacks import EarlyStopping, ModelCheckpoint
from .gradient_check import gradcheck
from .model import Graph, Sequential
from .serialization import load

__version__ = "0.1.0"
__all__ = ["layers", "losses", "optim", "callbacks", "EarlyStopping", "ModelCheckpoint", "Sequential", "Graph",
           "gradcheck", "load", "predict_files"]


def predict_files(model, paths, **kwargs):
    """Predict image files with the preprocessing saved with the model (see ``minicnn.predict``)."""
    from .predict import predict_files as _predict_files
    return _predict_files(model, paths, **kwargs)
