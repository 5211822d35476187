"""The learner's example runs and prints what it promises."""
import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_step_through_runs(capsys):
    runpy.run_path(str(EXAMPLES / "step_through.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "forward: each layer's input and output" in out and "dW" in out
    errors = [float(tok.split(":")[-1]) for line in out.split("gradient check")[1].splitlines()
              for tok in line.split("  ") if ": " in tok and tok.strip()[0] in "xWb"]
    assert errors and max(errors) < 1e-6
    assert len(out.splitlines()) < 80   # readable on one screen or two


def test_fit_on_arrays_trains_and_evaluates(capsys):
    runpy.run_path(str(EXAMPLES / "fit_on_arrays.py"), run_name="__main__")
    out = capsys.readouterr().out
    losses = [float(line.split("loss ")[1].split()[0]) for line in out.splitlines() if line.startswith("epoch ")]
    assert len(losses) >= 3 and losses[-1] < losses[0]          # it trained
    assert "sensitivity" in out and "specificity" in out and "95% CI" in out   # evaluate's clinical table
    auc = float(out.split("test ROC-AUC")[1].split()[0])
    assert 0.6 < auc <= 1.0                                      # it learned the signal on held-out data
