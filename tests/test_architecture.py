"""The package's layers, checked on its import statements (function-level imports included).

The table below is the one ARCHITECTURE.md shows: each top-level module or package of minicnn and
the minicnn modules it may import (its own package is always allowed). Imports point down only,
and no module takes part in an import cycle.
"""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "minicnn"

LEAF = {"errors", "fileio", "shapes", "runtime", "legacy"}        # anything may import these
ALLOWED = {
    "errors": set(), "fileio": {"errors"}, "shapes": {"errors"}, "runtime": {"errors"}, "legacy": {"errors"},
    "init": set(), "metrics": set(), "optim": {"kernels"}, "gradient_check": set(),
    "kernels": set(),
    "losses": {"kernels"},
    "layers": {"kernels", "init"},
    "readers": set(),
    "data": {"readers"},
    "model": {"layers", "kernels", "losses", "readers", "onnx_export"},
    "onnx_export": {"layers", "readers"},
    "serialization": {"model", "layers", "readers"},
    "rewrite": {"model", "layers", "kernels"},
    "small_cnn": {"layers", "model"},
    "pretrained": {"readers", "layers", "model", "serialization", "rewrite", "init", "data", "kernels"},
    "predict": {"model", "serialization", "data"},
    "train": {"model", "serialization", "readers", "losses", "optim", "metrics", "data", "predict"},
    "viz": {"metrics"},
    "gradcam": {"model", "data", "predict", "viz"},
    "report": {"metrics", "viz", "gradcam", "data", "predict", "model"},
    "callbacks": set(),
    "fitting": {"model", "losses", "metrics", "optim", "train", "data", "predict", "callbacks"},
    "transfer": {"model", "serialization", "layers", "losses", "optim", "metrics", "data", "predict", "train",
                 "pretrained", "readers"},
    "experiment": {"model", "serialization", "losses", "optim", "metrics", "data", "predict", "train", "callbacks",
                   "transfer", "distributed",
                   "small_cnn", "report", "viz", "gradcam"},
    "distributed": {"model", "serialization", "data", "predict", "transfer"},
    "profiling": {"model", "layers"},
    "demo": {"metrics", "gradcam", "pretrained", "report", "model", "serialization", "viz", "data", "predict"},
}
# The one upward arrow allowed: Graph.compile/fit/evaluate import minicnn.fitting inside the method
# (Keras-style methods over the one training loop). Only that edge, only at function level.
SANCTIONED_UPWARD = {("minicnn.model", "minicnn.fitting")}
# the arrows the redesign removed, stated once more on their own
FORBIDDEN = [("kernels", "layers"), ("layers", "model"), ("data", "layers"), ("data", "model"),
             ("readers", "layers"), ("readers", "model"), ("metrics", "model")]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.parts[-1] == "__init__" else rel.parts
    return ".".join(parts)


def _is_module(dotted: str) -> bool:
    p = PKG.parent.joinpath(*dotted.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _imports(path: Path):
    """(line, dotted minicnn module) for every import in the file, at any depth."""
    me = _module_name(path)
    package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                mod = ".".join(base + (node.module.split(".") if node.module else []))
            elif node.module and node.module.split(".")[0] == "minicnn":
                mod = node.module
            else:
                continue
            for a in node.names:   # `from . import x` / `from .pkg import sub` name modules too
                sub = f"{mod}.{a.name}"
                yield node.lineno, sub if _is_module(sub) else mod
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "minicnn":
                    yield node.lineno, a.name


def _graph():
    assert (PKG / "__init__.py").is_file(), PKG
    edges = {}
    for path in sorted(PKG.rglob("*.py")):
        edges[_module_name(path)] = {(line, t) for line, t in _imports(path) if t != _module_name(path)}
    return edges


def _top(dotted: str) -> str:
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_is_in_the_table():
    tops = {_top(m) for m in _graph()} - {"", "cli"}
    assert tops <= set(ALLOWED), f"add these to ALLOWED (and ARCHITECTURE.md): {sorted(tops - set(ALLOWED))}"


def test_imports_only_point_down():
    problems = []
    for mod, targets in _graph().items():
        top = _top(mod)
        if top in ("", "cli"):
            continue            # minicnn/__init__.py re-exports the public API; the CLI may use anything
        allowed = ALLOWED[top] | LEAF | {top}
        for line, t in sorted(targets):
            if _top(t) and _top(t) not in allowed and (mod, t) not in SANCTIONED_UPWARD:
                problems.append(f"{mod} (line {line}) imports {t}")
    assert not problems, "\n".join(problems)


def test_the_removed_arrows_stay_removed():
    for mod, targets in _graph().items():
        for line, t in targets:
            assert (_top(mod), _top(t)) not in FORBIDDEN, f"{mod} (line {line}) imports {t}"


def _cycles(graph: dict) -> list:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_even_through_function_level_imports():
    keys = _graph_keys()
    graph = {m: {t for _, t in ts if t in keys and (m, t) not in SANCTIONED_UPWARD} for m, ts in _graph().items()}
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_readers_import_only_the_errors():
    for mod, targets in _graph().items():
        if _top(mod) == "readers":
            bad = sorted(t for _, t in targets if _top(t) not in ("readers", "errors"))
            assert not bad, f"{mod} imports {bad}: readers parse bytes and know only minicnn.errors"


def _graph_keys():
    return {_module_name(p) for p in PKG.rglob("*.py")}


def test_nothing_imports_the_cli():
    for mod, targets in _graph().items():
        if mod != "minicnn.cli":
            assert all(t != "minicnn.cli" for _, t in targets), mod


def test_the_sanctioned_upward_import_is_function_level_only():
    """model -> fitting happens inside Graph's methods, never at module level (importing minicnn.model
    must not import the training floor)."""
    tree = ast.parse((PKG / "model.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            names = {a.name for a in node.names}
            assert not (node.module in ("fitting", "train") or "fitting" in names), ast.dump(node)
    found = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and "fitting" in {a.name for a in n.names}]
    assert len(found) == 3    # compile, fit, evaluate
