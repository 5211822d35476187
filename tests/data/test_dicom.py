"""DICOM read as a viewer shows it: modality LUT, VOI LUT / window, MONOCHROME1, compressed syntaxes.

The files are written here with pydicom from the real X-rays in ../shared (or a synthetic image
where that is absent); the expected display values are computed by hand from the DICOM standard's
formulas (PS3.3 C.11.2.1.2 linear window, C.11.2.1.1 LUT lookup) and also through pydicom's own
functions.
"""
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, RLELossless, generate_uid  # noqa: E402

from minicnn.data import load_image, read_dicom  # noqa: E402
from minicnn.data.dicom import DicomError  # noqa: E402
from minicnn.errors import DataError  # noqa: E402

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "chest_xray_val16"


def _xray12(size=160):
    """A real X-ray (first of ../shared) as 12-bit stored values, or a synthetic gradient without it."""
    files = sorted(SHARED.rglob("*.jpeg")) if SHARED.is_dir() else []
    if files:
        from PIL import Image
        img = np.asarray(Image.open(files[0]).convert("L").resize((size, size)), dtype=np.float64)
    else:
        yy, xx = np.mgrid[:size, :size]
        img = 255 * (0.5 + 0.5 * np.sin(xx / 9.0) * np.cos(yy / 13.0))
    return np.round(img / 255 * 4095).astype(np.uint16)


def _write(path, stored, photometric="MONOCHROME2", slope=None, intercept=None, center=None, width=None,
           voi_lut=None, syntax=None, patient="patient-7", frames=1):
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"        # CR image storage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.Modality = patient, "CR"
    data = np.stack([stored] * frames) if frames > 1 else stored
    ds.set_pixel_data(data, photometric_interpretation=photometric, bits_stored=12)
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "US"
    if center is not None:
        ds.WindowCenter, ds.WindowWidth = center, width
    if voi_lut is not None:
        first, table = voi_lut
        item = Dataset()
        item.LUTDescriptor = [len(table), first, 16]
        item.LUTData = np.asarray(table, dtype="<u2").tobytes()
        ds.VOILUTSequence = Sequence([item])
    if syntax is not None:
        ds.compress(syntax)
    ds.save_as(path, enforce_file_format=True)
    return path


def _stretch(x):
    x = np.asarray(x, dtype=np.float64)
    return (x - x.min()) * 255.0 / (x.max() - x.min())


def _window(x, c, w):
    """DICOM PS3.3 C.11.2.1.2.1 linear VOI function onto [0, 1]."""
    return np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0.0, 1.0)


def _pydicom_pipeline(path):
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
    ds = pydicom.dcmread(path)
    x = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds, index=0).astype(np.float64)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        x = x.max() + x.min() - x
    return _stretch(x)


def test_plain_monochrome2_is_the_stored_values_stretched(tmp_path):
    s = _xray12()
    img = read_dicom(_write(tmp_path / "a.dcm", s))
    assert img.pixels.dtype == np.float32 and img.pixels.shape == s.shape
    np.testing.assert_allclose(img.pixels, _stretch(s), atol=1e-3)
    assert img.patient_id == "patient-7" and img.bits_stored == 12


def test_rescale_then_window(tmp_path):
    s = _xray12()
    hu = s * 2.0 - 1024
    c, w = float(np.percentile(hu, 40)), float(np.ptp(hu) / 3)
    path = _write(tmp_path / "w.dcm", s, slope=2.0, intercept=-1024, center=c, width=w)
    got = read_dicom(path).pixels
    expected = _stretch(_window(hu, c, w))
    assert np.abs(got - expected).max() <= 1.0
    assert np.abs(got - _pydicom_pipeline(path)).max() <= 1.0
    assert np.abs(got - _stretch(hu)).max() > 20       # the window really changed the picture


def test_the_first_of_several_windows_is_used(tmp_path):
    s = _xray12()
    path = _write(tmp_path / "w2.dcm", s, center=[1500.0, 3000.0], width=[800.0, 2000.0])
    got = read_dicom(path).pixels
    assert np.abs(got - _stretch(_window(s.astype(float), 1500.0, 800.0))).max() <= 1.0
    assert np.abs(got - _stretch(_window(s.astype(float), 3000.0, 2000.0))).max() > 20


def test_voi_lut_sequence_wins_over_the_window(tmp_path):
    s = _xray12()
    first = 0
    table = np.round(65535 * np.sqrt(np.arange(4096) / 4095.0)).astype(np.uint16)   # a gamma LUT
    path = _write(tmp_path / "lut.dcm", s, voi_lut=(first, table), center=2000.0, width=100.0)
    got = read_dicom(path).pixels
    expected = _stretch(table[np.clip(s.astype(int) - first, 0, len(table) - 1)])
    assert np.abs(got - expected).max() <= 1.0
    assert np.abs(got - _pydicom_pipeline(path)).max() <= 1.0


def test_monochrome1_equals_its_monochrome2_twin(tmp_path):
    s = _xray12()
    mono2 = read_dicom(_write(tmp_path / "m2.dcm", s)).pixels
    mono1 = read_dicom(_write(tmp_path / "m1.dcm", (4095 - s).astype(np.uint16), photometric="MONOCHROME1")).pixels
    assert np.abs(mono1 - mono2).max() <= 1e-3


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless], ids=["rle", "jpeg-ls"])
def test_lossless_compressed_files_equal_the_uncompressed_one(tmp_path, syntax):
    s = _xray12()
    plain = read_dicom(_write(tmp_path / "p.dcm", s, center=2000.0, width=1500.0)).pixels
    packed = read_dicom(_write(tmp_path / "c.dcm", s, center=2000.0, width=1500.0, syntax=syntax))
    np.testing.assert_array_equal(packed.pixels, plain)
    assert packed.transfer_syntax == syntax.name


def test_missing_decoder_plugin_names_the_syntax_and_the_package(tmp_path, monkeypatch):
    from pydicom.pixels import get_decoder
    path = _write(tmp_path / "ls.dcm", _xray12(64), syntax=JPEGLSLossless)
    decoder = get_decoder(JPEGLSLossless)
    monkeypatch.setattr(decoder, "_available", {})
    with pytest.raises(DicomError, match=r"JPEG-LS Lossless.*pip install pyjpegls") as e:
        read_dicom(path)
    assert e.value.field == "TransferSyntaxUID" and e.value.path == str(path)


def test_multiframe_colour_and_oversized_images_are_refused_before_decoding(tmp_path, monkeypatch):
    s = _xray12(64)
    with pytest.raises(DicomError, match="3 frames"):
        read_dicom(_write(tmp_path / "mf.dcm", s, frames=3))
    path = _write(tmp_path / "big.dcm", s)
    with pytest.raises(DicomError, match="limit of 1,000"):
        read_dicom(path, max_pixels=1000)
    # the limit is checked on the header: pixel data is never touched
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array",
                        property(lambda self: pytest.fail("pixel data was decoded")))
    with pytest.raises(DicomError, match="over minicnn's limit"):
        read_dicom(path, max_pixels=1000)


def test_colour_dicom_is_refused(tmp_path):
    ds = pydicom.dcmread(_write(tmp_path / "g.dcm", _xray12(32)))
    rgb = np.zeros((32, 32, 3), np.uint8)
    ds.set_pixel_data(rgb, photometric_interpretation="RGB", bits_stored=8)
    ds.save_as(tmp_path / "rgb.dcm", enforce_file_format=True)
    with pytest.raises(DicomError, match="colour image"):
        read_dicom(tmp_path / "rgb.dcm")


def test_damaged_and_non_dicom_files_are_data_errors(tmp_path):
    (tmp_path / "junk.dcm").write_bytes(b"not a dicom file at all" * 10)
    with pytest.raises(DataError, match="junk.dcm"):
        read_dicom(tmp_path / "junk.dcm")
    good = _write(tmp_path / "t.dcm", _xray12(64)).read_bytes()
    (tmp_path / "trunc.dcm").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="trunc.dcm"):
        read_dicom(tmp_path / "trunc.dcm")


def test_load_image_goes_through_the_viewer_pipeline(tmp_path):
    s = _xray12()
    path = _write(tmp_path / "x.dcm", s, center=2000.0, width=1000.0)
    img = load_image(path, size=64)
    assert img.shape == (64, 64, 1) or img.shape[-2:] == (64, 64)
    direct = read_dicom(path).pixels
    assert abs(float(img.mean()) - float(direct.mean())) < 3


# -- the RSNA Pneumonia Detection Challenge layout ---------------------------------------------------
def _rsna(tmp_path, rows, dicom_ids=None):
    root = tmp_path / "rsna"
    (root / "stage_2_train_images").mkdir(parents=True)
    s = _xray12(48)
    for pid in dict.fromkeys(r[0] for r in rows):
        _write(root / "stage_2_train_images" / f"{pid}.dcm", s, patient=(dicom_ids or {}).get(pid, pid))
    lines = ["patientId,x,y,width,height,Target"] + [",".join(map(str, r)) for r in rows]
    (root / "stage_2_train_labels.csv").write_text("\n".join(lines) + "\n")
    return root / "stage_2_train_labels.csv"


RSNA_ROWS = [("p-a", "", "", "", "", 0),
             ("p-b", 264, 152, 213, 379, 1), ("p-b", 562, 152, 256, 453, 1), ("p-b", 100, 100, 50, 50, 1),
             ("p-c", "", "", "", "", 0),
             ("p-d", 10, 20, 30, 40, 1)]


def test_rsna_layout_gives_one_label_per_patient(tmp_path):
    from minicnn.data import load_dataset
    ds = load_dataset(_rsna(tmp_path, RSNA_ROWS))
    assert [Path(p).name for p in ds.paths] == ["p-a.dcm", "p-b.dcm", "p-c.dcm", "p-d.dcm"]
    np.testing.assert_array_equal(ds.labels[:, 0], [0, 1, 0, 1])
    assert ds.classes == ["NORMAL", "PNEUMONIA"] and ds.positive_class == "PNEUMONIA"
    assert ds.patient_ids == ["p-a", "p-b", "p-c", "p-d"]
    assert ds.image(1, size=32).shape[-2:] == (32, 32)


def test_rsna_patient_ids_come_from_the_dicom_and_leakage_is_found(tmp_path):
    from minicnn.data import check_leakage, load_dataset, load_folder
    csv_path = _rsna(tmp_path, RSNA_ROWS, dicom_ids={"p-a": "SAME-PERSON", "p-c": "SAME-PERSON"})
    ds = load_dataset(csv_path)
    assert ds.patient_ids == ["SAME-PERSON", "p-b", "SAME-PERSON", "p-d"]
    # a folder dataset of DICOMs whose file names say nothing: PatientID finds the shared patient
    for split, name in (("train", "scan001"), ("val", "scan777")):
        d = tmp_path / "folder" / split / "NORMAL"
        d.mkdir(parents=True)
        _write(d / f"{name}.dcm", _xray12(32), patient="P-42")
    report = check_leakage(load_folder(tmp_path / "folder", split="train"), load_folder(tmp_path / "folder", split="val"))
    assert set(report) == {"P-42"}


@pytest.mark.parametrize("rows, message", [
    ([("p-a", "", "", "", "", 0), ("p-a", 1, 2, 3, 4, 1)], "Target 0 and Target 1"),
    ([("p-a", "", "", "", "", 2)], "Target must be 0 or 1"),
    ([("p-a", "", "", "", "", 1)], "without a box"),
])
def test_rsna_tables_that_contradict_themselves_are_errors(tmp_path, rows, message):
    from minicnn.data import load_rsna
    with pytest.raises(DataError, match=message):
        load_rsna(_rsna(tmp_path, rows))


def test_rsna_missing_dicom_is_named(tmp_path):
    from minicnn.data import load_rsna
    csv_path = _rsna(tmp_path, RSNA_ROWS)
    (csv_path.parent / "stage_2_train_images" / "p-c.dcm").unlink()
    with pytest.raises(DataError, match="p-c.dcm"):
        load_rsna(csv_path)
