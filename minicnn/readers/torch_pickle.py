"""Read PyTorch checkpoints (``.pth`` / ``.pt`` / ``.pth.tar``) without PyTorch and without executing them.

A checkpoint written by ``torch.save`` is a pickle, and unpickling runs whatever functions the
file names. This module never calls ``pickle.load``: it uses :class:`SafeTorchUnpickler`, whose
``find_class`` answers only a short allow-list of names, each mapped to a harmless stand-in
defined here (``torch`` is never imported). Every other global -- ``os.system``, ``builtins.eval``,
``posix.system``, a model class -- raises :class:`UnsafeFileError` naming it.

Allowed globals
    ``collections.OrderedDict``; ``torch._utils._rebuild_tensor``, ``_rebuild_tensor_v2``,
    ``_rebuild_tensor_v3``, ``_rebuild_parameter``, ``_rebuild_parameter_with_state``; the typed
    storage classes ``torch.FloatStorage`` ... ``torch.BoolStorage``;
    ``torch.storage.UntypedStorage`` / ``torch.UntypedStorage`` / ``torch.storage.TypedStorage``;
    the dtype objects ``torch.float32`` etc. (only as values, they cannot be called); the GPU
    storage classes ``torch.cuda.FloatStorage`` ... (read as CPU bytes); ``builtins.set`` (of plain
    values: a module's ``_non_persistent_buffers_set``).

Whole pickled modules (``torch.save(model)``, as torchxrayvision publishes its DenseNets) name their
classes; the allowed ones (:data:`MODULE_CLASSES`: torchxrayvision's ``DenseNet``, ``_DenseBlock``,
``_DenseLayer``, ``_Transition``, and the ``torch.nn`` modules inside them) are rebuilt as inert
:class:`TorchModuleRecord` instances -- a class name and the ``__dict__`` the pickle gives it
(``_parameters``, ``_buffers``, ``_modules``, plain attributes) -- by ``NEWOBJ`` + ``BUILD`` only.
Calling such a class (``REDUCE``), or reaching any other class, is refused; no method of the file's
classes exists here, so nothing from the file runs. The legacy format names each module class
through a persistent id ``('module', class, source file, source code)``: the class is looked up in
the same allow-list and the source text is ignored (never compiled).

Two container formats are read:

* **zip** (``torch.save`` since torch 1.6): members under one root folder -- ``data.pkl`` (the
  object pickle), ``data/<key>`` (raw bytes of each storage), ``byteorder`` (``little`` when
  absent), ``version``, ...
* **legacy** (``_use_new_zipfile_serialization=False``): a run of pickles -- the magic number,
  the protocol version, a dict of system info (``little_endian``), the object pickle, the list of
  storage keys -- then for each key an 8-byte element count followed by the raw bytes.

In both, a storage is a persistent id ``('storage', storage_type, key, location, numel[,
view_metadata])``. Tensors are first built as :class:`TensorRef` placeholders, then resolved to
contiguous NumPy arrays once the storage bytes are known (``as_strided`` over the storage with
the tensor's offset/size/stride, bounds-checked, then copied). bfloat16 becomes float32 (exact);
other dtypes keep their NumPy equivalent (float16 stays float16, int64 stays int64).

No layout transforms happen here: a conv weight is still OIHW and a Linear weight (out, in).
"""
from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from typing import Any

import numpy as np

from ..errors import UnsafeFileError, WeightFileError, file_not_found
from ._files import ZIP_ERRORS, check_zip_members

__all__ = ["UnsafeFileError", "SafeTorchUnpickler", "TensorRef", "TorchModuleRecord", "MODULE_CLASSES",
           "module_state_dict", "load_torch_checkpoint",
           "is_torch_legacy_file", "LEGACY_MAGIC_NUMBER"]

#: First pickle of a legacy torch checkpoint.
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001


# --------------------------------------------------------------------------------- stand-ins
class _TorchDtype:
    """Stand-in for ``torch.float32`` & co.: just a name and the NumPy dtype (not callable)."""
    __slots__ = ("name", "np_dtype")

    def __init__(self, name: str, np_dtype: str):
        self.name, self.np_dtype = name, np_dtype   # np_dtype "bfloat16" is handled specially

    def __repr__(self):
        return f"torch.{self.name}"


class _StorageType:
    """Stand-in for a storage class (``torch.FloatStorage``, ``torch.UntypedStorage``).

    Instances are not callable, so a pickle cannot construct anything with them.
    """
    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: _TorchDtype | None):
        self.name, self.dtype = name, dtype   # dtype None: untyped (bytes)

    def __repr__(self):
        return f"torch.{self.name}"


_DTYPES: dict[str, _TorchDtype] = {}
for _names, _np in [(("float32", "float"), "float32"), (("float64", "double"), "float64"),
                    (("float16", "half"), "float16"), (("bfloat16",), "bfloat16"),
                    (("int64", "long"), "int64"), (("int32", "int"), "int32"),
                    (("int16", "short"), "int16"), (("int8",), "int8"), (("uint8",), "uint8"),
                    (("uint16",), "uint16"), (("uint32",), "uint32"), (("uint64",), "uint64"),
                    (("bool",), "bool"), (("complex64", "cfloat"), "complex64"),
                    (("complex128", "cdouble"), "complex128")]:
    _dt = _TorchDtype(_names[0], _np)
    for _n in _names:
        _DTYPES[_n] = _dt

_STORAGE_TYPES: dict[str, _StorageType] = {
    name + "Storage": _StorageType(name + "Storage", _DTYPES[dt])
    for name, dt in [("Float", "float32"), ("Double", "float64"), ("Half", "float16"),
                     ("BFloat16", "bfloat16"), ("Long", "int64"), ("Int", "int32"),
                     ("Short", "int16"), ("Char", "int8"), ("Byte", "uint8"), ("Bool", "bool"),
                     ("ComplexFloat", "complex64"), ("ComplexDouble", "complex128")]}
_UNTYPED = _StorageType("UntypedStorage", None)


class _StorageRef:
    """A storage named by a persistent id; its bytes are attached later by the container reader."""
    __slots__ = ("key", "stype", "numel", "view", "data")

    def __init__(self, key: str, stype: _StorageType, numel: int, view):
        self.key, self.stype, self.numel, self.view = key, stype, numel, view
        self.data: bytes | None = None

    def __setstate__(self, state):
        raise pickle.UnpicklingError("a storage cannot be given state")


class TensorRef:
    """A tensor as the pickle describes it, before its storage bytes are available."""
    __slots__ = ("storage", "offset", "size", "stride", "dtype")

    def __init__(self, storage, offset, size, stride, dtype=None):
        if not isinstance(storage, _StorageRef):
            raise pickle.UnpicklingError(f"tensor rebuilt from {type(storage).__name__}, not a storage")
        self.storage, self.offset = storage, offset
        self.size, self.stride = tuple(size), tuple(stride)
        self.dtype = dtype if dtype is not None else storage.stype.dtype
        if not isinstance(self.dtype, _TorchDtype):
            raise pickle.UnpicklingError("tensor without a known dtype")

    def __setstate__(self, state):
        raise pickle.UnpicklingError("a tensor cannot be given state")


def _rebuild_tensor(storage, storage_offset, size, stride):
    return TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    if not isinstance(dtype, _TorchDtype):
        raise pickle.UnpicklingError("_rebuild_tensor_v3 without a torch dtype")
    return TensorRef(storage, storage_offset, size, stride, dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None, state=None):
    return data


class _Refused(Exception):
    """Raised inside the unpickler by a stand-in that must not be called; becomes UnsafeFileError."""


class TorchModuleRecord:
    """An ``nn.Module`` as the pickle describes it: its class name and its ``__dict__``, nothing else.

    ``torch_class`` is the dotted class name (``torchxrayvision.models.DenseNet``); ``state`` the
    attribute dict (``_parameters``, ``_buffers``, ``_modules`` as ``OrderedDict`` and plain
    values). Built only by the pickle's ``NEWOBJ`` (no arguments) and one ``BUILD``; calling the
    class is refused. It has no behaviour: it is read with :func:`module_state_dict`.
    """
    torch_class = "torch.nn.modules.module.Module"

    def __new__(cls, *args, **kwargs):
        if cls is TorchModuleRecord or args or kwargs:
            raise _Refused(f"refusing to call the class '{cls.torch_class}' with arguments; a module may "
                           "only be rebuilt from its attributes")
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):    # REDUCE would call the class: never allowed
        raise _Refused(f"refusing to call the class '{self.torch_class}' (REDUCE); a module may only be "
                       "rebuilt from its attributes")

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2 and state[1] is None:
            state = state[0]
        if "state" in self.__dict__ or not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise pickle.UnpicklingError(f"malformed state for a {self.torch_class} module")
        self.__dict__["state"] = dict(state)

    def __setattr__(self, name, value):
        raise pickle.UnpicklingError(f"a {self.torch_class} module record cannot be given attributes")

    @property
    def class_name(self) -> str:
        return self.torch_class.rsplit(".", 1)[-1]

    def _group(self, key) -> dict:
        g = self.__dict__.get("state", {}).get(key)
        return dict(g) if isinstance(g, dict) else {}

    @property
    def parameters(self) -> dict:
        return self._group("_parameters")

    @property
    def buffers(self) -> dict:
        return self._group("_buffers")

    @property
    def modules(self) -> dict:
        return self._group("_modules")

    @property
    def attributes(self) -> dict:
        """The plain attributes (everything not starting with ``_``: ``training``, ``pathologies``, ...)."""
        return {k: v for k, v in self.__dict__.get("state", {}).items() if not k.startswith("_")}

    def __repr__(self):
        return f"<{self.torch_class} record: {len(self.modules)} submodules>"


#: The module classes a whole-module pickle may name (rebuilt as TorchModuleRecord subclasses).
MODULE_CLASSES = (
    "torchxrayvision.models.DenseNet", "torchxrayvision.models._DenseBlock",
    "torchxrayvision.models._DenseLayer", "torchxrayvision.models._Transition",
    "torch.nn.modules.container.Sequential", "torch.nn.modules.conv.Conv2d",
    "torch.nn.modules.batchnorm.BatchNorm2d", "torch.nn.modules.activation.ReLU",
    "torch.nn.modules.activation.Sigmoid", "torch.nn.modules.pooling.MaxPool2d",
    "torch.nn.modules.pooling.AvgPool2d", "torch.nn.modules.pooling.AdaptiveAvgPool2d",
    "torch.nn.modules.linear.Linear",
)
_MODULE_RECORDS = {tuple(n.rsplit(".", 1)): type(n.rsplit(".", 1)[1], (TorchModuleRecord,), {"torch_class": n})
                   for n in MODULE_CLASSES}


def _thnn_backend():
    """torch < 1.5 modules keep ``_backend``, pickled as a call of ``_get_thnn_function_backend()``: inert."""
    return None


def _plain_set(items=()):
    items = list(items)
    if not all(isinstance(v, (str, int, float, bool, type(None))) for v in items):
        raise pickle.UnpicklingError("a set may hold only plain values")
    return set(items)


def module_state_dict(record: TorchModuleRecord, prefix: str = "", depth: int = 0,
                      source: str | None = None) -> "OrderedDict[str, Any]":
    """``module.state_dict()`` of a :class:`TorchModuleRecord` tree: parameters, then persistent buffers,
    then submodules, in the order torch uses; ``None`` entries skipped. ``source``: the file, for messages."""
    where = f"{source}: " if source else ""
    if depth > 100:
        raise WeightFileError(f"{where}module nesting too deep", path=source)
    for group in ("_parameters", "_buffers", "_modules"):
        bad = [k for k in getattr(record, group[1:]) if not isinstance(k, str)]
        if bad:
            raise WeightFileError(f"{where}module '{prefix.rstrip('.') or '<root>'}' has a {group} entry named by a "
                                  f"{type(bad[0]).__name__}, not a string; the file is damaged", path=source,
                                  field=prefix + group)
    out: OrderedDict = OrderedDict()
    non_persistent = record.__dict__.get("state", {}).get("_non_persistent_buffers_set") or set()
    if not isinstance(non_persistent, (set, frozenset, list, tuple)):
        non_persistent = set()
    for k, v in record.parameters.items():
        if v is not None:
            out[prefix + k] = v
    for k, v in record.buffers.items():
        if v is not None and k not in non_persistent:
            out[prefix + k] = v
    for k, m in record.modules.items():
        if m is None:
            continue
        if not isinstance(m, TorchModuleRecord):
            raise WeightFileError(f"{where}submodule '{prefix + k}' is a {type(m).__name__}, not a module",
                                  path=source, field=prefix + k)
        out.update(module_state_dict(m, prefix + k + ".", depth + 1, source))
    return out


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch.storage", "UntypedStorage"): _UNTYPED,
    ("torch", "UntypedStorage"): _UNTYPED,
    ("torch.storage", "TypedStorage"): _UNTYPED,   # only meaningful with a dtype via _rebuild_tensor_v3
}
_ALLOWED.update({("torch", n): st for n, st in _STORAGE_TYPES.items()})
_ALLOWED.update({("torch", n): dt for n, dt in _DTYPES.items()})
_ALLOWED.update({("torch.cuda", n): st for n, st in _STORAGE_TYPES.items()})   # saved from a GPU: same bytes
_ALLOWED.update(_MODULE_RECORDS)
_ALLOWED.update({("builtins", "set"): _plain_set, ("__builtin__", "set"): _plain_set,
                 ("torch.nn.backends.thnn", "_get_thnn_function_backend"): _thnn_backend})


class SafeTorchUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the allow-listed globals above, to stand-ins.

    ``storages`` collects every :class:`_StorageRef` met, keyed by storage key.
    """

    def __init__(self, file, source: str = "<checkpoint>"):
        super().__init__(file)
        self.source = source
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafeFileError(
                f"{self.source}: refusing to load the global '{module}.{name}' named by the "
                "checkpoint's pickle; minicnn reads only tensors, dicts and plain values and never "
                "executes code from a weight file. Re-save a plain state_dict "
                "(torch.save(model.state_dict(), path)) or convert it to .safetensors.", path=self.source) from None

    def persistent_load(self, pid):
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module":
            # legacy format: ('module', class, source file, source text); the source is never used
            if isinstance(pid[1], type) and issubclass(pid[1], TorchModuleRecord) and pid[1] is not TorchModuleRecord:
                return pid[1]
            raise pickle.UnpicklingError(f"unsupported module id naming {pid[1]!r}")
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        _, stype, key, _location, numel = pid[:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(stype, _StorageType) or not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError(f"malformed storage id {pid!r}")
        key = str(key)
        ref = self.storages.get(key)
        if ref is None:
            ref = self.storages[key] = _StorageRef(key, stype, numel, view)
        return ref


# ------------------------------------------------------------------------------ resolution
def _np_dtype(dtype: _TorchDtype, byteorder: str) -> np.dtype:
    base = "uint16" if dtype.np_dtype == "bfloat16" else dtype.np_dtype
    return np.dtype(base).newbyteorder("<" if byteorder == "little" else ">")


def _storage_array(ref: _StorageRef, dtype: _TorchDtype, byteorder: str, source: str) -> np.ndarray:
    if ref.data is None:
        raise WeightFileError(f"{source}: the bytes of storage '{ref.key}' are missing (truncated file?)", path=source)
    dt = _np_dtype(dtype, byteorder)
    if len(ref.data) % dt.itemsize:
        raise WeightFileError(f"{source}: storage '{ref.key}' has {len(ref.data)} bytes, not a "
                         f"multiple of {dt.itemsize} ({dtype})", path=source)
    return np.frombuffer(ref.data, dtype=dt)


def _resolve_tensor(t: TensorRef, byteorder: str, source: str) -> np.ndarray:
    store = _storage_array(t.storage, t.dtype, byteorder, source)
    size, stride, offset = t.size, t.stride, t.offset
    ok = (isinstance(offset, int) and offset >= 0 and len(size) == len(stride)
          and all(isinstance(v, int) and v >= 0 for v in size + stride))
    if not ok:
        raise WeightFileError(f"{source}: malformed tensor (offset {offset!r}, size {size!r}, stride {stride!r})",
                              path=source)
    if any(s == 0 for s in size):
        arr = np.zeros(size, dtype=store.dtype)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= store.size:
            raise WeightFileError(f"{source}: tensor of size {size} reads element {last} of storage "
                             f"'{t.storage.key}' which has only {store.size} (corrupt file)", path=source)
        base = store[offset:]
        arr = np.lib.stride_tricks.as_strided(
            base, shape=size, strides=tuple(s * store.itemsize for s in stride), writeable=False)
    arr = arr.astype(arr.dtype.newbyteorder("="), order="C", copy=True)   # own, contiguous, native
    if t.dtype.np_dtype == "bfloat16":
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr


def _resolve(obj, byteorder: str, source: str, depth: int = 0):
    """Replace every TensorRef in nested dicts/lists/tuples by a NumPy array."""
    if depth > 200:
        raise WeightFileError(f"{source}: object nesting too deep", path=source)
    if isinstance(obj, TensorRef):
        return _resolve_tensor(obj, byteorder, source)
    if isinstance(obj, _StorageRef):
        raise WeightFileError(f"{source}: a bare storage (not a tensor) is not supported", path=source)
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _resolve(v, byteorder, source, depth + 1)
        return out
    if isinstance(obj, list):
        return [_resolve(v, byteorder, source, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v, byteorder, source, depth + 1) for v in obj)
    if isinstance(obj, TorchModuleRecord):
        if "state" in obj.__dict__:
            obj.__dict__["state"] = _resolve(obj.__dict__["state"], byteorder, source, depth + 1)
        return obj
    return obj


# ------------------------------------------------------------------------------ containers
def _unpickle(data_or_file, source: str) -> tuple[Any, SafeTorchUnpickler]:
    f = io.BytesIO(data_or_file) if isinstance(data_or_file, (bytes, bytearray)) else data_or_file
    up = SafeTorchUnpickler(f, source)
    try:
        return up.load(), up
    except UnsafeFileError:
        raise
    except _Refused as e:
        raise UnsafeFileError(f"{source}: {e}; minicnn never executes code from a weight file", path=source) from None
    except RecursionError:
        raise WeightFileError(f"{source}: pickle nested too deeply", path=source) from None
    except Exception as e:   # UnpicklingError, EOFError, TypeError from a bad REDUCE, ...
        raise WeightFileError(f"{source}: corrupt or unsupported torch checkpoint pickle "
                         f"({type(e).__name__}: {e})", path=source) from None


def _load_zip(path: str) -> Any:
    try:
        zf = zipfile.ZipFile(path)
    except ZIP_ERRORS as e:
        raise WeightFileError(f"{path}: not a readable zip archive ({type(e).__name__}: {e})", path=path) from None
    with zf:
        check_zip_members(zf, path)      # names inside the archive, sizes and deflate ratio, before reading
        names = zf.namelist()
        pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise WeightFileError(f"{path}: not a torch zip checkpoint (expected one '<root>/data.pkl', "
                             f"found {len(pkls)})", path=path)
        root = pkls[0][: -len("data.pkl")]
        if root + "constants.pkl" in names or any(n.startswith(root + "code/") for n in names):
            raise WeightFileError(f"{path}: this is a TorchScript archive (torch.jit.save); save the "
                             "model's state_dict with torch.save instead", path=path)
        try:
            byteorder = zf.read(root + "byteorder").decode().strip() if root + "byteorder" in names else "little"
            if byteorder not in ("little", "big"):
                raise WeightFileError(f"{path}: unknown byteorder {byteorder!r}", path=path)
            obj, up = _unpickle(zf.read(pkls[0]), path)
            for key, ref in up.storages.items():
                member = root + "data/" + key
                if member not in names:
                    raise WeightFileError(f"{path}: storage member '{member}' is missing", path=path)
                ref.data = zf.read(member)
                _check_storage_size(ref, path)
        except WeightFileError:
            raise
        except ZIP_ERRORS as e:
            raise WeightFileError(f"{path}: corrupt torch zip checkpoint ({type(e).__name__}: {e})",
                                  path=path) from None
    return _resolve(obj, byteorder, path)


def _check_storage_size(ref: _StorageRef, source: str) -> None:
    itemsize = 1 if ref.stype.dtype is None else _np_dtype(ref.stype.dtype, "little").itemsize
    if len(ref.data) < ref.numel * itemsize:
        raise WeightFileError(f"{source}: storage '{ref.key}' holds {len(ref.data)} bytes, "
                         f"expected {ref.numel * itemsize} (truncated file?)", path=source)


def is_torch_legacy_file(head: bytes) -> bool:
    """True if ``head`` (the first bytes of a file) starts with the legacy torch magic pickle."""
    # PROTO n, then LONG1 with 10 bytes: the magic number in little-endian two's complement.
    return (len(head) >= 14 and head[0] == 0x80 and head[2] == 0x8A and head[3] == 10
            and int.from_bytes(head[4:14], "little") == LEGACY_MAGIC_NUMBER)


def _load_legacy(path: str) -> Any:
    with open(path, "rb") as f:
        if not is_torch_legacy_file(f.read(16)):
            raise WeightFileError(f"{path}: not a legacy torch checkpoint (magic number missing)", path=path)
        f.seek(0)
        magic, _ = _unpickle(f, path)
        protocol, _ = _unpickle(f, path)
        sys_info, _ = _unpickle(f, path)
        if magic != LEGACY_MAGIC_NUMBER or protocol != _LEGACY_PROTOCOL_VERSION or not isinstance(sys_info, dict):
            raise WeightFileError(f"{path}: unsupported legacy torch checkpoint header "
                             f"(protocol {protocol!r})", path=path)
        byteorder = "little" if sys_info.get("little_endian", True) else "big"
        obj, up = _unpickle(f, path)
        keys, _ = _unpickle(f, path)
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise WeightFileError(f"{path}: malformed storage key list", path=path)
        roots = {}
        for key in keys:
            ref = up.storages.get(key)
            if ref is None:
                raise WeightFileError(f"{path}: storage '{key}' listed but never used", path=path)
            head = f.read(8)
            if len(head) != 8:
                raise WeightFileError(f"{path}: truncated before the data of storage '{key}'", path=path)
            count = struct.unpack("<q" if byteorder == "little" else ">q", head)[0]
            itemsize = 1 if ref.stype.dtype is None else _np_dtype(ref.stype.dtype, byteorder).itemsize
            if count < 0 or count * itemsize > os.fstat(f.fileno()).st_size:
                raise WeightFileError(f"{path}: impossible element count {count} for storage '{key}'", path=path)
            ref.data = f.read(count * itemsize)
            if len(ref.data) != count * itemsize:
                raise WeightFileError(f"{path}: truncated data of storage '{key}'", path=path)
            roots[key] = ref
    # Very old files: a storage can be a view (view_key, offset, size) into a root storage.
    for ref in up.storages.values():
        if ref.view is not None:
            try:
                root_key, v_off, v_size = ref.view
                root = roots[str(root_key)]
                isz = 1 if root.stype.dtype is None else _np_dtype(root.stype.dtype, byteorder).itemsize
                ref.data = root.data[v_off * isz:(v_off + v_size) * isz]
            except (KeyError, TypeError, ValueError):
                raise WeightFileError(f"{path}: malformed storage view {ref.view!r}", path=path) from None
        elif ref.data is None:
            raise WeightFileError(f"{path}: storage '{ref.key}' has no data", path=path)
        _check_storage_size(ref, path)
    return _resolve(obj, byteorder, path)


def load_torch_checkpoint(path: str | os.PathLike) -> Any:
    """Parse a torch checkpoint (zip or legacy) into plain Python objects with NumPy arrays.

    Returns whatever object was saved (usually an ``OrderedDict`` state_dict, or a dict holding
    one), with every tensor replaced by a contiguous ``np.ndarray``. Raises
    :class:`UnsafeFileError` if the pickle names a global outside the allow-list and
    ``ValueError`` naming the file if it is corrupt or not a torch checkpoint.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise file_not_found("checkpoint file", path)
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    with open(path, "rb") as f:
        head = f.read(16)
    if is_torch_legacy_file(head):
        return _load_legacy(path)
    raise WeightFileError(f"{path}: not a torch checkpoint (neither a torch zip archive nor the legacy "
                     "pickle format)", path=path)
