"""What every reader shares: the list of formats, the check that a path names a file, and the
limits and checks for zip archives (``.npz``, ``.keras``) that keep a hostile file from making
minicnn allocate, inflate or read more than the file can honestly hold.

``MAX_MEMBER_BYTES``: the largest uncompressed zip member or HDF5 dataset minicnn reads, 4 GiB by
default (``MINICNN_MAX_MEMBER_BYTES`` in the environment, or ``max_bytes=`` to the readers that take
it). ``DEFLATE_MAX_RATIO``: deflate cannot expand data more than about 1,032 times, so a member
declaring a larger ratio is lying about its size (a zip bomb) and is refused before inflating.
"""
from __future__ import annotations

import os
import zipfile
import zlib

from ..errors import UnsafeFileError, WeightFileError, file_not_found

#: Every format :func:`minicnn.readers.detect.detect_format` can return.
FORMATS = ("keras_h5", "keras_h5_model", "keras3_weights", "keras_archive", "torch_zip",
           "torch_legacy", "safetensors", "npz", "onnx")

#: Largest uncompressed member / dataset minicnn reads (bytes); env ``MINICNN_MAX_MEMBER_BYTES``.
MAX_MEMBER_BYTES = int(os.environ.get("MINICNN_MAX_MEMBER_BYTES", 4 << 30))
#: Deflate's largest possible expansion (about 1,032 : 1, from its 258-byte matches in 2 bits).
DEFLATE_MAX_RATIO = 1032
_SLACK = 4096            # tiny members compress worse than the asymptotic bound

#: Errors zipfile/zlib raise on a damaged archive (NotImplementedError: an unknown compression).
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, ValueError,
              OverflowError, KeyError)


def check_exists(path, what: str = "weight file") -> str:
    """``path`` as a string; ``FileNotFoundError`` if it is missing, ``WeightFileError`` if a directory."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise file_not_found(what, path)
    if os.path.isdir(path):
        raise WeightFileError(f"{path} is a directory, not a {what}", path=path)
    return path


def member_cap(max_bytes=None) -> int:
    return MAX_MEMBER_BYTES if max_bytes is None else int(max_bytes)


def open_zip(path: str, what: str = "zip archive") -> zipfile.ZipFile:
    """``zipfile.ZipFile(path)``, a damaged archive raised as ``WeightFileError`` naming it."""
    try:
        return zipfile.ZipFile(path)
    except ZIP_ERRORS as e:
        raise WeightFileError(f"{path}: not a readable {what} ({type(e).__name__}: {e}); was it truncated?",
                              path=path) from None


def check_zip_members(zf: zipfile.ZipFile, path: str, max_bytes=None) -> list[zipfile.ZipInfo]:
    """Every member of ``zf`` after checking, from the directory alone (nothing is inflated), that

    * its name stays inside the archive (no absolute path, no ``..`` part):
      ``UnsafeFileError``;
    * it is stored or deflated (anything else: ``WeightFileError``), a stored member's two sizes
      agree, a deflated one claims at most ``DEFLATE_MAX_RATIO`` times its compressed size (a zip
      bomb: ``UnsafeFileError``), and it is no larger than ``max_bytes`` (``MAX_MEMBER_BYTES``);
    * its compressed bytes lie inside the file.
    """
    cap = member_cap(max_bytes)
    size = os.path.getsize(path)
    infos = zf.infolist()
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts:
            raise UnsafeFileError(f"{path}: archive member {name!r} names a path outside the archive; "
                                  "refused (minicnn never extracts, but such a file is not a genuine one)",
                                  path=path, field=name)
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise WeightFileError(f"{path}: stored member {name!r} declares {info.file_size} bytes but holds "
                                      f"{info.compress_size}; the archive is corrupt", path=path, field=name)
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            if info.file_size > DEFLATE_MAX_RATIO * info.compress_size + _SLACK:
                raise UnsafeFileError(f"{path}: member {name!r} claims {info.file_size:,} bytes from "
                                      f"{info.compress_size:,} compressed, more than deflate's "
                                      f"{DEFLATE_MAX_RATIO}:1 bound (a zip bomb); refused", path=path, field=name)
        else:
            raise WeightFileError(f"{path}: member {name!r} uses zip compression method {info.compress_type}; "
                                  "minicnn reads stored or deflated members only", path=path, field=name)
        if info.file_size > cap:
            raise WeightFileError(f"{path}: member {name!r} is {info.file_size:,} bytes uncompressed, over the "
                                  f"limit of {cap:,} (set MINICNN_MAX_MEMBER_BYTES to allow it for a file you "
                                  "trust)", path=path, field=name)
        if info.header_offset + info.compress_size > size:
            raise WeightFileError(f"{path}: member {name!r} extends past the end of the file; was it truncated?",
                                  path=path, field=name)
    return infos


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str) -> bytes:
    """The bytes of a member checked by :func:`check_zip_members` (at most its declared size)."""
    try:
        with zf.open(info) as fh:
            data = fh.read(info.file_size)
    except ZIP_ERRORS as e:
        raise WeightFileError(f"{path}: member {info.filename!r} is corrupt ({type(e).__name__}: {e})", path=path,
                              field=info.filename) from None
    if len(data) != info.file_size:
        raise WeightFileError(f"{path}: member {info.filename!r} holds {len(data)} bytes, its header says "
                              f"{info.file_size}; was it truncated?", path=path, field=info.filename)
    return data
