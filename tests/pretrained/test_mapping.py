"""The generic loading machinery on tiny models and hand-written files: layouts, positions, errors."""
import h5py
import numpy as np
import pytest

from minicnn.layers import BatchNorm2D, Conv2D, Dense, Flatten, ReLU
from minicnn.model import Graph
from minicnn.pretrained import load_weights
from minicnn.pretrained.mapping import convert_torch_state_dict


def tiny(bn_scale=True, eps=1e-5):
    g = Graph(input_shape=(2, 4, 4))
    g.add("conv", Conv2D(2, 3, 3, padding=1, bias=True, seed=0))
    g.add("bn", BatchNorm2D(3, eps=eps, scale=bn_scale))
    g.add("relu", ReLU())
    g.add("flat", Flatten())
    g.add("fc", Dense(48, 5, seed=0))
    return g


def write_keras_h5(path, layers):
    """The legacy Keras layout: root ``layer_names`` (bytes), a group per layer with ``weight_names``."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n, _ in layers])
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.21.0"
        for name, weights in layers:
            g = f.create_group(name)
            g.attrs["weight_names"] = np.array([w.encode() for w, _ in weights])
            for w, a in weights:
                g.create_dataset(w, data=a)


def test_torch_linear_is_transposed_and_counters_dropped():
    g = tiny()
    rng = np.random.default_rng(0)
    sd = {"conv.weight": rng.standard_normal((3, 2, 3, 3)), "conv.bias": rng.standard_normal(3),
          "bn.weight": rng.standard_normal(3), "bn.bias": rng.standard_normal(3),
          "bn.running_mean": rng.standard_normal(3), "bn.running_var": rng.uniform(1, 2, 3),
          "bn.num_batches_tracked": np.array(5), "fc.weight": rng.standard_normal((5, 48)),
          "fc.bias": rng.standard_normal(5)}
    out, dropped = convert_torch_state_dict(g, sd)
    assert dropped == ["bn.num_batches_tracked"]
    np.testing.assert_array_equal(out["fc.W"], sd["fc.weight"].T.astype(np.float32))
    np.testing.assert_array_equal(out["bn.gamma"], sd["bn.weight"].astype(np.float32))
    sd["fc.weight"] = sd["fc.weight"].T                        # (in, out) given where (out, in) belongs
    with pytest.raises(ValueError, match=r"fc.weight: file \(48, 5\) \(out, in\) vs model \(5, 48\)"):
        convert_torch_state_dict(g, sd)


def test_keras_h5_positional_assignment_with_layouts(tmp_path):
    g = tiny()
    rng = np.random.default_rng(1)
    k = rng.standard_normal((3, 3, 2, 3)).astype(np.float32)          # HWIO
    bn = [rng.standard_normal(3).astype(np.float32) for _ in range(3)] + [rng.uniform(1, 2, 3).astype(np.float32)]
    fc = rng.standard_normal((48, 5)).astype(np.float32)
    write_keras_h5(tmp_path / "w.h5", [
        ("input_1", []),
        ("block/conv", [("block/conv/kernel:0", k), ("block/conv/bias:0", np.ones(3, np.float32))]),
        ("block/bn", [(f"block/bn/{n}:0", a) for n, a in zip(("gamma", "beta", "moving_mean", "moving_variance"), bn)]),
        ("relu", []), ("flatten", []),
        ("dense", [("dense/kernel:0", fc), ("dense/bias:0", np.zeros(5, np.float32))]),
    ])
    load_weights(g, tmp_path / "w.h5")
    assert g.meta["source"] == "keras" and g.meta["dropped"] == []
    np.testing.assert_array_equal(g["conv"].params["W"], k.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(g["bn"].buffers["running_var"], bn[3])
    np.testing.assert_array_equal(g["fc"].params["W"], fc)
    # a BN without scale (InceptionV3) stores 3 arrays: beta, mean, var
    g3 = tiny(bn_scale=False)
    write_keras_h5(tmp_path / "noscale.h5", [
        ("c", [("c/kernel:0", k), ("c/bias:0", np.ones(3, np.float32))]),
        ("b", [(f"b/{n}:0", a) for n, a in zip(("beta", "moving_mean", "moving_variance"), bn[1:])]),
        ("d", [("d/kernel:0", fc), ("d/bias:0", np.zeros(5, np.float32))])])
    load_weights(g3, tmp_path / "noscale.h5")
    np.testing.assert_array_equal(g3["bn"].params["beta"], bn[1])


def test_keras_h5_mismatches_are_listed(tmp_path):
    k = np.zeros((3, 3, 2, 3), np.float32)
    write_keras_h5(tmp_path / "short.h5", [("c", [("c/kernel:0", k), ("c/bias:0", np.zeros(3, np.float32))])])
    with pytest.raises(ValueError, match=r"1 layers with weights .*model: 3"):
        load_weights(tiny(), tmp_path / "short.h5")
    write_keras_h5(tmp_path / "shapes.h5", [
        ("c", [("c/kernel:0", np.zeros((3, 3, 3, 2), np.float32)), ("c/bias:0", np.zeros(3, np.float32))]),
        ("b", [("b/gamma:0", np.zeros(3, np.float32))]),
        ("d", [("d/kernel:0", np.zeros((48, 5), np.float32)), ("d/bias:0", np.zeros(5, np.float32))])])
    with pytest.raises(ValueError) as e:
        load_weights(tiny(), tmp_path / "shapes.h5")
    msg = str(e.value)
    assert "mis-shaped (2)" in msg and "file (3, 3, 3, 2) vs expected (3, 3, 2, 3)" in msg
    assert "file has 1 arrays" in msg and "moving_variance" in msg


# ------------------------------------------------------------------------------------------------
# import structure: readers never reach a layer or the model; no cycle through minicnn/pretrained
# ------------------------------------------------------------------------------------------------
import ast  # noqa: E402
from pathlib import Path  # noqa: E402

PKG_ROOT = Path(__file__).resolve().parents[2] / "minicnn"


def _module_files() -> dict:
    """``{'minicnn.x.y': path}`` for every module of the package (a package is its ``__init__``)."""
    out = {}
    for path in PKG_ROOT.rglob("*.py"):
        parts = ("minicnn",) + path.relative_to(PKG_ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imported_modules(name: str, path: Path, modules: dict) -> set:
    """The minicnn modules ``path`` imports anywhere in the file (function-level imports included)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + (node.module.split(".") if node.module else []))
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules)
    return found


def _import_graph() -> dict:
    modules = _module_files()
    return {name: _imported_modules(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict) -> list:
    """The strongly connected components with more than one module, or a module importing itself (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_readers_import_no_layer_and_no_model():
    graph = _import_graph()
    readers = [m for m in graph if m == "minicnn.readers" or m.startswith("minicnn.readers.")]
    assert "minicnn.readers.torch" in readers and "minicnn.readers.keras" in readers
    bad = {m: sorted(t for t in graph[m] if not (t == "minicnn.errors" or t.startswith("minicnn.readers")))
           for m in readers}
    assert not any(bad.values()), f"readers may import minicnn.errors only: {bad}"


def test_no_import_cycle_through_pretrained():
    graph = _import_graph()
    assert "minicnn.pretrained.registry" in graph["minicnn.pretrained.convert"]      # the graph sees imports
    involved = [c for c in _cycles(graph) if any(m.startswith("minicnn.pretrained") for m in c)]
    assert not involved, f"import cycles (function-level imports count): {involved}"


def test_cycle_finder_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"a"}}) == [["a"]] and _cycles({"a": {"b"}, "b": set()}) == []
