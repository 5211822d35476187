"""Data flows one way: kernels <- layers <- models <- train/predict/cli. Checked on the import statements."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "minicnn"

# module (or package) -> the minicnn modules it may import (itself and its own package always allowed)
ALLOWED = {
    "errors": set(), "fileio": set(), "_validate": set(), "init": set(), "metrics": set(), "losses": {"kernels"}, "optim": set(), "gradient_check": set(), "runtime": set(),
    "kernels": {"_validate", "runtime"},
    "layers": {"kernels", "init", "_validate"},
    "model": {"layers", "losses", "kernels", "runtime"},
    "data": {"_validate"},
    "nets": {"layers", "model"},
    "viz": {"metrics", "model"},
    "report": {"metrics", "viz"},
    "train": {"model", "losses", "optim", "metrics", "data", "runtime"},
    "predict": {"model", "data"},
    "explain": {"data", "predict", "viz", "report", "model"},
    "pretrained": {"layers", "model", "init", "data", "metrics", "losses", "optim", "train", "_validate", "viz"},
    "demo": {"metrics", "explain", "pretrained", "report", "train", "model", "viz", "data", "predict"},
}


def _imports(path: Path, package):
    """The minicnn modules a file imports, as lists of name parts below ``minicnn``."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
                names = [target + [a.name] for a in node.names] if not node.module else [target]
            elif node.module and node.module.startswith("minicnn"):
                names = [node.module.split(".")[1:]]
            else:
                continue
            for parts in names:
                yield parts
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("minicnn."):
                    yield a.name.split(".")[1:]


def test_imports_only_point_down():
    problems = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("").parts
        parts = list(rel[:-1]) if rel[-1] == "__init__" else list(rel)
        if not parts:
            continue  # minicnn/__init__.py re-exports the public API
        top = parts[0]
        if top == "cli":
            continue
        allowed = ALLOWED[top] | {"errors", "fileio"}
        for target in _imports(path, list(rel[:-1])):
            if not target:
                continue
            head = target[0]
            if head == top or head in allowed:
                continue
            problems.append(f"{'/'.join(rel)}.py imports minicnn.{'.'.join(target)}")
    assert not problems, "\n".join(problems)


def test_nothing_imports_the_cli():
    for path in PKG.rglob("*.py"):
        if path.name == "cli.py":
            continue
        assert "cli import" not in path.read_text() and "minicnn.cli" not in path.read_text(), path
