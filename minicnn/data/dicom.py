"""DICOM X-rays read the way a viewer shows them (optional extra ``minicnn[dicom]``).

The grayscale display pipeline, in DICOM's order, each step by pydicom's own function:

1. stored values (``ds.pixel_array``; compressed transfer syntaxes through the decoder plugins),
2. modality LUT: the Modality LUT Sequence, else RescaleSlope/RescaleIntercept
   (``pydicom.pixels.apply_modality_lut``),
3. VOI LUT: the VOI LUT Sequence, else WindowCenter/WindowWidth; the first of several
   (``pydicom.pixels.apply_voi_lut(..., index=0)``),
4. MONOCHROME1 inversion (its minimum is shown white),
5. the result's min..max stretched onto 0..255 (float32).

Before any pixel data is decoded, Rows x Columns x frames is checked against ``max_pixels``
(default ``limits.MAX_PIXELS``); multi-frame and colour images are refused with a clear message.
A compressed file whose decoder plugin is missing names its transfer syntax and what to install.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ImageLoadError
from .limits import MAX_PIXELS

# pip package(s) that decode each family of transfer syntaxes (all in the `dicom` extra, none GPL)
_PLUGIN_HINTS = {
    "JPEG Lossless": "python-gdcm",
    "JPEG-LS": "pyjpegls",
    "JPEG 2000": "pylibjpeg pylibjpeg-openjpeg",
    "RLE": "pylibjpeg pylibjpeg-rle",
    "JPEG": "python-gdcm (or pillow)",
}


class DicomError(ImageLoadError):
    """A DICOM file minicnn cannot turn into a grayscale X-ray (names the file and why)."""


@dataclass(frozen=True)
class DicomImage:
    """One decoded X-ray: ``pixels`` float32 (H, W) in [0, 255] and the header fields minicnn uses."""
    pixels: np.ndarray
    patient_id: str | None = None
    photometric: str = "MONOCHROME2"
    bits_stored: int | None = None
    transfer_syntax: str | None = None
    header: dict = field(default_factory=dict)


def _pydicom():
    try:
        import pydicom
        import pydicom.pixels  # noqa: F401
    except ImportError as exc:
        raise DicomError("reading DICOM files needs pydicom and its decoder plugins, which are not installed: "
                         "pip install 'minicnn[dicom]'") from exc
    return pydicom


def _plugin_hint(syntax_name: str) -> str:
    for key, package in _PLUGIN_HINTS.items():
        if key in syntax_name:
            return package
    return "the decoder plugins of the dicom extra"


def _check_geometry(ds, path, max_pixels: int) -> None:
    """Refuse multi-frame, colour and over-large images from the header alone (nothing decoded yet)."""
    rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if rows <= 0 or cols <= 0:
        raise DicomError(f"{path}: no image (Rows x Columns = {rows} x {cols})", path=path, field="Rows")
    if rows * cols * frames > max_pixels:
        raise DicomError(f"{path}: {rows} x {cols} x {frames} frame(s) = {rows * cols * frames:,} pixels is over "
                         f"minicnn's limit of {max_pixels:,}; raise max_pixels if the file is trusted",
                         path=path, field="Rows")
    if frames > 1:
        raise DicomError(f"{path} holds {frames} frames; minicnn reads single-frame X-rays only "
                         "(export the frame you want)", path=path, field="NumberOfFrames")
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if samples != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomError(f"{path} is a colour image ({photometric}, {samples} samples per pixel); "
                         "X-rays are MONOCHROME1/MONOCHROME2", path=path, field="PhotometricInterpretation")


def _syntax(ds):
    """``(uid, name, is_compressed)`` of the file's transfer syntax; a damaged UID gives ``(None, ...)``."""
    uid = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        return uid, uid.name, bool(uid.is_compressed)
    except Exception:  # noqa: BLE001 - a UID that is not a transfer syntax
        return None, f"unknown transfer syntax {str(uid)!r}", False


#: JPEG Baseline: decoded with Pillow when it can, since python-gdcm aborts the whole process
#: (an uncaught C++ exception) on some damaged JPEG streams instead of raising.
_PILLOW_FIRST = {"1.2.840.10008.1.2.4.50"}


def _pillow_decodes(uid) -> bool:
    try:
        from pydicom.pixels.decoders.base import get_decoder
        return "pillow" in get_decoder(uid).available_plugins
    except Exception:  # noqa: BLE001 - no such decoder / plugin registry: pydicom's own choice
        return False


def _stored_values(ds, path) -> np.ndarray:
    uid, name, compressed = _syntax(ds)
    if uid is None:
        raise DicomError(f"{path}: the transfer syntax UID {name[len('unknown transfer syntax '):]} is not one",
                         path=path, field="TransferSyntaxUID")
    try:
        if str(uid) in _PILLOW_FIRST and _pillow_decodes(uid):
            ds.pixel_array_options(decoding_plugin="pillow")
        return ds.pixel_array
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except BaseException as exc:  # pydicom: RuntimeError/ValueError/...; a Rust decoder plugin: PanicException
        text = str(exc)
        if compressed and ("plugin" in text or "missing" in text or "dependenc" in text):
            raise DicomError(f"{path} is compressed as {name}, and no installed plugin decodes it: "
                             f"pip install {_plugin_hint(name)}", path=path, field="TransferSyntaxUID") from exc
        raise DicomError(f"cannot decode the pixel data of {path} ({name}): {text}", path=path,
                         field="PixelData") from exc


def display_values(ds, pixels: np.ndarray) -> np.ndarray:
    """Stored values -> what a viewer shows: modality LUT, VOI LUT, MONOCHROME1 inversion, 0..255."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
    x = apply_modality_lut(pixels, ds)
    x = apply_voi_lut(np.asarray(x), ds, index=0)
    x = np.asarray(x, dtype=np.float64)
    if str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        x = x.max() + x.min() - x          # the minimum is shown white: mirror within the range
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(x)
    return x.astype(np.float32)


def _open(path, max_pixels: int | None):
    """``(dataset, path)`` of a DICOM file whose header passed the checks (geometry, pixel limit)
    before any pixel data is decoded."""
    pydicom = _pydicom()
    path = Path(path)
    if not path.is_file():
        raise DicomError(f"DICOM file not found: {path}", path=path)
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as exc:  # InvalidDicomError, EOFError, struct errors for damaged headers
        raise DicomError(f"{path} is not a readable DICOM file: {exc}", path=path) from exc
    try:
        _check_geometry(ds, path, MAX_PIXELS if max_pixels is None else int(max_pixels))
    except DicomError:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom parses elements lazily: a damaged one fails here
        raise DicomError(f"{path}: its image header (Rows, Columns, frames, photometric) is damaged: {exc}",
                         path=path) from exc
    return ds, path


def _single_frame(ds, path) -> np.ndarray:
    pixels = _stored_values(ds, path)
    if pixels.ndim != 2:
        raise DicomError(f"{path}: expected a single grayscale frame, got pixel array shape {pixels.shape}", path=path)
    return pixels


def read_dicom(path, max_pixels: int | None = None) -> DicomImage:
    """Read one DICOM X-ray as displayed (see the module docstring) with its PatientID."""
    ds, path = _open(path, max_pixels)
    pixels = _single_frame(ds, path)
    try:
        shown = display_values(ds, pixels)
        pid = str(ds.get("PatientID", "") or "").strip() or None
        bits = int(ds.BitsStored) if "BitsStored" in ds else None
    except Exception as exc:  # noqa: BLE001 - damaged LUT/window/rescale fields
        raise DicomError(f"{path}: its display fields (rescale, VOI LUT, window) cannot be applied: {exc}",
                         path=path) from exc
    return DicomImage(shown, patient_id=pid, photometric=str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
                      bits_stored=bits, transfer_syntax=_syntax(ds)[1])


def read_dicom_stored(path, max_pixels: int | None = None) -> DicomImage:
    """A DICOM X-ray as torchxrayvision's ``read_xray_dcm`` reads it, on the [0, 255] scale.

    The stored values (no modality or VOI LUT), MONOCHROME1 inverted within the bit depth
    (``2**BitsStored - 1 - v``), then ``v * 255 / (2**BitsStored - 1)``: the scale of the models
    trained with torchxrayvision (``Preprocessing`` mode ``'xrv'``), not what a viewer shows.
    """
    ds, path = _open(path, max_pixels)
    try:
        bits = int(ds.BitsStored)
    except Exception as exc:  # noqa: BLE001 - missing or damaged BitsStored
        raise DicomError(f"{path}: not a readable DICOM X-ray header (BitsStored): {exc}",
                         path=path, field="BitsStored") from exc
    if not 1 <= bits <= 32:
        raise DicomError(f"{path}: BitsStored {bits} is not a bit depth", path=path, field="BitsStored")
    maxval = float(2 ** bits - 1)
    x = _single_frame(ds, path).astype(np.float64)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric.upper() == "MONOCHROME1":
        x = maxval - x
    if x.max() > maxval:
        raise DicomError(f"{path}: a stored value {x.max():g} is above 2**BitsStored - 1 = {maxval:g}",
                         path=path, field="BitsStored")
    pid = str(ds.get("PatientID", "") or "").strip() or None
    return DicomImage((x * (255.0 / maxval)).astype(np.float32), patient_id=pid, photometric=photometric,
                      bits_stored=bits, transfer_syntax=_syntax(ds)[1])


def read_patient_id(path) -> str | None:
    """The PatientID of a DICOM file, reading the header only (no pixel data)."""
    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["PatientID"])
    except Exception as exc:
        raise DicomError(f"{path} is not a readable DICOM file: {exc}", path=path) from exc
    return str(ds.get("PatientID", "") or "").strip() or None
