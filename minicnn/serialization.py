"""minicnn's own model file: one ``.npz`` of plain arrays plus the architecture as JSON (no pickle).

    model.save("model.npz")                 # Graph.save: w:<name> arrays, "architecture", "format_version"
    model = minicnn.load("model.npz")       # rebuilt from the JSON, only from minicnn's own layer classes

``FORMAT_VERSION`` (``minicnn.model``) is 2: ``meta['preprocessing']`` is always
``Preprocessing.to_dict()``; files of version 1 (a string or an older dict there) are upgraded as
they are read (``minicnn.legacy``). The bytes are parsed by ``minicnn.readers.npz``.
"""
from __future__ import annotations

from . import layers as _layers
from .errors import WeightFileError
from .legacy import upgrade_meta
from .model import FORMAT_VERSION, Graph, Sequential
from .readers.npz import read_npz

__all__ = ["load", "model_from_config", "model_from_arrays", "FORMAT_VERSION"]


def model_from_config(config: dict) -> Graph:
    """Rebuild a Graph/Sequential (untrained) from ``to_config()`` output."""
    version = int(config.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise WeightFileError(f"model file format {version} is newer than this minicnn understands ({FORMAT_VERSION})")
    cls = {"Graph": Graph, "Sequential": Sequential}.get(config["class"])
    if cls is None:
        raise WeightFileError(f"unknown model class {config['class']!r}")
    model = (Sequential(input_shape=config.get("input_shape"), name=config.get("name")) if cls is Sequential else
             Graph(inputs=config["inputs"], input_shape=config.get("input_shape"), name=config.get("name")))
    for spec in config["nodes"]:
        layer_cls = _layers.LAYER_CLASSES.get(spec["class"])
        if layer_cls is None:
            raise WeightFileError(f"unknown layer class {spec['class']!r} in node {spec['name']!r}")
        layer = layer_cls.from_config(spec["config"])
        if not spec.get("trainable", True):
            layer.freeze()
        if cls is Sequential:
            model.append((spec["name"], layer))
        else:
            model.add(spec["name"], layer, spec["inputs"])
    model.output_name = config["output"]
    model.output_activation = config.get("output_activation")
    meta = config.get("meta") or {}
    model.meta = upgrade_meta(meta, model.input_shape) if version < 2 else meta
    return model


def model_from_arrays(arrays: dict, config: dict) -> Graph:
    """The model that ``to_arrays`` described: architecture from ``config``, weights from ``w:*`` arrays."""
    model = model_from_config(config)
    model.load_state_dict({k[2:]: v for k, v in arrays.items() if k.startswith("w:")})
    return model


def load(path) -> Graph:
    """Rebuild a saved model (architecture + weights + buffers) from its ``.npz``."""
    from .readers.detect import describe_content
    not_npz = describe_content(path)
    if not_npz is not None:               # an image or an HDF5 file is named as such, not as a broken .npz
        raise WeightFileError(f"{path} is {not_npz}, not a minicnn model (.npz); a Keras or PyTorch file is "
                              f"converted first (`minicnn convert FILE OUT.npz`)", path=path)
    arrays, config = read_npz(path)
    if config is None:
        raise WeightFileError(f"{path} has no 'architecture' entry: it is a weights file, not a minicnn model; "
                         f"build the model and call model.load_weights(path)")
    return model_from_arrays(arrays, config)
