"""The errors that used to name the wrong cause: a ragged CSV row (a traceback), labels of NaN, 2 or
0.5 ("no label columns found"), an image or an HDF5 file given as a model ("holds pickled Python
objects"). Each is now one line naming the file and the row, column or what the file really is."""
import numpy as np
import pytest
from PIL import Image

from minicnn.cli import main
from minicnn.data.datasets import load_dataset
from minicnn.errors import DataError, WeightFileError
from minicnn.serialization import load


@pytest.fixture
def images(tmp_path):
    for k in range(4):
        Image.fromarray(np.full((8, 8), 40 * k, np.uint8)).save(tmp_path / f"img{k}.png")
    return tmp_path


def _csv(folder, text):
    path = folder / "labels.csv"
    path.write_text(text)
    return path


def test_a_ragged_csv_row_names_the_file_and_line(images):
    path = _csv(images, "path,PNEUMONIA\nimg0.png,1\nimg1.png,0\nimg2.png\nimg3.png,1\n")
    with pytest.raises(DataError) as e:
        load_dataset(path)
    assert str(e.value) == (f"{path}, line 4: 1 fields but the header has 2 (path, PNEUMONIA); fix or remove "
                            f"that row")
    path = _csv(images, "path,PNEUMONIA\nimg0.png,1\nimg1.png,0,extra\n")
    with pytest.raises(DataError, match=r"labels.csv, line 3: 3 fields but the header has 2"):
        load_dataset(path)


@pytest.mark.parametrize("value", ["nan", "2", "0.5", ""])
def test_a_label_that_is_not_0_or_1_names_the_column_and_row(images, value):
    path = _csv(images, f"path,PNEUMONIA,Effusion\nimg0.png,1,0\nimg1.png,0,1\nimg2.png,{value},0\nimg3.png,1,1\n")
    with pytest.raises(DataError) as e:
        load_dataset(path)
    assert str(e.value) == (f"{path}: label column 'PNEUMONIA', row 3 (line 4) holds {value!r}; labels must be "
                            f"0 or 1 (one column per class)")
    with pytest.raises(DataError, match=r"label column 'PNEUMONIA', row 3 \(line 4\)"):
        load_dataset(path, label_columns=["PNEUMONIA"])


def test_the_cli_prints_the_csv_error_in_one_line(images, tmp_path, capsys):
    path = _csv(images, "path,PNEUMONIA\nimg0.png,1\nimg1.png,2\n")
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err == (f"minicnn train: error: {path}: label column 'PNEUMONIA', row 2 (line 3) holds '2'; labels "
                   f"must be 0 or 1 (one column per class)\n")
    assert not (tmp_path / "run").exists()              # refused: no empty run directory left behind


def test_a_csv_without_any_label_column_still_says_so(images):
    path = _csv(images, "path,age\nimg0.png,45\nimg1.png,61\n")
    with pytest.raises(DataError, match="no label columns found"):
        load_dataset(path)


def test_an_image_or_hdf5_file_given_as_a_model_is_named_for_what_it_is(images, tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "weights.h5", "w") as f:
        f["dense/kernel"] = np.zeros((2, 2), np.float32)
    for path, what in ((images / "img0.png", "a PNG image"),
                       (tmp_path / "weights.h5", "an HDF5 file (Keras .h5 / .weights.h5)")):
        with pytest.raises(WeightFileError) as e:
            load(path)
        assert str(e.value) == (f"{path} is {what}, not a minicnn model (.npz); a Keras or PyTorch file is "
                                f"converted first (`minicnn convert FILE OUT.npz`)")
        assert "pickled" not in str(e.value)
    # the command line reads any model format (minicnn.load, by content)
    cli_says = {images / "img0.png": "img0.png is a PNG image, not a model or weight file; give the model first "
                                     "(e.g. minicnn predict MODEL IMAGE)",
                tmp_path / "weights.h5": "weights.h5: unrecognised or corrupt weight file (an HDF5 file with "
                                         "neither Keras 'layer_names' nor a 'layers' group)"}
    for path, fragment in cli_says.items():
        for argv in (["summary", str(path)], ["predict", str(path), str(images / "img1.png")]):
            assert main(argv) == 1
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and fragment in err and "pickled" not in err, err
