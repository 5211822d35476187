"""Downloading a known weight file into the cache, checked against its published digest.

The cache is ``$MINICNN_HOME/weights`` (default ``~/.cache/minicnn/weights``). A file appears
there only after its digest checked out: it is streamed into a temporary file beside the target
(``minicnn.fileio.atomic_write``), hashed on the way, and renamed only if the digest matches.
Offline, the error says where to place the file by hand.

Some projects publish no digest (torchxrayvision): for those entries (``digest = ('sha256', None)``)
the SHA-256 of the first download -- or of a file placed in the cache by hand, at its first use --
is recorded beside it (``<file>.sha256``) and every later use checks the file against it.
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request

from tqdm.auto import tqdm

from ..errors import FetchError
from ..fileio import atomic_write
from .spec import WeightsEntry


def cache_dir() -> str:
    """``$MINICNN_HOME/weights``, default ``~/.cache/minicnn/weights`` (not created here)."""
    home = os.environ.get("MINICNN_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "minicnn")
    return os.path.join(home, "weights")


def file_digest(path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _matches(got: str, digest: tuple) -> bool:
    algorithm, expected = digest
    return got.startswith(expected.lower()) if algorithm == "sha256" else got == expected.lower()


def digest_ok(path, digest: tuple) -> bool:
    """Full md5 equality, or the SHA-256 hex digest starting with the published prefix."""
    return _matches(file_digest(path, digest[0]), digest)


def recorded_digest_path(dest: str) -> str:
    """Where the first-use SHA-256 of a cached file without a published digest is kept."""
    return dest + ".sha256"


def recorded_digest(dest: str) -> str | None:
    """The SHA-256 recorded at the first use of ``dest`` (None if none was recorded)."""
    p = recorded_digest_path(dest)
    if not os.path.isfile(p):
        return None
    with open(p, encoding="ascii") as f:
        words = f.read().split()
    return words[0].lower() if words else None


def _record(dest: str, digest: str) -> None:
    with atomic_write(recorded_digest_path(dest), "w") as f:
        f.write(f"{digest}  {os.path.basename(dest)}\n")


def _download_unpublished(entry: WeightsEntry, dest: str, progress: bool, timeout: float) -> str:
    """An entry without a published digest: record the SHA-256 on first use, check it on every later one."""
    if os.path.exists(dest):
        got, want = file_digest(dest, "sha256"), recorded_digest(dest)
        if want is None:
            _record(dest, got)          # placed by hand: this first use records it
        elif got != want:
            raise FetchError(f"{dest} does not match the SHA-256 recorded when it was first used ({want}; now "
                             f"{got}): the file changed. {entry.name} has no published digest, so minicnn "
                             f"checks against its first copy; delete {dest} and "
                             f"{recorded_digest_path(dest)} to fetch it again from {entry.url}", path=dest)
        return dest
    h = hashlib.sha256()
    with atomic_write(dest, "wb") as out:
        _download(entry.url, out, h, timeout, progress, entry.filename)
    _record(dest, h.hexdigest())
    return dest


def download(entry: WeightsEntry, progress: bool = True, timeout: float = 30.0) -> str:
    """Path of ``entry``'s file in the cache, downloading (and checking) it first if needed.

    Raises ``FetchError`` when the download fails (the message names the file, the URL and where to
    place a copy by hand) or when a file's digest is wrong (nothing is left behind). An entry
    without a published digest gets its SHA-256 recorded on first use (see the module docstring).
    """
    dest = os.path.join(cache_dir(), entry.filename)
    algorithm, expected = entry.digest
    if expected is None:
        return _download_unpublished(entry, dest, progress, timeout)
    if os.path.exists(dest):
        if not digest_ok(dest, entry.digest):
            raise FetchError(f"{dest} does not match its published {algorithm} digest {expected}: the file is "
                             f"corrupt or a different one. Delete it and fetch again, or replace it with "
                             f"the file from {entry.url}", path=dest)
        return dest
    h = hashlib.new(algorithm)
    with atomic_write(dest, "wb") as out:
        _download(entry.url, out, h, timeout, progress, entry.filename)
        if not _matches(h.hexdigest(), entry.digest):       # raised inside: the temporary file is removed
            raise FetchError(f"the download of {entry.name} from {entry.url} does not match its published "
                             f"{algorithm} digest {expected} (got {h.hexdigest()}); nothing was "
                             f"kept. Try again, or check the URL.", path=dest)
    return dest


def _download(url: str, out, hasher, timeout: float, progress: bool, label: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            total = int(r.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
                      disable=not progress) as bar:
                for chunk in iter(lambda: r.read(1 << 20), b""):
                    out.write(chunk)
                    hasher.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise FetchError(f"could not download {label} from {url} ({reason}). If this machine is offline, "
                         f"download the file elsewhere and place it at {os.path.join(cache_dir(), label)} "
                         f"(or set MINICNN_HOME to a folder whose 'weights' subfolder holds it).") from None
