"""Compiled-kernel caches never land inside the installed package (issue 16, bug 1).

The README's order in one venv: ``pip install .``, run a kernel, then ``pip install -e .``. Numba's
default cache (``minicnn/kernels/__pycache__/*.nbi``) survived ``pip uninstall`` and the leftover
folder became a namespace package that hid the editable install. Reproduced in a scratch venv
(``--system-site-packages --without-pip``: the system's pip and setuptools install into it; no
network: ``--no-deps --no-build-isolation``, no index).
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

RUN_KERNEL = ("import numpy as np, minicnn, sys; from minicnn.kernels import activation; "
              "activation.relu_forward(np.ones(8, np.float32), method='fast'); print(minicnn.__file__)")


def _run(cmd, cwd, env):
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"{cmd}\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return p.stdout


def test_install_run_uninstall_then_editable_install_imports(tmp_path):
    src = tmp_path / "src"                           # a copy: building never writes into the checkout
    shutil.copytree(ROOT / "minicnn", src / "minicnn", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(tmp_path / "venv")], check=True)
    py = str(tmp_path / "venv" / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NUMBA_CACHE_DIR")}
    env.update(MINICNN_HOME=str(tmp_path / "home"), PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], elsewhere, env).strip())

    _run(pip + [str(src)], elsewhere, env)
    assert _run([py, "-c", RUN_KERNEL], elsewhere, env).strip() == str(site / "minicnn" / "__init__.py")
    assert list((tmp_path / "home" / "numba").rglob("*.nbi")), "the kernel was not cached in $MINICNN_HOME/numba"
    assert not list((site / "minicnn").rglob("*.nb[ic]")), "a compiled-kernel cache was written into the install"

    _run([py, "-m", "pip", "uninstall", "-q", "-y", "minicnn"], elsewhere, env)
    assert not (site / "minicnn").exists(), f"pip uninstall left {sorted(p.name for p in (site / 'minicnn').rglob('*'))}"
    _run(pip + ["-e", str(src)], elsewhere, env)
    assert _run([py, "-c", RUN_KERNEL], elsewhere, env).strip() == str(src / "minicnn" / "__init__.py")
