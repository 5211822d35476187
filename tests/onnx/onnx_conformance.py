"""Run the conformance data the ``onnx`` package ships through minicnn's importer.

Two sources (``docs/next-anchors.md``, "ONNX conformance data"):

* ``onnx/backend/test/data/pytorch-converted/*`` and ``pytorch-operator/*``: a ``model.onnx``
  and ``test_data_set_*/input_*.pb`` / ``output_*.pb`` each;
* the node test cases ``onnx.backend.test.case.node.collect_testcases()`` builds in memory.

Each case ends in one status: ``pass``, ``fail`` (minicnn ran it and got a different answer) or
``excluded: <why>``. A case is excluded only for a reason stated here: its tensors are not
float32/float64 (minicnn computes in floating point), or the importer refused it with an
``OnnxImportError`` naming the unsupported operator / attribute (the message is the reason).
"""
from __future__ import annotations

import glob
import os

import numpy as np

FLOAT = (np.float32, np.float64)
RUNTIME_INPUT = "computed at run time"


def data_dir():
    import onnx
    return os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")


def converted_cases():
    """[(id, model path, [(inputs, outputs)])] of pytorch-converted and pytorch-operator."""
    import onnx
    from onnx import numpy_helper
    out = []
    for suite in ("pytorch-converted", "pytorch-operator"):
        for d in sorted(glob.glob(os.path.join(data_dir(), suite, "test_*"))):
            sets = []
            for ds in sorted(glob.glob(os.path.join(d, "test_data_set_*"))):
                load = lambda p: numpy_helper.to_array(onnx.load_tensor(p))
                sets.append(([load(p) for p in sorted(glob.glob(os.path.join(ds, "input_*.pb")))],
                             [load(p) for p in sorted(glob.glob(os.path.join(ds, "output_*.pb")))]))
            out.append((f"{suite}/{os.path.basename(d)}", os.path.join(d, "model.onnx"), sets))
    return out


def node_cases(op_types):
    """The in-memory node test cases whose graph is one node of ``op_types`` (``*_expanded`` excluded:
    they are the same cases written in other operators)."""
    import warnings
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases()
    return [c for c in cases if len(c.model.graph.node) == 1 and c.model.graph.node[0].op_type in op_types]


def _not_float(arrays):
    bad = sorted({np.asarray(a).dtype.name for a in arrays if np.asarray(a).dtype not in FLOAT})
    return f"excluded: {'/'.join(bad)} tensors (minicnn computes in float32/float64)" if bad else None


def _compare(y, ref, rtol, atol):
    if np.shape(y) != np.shape(ref):
        return f"fail: shape {np.shape(y)} != {np.shape(ref)}"
    if not np.allclose(y, ref, rtol=rtol, atol=atol, equal_nan=True):
        return f"fail: max |diff| {np.nanmax(np.abs(y - ref)):.3g}"
    return None


def run(model, sets, name, rtol=1e-3, atol=1e-7, as_initializers=False):
    """Import ``model`` (a path or ModelProto) and run every data set; returns the status string."""
    from minicnn.errors import OnnxImportError
    from minicnn.pretrained.onnx_import import graph_from_onnx, load_onnx
    from minicnn.readers.onnx import parse_model
    for ins, outs in sets:
        why = _not_float(list(ins[:1]) + list(outs))
        if why:
            return why
    try:
        if isinstance(model, str):
            g = load_onnx(model)
        else:
            g = graph_from_onnx(parse_model(model, name))
    except OnnxImportError as e:
        lines = str(e).split("\n")
        return "excluded: " + (" ".join(lines[1:]).strip().replace("  ", " ") or lines[0].split(": ", 1)[-1])
    for ins, outs in sets:
        ins = list(ins)
        try:
            y = g.forward(ins if len(ins) > 1 else ins[0])
        except Exception as e:       # a run-time error is a failure, listed with its message
            return f"fail: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
        bad = _compare(y, outs[0], rtol, atol)
        if bad:
            return bad
    return "pass" + (" (inputs after the first as initializers)" if as_initializers else "")


def run_node_case(case):
    """A node case: graph inputs stay activations; if the importer needs some as constants (weights,
    pads, axes given as graph inputs), those after the first become initializers with the case's values."""
    import onnx
    from onnx import numpy_helper
    ins, outs = case.data_sets[0]
    if any(np.asarray(v).dtype == object for v in list(ins) + list(outs)):
        return "excluded: sequence/optional values (minicnn imports tensor graphs)"
    ints = any(np.asarray(v).dtype not in FLOAT for v in ins[1:])
    status = "excluded: " + RUNTIME_INPUT if ints else run(case.model, case.data_sets, case.name, rtol=case.rtol,
                                                           atol=case.atol)
    if status.startswith("excluded") and RUNTIME_INPUT in status and len(ins) > 1:
        m = onnx.ModelProto()
        m.CopyFrom(case.model)
        g = m.graph
        names = [v.name for v in g.input]
        for name, value in zip(names[1:], ins[1:]):
            g.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        keep = [v for v in g.input if v.name == names[0]]
        del g.input[:]
        g.input.extend(keep)
        sets = [([i[0]], o) for i, o in case.data_sets]
        status = run(m, sets, case.name, rtol=case.rtol, atol=case.atol, as_initializers=True)
    return status
