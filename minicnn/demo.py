"""``minicnn demo``: a real Keras chest-X-ray model, run, explained and evaluated by minicnn alone.

The public PyPI package ``pneumonia-model-package==0.3.0`` (a wheel, i.e. a zip) ships a trained
Keras 3 model — an ImageNet Xception backbone (frozen) + GlobalAveragePooling2D + Dense(128, relu)
+ Dropout + Dense(2) logits, classes [NORMAL, PNEUMONIA], input 150x150 RGB resized with
nearest-neighbour, scaled by x/127.5 - 1 — and the 16 validation X-rays of the public pneumonia
dataset (Kermany et al. 2018, CC BY 4.0). The demo downloads the wheel once with
``python -m pip download --no-deps`` into minicnn's cache (``$MINICNN_HOME``, default
``~/.cache/minicnn``), checks its SHA-256, imports the model with ``load_keras``, classifies the 16
images with minicnn's own preprocessing, and writes ``demo.json``, Grad-CAM PNGs and an HTML report.
No deep-learning framework is used or needed.
"""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from . import fileio, metrics, runtime
from .errors import FetchError
from .gradcam import display_image, explain_file
from .pretrained.convert import attach_preprocessing
from .pretrained.keras_import import load_keras
from .pretrained.registry import cache_dir
from .report import NOT_A_MEDICAL_DEVICE, file_sha256, provenance, write_html_report

PACKAGE = "pneumonia-model-package==0.3.0"
WHEEL_NAME = "pneumonia_model_package-0.3.0-py3-none-any.whl"
WHEEL_SHA256 = "4bb1ee80366db5de818c7255e62878871b8ec545681193f429e2575b791d3536"
MODEL_MEMBER = "pneumonia_model_package/trained_models/pneumonia_xception_model_val-acc_0.861.keras"
IMAGES_PREFIX = "pneumonia_model_package/datasets/pneumonia-data/val/"
CLASSES = ["NORMAL", "PNEUMONIA"]


def minicnn_home() -> Path:
    return Path(cache_dir()).parent


def _pip_download(folder) -> int:
    """``python -m pip download --no-deps PACKAGE -d folder`` (pip shows its own progress); its exit code."""
    return subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", PACKAGE, "-d", str(folder)]).returncode


def get_wheel(wheel=None) -> Path:
    """The hash-checked wheel: ``wheel`` if given, else the cached copy, else a fresh download."""
    if wheel is not None:
        path = Path(wheel)
        if not path.is_file():
            raise FetchError(f"wheel not found: {path}")
    else:
        folder = minicnn_home() / "wheels"
        path = folder / WHEEL_NAME
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            print(f"downloading {PACKAGE} (83 MB, once) into {folder} ...", flush=True)
            if _pip_download(folder) != 0 or not path.exists():
                raise FetchError(f"could not download {PACKAGE} (offline?). On a machine with internet run "
                                f"`python -m pip download --no-deps {PACKAGE} -d DIR`, copy the wheel here and "
                                f"pass --wheel DIR/{WHEEL_NAME} (or put it in {folder}).")
    digest = file_sha256(path)
    if digest != WHEEL_SHA256:
        raise FetchError(f"{path} has SHA-256 {digest}, expected {WHEEL_SHA256}: it is not the published "
                        f"{PACKAGE} wheel (corrupt or altered). Delete it and run the demo again.")
    return path


def extract(wheel: Path, dest: Path) -> tuple[Path, list[tuple[Path, str]]]:
    """Unpack the model and the 16 images (NORMAL* -> NORMAL, person* -> PNEUMONIA) into ``dest``."""
    model_path = dest / Path(MODEL_MEMBER).name
    images = []
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        if MODEL_MEMBER not in names:
            raise FetchError(f"{wheel} does not contain {MODEL_MEMBER}")
        if not model_path.exists():
            dest.mkdir(parents=True, exist_ok=True)
            with z.open(MODEL_MEMBER) as src:
                fileio.copy_stream(model_path, src)
        for member in sorted(n for n in names if n.startswith(IMAGES_PREFIX) and n.lower().endswith((".jpeg", ".jpg", ".png"))):
            name = Path(member).name
            label = "NORMAL" if name.upper().startswith("NORMAL") else "PNEUMONIA" if name.startswith("person") else None
            if label is None:
                continue
            target = dest / "val" / label / name
            if not target.exists():
                fileio.write_bytes(target, z.read(member))
            images.append((target, label))
    if len(images) != 16:
        raise FetchError(f"expected 16 validation X-rays in {wheel}, found {len(images)}")
    return model_path, images


def run_demo(out="minicnn-demo", wheel=None, threads=None) -> dict:
    runtime.configure(threads=int(threads) if threads else None)
    out = Path(out)
    wheel_path = get_wheel(wheel)
    model_path, images = extract(wheel_path, minicnn_home() / "pneumonia-model-package-0.3.0")
    print(NOT_A_MEDICAL_DEVICE, flush=True)
    print(f"importing {model_path.name} with minicnn (no Keras, no TensorFlow) ...", flush=True)
    model = load_keras(model_path)
    attach_preprocessing(model, "tf", 150, resize="nearest", channels=3, classes=CLASSES)
    (out / "heatmaps").mkdir(parents=True, exist_ok=True)
    records, cases = [], []
    print(f"\n{'file':<30} {'true':<10} {'P(PNEUMONIA)':>12}  prediction")
    for path, label in images:
        png = out / "heatmaps" / (path.stem + "_gradcam.png")
        info = explain_file(model, path, png)
        probs = info["probabilities"]
        pred = max(probs, key=probs.get)  # the package predicts the argmax
        records.append({"file": path.name, "true_label": label, "probabilities": probs, "prediction": pred})
        cases.append({"file": path.name, "image": None, "heatmap": info["heatmap"], "true_label": label,
                      "probabilities": probs, "prediction": pred, "path": path})
        mark = "" if pred == label else "   <- wrong"
        print(f"{path.name:<30} {label:<10} {probs['PNEUMONIA']:>12.4f}  {pred}{mark}", flush=True)
    y = np.array([[r["true_label"] == "PNEUMONIA"] for r in records], dtype=float)
    p = np.array([[r["probabilities"]["PNEUMONIA"]] for r in records])
    cm = metrics.confusion_at(y[:, 0], p[:, 0], 0.5)   # p >= 0.5 is the argmax of two softmax outputs
    summary = {"images": records, "accuracy": metrics.accuracy(cm), "sensitivity": metrics.sensitivity(cm),
               "specificity": metrics.specificity(cm)}
    print(f"\naccuracy {summary['accuracy']:.3f}  sensitivity {summary['sensitivity']:.3f}  "
          f"specificity {summary['specificity']:.3f}  ({int(np.trace(cm))}/16 correct)")
    fileio.write_json(out / "demo.json", summary, indent=2)
    m = metrics.evaluate_predictions(y, p, ["PNEUMONIA"], threshold=0.5, positive_class="PNEUMONIA", n_boot=500)
    for c in cases:
        c["image"] = display_image(model, c.pop("path"))
    report = write_html_report(out, m, y, p, ["PNEUMONIA"], images=cases, class_names=CLASSES,
                               provenance=provenance(model_path, images[0][0].parent.parent,
                                                     package=wheel_path.name),
                               title="minicnn demo: a Keras Xception pneumonia model on 16 real X-rays",
                               images_heading="The 16 X-rays with Grad-CAM (high = more evidence for the predicted class)")
    print(f"wrote {out / 'demo.json'}, {report} and {len(cases)} Grad-CAM PNGs in {out / 'heatmaps'}")
    print(NOT_A_MEDICAL_DEVICE)
    return summary
