"""Dataset sources: folder layouts (incl. the 16 real X-rays), CSVs (0/1 columns, NIH findings), npz."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minicnn.data import (available_splits, class_counts, class_frequencies, default_positive_class, load_csv,
                          load_dataset)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
VAL16 = SHARED / "data" / "chest_xray_val16"


def _write(path, value=100, size=(12, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8)).save(path)


@pytest.fixture
def pneumonia_tree(tmp_path):
    root = tmp_path / "chest"
    for split, normal_ids, person in (("train", ("0105", "1407"), 19), ("test", ("0115", "1417"), 20)):
        _write(root / split / "NORMAL" / f"IM-{normal_ids[0]}-0001.jpeg", 50)
        _write(root / split / "NORMAL" / f"NORMAL2-IM-{normal_ids[1]}-0001.jpeg", 60)
        _write(root / split / "PNEUMONIA" / f"person{person}_bacteria_1.jpeg", 150)
        _write(root / split / "PNEUMONIA" / "person7_virus_9.jpeg", 160)  # person7 is in both splits
    (root / "train" / "PNEUMONIA" / "notes.txt").write_text("not an image")
    _write(root / "train" / "PNEUMONIA" / "scan_0007.png", 170)  # a name with no patient id
    return root


def test_folder_split_layout(pneumonia_tree):
    assert available_splits(pneumonia_tree) == ["test", "train"]
    ds = load_dataset(pneumonia_tree, split="train")
    assert ds.classes == ["NORMAL", "PNEUMONIA"] and ds.positive_class == "PNEUMONIA"
    assert ds.output_names == ["PNEUMONIA"] and ds.labels.shape == (5, 1) and ds.labels.dtype == np.float32
    names = [Path(p).name for p in ds.paths]
    assert "notes.txt" not in names and len(names) == 5
    for name, y, pid in zip(names, ds.labels[:, 0], ds.patient_ids):
        assert y == (1.0 if name.startswith(("person", "scan")) else 0.0)
        expected = {"IM-0105-0001.jpeg": "IM-0105", "NORMAL2-IM-1407-0001.jpeg": "NORMAL2-IM-1407",
                    "person19_bacteria_1.jpeg": "person19", "person7_virus_9.jpeg": "person7",
                    "scan_0007.png": None}[name]
        assert pid == expected
    assert [Path(p).name for p in ds.unparsed] == ["scan_0007.png"]
    img = ds.image(0, size=8)
    assert img.shape == (8, 8)


def test_folder_positive_class_override_and_errors(pneumonia_tree):
    ds = load_dataset(pneumonia_tree, split="test", positive_class="NORMAL")
    names = [Path(p).name for p in ds.paths]
    assert all((y == 1.0) == n.startswith(("IM", "NORMAL")) for n, y in zip(names, ds.labels[:, 0]))
    with pytest.raises(ValueError, match="val"):
        load_dataset(pneumonia_tree, split="val")
    with pytest.raises(ValueError, match="split"):
        load_dataset(pneumonia_tree)  # has split folders, none chosen
    with pytest.raises(ValueError, match="ABNORMAL"):
        load_dataset(pneumonia_tree, split="train", positive_class="ABNORMAL")


def test_default_positive_class():
    assert default_positive_class(["PNEUMONIA", "NORMAL"]) == "PNEUMONIA"
    assert default_positive_class(["No Finding", "Effusion"]) == "Effusion"
    assert default_positive_class(["cat", "dog"]) == "dog"


def test_single_split_multiclass_folder_is_one_hot(tmp_path):
    for cls, n in (("COVID", 2), ("NORMAL", 1), ("VIRAL", 3)):
        for i in range(n):
            _write(tmp_path / "d" / cls / f"img{i}.png", 10 * i)
    assert available_splits(tmp_path / "d") == []
    ds = load_dataset(tmp_path / "d")
    assert ds.classes == ["COVID", "NORMAL", "VIRAL"] and ds.positive_class is None
    assert ds.labels.shape == (6, 3)
    np.testing.assert_array_equal(ds.labels.sum(axis=1), 1.0)
    np.testing.assert_array_equal(ds.labels.sum(axis=0), [2, 1, 3])
    assert ds.patient_ids == [None] * 6 and len(ds.unparsed) == 6


def test_real_chest_xrays_load_through_the_folder_dataset():
    if not VAL16.is_dir():
        pytest.skip("../shared/data/chest_xray_val16 is not present")
    ds = load_dataset(VAL16)
    assert len(ds) == 16 and ds.classes == ["NORMAL", "PNEUMONIA"] and ds.output_names == ["PNEUMONIA"]
    assert ds.labels.sum() == 8
    assert ds.unparsed == [] and "person1946" in ds.patient_ids and "NORMAL2-IM-1427" in ds.patient_ids
    assert ds.patient_ids.count("person1946") == 2
    x = ds.image(0, size=(64, 64))
    assert x.shape == (64, 64) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 255 and x.std() > 10
    rgb = ds.image(15, size=(150, 150), color="rgb", interpolation="nearest")
    assert rgb.shape == (150, 150, 3)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_csv_with_one_column_per_class(tmp_path):
    for i in range(4):
        _write(tmp_path / "imgs" / f"{i}.png", 40 * i)
    (tmp_path / "labels.csv").write_text(
        "filename,Effusion,Mass,patient_id,split\n"
        "imgs/0.png,1,0,p1,train\nimgs/1.png,0,0,p1,train\nimgs/2.png,1,1,p2,test\nimgs/3.png,0,1,,train\n")
    assert available_splits(tmp_path / "labels.csv") == ["test", "train"]
    ds = load_dataset(tmp_path / "labels.csv", split="train")
    assert ds.classes == ["Effusion", "Mass"] and ds.output_names == ["Effusion", "Mass"]
    np.testing.assert_array_equal(ds.labels, [[1, 0], [0, 0], [0, 1]])
    assert ds.patient_ids == ["p1", "p1", None] and len(ds.unparsed) == 1
    assert ds.image(2).mean() == 120.0
    one = load_dataset(tmp_path / "labels.csv", positive_class="Mass")
    assert one.output_names == ["Mass"] and one.labels[:, 0].tolist() == [0, 0, 1, 1]


def test_csv_nih_findings_format(tmp_path):
    for name in ("00000001_000.png", "00000001_001.png", "00000002_000.png", "00000003_000.png"):
        _write(tmp_path / "images" / name)
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "Data_Entry_2017.csv").write_text(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age\n"
        "00000001_000.png,Cardiomegaly,0,1,58\n"
        "00000001_001.png,Cardiomegaly|Emphysema,1,1,58\n"
        "00000002_000.png,No Finding,0,2,81\n"
        "00000003_000.png,Hernia|Effusion,0,3,81\n")
    with pytest.raises(FileNotFoundError, match="image_root"):
        load_dataset(tmp_path / "meta" / "Data_Entry_2017.csv")  # paths are not beside the CSV
    ds = load_dataset(tmp_path / "meta" / "Data_Entry_2017.csv", image_root=tmp_path / "images")
    assert ds.classes == ["Cardiomegaly", "Effusion", "Emphysema", "Hernia"]
    np.testing.assert_array_equal(ds.labels, [[1, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 1]])
    assert ds.patient_ids == ["1", "1", "2", "3"]
    fixed = load_csv(tmp_path / "meta" / "Data_Entry_2017.csv", image_root=tmp_path / "images",
                     classes=["Cardiomegaly", "Effusion", "Emphysema", "Hernia", "Pneumonia"])
    assert fixed.labels.shape == (4, 5) and fixed.labels[:, 4].sum() == 0


def test_npz_medmnist_format(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "pneumoniamnist.npz",
             train_images=rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
             train_labels=np.array([[0], [1]] * 5, dtype=np.uint8),
             val_images=rng.integers(0, 256, (4, 28, 28), dtype=np.uint8), val_labels=np.ones((4, 1), np.uint8),
             test_images=rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), test_labels=np.zeros((6, 1), np.uint8))
    assert available_splits(tmp_path / "pneumoniamnist.npz") == ["test", "train", "val"]
    ds = load_dataset(tmp_path / "pneumoniamnist.npz", split="train", classes=["normal", "pneumonia"])
    assert ds.paths is None and ds.images.shape == (10, 28, 28)
    assert ds.positive_class == "pneumonia" and ds.labels[:, 0].tolist() == [0, 1] * 5
    x = ds.image(3, size=(56, 56), color="rgb")
    assert x.shape == (56, 56, 3)
    # multi-class (N, 1) labels -> one-hot; multi-label (N, K) kept; RGB images
    np.savez(tmp_path / "path.npz", train_images=rng.integers(0, 256, (5, 8, 8, 3), dtype=np.uint8),
             train_labels=np.array([[0], [3], [1], [2], [3]]))
    multi = load_dataset(tmp_path / "path.npz")
    assert multi.labels.shape == (5, 4) and multi.labels.argmax(1).tolist() == [0, 3, 1, 2, 3]
    assert multi.image(0).shape == (8, 8)
    np.savez(tmp_path / "chest.npz", train_images=rng.integers(0, 256, (3, 8, 8), dtype=np.uint8),
             train_labels=np.array([[0, 1, 1], [0, 0, 0], [1, 0, 1]]))
    ml = load_dataset(tmp_path / "chest.npz")
    np.testing.assert_array_equal(ml.labels, [[0, 1, 1], [0, 0, 0], [1, 0, 1]])
    with pytest.raises(ValueError, match="available"):
        load_dataset(tmp_path / "chest.npz", split="val")


def test_subset_keeps_alignment(pneumonia_tree):
    ds = load_dataset(pneumonia_tree, split="train")
    sub = ds.subset([4, 0])
    assert sub.paths == [ds.paths[4], ds.paths[0]] and sub.patient_ids == [ds.patient_ids[4], ds.patient_ids[0]]
    np.testing.assert_array_equal(sub.labels, ds.labels[[4, 0]])


def test_class_frequencies_and_counts():
    y = np.array([[1, 0], [1, 1], [0, 0], [1, 0]], np.float32)
    pos, neg = class_frequencies(y)
    np.testing.assert_allclose(pos, [0.75, 0.25])
    np.testing.assert_allclose(neg, [0.25, 0.75])
    n_pos, n_neg = class_counts(y)
    np.testing.assert_array_equal(n_pos, [3, 1]) and np.testing.assert_array_equal(n_neg, [1, 3])


def test_find_images_and_unlabelled_dataset(pneumonia_tree):
    from minicnn.data import Dataset, find_images
    files = find_images(pneumonia_tree / "train")
    assert len(files) == 5 and all(f.suffix in (".jpeg", ".png") for f in files)
    assert find_images(files[0]) == [files[0]]
    with pytest.raises(FileNotFoundError, match="nowhere"):
        find_images(pneumonia_tree / "nowhere")
    ds = Dataset.from_paths(files, classes=["NORMAL", "PNEUMONIA"], positive_class="PNEUMONIA")
    assert ds.labels.shape == (5, 1) and ds.output_names == ["PNEUMONIA"] and len(ds.unparsed) == 1
    assert Dataset.from_paths(files).labels.shape == (5, 0)
