"""minicnn's own error types: the errors a user can cause and fix.

The command line prints these (and ``OSError`` on a path the user named) in one line, without a
traceback, and exits non-zero; anything else is a bug in minicnn and keeps its traceback.

    MinicnnError
    ├── DataError            a dataset, image, label table or array the user gave     (ValueError)
    │   ├── ImageLoadError   an image file that is missing, unreadable or corrupt
    │   └── LoaderError      the batch loader could not load an item     (ValueError, RuntimeError)
    ├── WeightFileError      a model or weight file that cannot be used                (ValueError)
    │   ├── UnsafeFileError  a file that asks to run code or reach outside itself
    │   ├── KerasImportError a Keras model file minicnn cannot import
    │   └── OnnxImportError  an ONNX model minicnn cannot import or a model it cannot export
    ├── TrainingError        a training run that cannot go on (NaN loss, bad resume)   (RuntimeError)
    ├── FetchError           a download or cache entry that failed                     (RuntimeError)
    └── UsageError           bad arguments or an impossible request                    (ValueError)
        └── UnknownNameError a registry entry, node or class name that does not exist   (KeyError)

Each also subclasses the builtin its predecessor raised, so ``except ValueError`` keeps working.
``.path`` and ``.field`` name the file and the entry in it, when known.
"""
from __future__ import annotations

import errno
import os


class MinicnnError(Exception):
    """Base class of the errors a user can cause. ``path``/``field``: the file and entry, if known."""

    def __init__(self, message: str = "", *, path=None, field: str | None = None):
        super().__init__(message)
        self.path = os.fspath(path) if path is not None else None
        self.field = field

    __str__ = Exception.__str__  # the message as written (KeyError subclasses would quote it)


class DataError(MinicnnError, ValueError):
    """A dataset, image, label table or input array that cannot be used as given."""


class ImageLoadError(DataError):
    """An image file is missing, unreadable or corrupt; the message names the file."""


class LoaderError(DataError, RuntimeError):
    """The batch loader could not produce a batch (names the epoch, batch and its first files)."""


class WeightFileError(MinicnnError, ValueError):
    """A model or weight file that cannot be read or does not fit the model."""


class UnsafeFileError(WeightFileError):
    """A file that would run code or read/write outside itself if loaded naively; refused."""


class KerasImportError(WeightFileError):
    """A Keras ``.keras``/``.h5`` model that minicnn cannot import (names the layer and why)."""


class OnnxImportError(WeightFileError):
    """An ONNX graph minicnn cannot import (lists every unsupported operator with its node names),
    or a model with a layer that has no ONNX equivalent (``Graph.to_onnx``)."""


class TrainingError(MinicnnError, RuntimeError):
    """Training cannot go on (non-finite loss, a run directory that cannot be resumed, ...)."""


class FetchError(MinicnnError, RuntimeError):
    """A download, or a cached file, that failed (no network, wrong digest, ...)."""


class UsageError(MinicnnError, ValueError):
    """Bad arguments or an impossible request (unknown name, invalid option value)."""


class UnknownNameError(UsageError, KeyError):
    """A name minicnn does not know (registry entry, node, class); the message lists the known ones."""


class MissingExtraError(MinicnnError, ImportError):
    """An optional feature whose extra is not installed (``pip install "minicnn[onnx]"`` & co.)."""


def env_int(name: str, default: int) -> int:
    """A positive integer setting from the environment variable ``name`` (``default`` when unset)."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"environment variable {name}={raw!r} must be a positive integer (default {default:,})",
                         field=name)
    return value


def file_not_found(what: str, path) -> FileNotFoundError:
    """``FileNotFoundError`` naming ``what`` and carrying ``path`` (the CLI prints it in one line)."""
    return FileNotFoundError(errno.ENOENT, f"{what} not found", os.fspath(path))


__all__ = ["env_int", "file_not_found", "MinicnnError", "DataError", "ImageLoadError", "LoaderError", "WeightFileError", "UnsafeFileError", "KerasImportError",
           "TrainingError", "FetchError", "UsageError", "UnknownNameError"]
