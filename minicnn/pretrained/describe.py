"""``minicnn summary FILE``: what a model or weight file is, before converting or loading it.

For any file minicnn reads (minicnn ``.npz``, torch ``.pth``/``.pt``, ``.safetensors``, Keras
``.h5``, ``.weights.h5``, ``.keras``): the format (``readers.detect.detect_format``, by content),
the architecture (a minicnn model's own; a Keras model's config; a known architecture recognised
from the keys, ``registry.recognise_keys``), the input size, the classes and the preprocessing —
each where the file says it, and "not recorded in the file" where it does not.
"""
from __future__ import annotations

import os

import numpy as np

from ..data.preprocessing import Preprocessing
from ..layers.elementwise import Rescaling
from ..readers.detect import detect_format
from ..readers.npz import read_npz
from ..serialization import model_from_arrays
from .keras_import import load_keras
from .registry import ARCHITECTURES, DISPLAY_NAMES, WEIGHTS, file_keys, recognise_keys

FORMAT_NAMES = {
    "npz": "NumPy .npz", "torch_zip": "PyTorch checkpoint (zip, torch.save)",
    "torch_legacy": "PyTorch checkpoint (legacy, pre-1.6 torch.save)", "safetensors": "safetensors",
    "keras_h5": "Keras weights-only HDF5 (save_weights)", "keras_h5_model": "Keras 2 full-model HDF5 (model.save)",
    "keras3_weights": "Keras 3 weights (.weights.h5)", "keras_archive": "Keras 3 model archive (.keras)",
}
NOT_RECORDED = "not recorded in the file"


def _known_weights(arch: str) -> str:
    """What the architecture's known weight files use (a hint where the file says nothing)."""
    entries = [e for e in WEIGHTS.values() if e.architecture == arch]
    return "; ".join(sorted({f"{e.source} weights use {e.preprocessing}" for e in entries}))


def describe_name(name: str) -> dict:
    """``describe_file`` of a registry name's weight file (fetched into the cache when missing)."""
    from .loading import TORCHXRAYVISION_NAMES
    from .registry import fetch
    return describe_file(fetch(TORCHXRAYVISION_NAMES.get(name, name), progress=False))


def describe_file(path) -> dict:
    """``{"file", "format", "format_name", "architecture", "input_size", "classes", "preprocessing",
    "parameters", "notes": [...], "model": Graph or None}`` (values are strings or ints)."""
    path = os.fspath(path)
    fmt = detect_format(path)
    d = {"file": path, "format": fmt, "format_name": FORMAT_NAMES[fmt], "architecture": None,
         "input_size": NOT_RECORDED, "classes": NOT_RECORDED, "preprocessing": NOT_RECORDED,
         "parameters": None, "notes": [], "model": None}
    if fmt in ("torch_zip", "torch_legacy"):
        from ..readers.torch import read_torch_file
        if read_torch_file(path).module is not None:          # a whole pickled model (torchxrayvision)
            from .loading import load
            return _describe_model(d, load(path), "torchxrayvision DenseNet121 (a whole pickled module)")
    if fmt == "npz":
        arrays, config = read_npz(path)
        if config is not None:
            return _describe_model(d, model_from_arrays(arrays, config), "minicnn model")
        keys = [k[2:] if k.startswith("w:") else k for k in arrays]
        d["parameters"] = int(sum(np.size(v) for v in arrays.values()))
        _recognised(d, keys, "arrays only, no architecture (not a minicnn model file)")
        return d
    if fmt in ("keras_archive", "keras_h5_model"):
        model = load_keras(path)
        _, names = file_keys(path)
        arch = recognise_keys(names)
        return _describe_model(d, model, f"Keras model '{model.name}'" + (
            f" ({DISPLAY_NAMES[arch]})" if arch else ""))
    fmt, keys = file_keys(path)
    if fmt in ("torch_zip", "torch_legacy", "safetensors"):
        from ..readers.torch import read_torch_state_dict
        sd = read_torch_state_dict(path)
        d["parameters"] = int(sum(np.size(v) for v in sd.values()))
        arch = _recognised(d, keys, "a state dict (weights only)")
        if arch:
            head = sd.get(ARCHITECTURES[arch].spec.torch_head_weight)
            d["classes"] = (f"{head.shape[0]} outputs ({ARCHITECTURES[arch].spec.torch_head_weight}); names "
                            f"{NOT_RECORDED}") if head is not None else "none: no classification head (include_top=False)"
    else:
        _recognised(d, keys, "weights only (no model config)")
    return d


def _recognised(d: dict, keys, what: str) -> str | None:
    arch = recognise_keys(keys)
    d["architecture"] = f"{DISPLAY_NAMES[arch]} (recognised from its keys), {what}" if arch else \
        f"not recognised ({len(keys)} tensors/layers), {what}"
    if arch:
        d["notes"].append(f"preprocessing of the known {DISPLAY_NAMES[arch]} files: {_known_weights(arch)}")
        d["notes"].append(f"build it with minicnn.pretrained.{arch}(weights={os.path.basename(d['file'])!r}) "
                          f"or train on it with --backbone {arch} --weights {d['file']}")
    return arch


def _describe_model(d: dict, model, architecture: str) -> dict:
    meta = model.meta
    d["model"] = model
    d["architecture"] = meta.get("architecture") and DISPLAY_NAMES.get(meta["architecture"], meta["architecture"]) \
        or architecture
    d["parameters"] = model.num_params()
    if model.input_shape is not None:
        c, h, w = model.input_shape
        d["input_size"] = f"{h}x{w}, {c} channel(s)"
    k = None
    try:
        k = model.output_shapes()[model.output_name][-1]
    except Exception:   # an input size the file leaves open: no output shape either
        pass
    names = meta.get("classes")
    if names:
        d["classes"] = ", ".join(map(str, names)) + (f" (positive: {meta['positive_class']})"
                                                     if meta.get("positive_class") else "")
    elif meta.get("include_top") is False:
        d["classes"] = "none: a feature extractor (no classification head)"
    elif k is not None:
        d["classes"] = f"{k} output(s), {model.output_activation or 'no activation'}; names {NOT_RECORDED}"
    if meta.get("preprocessing") is not None:
        try:
            d["preprocessing"] = repr(Preprocessing.of(model))
        except Exception as e:    # an old or odd structure: show it as stored
            d["preprocessing"] = f"{meta['preprocessing']!r} ({e})"
    else:
        rescale = [(n.name, n.layer) for n in model.nodes.values() if isinstance(n.layer, Rescaling)]
        if rescale:
            name, layer = rescale[0]
            scale, offset = (np.round(np.asarray(v, dtype=np.float64), 6).tolist() for v in (layer.scale, layer.offset))
            d["preprocessing"] = (f"inside the model: Rescaling(scale={scale}, offset={offset}) "
                                  f"at node {name!r}; resizing {NOT_RECORDED}")
        if meta.get("source") == "keras":
            size = f"{model.input_shape[1]}" if model.input_shape else "SIZE"
            mode = "none" if rescale else "tf|imagenet-torch|imagenet-caffe"
            d["notes"].append(f"convert with: minicnn convert {d['file']} OUT.npz --image-size {size} "
                              f"--preprocess {mode} (the file does not say how images were resized)")
    if meta.get("threshold") is not None:
        d["notes"].append(f"decision threshold {meta['threshold']} ({meta.get('threshold_rule', 'as saved')})")
    return d


def format_description(d: dict) -> str:
    rows = [("file", d["file"]), ("format", f"{d['format_name']} [{d['format']}]"),
            ("architecture", d["architecture"]), ("input size", d["input_size"]), ("classes", d["classes"]),
            ("preprocessing", d["preprocessing"])]
    if d["parameters"] is not None:
        rows.append(("parameters", f"{d['parameters']:,}"))
    lines = [f"{k + ':':<15}{v}" for k, v in rows]
    lines += [f"{'note:':<15}{n}" for n in d["notes"]]
    return "\n".join(lines)
