"""Atomic file writes: the one place minicnn writes a file that must never be seen half-written.

    with atomic_write("history.csv", "w", newline="") as f:
        ...                                  # written to a hidden temporary file beside the target
    # renamed over the target only when the block ends without an exception; otherwise removed

A crash, a kill or a full disk therefore leaves either the previous file or the new one, never a
mix. The file gets the permissions a plain ``open(path, "w")`` would give it (0666 minus the
umask), not ``mkstemp``'s private 0600, so every file of a run has the same permissions. The temporary files are named ``.tmp-<target>-<random>`` in the target's folder (a rename is
only atomic within one file system); ``remove_stale_temporaries`` deletes those a killed process
left behind.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import threading
import time

import numpy as np

TMP_PREFIX = ".tmp-"
_umask_lock = threading.Lock()


def _umask() -> int:
    """The process umask (read by setting it and putting it back, under a lock)."""
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


PAUSE_ENV = "MINICNN_TEST_PAUSE_BEFORE_RENAME"


def _fail_hook(path: str) -> None:
    """Called before each rename; tests replace it to inject a failure (e.g. ``ENOSPC``).

    Test hook for the kill tests: with ``$MINICNN_TEST_PAUSE_BEFORE_RENAME=SECONDS`` every atomic
    write sleeps here, its temporary file complete and the target not yet replaced, so a test can
    SIGKILL a process inside a checkpoint write. Unset (always, outside tests) it does nothing."""
    pause = os.environ.get(PAUSE_ENV)
    if pause:
        time.sleep(float(pause))


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb", **open_kwargs):
    """Open a temporary file beside ``path`` for writing; on success rename it over ``path``."""
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_write writes whole files; mode must be 'w' or 'wb', not {mode!r}")
    path = os.fspath(path)
    if os.path.isdir(path) or path.endswith((os.sep, "/")):
        raise IsADirectoryError(errno.EISDIR, "is a folder; give a file name", path)   # before any temporary
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.path.basename(path)}-", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())         # as open() would create it, not mkstemp's 0600
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _fail_hook(path)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename in (None, tmp) and exc.errno is not None:
            raise OSError(exc.errno, exc.strerror, path) from exc   # name the target (a full disk names none)
        raise


def write_bytes(path, data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text(path, text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_json(path, obj, **dump_kwargs) -> None:
    dump_kwargs.setdefault("indent", 2)
    write_text(path, json.dumps(obj, **dump_kwargs))


def savez(path, arrays: dict) -> None:
    """``np.savez`` of plain arrays, atomically."""
    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def save_npy(path, array: np.ndarray) -> None:
    """``np.save`` of one plain array (no pickle), atomically."""
    with atomic_write(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def copy_stream(path, src, chunk: int = 1 << 20) -> None:
    """Copy a readable binary stream into ``path``, atomically."""
    with atomic_write(path, "wb") as f:
        while True:
            block = src.read(chunk)
            if not block:
                break
            f.write(block)


def remove_stale_temporaries(folder) -> list[str]:
    """Delete the temporary files an interrupted ``atomic_write`` left in ``folder``; returns them."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(folder):
            if name.startswith(TMP_PREFIX):
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    os.unlink(os.path.join(folder, name))
                    removed.append(name)
    return removed
