"""A full disk while checkpointing: one line naming the file (no traceback), exit 1, the previous
checkpoint intact, and never ``model.npz`` without ``last.npz``. First an ``ENOSPC`` injected into
``fileio``'s atomic write (every machine), then a real small tmpfs (where mounting one is allowed)."""
import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from minicnn import fileio
from minicnn.cli import main
from minicnn.train import load_checkpoint

TRAIN = ["--arch", "tiny", "--image-size", "16", "--epochs", "2", "--batch-size", "16", "--val-from-train", "0.25",
         "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("full") / "data"
    assert main(["synth", str(root), "--n", "64", "--size", "16", "--seed", "6"]) == 0
    return root


def _error_line(err, out):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err          # one line, nothing else
    assert lines[0].startswith(f"minicnn train: error: no space left on the device writing {out}")
    return lines[0]


@pytest.mark.parametrize("failing", [1, 2, 3, 4])
def test_enospc_in_the_kth_checkpoint_write(data, tmp_path, monkeypatch, capsys, failing):
    """Checkpoint writes of a fresh 2-epoch run: last.npz (before batch 1), model.npz, last.npz, then
    model.npz (if epoch 2 is better) and last.npz. The ``failing``-th of them hits a full disk."""
    out = tmp_path / "run"
    count, before = [0], {}

    def full_disk(path):
        if os.path.basename(path) in ("last.npz", "model.npz"):
            count[0] += 1
            if count[0] == failing:
                before.update({n: (out / n).read_bytes() for n in ("last.npz", "model.npz") if (out / n).exists()})
                before["target"] = path
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))     # as a real write: no file name
    monkeypatch.setattr(fileio, "_fail_hook", full_disk)
    assert main(["train", str(data), "--out", str(out), *TRAIN]) == 1
    line = _error_line(capsys.readouterr().err, out)
    assert before["target"] in line
    if "last.npz" in before:
        assert line.endswith(f"the previous checkpoint {out / 'last.npz'} is kept: free some space, then continue "
                             f"with `minicnn train --resume {out}`")
    else:
        assert line.endswith("free some space, then start the run again with --overwrite")
        assert not out.exists()                  # nothing was written, so no run directory is left
        return
    for name in ("last.npz", "model.npz"):                              # what was there is untouched
        assert (out / name).exists() == (name in before)
        if name in before:
            assert (out / name).read_bytes() == before[name]
    assert not (out / "model.npz").exists() or (out / "last.npz").exists()
    assert [n for n in os.listdir(out) if n.startswith(fileio.TMP_PREFIX)] == []
    if (out / "last.npz").exists():
        load_checkpoint(out / "last.npz")
        monkeypatch.undo()                                               # space freed: the run continues
        assert main(["train", "--resume", str(out), "--quiet"]) == 0
        assert len(json.loads((out / "history.json").read_text())) == 2


def _mount_tmpfs(where, size):
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {r.stderr.strip()}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tmpfs is Linux's")
def test_a_real_full_tmpfs_during_checkpointing(data, tmp_path, capsys):
    ref = tmp_path / "reference"
    assert main(["train", str(data), "--out", str(ref), *TRAIN]) == 0
    L, M = (ref / "last.npz").stat().st_size, (ref / "model.npz").stat().st_size
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "2m")
    try:
        out = disk / "run"
        out.mkdir()
        # room for the first last.npz and the first model.npz, not for the second last.npz beside the first
        st = os.statvfs(disk)
        filler = st.f_bavail * st.f_frsize - (L + M + L // 2)
        (disk / "filler").write_bytes(b"\0" * filler)
        capsys.readouterr()
        assert main(["train", str(data), "--out", str(out), *TRAIN]) == 1
        line = _error_line(capsys.readouterr().err, out)
        assert f"writing {out / 'last.npz'}; the previous checkpoint {out / 'last.npz'} is kept" in line
        _, info, _ = load_checkpoint(out / "last.npz")                  # the first checkpoint, intact
        assert info["state"]["epoch"] == 0 and (out / "model.npz").exists()
        assert [n for n in os.listdir(out) if n.startswith(fileio.TMP_PREFIX)] == []
        (disk / "filler").unlink()
        assert main(["train", "--resume", str(out), "--quiet"]) == 0
        with np.load(out / "last.npz") as got, np.load(ref / "last.npz") as want:
            for k in want.files:
                if k.startswith("w:"):
                    assert np.array_equal(got[k], want[k]), k
    finally:
        subprocess.run(["umount", str(disk)], check=False)
