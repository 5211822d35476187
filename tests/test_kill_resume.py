"""SIGKILL a real `minicnn train` at seeded random moments — some of them inside a checkpoint write —
then check that the run's files load and that `--resume` ends bit for bit where an uninterrupted
run ends (weights, optimizer state, training state, history; timings aside).

The kills inside a write use the test hook ``$MINICNN_TEST_PAUSE_BEFORE_RENAME`` of
``minicnn.fileio``: every atomic write pauses with its temporary file complete and the target not
yet replaced, so the test can kill while a ``.tmp-last.npz-*`` / ``.tmp-model.npz-*`` exists.
Every run uses ``--threads 1`` (a run is reproducible for a given thread count); the killed runs
and the reference are processes of their own, the resumes run in the test's process.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numba
import numpy as np
import pytest

from minicnn.cli import main
from minicnn.fileio import PAUSE_ENV, TMP_PREFIX
from minicnn.serialization import load
from minicnn.train import load_checkpoint, set_threads

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and fcntl are POSIX-only")

TRAIN = ["--arch", "tiny", "--image-size", "16", "--epochs", "3", "--batch-size", "8", "--seed", "5"]
COMMON = ["--quiet", "--threads", "1"]
PAUSE = "0.1"                 # seconds each atomic write waits before its rename
RANDOM_KILLS, KILLS_IN_WRITES = 7, 3
TIMING = ("seconds", "images_per_s")
CHECKPOINTS = ("last.npz", "model.npz")


def _cli(*args):
    return [sys.executable, "-m", "minicnn.cli", *args]


def _start(data, out):
    return subprocess.Popen(_cli("train", str(data), "--out", str(out), *TRAIN, *COMMON), cwd=REPO,
                            env={**os.environ, PAUSE_ENV: PAUSE}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _temporaries(out):
    return sorted(n for n in os.listdir(out) if n.startswith(TMP_PREFIX)) if out.is_dir() else []


def _wait_for(what, proc, timeout=120):
    t0 = time.monotonic()
    while not what():
        if proc.poll() is not None:
            return False
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.002)
    return True


def _without_timings(rows):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def _run_files(out):
    """Everything a finished run's result is made of, timings removed: compared with ==."""
    files = {}
    for name in CHECKPOINTS:
        with np.load(out / name, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if "train_state" in arrays:
            info = json.loads(str(arrays.pop("train_state")))
            info["state"]["history"] = _without_timings(info["state"]["history"])
            assert info["extra"]["args"].pop("out") == str(out)
            files[name + ":train_state"] = info
        files[name] = arrays
    files["history.json"] = _without_timings(json.loads((out / "history.json").read_text()))
    return files


def _assert_identical(got, want, where):
    assert got.keys() == want.keys(), where
    for key in want:
        if isinstance(want[key], dict) and all(isinstance(v, np.ndarray) for v in want[key].values()):
            assert got[key].keys() == want[key].keys(), (where, key)
            for name, array in want[key].items():
                assert got[key][name].dtype == array.dtype and np.array_equal(got[key][name], array), \
                    f"{where}: {key} {name} differs"
        else:
            assert got[key] == want[key], f"{where}: {key} differs"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill") / "data"
    assert main(["synth", str(root), "--n", "120", "--size", "16", "--seed", "4"]) == 0
    return root


@pytest.fixture
def one_thread():
    """The resumes run in this process with ``--threads 1`` (as the killed runs did); restored after."""
    previous = numba.get_num_threads()
    yield
    set_threads(previous)


def test_sigkill_anywhere_then_resume_matches_the_uninterrupted_run(data, tmp_path, capsys, one_thread):
    ref = tmp_path / "reference"
    proc = _start(data, ref)                        # the reference, timed from its first checkpoint on
    assert _wait_for(lambda: (ref / "last.npz").exists(), proc)
    t_first = time.time()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    span = (ref / "history.json").stat().st_mtime - t_first     # its epochs and their checkpoints
    want = _run_files(ref)
    assert len(want["history.json"]) == 3

    rng = np.random.default_rng(14)
    outcomes, attempts = [], 0            # (kind of kill, epoch resumed from, inside an atomic write)
    while True:
        random_kills = sum(kind == "random" for kind, _, _ in outcomes)
        write_kills = sum(kind == "write" and inside for kind, _, inside in outcomes)
        if random_kills >= RANDOM_KILLS and write_kills >= KILLS_IN_WRITES:
            break
        kind, attempts = "random" if random_kills < RANDOM_KILLS else "write", attempts + 1
        assert attempts <= 2 * (RANDOM_KILLS + KILLS_IN_WRITES), f"too many runs ended before their kill: {outcomes}"
        out = tmp_path / f"killed{attempts}"
        proc = _start(data, out)
        assert _wait_for(lambda: (out / "last.npz").exists(), proc)   # the checkpoint written before batch 1
        if kind == "random":                         # a seeded random moment of the run
            time.sleep(rng.uniform(0, span))
        else:                                        # inside the k-th checkpoint write after that one
            k, seen = int(rng.integers(1, 4)), set()

            def in_kth_write():
                now = [n for n in _temporaries(out) if n[len(TMP_PREFIX):].startswith(CHECKPOINTS)]
                seen.update(now)
                return len(seen) >= k and bool(now)
            _wait_for(in_kth_write, proc)
        proc.send_signal(signal.SIGKILL)
        if proc.wait(timeout=60) == 0:
            continue                                 # the run ended before the kill (a loaded machine); again
        assert proc.returncode == -signal.SIGKILL, proc.communicate()[1]
        left = _temporaries(out)                     # a write the kill interrupted leaves its temporary

        # what a kill leaves loads: the checkpoint always, the best model when there is one
        _, info, _ = load_checkpoint(out / "last.npz")
        if (out / "model.npz").exists():
            assert load(out / "model.npz").meta["best_epoch"] >= 1
        capsys.readouterr()
        assert main(["train", "--resume", str(out), *COMMON]) == 0, capsys.readouterr().err
        assert f"resuming {out} at epoch {info['state']['epoch'] + 1}, batch 0" in capsys.readouterr().out
        assert _temporaries(out) == []               # what the killed write left was removed
        _assert_identical(_run_files(out), want, f"kill {len(outcomes)} ({kind})")
        outcomes.append((kind, info["state"]["epoch"], bool(left)))

    inside = sum(in_write for _, _, in_write in outcomes)
    with capsys.disabled():
        print(f"\n{len(outcomes)} SIGKILLs, {inside} inside an atomic write, resumed from epochs "
              f"{[e for _, e, _ in outcomes]}; every resumed run identical to the uninterrupted one")
    assert len(outcomes) >= 10 and inside >= KILLS_IN_WRITES


def test_overwrite_and_resume_remove_the_temporaries_a_killed_write_left(data, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--arch", "tiny", "--image-size", "16", "--epochs", "1", "--batch-size", "32", "--quiet"]
    assert main(["train", str(data), "--out", str(out), *args]) == 0
    stale = [out / f"{TMP_PREFIX}last.npz-k1ll3d", out / f"{TMP_PREFIX}model.npz-x9"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert _temporaries(out) == []
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    assert main(["train", str(data), "--out", str(out), *args, "--overwrite"]) == 0
    assert _temporaries(out) == [] and (out / "last.npz").exists()


def test_resuming_an_early_stopped_run_trains_no_further(data, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--arch", "tiny", "--image-size", "16", "--epochs", "6", "--batch-size", "8", "--seed", "5",
            "--patience", "1", "--lr", "0.05", "--quiet"]
    assert main(["train", str(data), "--out", str(out), *args]) == 0
    assert "early stopping" in capsys.readouterr().out
    before = (out / "last.npz").read_bytes()
    stopped = len(json.loads((out / "history.json").read_text()))
    assert stopped < 6
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert len(json.loads((out / "history.json").read_text())) == stopped
    assert (out / "last.npz").read_bytes() == before
