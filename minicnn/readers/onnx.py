"""ONNX model files -> plain arrays and node records (parsed by the ``onnx`` package, nothing executed).

    model = read_onnx("model.onnx")
    model.opset            the default-domain opset the file imports
    model.inputs           [OnnxValue(name, shape, dtype)], graph inputs that are not initializers;
                           a symbolic dimension is its name (a str) or None
    model.outputs          [OnnxValue], in the file's order
    model.initializers     {name: np.ndarray}
    model.nodes            [OnnxNode(op_type, name, inputs, outputs, attrs, domain)]; attrs are plain
                           Python values (ints, floats, strings, lists, arrays for tensor attributes)
    model.shapes           {value name: shape} from ONNX shape inference (symbolic dims as str/None)
    model.metadata         {key: value} of ``metadata_props``

External tensor data (``data_location = EXTERNAL``) is read only from plain files inside the
model's own folder: an absolute ``location``, one with ``..``, or one that leaves the folder
through a symlink is refused (``UnsafeFileError``). ``onnx`` is the optional extra
``pip install 'minicnn[onnx]'``, imported when a file is read.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import MissingExtraError, UnsafeFileError, WeightFileError
from ._files import MAX_MEMBER_BYTES, check_exists

__all__ = ["read_onnx", "require_onnx", "OnnxModel", "OnnxNode", "OnnxValue"]


def require_onnx():
    """The ``onnx`` module, or an ``ImportError`` saying how to install it."""
    try:
        import onnx
    except ImportError:
        raise MissingExtraError("reading or writing ONNX files needs the onnx package: "
                                "pip install 'minicnn[onnx]'") from None
    return onnx


@dataclass
class OnnxValue:
    name: str
    shape: list | None
    dtype: str | None = None


@dataclass
class OnnxNode:
    op_type: str
    name: str
    inputs: list
    outputs: list
    attrs: dict = field(default_factory=dict)
    domain: str = ""


@dataclass
class OnnxModel:
    path: str
    opset: int
    inputs: list
    outputs: list
    initializers: dict
    nodes: list
    shapes: dict
    metadata: dict
    producer: str = ""


def _text(value, path: str, what: str) -> str:
    """A protobuf string field; one holding bytes that are not UTF-8 (a damaged file) is an error."""
    if isinstance(value, str):
        return value
    raise WeightFileError(f"{path}: {what} is not valid UTF-8 text ({bytes(value)[:40]!r}); the file is damaged",
                          path=path, field=what)


def _dims(type_proto):
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    out = []
    for d in type_proto.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        else:
            out.append(d.dim_param or None)
    return out


def _elem_type(onnx, type_proto):
    if not type_proto.HasField("tensor_type"):
        return None
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(type_proto.tensor_type.elem_type).name
    except Exception:
        return None


def _external_int(info: dict, key: str, default: int, tensor, path: str) -> int:
    """The ``offset`` / ``length`` entry of a tensor's external data: a decimal integer, else an error."""
    raw = info.get(key)
    if not raw:
        return default
    text = raw.strip()
    if not (text.isascii() and text.isdigit()):
        raise WeightFileError(f"{path}: external data {key} {raw!r} of tensor {tensor.name!r} is not a "
                              "non-negative integer", path=path, field=f"{tensor.name}.{key}")
    return int(text)


def _declared_bytes(onnx, tensor, path: str) -> int | None:
    """The bytes a tensor's ``dims`` and ``data_type`` declare (None for strings / unknown types), checked
    against ``MAX_MEMBER_BYTES`` before anything is read or allocated."""
    dims = list(tensor.dims)
    if any(d < 0 for d in dims):
        raise WeightFileError(f"{path}: tensor {tensor.name!r} declares negative dims {dims}", path=path,
                              field=tensor.name)
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except Exception:  # noqa: BLE001 - STRING, UNDEFINED or an unknown type: numpy_helper says
        return None
    if tensor.data_type == onnx.TensorProto.STRING:
        return None
    want = math.prod(dims) * itemsize
    if want > MAX_MEMBER_BYTES:
        raise WeightFileError(f"{path}: tensor {tensor.name!r} declares dims {dims} ({want:,} bytes), over the limit "
                              f"of {MAX_MEMBER_BYTES:,} (MINICNN_MAX_MEMBER_BYTES); refused before reading",
                              path=path, field=tensor.name)
    packed = {getattr(onnx.TensorProto, n) for n in ("INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2")
              if hasattr(onnx.TensorProto, n)}
    return None if tensor.data_type in packed else want       # sub-byte types: two or more per byte


def _resolve_external(onnx, tensor, folder: str, path: str) -> None:
    """Read a tensor's external data into ``raw_data``, from a plain file inside ``folder`` only."""
    info = {_text(e.key, path, f"external data key of tensor {tensor.name!r}"):
            _text(e.value, path, f"external data of tensor {tensor.name!r}") for e in tensor.external_data}
    loc = info.get("location", "")
    if not loc or os.path.isabs(loc) or loc.startswith(("/", "\\")) or ".." in loc.replace("\\", "/").split("/") \
            or os.path.splitdrive(loc)[0]:
        raise UnsafeFileError(f"{path}: tensor {tensor.name!r} names external data at {loc!r}; only a relative "
                              f"path inside the model's folder without '..' is read", path=path, field=tensor.name)
    full = os.path.join(folder, loc)
    real_folder = os.path.realpath(folder)
    real = os.path.realpath(full)
    if os.path.commonpath([real_folder, real]) != real_folder:
        raise UnsafeFileError(f"{path}: external data {loc!r} of tensor {tensor.name!r} leaves the model's folder "
                              f"(a symlink?); refused", path=path, field=tensor.name)
    if not os.path.isfile(real):
        raise WeightFileError(f"{path}: external data file {loc!r} of tensor {tensor.name!r} is missing or not "
                              f"a plain file; put it beside the model", path=path, field=tensor.name)
    size = os.path.getsize(real)
    offset = _external_int(info, "offset", 0, tensor, path)
    length = _external_int(info, "length", size - offset, tensor, path)
    if offset < 0 or length < 0 or offset + length > size:
        raise WeightFileError(f"{path}: external data of tensor {tensor.name!r} asks for bytes "
                              f"{offset}..{offset + length} of {loc!r}, which has {size}", path=path, field=tensor.name)
    want = _declared_bytes(onnx, tensor, path)
    if want is not None and want != length:
        raise WeightFileError(f"{path}: tensor {tensor.name!r} declares dims {list(tensor.dims)} ({want:,} bytes) but "
                              f"its external data {loc!r} holds {length:,}", path=path, field=tensor.name)
    with open(real, "rb") as f:
        f.seek(offset)
        tensor.raw_data = f.read(length)
    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.DEFAULT


def _tensors(onnx, graph):
    """Every TensorProto of the graph (initializers and Constant node attributes), subgraphs included."""
    for t in graph.initializer:
        yield t
    for node in graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                yield a.t
            elif a.type == onnx.AttributeProto.GRAPH:
                yield from _tensors(onnx, a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from _tensors(onnx, g)


def _attr_value(onnx, a, path, node_name):
    from onnx import numpy_helper
    T = onnx.AttributeProto
    if a.type == T.FLOAT:
        return float(a.f)
    if a.type == T.INT:
        return int(a.i)
    if a.type == T.STRING:
        return a.s.decode("utf-8", "replace")
    if a.type == T.TENSOR:
        return _to_array(numpy_helper, a.t, path, node_name)
    if a.type == T.FLOATS:
        return [float(v) for v in a.floats]
    if a.type == T.INTS:
        return [int(v) for v in a.ints]
    if a.type == T.STRINGS:
        return [s.decode("utf-8", "replace") for s in a.strings]
    return ("<unsupported attribute type>", int(a.type))


def _to_array(numpy_helper, t, path, where):
    import onnx
    want = _declared_bytes(onnx, t, path)
    if want is not None and t.HasField("raw_data") and len(t.raw_data) != want:
        raise WeightFileError(f"{path}: tensor {t.name or where!r} declares dims {list(t.dims)} ({want:,} bytes) but "
                              f"holds {len(t.raw_data):,} bytes of data", path=path, field=t.name or where)
    try:
        return np.array(numpy_helper.to_array(t))
    except Exception as e:
        raise WeightFileError(f"{path}: tensor {t.name or where!r} cannot be read ({e})", path=path,
                              field=t.name or where) from None


def _text(v, path, what):
    """A name from the file as str; protobuf hands back bytes for invalid UTF-8, which is refused."""
    if isinstance(v, bytes):
        raise WeightFileError(f"{path}: a {what} is not valid UTF-8 ({v[:40]!r}); the file is corrupt", path=path)
    return v


def parse_model(proto, path: str = "<memory>", infer_shapes: bool = True) -> OnnxModel:
    """An ``onnx.ModelProto`` (external data already in place) as an ``OnnxModel``."""
    onnx = require_onnx()
    from onnx import numpy_helper
    g = proto.graph
    for n in g.node:
        for v in [n.name, n.op_type, n.domain, *n.input, *n.output, *(a.name for a in n.attribute)]:
            _text(v, path, "node field")
    for v in [*(t.name for t in g.initializer), *(x.name for x in g.input), *(x.name for x in g.output),
              *(x.key for x in proto.metadata_props), *(x.value for x in proto.metadata_props)]:
        _text(v, path, "value name or metadata entry")
    opset = max([int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")], default=1)
    inits = {_text(t.name, path, "an initializer name"): _to_array(numpy_helper, t, path, t.name) for t in g.initializer}
    nodes = []
    for k, n in enumerate(g.node):
        where = f"node {k}"
        op = _text(n.op_type, path, f"the op_type of {where}")
        name = _text(n.name, path, f"the name of {where}") or f"{op}_{k}"
        attrs = {_text(a.name, path, f"an attribute name of node {name!r}"): _attr_value(onnx, a, path, name)
                 for a in n.attribute}
        ins = [_text(v, path, f"an input of node {name!r}") for v in n.input]
        outs = [_text(v, path, f"an output of node {name!r}") for v in n.output]
        nodes.append(OnnxNode(op, name, ins, outs, attrs, _text(n.domain, path, f"the domain of node {name!r}") or ""))
    inputs = [OnnxValue(_text(v.name, path, "a graph input name"), _dims(v.type), _elem_type(onnx, v.type))
              for v in g.input if v.name not in inits]
    outputs = [OnnxValue(_text(v.name, path, "a graph output name"), _dims(v.type), _elem_type(onnx, v.type))
               for v in g.output]
    shapes = {}
    if infer_shapes:
        try:
            inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True)
            vis = list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)
        except Exception:
            vis = list(g.value_info) + list(g.output) + list(g.input)
        for v in vis:
            dims = _dims(v.type)
            if dims is not None:
                shapes[v.name] = dims
    metadata = {_text(p.key, path, "a metadata_props key"): _text(p.value, path, f"metadata_props {p.key!r}")
                for p in proto.metadata_props}
    return OnnxModel(path, opset, inputs, outputs, inits, nodes, shapes, metadata, proto.producer_name or "")


def read_onnx(path, input_shape=None) -> OnnxModel:
    """Parse the ONNX file ``path`` (see the module docstring).

    ``input_shape``: replaces the first input's shape before shape inference (a list; None or a str
    keeps a dimension symbolic), for files whose spatial size is symbolic.
    """
    onnx = require_onnx()
    path = check_exists(path, "ONNX model file")
    try:
        proto = onnx.load(path, load_external_data=False)
    except Exception as e:
        raise WeightFileError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})", path=path) from None
    if not proto.HasField("graph"):
        raise WeightFileError(f"{path}: the ONNX file has no graph", path=path)
    folder = os.path.dirname(os.path.abspath(path))
    for t in _tensors(onnx, proto.graph):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            _resolve_external(onnx, t, folder, path)
    if input_shape is not None:
        inits = {t.name for t in proto.graph.initializer}
        first = next((v for v in proto.graph.input if v.name not in inits), None)
        if first is not None:
            dims = first.type.tensor_type.shape.dim
            if len(dims) != len(input_shape):
                raise WeightFileError(f"{path}: input {first.name!r} has rank {len(dims)}, input_shape={input_shape}",
                                      path=path, field=first.name)
            for d, s in zip(dims, input_shape):
                if isinstance(s, (int, np.integer)):
                    d.dim_value = int(s)
                else:
                    d.dim_param = s or "N"
    return parse_model(proto, path)
