"""`minicnn evaluate` on a chest X-ray model: the data's labels matched to the model's pathology outputs.

The model is minicnn's own random-weight torchxrayvision DenseNet121 (no torch needed) with its
classifier rescaled so its outputs are not saturated on these images; its outputs are then known
in closed form from the pooled features (sigmoid(f @ W + b)), and the metrics are checked against
scikit-learn on those outputs. The data are the 16 real X-rays (``chest_xray_val16``: eight NORMAL,
eight PNEUMONIA, per its README's provenance), as a class folder and as a CheXpert CSV.
"""
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from minicnn.data import Preprocessing
from minicnn.data.datasets import (BLANK, CHEXPERT_LAYOUT, CHEXPERT_OBSERVATIONS, UNCERTAIN, load_csv,
                                   load_dataset, match_output_names)
from minicnn.errors import DataError
from minicnn.pretrained.xrv import PATHOLOGIES, xrv_densenet121

sklearn_metrics = pytest.importorskip("sklearn.metrics")

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "chest_xray_val16"
PNEUMONIA = PATHOLOGIES.index("Pneumonia")


@pytest.fixture(scope="module")
def model_and_outputs(tmp_path_factory):
    files = sorted(str(p) for p in SHARED.glob("*/*.jpeg"))
    if len(files) != 16:
        pytest.skip(f"the 16 real X-rays are not in {SHARED}")
    model = xrv_densenet121(seed=0, output="probabilities")
    x = Preprocessing.of(model).load_files(files)
    model.predict(x, batch_size=len(x), logits=True, keep=["pool"])
    feats = model.activations["pool"].reshape(len(x), -1).astype(np.float64)
    rng = np.random.default_rng(3)
    w = rng.standard_normal((feats.shape[1], 18))
    z = feats @ w
    s = 1.5 / z.std(0)
    w, b = w * s, -z.mean(0) * s                  # logits ~ N(0, 1.5): not saturated
    model.nodes["classifier"].layer.params["W"][...] = w
    model.nodes["classifier"].layer.params["b"][...] = b
    path = tmp_path_factory.mktemp("xrv-eval") / "xrv.npz"
    model.save(path)
    probs = 1.0 / (1.0 + np.exp(-(feats @ w + b)))
    truth = np.array([Path(f).parent.name == "PNEUMONIA" for f in files], np.float64)
    return path, files, probs, truth


def test_match_output_names_follows_torchxrayvision_relabelling():
    nih = ["Effusion", "Pleural_Thickening", "No Finding", "Nodule"]
    chex = list(CHEXPERT_OBSERVATIONS)
    pairs, unused, skipped = match_output_names(nih, PATHOLOGIES)
    assert [(nih[i], PATHOLOGIES[j]) for i, j in pairs] == [("Effusion", "Effusion"),
                                                          ("Pleural_Thickening", "Pleural_Thickening"),
                                                          ("Nodule", "Nodule")]
    assert unused == ["No Finding"] and len(skipped) == 15
    pairs, unused, _ = match_output_names(chex, PATHOLOGIES)
    got = {chex[i]: PATHOLOGIES[j] for i, j in pairs}
    assert got["Pleural Effusion"] == "Effusion" and got["Enlarged Cardiomediastinum"] == "Enlarged Cardiomediastinum"
    assert unused == ["No Finding", "Pleural Other", "Support Devices"]
    assert match_output_names(["PNEUMONIA"], PATHOLOGIES)[0] == [(0, PNEUMONIA)]
    # an output a single-dataset model was not trained on (named '') matches nothing
    nih_model = PATHOLOGIES[:14] + ("",) * 4
    assert match_output_names(["Fracture"], nih_model) == ([], ["Fracture"], list(PATHOLOGIES[:14]))


def test_evaluate_folder_uses_the_pneumonia_output(model_and_outputs, tmp_path, capsys):
    from minicnn.cli import main
    path, files, probs, truth = model_and_outputs
    assert main(["evaluate", str(path), str(SHARED), "--out", str(tmp_path), "--n-boot", "50"]) == 0
    err = capsys.readouterr().err
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["evaluated_outputs"] == {"Pneumonia": "PNEUMONIA"} and m["n"] == 16
    assert m["skipped_outputs"] == [p for p in PATHOLOGIES if p != "Pneumonia"]
    assert "skipped (not in the data): Atelectasis" in err
    p = probs[:, PNEUMONIA]
    assert p.std() > 0.05                               # the outputs vary: the metrics are not trivial
    assert m["roc_auc"] == pytest.approx(sklearn_metrics.roc_auc_score(truth, p), abs=1e-9)
    assert m["pr_auc"] == pytest.approx(sklearn_metrics.average_precision_score(truth, p), abs=1e-6)
    pred = p >= 0.5
    assert m["confusion"] == sklearn_metrics.confusion_matrix(truth, pred, labels=[0, 1]).tolist()
    assert m["sensitivity"] == pytest.approx(sklearn_metrics.recall_score(truth, pred), abs=1e-9)


def _chexpert_csv(path, files, truth):
    """A CheXpert-layout CSV over the 16 images: Pneumonia from the folders, with one uncertain (-1)
    and one blank; Pleural Effusion with two uncertain; a No Finding row whose blanks become 0."""
    rows = []
    for i, f in enumerate(files):
        r = {c: "" for c in CHEXPERT_LAYOUT + CHEXPERT_OBSERVATIONS}
        r.update({"Path": str(Path(f).resolve()), "Sex": "Female", "Age": "5",
                  "Frontal/Lateral": "Frontal", "AP/PA": "AP"})
        r["Pneumonia"] = "1.0" if truth[i] else "0.0"
        r["Pleural Effusion"] = "1.0" if i % 3 == 0 else "0.0"
        rows.append(r)
    rows[1]["Pneumonia"], rows[9]["Pneumonia"] = "-1.0", ""
    rows[4]["Pleural Effusion"], rows[12]["Pleural Effusion"] = "-1.0", "-1"
    rows[2].update({"No Finding": "1.0", "Pneumonia": "", "Pleural Effusion": ""})   # healthy: blanks are 0
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(CHEXPERT_LAYOUT + CHEXPERT_OBSERVATIONS))
        w.writeheader()
        w.writerows(rows)
    return rows


def test_chexpert_csv_masks_uncertain_and_blank(model_and_outputs, tmp_path):
    from minicnn.experiment import evaluate_run
    path, files, probs, truth = model_and_outputs
    csv_path = tmp_path / "valid.csv"
    _chexpert_csv(csv_path, files, truth)
    ds = load_dataset(csv_path)
    j = ds.classes.index("Pneumonia")
    assert ds.unknown[1, j] == UNCERTAIN and ds.unknown[9, j] == BLANK and ds.labels[2, j] == 0.0
    assert ds.masked_counts()["Pneumonia"] == {"uncertain": 1, "blank": 1}
    assert ds.masked_counts()["Pleural Effusion"] == {"uncertain": 2, "blank": 0}
    warned = []
    ev = evaluate_run(path, csv_path, out=tmp_path / "ev", n_boot=20, warn=warned.append)
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["evaluated_outputs"]["Pneumonia"] == "Pneumonia" and m["evaluated_outputs"]["Effusion"] == "Pleural Effusion"
    assert len(m["evaluated_outputs"]) == 11            # the 14 observations but the 3 unused
    assert m["masked_labels"]["Pneumonia"] == {"uncertain": 1, "blank": 1}
    assert m["unused_labels"] == ["No Finding", "Pleural Other", "Support Devices"]
    assert "Infiltration" in m["skipped_outputs"] and "Effusion" not in m["skipped_outputs"]
    assert any("1 uncertain, 1 blank" in w for w in warned)
    # each output scored on the rows whose label is known, as sklearn scores them
    y = np.array([1.0 if truth[i] else 0.0 for i in range(16)])
    y[2] = 0.0
    keep = np.array([i not in (1, 9) for i in range(16)])
    pc = m["per_class"]["Pneumonia"]
    assert pc["n_masked"] == 2 and pc["n_pos"] + pc["n_neg"] == 14
    assert pc["roc_auc"] == pytest.approx(sklearn_metrics.roc_auc_score(y[keep], probs[keep, PNEUMONIA]), abs=1e-9)
    eff = np.array([1.0 if i % 3 == 0 else 0.0 for i in range(16)])
    eff[2] = 0.0
    keep = np.array([i not in (4, 12) for i in range(16)])
    e = PATHOLOGIES.index("Effusion")
    assert m["per_class"]["Effusion"]["roc_auc"] == pytest.approx(
        sklearn_metrics.roc_auc_score(eff[keep], probs[keep, e]), abs=1e-9)
    # blank everywhere: an output with no known label is reported, not scored
    assert m["per_class"]["Edema"]["n_masked"] == 15 and m["per_class"]["Edema"]["roc_auc"] is None
    np.testing.assert_allclose(ev.y_prob[:, list(m["evaluated_outputs"]).index("Pneumonia")],
                               probs[:, PNEUMONIA], atol=1e-5)


def test_chexpert_bad_value_names_column_and_row(tmp_path):
    f = sorted(SHARED.glob("*/*.jpeg"))
    if len(f) != 16:
        pytest.skip("no X-rays")
    rows = _chexpert_csv(tmp_path / "c.csv", [str(p) for p in f], [0.0] * 16)
    rows[5]["Edema"] = "2"
    with open(tmp_path / "c.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(CHEXPERT_LAYOUT + CHEXPERT_OBSERVATIONS))
        w.writeheader()
        w.writerows(rows)
    with pytest.raises(DataError, match=r"'Edema', row 6 \(line 7\) holds '2'"):
        load_dataset(tmp_path / "c.csv")


@pytest.mark.parametrize("value", ["-1", "", "-1.0"])
def test_uncertain_or_blank_in_an_ordinary_csv_is_an_error(tmp_path, value):
    """Only a CheXpert CSV declares -1/blank as unknown; anywhere else they are an error naming column and row."""
    lines = ["image,Pneumonia,Effusion", "a.png,1,0", f"b.png,{value},1", "c.png,0,1"]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"label column 'Pneumonia', row 2 \(line 3\)"):
        load_csv(tmp_path / "d.csv", check_files=False)
    with pytest.raises(DataError, match=r"row 2"):
        load_csv(tmp_path / "d.csv", label_columns=["Pneumonia"], check_files=False)


def test_training_refuses_unknown_labels(model_and_outputs, tmp_path):
    """Masked labels are for evaluation only: training on them is refused, naming the counts."""
    from minicnn.experiment import train_run
    from minicnn.train import TrainConfig
    _, files, _, truth = model_and_outputs
    _chexpert_csv(tmp_path / "train.csv", files, truth)
    ds = load_dataset(tmp_path / "train.csv", positive_class="Pneumonia")
    assert ds.output_names == ["Pneumonia"] and ds.masked_counts() == {"Pneumonia": {"uncertain": 1, "blank": 1}}
    with pytest.raises(DataError, match="1 uncertain, 1 blank"):
        ds.require_known_labels()
    with pytest.raises(DataError, match="training needs every label"):
        train_run(TrainConfig(data=str(tmp_path / "train.csv"), out=str(tmp_path / "run"), epochs=1,
                              positive_class="Pneumonia", val_from_train=0.25))
    ok = load_dataset(tmp_path / "train.csv", positive_class="Pleural Effusion")
    assert ok.masked_counts() == {"Pleural Effusion": {"uncertain": 2, "blank": 0}}


def test_nih_findings_csv_maps_to_the_outputs(model_and_outputs, tmp_path):
    """An NIH ChestX-ray14 CSV (``Finding Labels``, '|'-separated, ``No Finding``): its names are
    torchxrayvision's, so each finding column scores its output; the rest are skipped."""
    from minicnn.experiment import evaluate_run
    path, files, probs, truth = model_and_outputs
    findings = []
    for i in range(16):
        f = ["Pneumonia"] if truth[i] else []
        f += ["Effusion"] if i % 4 == 0 else []
        f += ["Pleural_Thickening"] if i % 5 == 1 else []
        findings.append("|".join(f) or "No Finding")
    lines = ["Image Index,Finding Labels,Patient ID"] + [f"{Path(f).resolve()},{fl},{i}"
                                                         for i, (f, fl) in enumerate(zip(files, findings))]
    (tmp_path / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    ev = evaluate_run(path, tmp_path / "Data_Entry_2017.csv", out=tmp_path / "ev", n_boot=20, warn=lambda m: None)
    m = ev.metrics
    assert m["evaluated_outputs"] == {"Effusion": "Effusion", "Pleural_Thickening": "Pleural_Thickening",
                                      "Pneumonia": "Pneumonia"}
    assert len(m["skipped_outputs"]) == 15 and m["unused_labels"] == [] and "masked_labels" not in m
    for name in m["evaluated_outputs"]:
        y = np.array([name in fl.split("|") for fl in findings], float)
        assert m["per_class"][name]["roc_auc"] == pytest.approx(
            sklearn_metrics.roc_auc_score(y, probs[:, PATHOLOGIES.index(name)]), abs=1e-9), name


def test_evaluate_report_on_the_pneumonia_output(model_and_outputs, tmp_path, capsys):
    """`evaluate --report` on a chest X-ray model: the report names the evaluated output and shows
    Grad-CAM of Pneumonia for the errors (the model has no NORMAL output to explain)."""
    from minicnn.cli import main
    path, files, probs, truth = model_and_outputs
    assert main(["evaluate", str(path), str(SHARED), "--out", str(tmp_path), "--n-boot", "20", "--report",
                 "--report-errors", "2"]) == 0
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Pneumonia" in html and "Not a medical device" in html
    p = probs[:, PNEUMONIA]
    thr = 0.5
    if ((p >= thr) != (truth == 1)).any():              # there are errors to explain
        assert "Grad-CAM of Pneumonia" in html
