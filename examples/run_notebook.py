"""Regenerate the committed outputs of ``examples/medical_diagnosis.ipynb``: run every cell in place.

    python examples/run_notebook.py            # from the repository root; about a minute on 2 cores

The notebook is executed top to bottom with nbclient (kernel ``python3``; ``pip install -e ".[test]"``
installs nbclient, nbformat and ipykernel), importing the minicnn of this checkout, and written back
with its outputs (text and PNG figures). It needs the demo's wheel (``pneumonia-model-package==0.3.0``):
from ``$MINICNN_TEST_WHEEL_DIR`` if set, else minicnn's cache, else downloaded once by
``minicnn.demo.get_wheel``. A run in which a section skipped (no wheel) is not written back, so the
committed notebook always shows every section; ``--allow-skips`` writes it anyway.
``--output PATH`` writes the executed notebook elsewhere instead of in place.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "medical_diagnosis.ipynb"
CELL_TIMEOUT = 600  # seconds per cell


def execute(path: Path, workdir: Path, timeout: int = CELL_TIMEOUT):
    """Run the notebook at ``path`` with ``workdir`` as the kernel's working folder and the folder the
    notebook writes into (``$MINICNN_NOTEBOOK_WORK``); returns it with its outputs.

    A cell that raises stops the run with nbclient's ``CellExecutionError``.
    """
    nb = nbformat.read(path, as_version=4)
    repo = str(HERE.parent)
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "MINICNN_NOTEBOOK_WORK")}
    os.environ["PYTHONPATH"] = repo + (os.pathsep + saved["PYTHONPATH"] if saved["PYTHONPATH"] else "")  # this checkout
    os.environ["MINICNN_NOTEBOOK_WORK"] = str(workdir)        # what the notebook writes goes there
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                       resources={"metadata": {"path": str(workdir)}}).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def skipped_lines(nb) -> list[str]:
    """Output lines of sections that skipped (``SKIP ...``) or of a missing wheel (``WHEEL: unavailable``)."""
    lines = []
    for cell in nb.cells:
        text = "".join(o["text"] for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        lines += [l for l in text.splitlines() if l.startswith(("SKIP", "WHEEL: unavailable"))]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=NOTEBOOK, help="where to write (default: in place)")
    parser.add_argument("--allow-skips", action="store_true", help="write it even if a section skipped")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="minicnn-notebook-run-") as work:
        nb = execute(NOTEBOOK, Path(work))
    skips = skipped_lines(nb)
    if skips and not args.allow_skips:
        print("not written: a section skipped --\n  " + "\n  ".join(skips), file=sys.stderr)
        return 1
    nbformat.write(nb, args.output)
    size = args.output.stat().st_size
    print(f"wrote {args.output} ({size / 1e6:.2f} MB) in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
