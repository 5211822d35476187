"""The run-directory lock: a second `minicnn train` into a run directory in use refuses at once,
naming the holder, and touches nothing; the lock goes with its holder (also when it is killed)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minicnn.cli import main
from minicnn.experiment import RUN_LOCK, run_lock
from minicnn.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="fcntl.flock is POSIX-only (see README)")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("lock") / "data"
    assert main(["synth", str(root), "--n", "60", "--size", "16", "--seed", "2"]) == 0
    return root


def _train(data, out, *extra, env=None):
    return subprocess.Popen([sys.executable, "-m", "minicnn.cli", "train", str(data), "--arch", "tiny",
                             "--image-size", "16", "--epochs", "2", "--batch-size", "16", "--out", str(out),
                             "--quiet", "--threads", "1", *extra],
                            cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_holder(out, proc, timeout=60):
    lock = out / RUN_LOCK
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if lock.exists() and lock.read_text():
            return json.loads(lock.read_text())
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("the first run never took the lock")


def test_a_second_train_into_a_run_in_use_refuses_naming_the_holder(data, tmp_path):
    out = tmp_path / "run"
    # the first run pauses 0.5 s in each atomic write, so it is surely still running when the second starts
    first = _train(data, out, env={"MINICNN_TEST_PAUSE_BEFORE_RENAME": "0.5"})
    holder = _wait_for_holder(out, first)
    assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
    second = _train(data, out, "--overwrite")          # --overwrite would delete the first run's files
    _, err = second.communicate(timeout=60)
    assert first.poll() is None                        # refused while the first was still at work
    assert second.returncode == 1
    assert err.strip().splitlines()[-1] == (
        f"minicnn train: error: {out} is in use by another minicnn train (pid {first.pid} on "
        f"{holder['host']}, started {holder['started']}); wait for it to finish, or choose another --out")
    assert "Traceback" not in err
    out1, err1 = first.communicate(timeout=120)
    assert first.returncode == 0, err1
    assert "done: best validation ROC-AUC" in out1
    assert (out / "model.npz").exists() and (out / "last.npz").exists()
    assert (out / RUN_LOCK).read_text() == ""           # released: the file names no holder
    assert main(["train", str(data), "--out", str(out), "--overwrite", "--arch", "tiny", "--image-size", "16",
                 "--epochs", "1", "--quiet"]) == 0        # the lock is free again


def test_a_killed_holder_leaves_no_stale_lock(data, tmp_path):
    out = tmp_path / "run"
    first = _train(data, out, env={"MINICNN_TEST_PAUSE_BEFORE_RENAME": "5"})
    _wait_for_holder(out, first)
    with pytest.raises(UsageError, match="in use by another minicnn train"):
        with run_lock(out):
            pass
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert (out / RUN_LOCK).read_text()                  # the dead holder's record is still there ...
    with run_lock(out):                                  # ... but the kernel released its lock
        assert json.loads((out / RUN_LOCK).read_text())["pid"] == os.getpid()


def test_without_fcntl_or_file_system_locks_the_run_goes_on_with_a_warning(tmp_path, monkeypatch):
    import errno
    from minicnn import experiment
    said = []
    monkeypatch.setattr(experiment, "fcntl", None)                      # Windows
    with run_lock(tmp_path / "a", log=said.append):
        pass
    assert said == [f"WARNING: this platform has no fcntl: {tmp_path / 'a'} is not locked against a second "
                    f"`minicnn train` into it"]

    class NoLocks:                                                      # e.g. an NFS mount without lockd
        LOCK_EX = LOCK_NB = 0

        @staticmethod
        def flock(fd, how):
            raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(experiment, "fcntl", NoLocks)
    with run_lock(tmp_path / "b", log=said.append):
        pass
    assert said[1] == (f"WARNING: the file system of {tmp_path / 'b'} does not support locks: it is not locked "
                       f"against a second `minicnn train` into it")
