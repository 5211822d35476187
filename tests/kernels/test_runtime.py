"""The thread policy (minicnn.runtime): nothing at import, applied at the first kernel call, configure() honoured.

Each case runs in a fresh interpreter, since OpenMP reads its spin count once, when it loads.
``OMP_DISPLAY_ENV=VERBOSE`` makes GNU OpenMP print the settings it read when it loads, so the
tests see the spin count OpenMP really got, and when it loaded (not at import).
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from minicnn import runtime

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import dataclasses, importlib, json, os, pkgutil, sys
before = dict(os.environ)
import minicnn
for m in pkgutil.walk_packages(minicnn.__path__, "minicnn."):
    importlib.import_module(m.name)
assert dict(os.environ) == before, "import changed os.environ"
from minicnn import runtime
assert not runtime.settings().applied
sys.stderr.write("-- imported --\n"); sys.stderr.flush()
{setup}
import numpy as np
from minicnn.kernels.conv import conv2d_forward
conv2d_forward(np.ones((1, 2, 6, 6)), np.ones((3, 2, 3, 3)))
assert dict(os.environ) == before, "the first kernel call changed os.environ"
{after}
print(json.dumps(dataclasses.asdict(runtime.settings())))
"""


def child(setup="", after="", **env_extra):
    """CHILD run to completion in a fresh interpreter (its ``CompletedProcess``)."""
    # a minimal environment: a variable inherited from this process (where minicnn and threadpoolctl
    # are already imported) would hide the child setting it again
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
    env.update(NUMBA_NUM_THREADS="2", PYTHONPATH=str(ROOT), **env_extra)
    p = subprocess.run([sys.executable, "-c", CHILD.format(setup=setup, after=after)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def run_child(setup="", after="", **env_extra):
    """``(settings, spin count OpenMP read)`` of a CHILD run with OpenMP printing its settings."""
    p = child(setup, after, OMP_DISPLAY_ENV="VERBOSE", **env_extra)
    settings = json.loads(p.stdout.strip().splitlines()[-1])
    if settings["threading_layer"] != "omp":
        pytest.skip(f"Numba's threading layer is {settings['threading_layer']}, not GNU OpenMP")
    imported, _, later = p.stderr.partition("-- imported --")
    assert "OPENMP DISPLAY ENVIRONMENT" not in imported, "OpenMP was loaded at import"
    spins = re.findall(r"GOMP_SPINCOUNT = '(\d+)'", later)
    assert spins, p.stderr[-3000:]
    return settings, spins[0]


def test_import_changes_nothing_and_the_first_kernel_call_applies_the_short_spin():
    settings, spin = run_child()
    assert spin == "10000"
    assert settings["applied"] and settings["spin"] == 10000 and settings["spin_source"] == "minicnn default"
    assert settings["threads"] == 2


def test_configure_before_the_first_kernel_call_is_honoured():
    settings, spin = run_child(setup="runtime.configure(threads=1, spin=12345)")
    assert spin == "12345"
    assert settings["spin"] == 12345 and settings["threads"] == 1 and settings["blas_threads"] == 1


def test_configure_spin_none_leaves_openmp_its_default():
    settings, spin = run_child(setup="runtime.configure(spin=None)")
    assert spin != "10000" and settings["spin"] is None


def test_the_users_environment_wins_over_the_default():
    settings, spin = run_child(GOMP_SPINCOUNT="777")
    assert spin == "777"
    assert settings["spin"] is None and "GOMP_SPINCOUNT=777" in settings["spin_source"]


def test_after_the_first_kernel_call_threads_change_but_the_spin_cannot():
    after = """
try:
    runtime.configure(spin=5)
except ValueError as e:
    assert "before the first kernel call" in str(e)
else:
    raise AssertionError("configure(spin=5) after OpenMP loaded was accepted")
runtime.configure(threads=1, spin=10000)       # the spin in force: accepted
"""
    settings, spin = run_child(after=after)
    assert spin == "10000" and settings["threads"] == 1


GLIBC = sys.platform.startswith("linux") and __import__("platform").libc_ver()[0] == "glibc"


@pytest.mark.skipif(not GLIBC, reason="the memory policy acts on glibc's malloc")
def test_the_first_kernel_call_keeps_freed_memory_unless_told_or_the_environment_says():
    settings, _ = run_child()
    assert settings["reuse_memory"] is True and settings["memory_source"] == "minicnn default"
    settings, _ = run_child(MALLOC_TRIM_THRESHOLD_="131072")
    assert settings["reuse_memory"] is False and "MALLOC_TRIM_THRESHOLD_=131072" in settings["memory_source"]
    settings, _ = run_child(setup="runtime.configure(reuse_memory=False)")
    assert settings["reuse_memory"] is False and "reuse_memory=False" in settings["memory_source"]


@pytest.mark.skipif(not GLIBC, reason="the memory policy acts on glibc's malloc")
def test_kept_memory_is_reused_not_faulted_in_again():
    """What the policy is for: a second pass of 25 MB activations reuses the first one's pages
    (with glibc's own policy the freed heap top is trimmed and every pass faults its pages in again)."""
    probe = r"""
import resource
import numpy as np
def a_pass():                                                     # 4 live 25 MB activations, then freed
    a = [np.ones(25 << 18, np.float32) for _ in range(4)]
    del a
def faults_of_round_trips():
    a_pass()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        a_pass()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print("FAULTS", faults_of_round_trips(), file=sys.stderr)
"""
    kept, own = (int(re.findall(r"FAULTS (\d+)", child(setup, probe).stderr)[0])
                 for setup in ("", "runtime.configure(reuse_memory=False)"))
    assert kept * 10 < own, (kept, own)                # measured: 0 vs 8,280 page faults


@pytest.mark.skipif(not GLIBC, reason="the memory policy acts on glibc's malloc")
def test_the_memory_policy_cannot_change_after_it_was_applied():
    after = """
try:
    runtime.configure(reuse_memory=False)
except ValueError as e:
    assert "before the first kernel call" in str(e)
else:
    raise AssertionError("configure(reuse_memory=False) after the policy was applied was accepted")
runtime.configure(reuse_memory=True)           # the policy in force: accepted
"""
    settings, _ = run_child(after=after)
    assert settings["reuse_memory"] is True


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="spin must be"):
        runtime.configure(spin=-1)
    with pytest.raises(ValueError, match="threads must be"):
        runtime.configure(threads=0)
    with pytest.raises(ValueError, match="reuse_memory must be"):
        runtime.configure(reuse_memory="yes")
