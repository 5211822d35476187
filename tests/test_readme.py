"""The README's Python code runs as written."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _section_code(title: str) -> str:
    text = README.read_text()
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert blocks, f"no python block under '## {title}'"
    return "\n".join(blocks)


def test_python_api_section_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(_section_code("Python API"), "README.md", "exec"), {})
    assert (tmp_path / "model.npz").exists() and (tmp_path / "best.npz").exists()
    out = capsys.readouterr().out
    auc = float(next(line for line in out.splitlines() if line.startswith("ROC-AUC")).split()[1])
    assert 0.5 < auc <= 1.0
