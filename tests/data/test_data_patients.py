"""Patient ids from file names, leakage between splits, patient-aware validation split."""
import numpy as np
import pytest

from minicnn.data import Dataset, LeakageReport, check_leakage, parse_patient_id, split_by_patient


@pytest.mark.parametrize("name, pid", [
    ("person1946_bacteria_4874.jpeg", "person1946"),
    ("train/PNEUMONIA/person1_virus_6.jpeg", "person1"),
    ("NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427"),
    ("IM-0115-0001.jpeg", "IM-0115"),
    ("/data/x/IM-0001-0001.png", "IM-0001"),
    ("person123_synth_0.png", "person123"),
    ("scan_0007.png", None),
    ("IM-0115.jpeg", None),
    ("personA_bacteria_1.jpeg", None),
    ("00000001_000.png", None),
])
def test_parse_patient_id(name, pid):
    assert parse_patient_id(name) == pid


def _ds(ids, labels=None):
    n = len(ids)
    labels = np.zeros((n, 1), np.float32) if labels is None else np.asarray(labels, np.float32).reshape(n, -1)
    paths = [f"/d/{pid or 'unknown'}_{i}.png" for i, pid in enumerate(ids)]
    return Dataset(labels=labels, classes=["NORMAL", "PNEUMONIA"], paths=paths, patient_ids=list(ids),
                   positive_class="PNEUMONIA")


def test_check_leakage_finds_shared_patients_and_reports_unparsed():
    a = _ds(["person1", "person2", None, "IM-0001"])
    b = _ds(["person2", "IM-0001", "IM-0002", None, None])
    report = check_leakage(a, b)
    assert isinstance(report, LeakageReport) and report == {"person2", "IM-0001"}
    assert len(report.unparsed_a) == 1 and len(report.unparsed_b) == 2
    text = report.summary()
    assert "LEAKAGE: 2 patient(s)" in text and "no patient id" in text
    clean = check_leakage(["p1", "p2"], ["p3"])
    assert clean == set() and "no patient appears" in clean.summary()


def test_check_leakage_on_real_folder_layout(tmp_path):
    from PIL import Image
    from minicnn.data import load_dataset
    for split, names in (("train", ["person5_bacteria_1.jpeg", "IM-0001-0001.jpeg"]),
                         ("test", ["person5_virus_2.jpeg", "odd.jpeg", "IM-0002-0001.jpeg"])):
        for n in names:
            cls = "PNEUMONIA" if n.startswith(("person", "odd")) else "NORMAL"
            (tmp_path / split / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / split / cls / n)
    report = check_leakage(load_dataset(tmp_path, "train"), load_dataset(tmp_path, "test"))
    assert report == {"person5"} and [p.split("/")[-1] for p in report.unparsed_b] == ["odd.jpeg"]


def test_split_by_patient_no_overlap_deterministic_and_stratified():
    rng = np.random.default_rng(0)
    ids, labels = [], []
    for p in range(300):
        k = int(rng.integers(1, 4))
        y = float(p % 4 != 0)  # 75 % positive patients
        ids += [f"person{p}"] * k
        labels += [y] * k
    ids += [None] * 40
    labels += [0.0] * 40
    ds = _ds(ids, labels)
    train, val = split_by_patient(ds, fraction=0.2, seed=3)
    assert len(train) + len(val) == len(ds)
    assert check_leakage(train, val) == set()
    assert set(train.paths).isdisjoint(val.paths)
    assert 0.15 * len(ds) <= len(val) <= 0.25 * len(ds)
    assert abs(val.labels.mean() - ds.labels.mean()) < 0.05
    assert train.split == "train" and val.split == "val"
    train2, val2 = split_by_patient(ds, fraction=0.2, seed=3)
    assert val2.paths == val.paths and train2.paths == train.paths
    _, val3 = split_by_patient(ds, fraction=0.2, seed=4)
    assert val3.paths != val.paths


def test_split_by_patient_without_ids_and_tiny():
    ds = _ds([None] * 10)
    train, val = split_by_patient(ds, fraction=0.3, seed=0)
    assert len(val) == 3 and len(train) == 7
    one_patient = _ds(["person1"] * 5)
    with pytest.raises(ValueError, match="every image"):
        split_by_patient(one_patient, fraction=0.5)
