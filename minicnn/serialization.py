"""minicnn's own model file: one ``.npz`` of plain arrays plus the architecture as JSON (no pickle).

    model.save("model.npz")                 # Graph.save: w:<name> arrays, "architecture", "format_version"
    model = minicnn.load("model.npz")       # rebuilt from the JSON, only from minicnn's own layer classes

``FORMAT_VERSION`` (``minicnn.model``) is 2: ``meta['preprocessing']`` is always
``Preprocessing.to_dict()``; files of version 1 (a string or an older dict there) are upgraded as
they are read (``minicnn.legacy``). The bytes are parsed by ``minicnn.readers.npz``.

The architecture JSON comes from a file, so it is validated before any constructor sees it
(:func:`validate_config`): the model's keys and types, each node's class, keyword names (those of
the layer's constructor) and values (sizes positive and within ``MAX_DIM`` / ``MAX_WINDOW``,
at most ``MAX_LAYER_PARAMS`` weights per layer, numbers finite). A wrong one raises
``WeightFileError`` naming the file and the field, e.g. ``model.npz: nodes[3].config.kernel_size
must be a positive int or a pair of them, got 'x'``.
"""
from __future__ import annotations

import inspect
import json
import math

from . import layers as _layers
from .errors import MinicnnError, WeightFileError
from .legacy import upgrade_classes, upgrade_meta
from .model import FORMAT_VERSION, OUTPUT_ACTIVATIONS, Graph, Sequential
from .readers.npz import read_npz

__all__ = ["load", "model_from_config", "model_from_arrays", "validate_config", "train_state_from_arrays",
           "FORMAT_VERSION"]

#: Largest channel / feature count, spatial window and weights per layer a model file may declare.
MAX_DIM = 1 << 20
MAX_WINDOW = 4096
MAX_RANK = 8
MAX_LAYER_PARAMS = 1 << 28
_MAX_NODES = 100_000


class _Bad(Exception):
    """A field that failed validation: ``(field, what it must be)``."""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _pos_int(limit):
    def check(v):
        if not (_is_int(v) and 1 <= v <= limit):
            raise _Bad(f"must be a positive int (at most {limit:,})")
    return check


def _or_none(check):
    """``check``, with null allowed."""
    def check_or_none(v):
        if v is not None:
            check(v)
    return check_or_none


def _pairs(low: int):
    """An int >= ``low`` or a pair of them (window sizes, strides, dilations; 0 for output padding)."""
    what = "a positive" if low == 1 else "a non-negative"

    def check(v):
        items = v if isinstance(v, list) else [v]
        if not (1 <= len(items) <= 2 and all(_is_int(i) and low <= i <= MAX_WINDOW for i in items)):
            raise _Bad(f"must be {what} int or a pair of them (at most {MAX_WINDOW})")
    return check


_pair = _pairs(1)


def _padding(v):
    if isinstance(v, str):
        return
    items = v if isinstance(v, list) else [v]
    if not (len(items) in (1, 2, 4) and all(_is_int(i) and 0 <= i <= MAX_WINDOW for i in items)):
        raise _Bad(f"must be 'same', 'valid', or 1, 2 or 4 non-negative ints (at most {MAX_WINDOW})")


def _number(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _Bad("must be a finite number")


def _numbers(v):
    for i in (v if isinstance(v, list) else [v]):
        _number(i)


def _bool(v):
    if not isinstance(v, bool):
        raise _Bad("must be true or false")


def _str(v):
    if not isinstance(v, str):
        raise _Bad("must be a string")


def _seed(v):
    if v is not None and not (_is_int(v) and 0 <= v < 2 ** 63):
        raise _Bad("must be null or a non-negative int")


def _ints(v):
    if not (isinstance(v, list) and len(v) <= MAX_RANK * 2 and all(_is_int(i) and abs(i) < 2 ** 63 for i in v)):
        raise _Bad(f"must be a list of at most {MAX_RANK * 2} ints")


def _int_or_ints(v):
    v = [v] if _is_int(v) else v
    if not (isinstance(v, list) and len(v) <= MAX_DIM and all(_is_int(i) and abs(i) < 2 ** 63 for i in v)):
        raise _Bad(f"must be an int or a list of at most {MAX_DIM:,} ints")


def _dims(v):
    if not (isinstance(v, list) and len(v) <= MAX_RANK and all(_is_int(i) and 0 <= i <= MAX_DIM for i in v)):
        raise _Bad(f"must be a list of at most {MAX_RANK} non-negative ints (at most {MAX_DIM:,})")


def _thresholds(v):
    if not (isinstance(v, list) and len(v) <= MAX_DIM
            and all(isinstance(t, (int, float)) and not isinstance(t, bool) and (math.isnan(t) or 0 < t < 1)
                    for t in v)):
        raise _Bad("must be a list of thresholds, each in (0, 1) or NaN")


def _axis(v):
    if not (_is_int(v) and -8 <= v <= 8):
        raise _Bad("must be a small int")


_CHECKS = {"in_channels": _pos_int(MAX_DIM), "out_channels": _pos_int(MAX_DIM), "num_features": _pos_int(MAX_DIM),
           "in_features": _pos_int(MAX_DIM), "out_features": _pos_int(MAX_DIM), "groups": _pos_int(MAX_DIM),
           "depth_multiplier": _pos_int(MAX_DIM), "capacity": _pos_int(MAX_DIM),
           "kernel_size": _pair, "dilation": _pair, "output_size": _pair, "stride": _or_none(_pair),
           "padding": _padding, "eps": _number, "momentum": _number, "p": _number, "alpha": _or_none(_number),
           "scale": _bool, "offset": _numbers, "bias": _bool, "center": _bool, "count_include_pad": _bool,
           "continues": _bool, "init": _str, "method": _str, "name": _str, "seed": _seed, "axis": _axis}
_CLASS_CHECKS = {("Rescaling", "scale"): _numbers,
                 # ONNX operator layers (minicnn.layers.onnx_ops)
                 ("Binary", "op"): _str, ("Binary", "const_shape"): _or_none(_dims), ("Binary", "const_first"): _bool,
                 ("Reshape", "shape"): _ints, ("Transpose", "perm"): _dims,
                 ("Pad", "pads"): _ints, ("Pad", "mode"): _str, ("Pad", "value"): _number,
                 ("Clip", "min"): _or_none(_number), ("Clip", "max"): _or_none(_number),
                 ("OnnxSoftmax", "log"): _bool, ("OnnxSoftmax", "coerce_2d"): _bool,
                 ("HardSigmoid", "beta"): _number, ("HardSigmoid", "swish"): _bool,
                 ("PRelu", "slope_shape"): _dims,
                 ("Reduce", "op"): _str, ("Reduce", "axes"): _or_none(_ints), ("Reduce", "keepdims"): _bool,
                 ("Slice", "starts"): _ints, ("Slice", "ends"): _ints, ("Slice", "axes"): _ints,
                 ("Slice", "steps"): _or_none(_ints),
                 ("Unary", "p"): _or_none(_number),
                 ("LRN", "size"): _pos_int(MAX_WINDOW), ("LRN", "beta"): _number, ("LRN", "bias"): _number,
                 ("ConvTranspose2D", "output_padding"): _pairs(0),
                 ("Resize", "scales"): _or_none(_numbers), ("Resize", "sizes"): _or_none(_dims), ("Resize", "mode"): _str,
                 ("Resize", "coordinate_transformation_mode"): _str, ("Resize", "nearest_mode"): _str,
                 ("Gather", "indices"): _int_or_ints, ("Expand", "shape"): _ints, ("DilatedPool2D", "kind"): _str,
                 ("Tile", "repeats"): _dims,
                 # torchxrayvision's calibration (minicnn.layers.OperatingPoints): NaN = not calibrated
                 ("OperatingPoints", "thresholds"): _thresholds}


def _layer_params(cls_name: str, c: dict) -> int:
    """Weights the constructor would allocate (an upper bound), from validated fields."""
    def area(k):
        k = k if isinstance(k, list) else [k, k]
        return k[0] * k[-1]
    if "in_features" in c and "out_features" in c:
        return c["in_features"] * c["out_features"]
    if "kernel_size" in c and "in_channels" in c:
        dm = c.get("depth_multiplier", 1)
        out = c.get("out_channels", c["in_channels"] * dm)
        return max(out * c["in_channels"] * dm, c["in_channels"] * dm) * area(c["kernel_size"]) + out
    return 0


def _field(source, field, value, why) -> WeightFileError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return WeightFileError(f"{source}: {field} {why}, got {shown}", path=None if source.startswith("<") else source,
                           field=field)


def _constructor_keys(layer_cls) -> tuple[set, set]:
    sig = inspect.signature(layer_cls.__init__)
    params = [p for n, p in sig.parameters.items() if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    return {p.name for p in params}, {p.name for p in params if p.default is p.empty}


def validate_config(config, source: str = "<config>") -> None:
    """Check a model's architecture JSON before anything is built from it (see the module docstring)."""
    source = str(source)
    def need(ok, field, value, why):
        if not ok:
            raise _field(source, field, value, why)

    need(isinstance(config, dict), "architecture", config, "must be a JSON object")
    need(config.get("class") in ("Graph", "Sequential"), "class", config.get("class"), "must be 'Graph' or 'Sequential'")
    version = config.get("format_version", 0)
    need(_is_int(version) and version >= 0, "format_version", version, "must be a non-negative int")
    def dims_ok(shape):
        return isinstance(shape, list) and 1 <= len(shape) <= 4 and all(_is_int(s) and 1 <= s <= MAX_DIM for s in shape)

    shape = config.get("input_shape")
    need(shape is None or dims_ok(shape) or (isinstance(shape, list) and len(shape) > 1 and all(map(dims_ok, shape))),
         "input_shape", shape, f"must be null or 1-4 positive ints (at most {MAX_DIM:,}), one list per input")
    need(config.get("name") is None or isinstance(config.get("name"), str), "name", config.get("name"),
         "must be null or a string")
    need(config.get("output_activation") in OUTPUT_ACTIVATIONS, "output_activation",
         config.get("output_activation"), f"must be one of {OUTPUT_ACTIVATIONS}")
    need(config.get("meta") is None or isinstance(config.get("meta"), dict), "meta", config.get("meta"),
         "must be a JSON object")
    inputs = config.get("inputs", ["input"]) if config["class"] == "Graph" else ["input"]
    need(isinstance(inputs, list) and inputs and all(isinstance(i, str) for i in inputs), "inputs", inputs,
         "must be a non-empty list of node names")
    nodes = config.get("nodes")
    need(isinstance(nodes, list) and len(nodes) <= _MAX_NODES, "nodes", nodes, "must be a list of nodes")
    names = set(inputs)
    for i, spec in enumerate(nodes):
        where = f"nodes[{i}]"
        need(isinstance(spec, dict), where, spec, "must be a JSON object")
        need(isinstance(spec.get("name"), str) and spec["name"] not in names, f"{where}.name", spec.get("name"),
             "must be a string not used before")
        names.add(spec["name"])
        layer_cls = _layers.LAYER_CLASSES.get(spec.get("class")) if isinstance(spec.get("class"), str) else None
        need(layer_cls is not None, f"{where}.class", spec.get("class"),
             f"must be one of minicnn's layer classes ({', '.join(sorted(_layers.LAYER_CLASSES))})")
        need(isinstance(spec.get("trainable", True), bool), f"{where}.trainable", spec.get("trainable"),
             "must be true or false")
        if config["class"] == "Graph":
            ins = spec.get("inputs")
            need(isinstance(ins, list) and ins and all(isinstance(n, str) and n in names - {spec["name"]} for n in ins),
                 f"{where}.inputs", ins, "must list nodes defined before it")
        c = spec.get("config", {})
        need(isinstance(c, dict), f"{where}.config", c, "must be a JSON object")
        known, required = _constructor_keys(layer_cls)
        unknown = sorted(set(c) - known)
        need(not unknown, f"{where}.config", unknown, f"has keys {spec['class']} does not take "
             f"(it takes {', '.join(sorted(known)) or 'none'})")
        missing = sorted(required - set(c))
        need(not missing, f"{where}.config", missing, f"lacks keys {spec['class']} needs")
        for key, value in c.items():
            check = _CLASS_CHECKS.get((spec["class"], key), _CHECKS.get(key))
            if check is None:
                raise _field(source, f"{where}.config.{key}", value, "is not a field minicnn's files hold")
            try:
                check(value)
            except _Bad as e:
                raise _field(source, f"{where}.config.{key}", value, str(e)) from None
        n = _layer_params(spec["class"], c)
        need(n <= MAX_LAYER_PARAMS, f"{where}.config", n, f"declares more than {MAX_LAYER_PARAMS:,} weights")
    output = config.get("output")
    need(output is None or (isinstance(output, str) and output in names), "output", output,
         "must name one of the nodes")


def model_from_config(config: dict, source: str = "<config>") -> Graph:
    """Rebuild a Graph/Sequential (untrained) from ``to_config()`` output (validated first)."""
    source = str(source)
    validate_config(config, source)
    version = config.get("format_version", 0)
    if version > FORMAT_VERSION:
        raise WeightFileError(f"{source}: model file format {version} is newer than this minicnn understands "
                              f"({FORMAT_VERSION})", field="format_version")
    cls = {"Graph": Graph, "Sequential": Sequential}[config["class"]]
    where = "architecture"
    try:
        model = (Sequential(input_shape=config.get("input_shape"), name=config.get("name")) if cls is Sequential else
                 Graph(inputs=config.get("inputs", ["input"]), input_shape=config.get("input_shape"),
                       name=config.get("name")))
        for i, spec in enumerate(config["nodes"]):
            where = f"nodes[{i}] ({spec['class']} {spec['name']!r})"
            layer = _layers.LAYER_CLASSES[spec["class"]].from_config(spec.get("config", {}))
            if not spec.get("trainable", True):
                layer.freeze()
            if cls is Sequential:
                model.append((spec["name"], layer))
            else:
                model.add(spec["name"], layer, spec["inputs"])
        where = "output"
        if config.get("output") is not None:
            model.output_name = config["output"]
        if model.input_shape is not None:
            where = "input_shape"
            for node, shape in model.output_shapes().items():    # positive sizes for the recorded input
                if any(_is_int(d) and d <= 0 for d in shape[1:]):
                    raise WeightFileError(f"node {node!r} gives an empty output {shape[1:]} for the recorded "
                                          f"input_shape {tuple(model.input_shape)} (an impossible geometry)",
                                          field=node)
        model.output_activation = config.get("output_activation")
        where = "meta"
        meta = config.get("meta") or {}
        model.meta = upgrade_meta(meta, model.input_shape) if version < 2 else upgrade_classes(meta)
    except MinicnnError as e:
        raise WeightFileError(f"{source}: {where}: {e}", path=None if source.startswith("<") else source,
                              field=where) from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as e:
        raise WeightFileError(f"{source}: {where} cannot be built ({type(e).__name__}: {e})",
                              path=None if source.startswith("<") else source, field=where) from None
    return model


def model_from_arrays(arrays: dict, config: dict, source: str | None = None) -> Graph:
    """The model that ``to_arrays`` described: architecture from ``config``, weights from ``w:*`` arrays.
    ``source`` (default: the file ``read_npz`` read the arrays from) names the file in errors."""
    source = str(source or getattr(arrays, "path", None) or "<arrays>")
    model = model_from_config(config, source)
    try:
        model.load_state_dict({k[2:]: v for k, v in arrays.items() if k.startswith("w:")})
    except MinicnnError as e:
        raise WeightFileError(f"{source}: {e}", path=None if source.startswith("<") else source) from None
    return model


_STATE_CHECKS = {"epoch": "count", "batch": "count", "seen": "count", "bad_epochs": "count", "loss_sum": "number",
                 "best_score": "number?", "best_epoch": "count?", "history": "list"}


def train_state_from_arrays(arrays: dict, source: str | None = None) -> dict:
    """A checkpoint's ``train_state`` JSON, validated: ``{"state", "optimizer", "scheduler", "extra", ...}``.

    ``WeightFileError`` naming the file and the field for anything ``train.save_checkpoint`` does
    not write (wrong types, negative counts, non-finite numbers, malformed ``opt:*`` names).
    """
    source = str(source or getattr(arrays, "path", None) or "<arrays>")
    path = None if source.startswith("<") else source

    def bad(field, value, why):
        return _field(source, f"train_state.{field}" if field else "train_state", value, why)

    raw = arrays.get("train_state")
    if raw is None or getattr(raw, "dtype", None) is None or raw.dtype.kind not in "US" or raw.ndim != 0:
        raise WeightFileError(f"{source}: no 'train_state' JSON string; not a resumable minicnn checkpoint",
                              path=path, field="train_state")
    try:
        info = json.loads(str(raw.item()))
    except (ValueError, RecursionError) as e:
        raise WeightFileError(f"{source}: its 'train_state' entry is not valid JSON ({e})", path=path,
                              field="train_state") from None
    if not isinstance(info, dict):
        raise bad("", info, "must be a JSON object")
    state = info.get("state")
    if not isinstance(state, dict):
        raise bad("state", state, "must be a JSON object")
    for key, value in state.items():
        kind = _STATE_CHECKS.get(key)
        if kind is None:
            raise bad(f"state.{key}", value, f"is not a training-state field ({', '.join(_STATE_CHECKS)})")
        optional = kind.endswith("?")
        if optional and value is None:
            continue
        kind = kind.rstrip("?")
        ok = ((kind == "count" and _is_int(value) and value >= 0)
              or (kind == "number" and not isinstance(value, bool) and isinstance(value, (int, float))
                  and math.isfinite(value))
              or (kind == "list" and isinstance(value, list) and all(isinstance(h, dict) for h in value)))
        if not ok:
            raise bad(f"state.{key}", value, {"count": "must be a non-negative int", "number": "must be a finite number",
                                              "list": "must be a list of objects"}[kind])
    opt = info.get("optimizer")
    if not isinstance(opt, dict):
        raise bad("optimizer", opt, "must be a JSON object")
    lr, t = opt.get("lr"), opt.get("t")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise bad("optimizer.lr", lr, "must be a positive finite number")
    if not (_is_int(t) and t >= 0):
        raise bad("optimizer.t", t, "must be a non-negative int")
    if not isinstance(opt.get("class", ""), str):
        raise bad("optimizer.class", opt.get("class"), "must be a string")
    for key in ("scheduler", "extra"):
        if info.get(key) is not None and not isinstance(info.get(key), dict):
            raise bad(key, info.get(key), "must be a JSON object")
    for key in arrays:
        if key.startswith("opt:") and (key.count(":") < 2 or arrays[key].dtype.kind != "f"):
            raise WeightFileError(f"{source}: optimizer array {key!r} must be named opt:<slot>:<param> and be "
                                  "floating point", path=path, field=key)
    return info


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
                         f"build the model and call model.load_weights(path)", path=path)
    return model_from_arrays(arrays, config, str(path))
