"""A self-contained HTML report of one evaluation: metrics with confidence intervals, ROC curve,
confusion matrix, calibration plot and a list of images (typically the most confident errors) with
their heatmaps.

The report is one ``report.html`` plus PNG files in the same folder, referenced by relative names;
it needs no network, no external CSS or JavaScript. ``write_evaluation_report`` (``minicnn
evaluate --report``) adds Grad-CAM heatmaps of a model's most confident errors (for a missed
positive, the map of the positive class: where the model saw the finding it did not call) and the
provenance (model file and its SHA-256, data, date, minicnn version). Every report carries the
not-a-medical-device notice. Every text that comes from data (file names, class names, titles)
is HTML-escaped.
"""
from __future__ import annotations

import datetime
import hashlib
import html
import os
from pathlib import Path
from urllib.parse import quote

import numpy as np

from . import fileio, viz
from .data.preprocessing import Preprocessing
from .errors import UsageError
from .gradcam import gradcam
from .data.datasets import binary_class_names
from .metrics import calibration_bins, format_interval, format_number
from .predict import output_names

__all__ = ["write_html_report", "write_evaluation_report", "provenance", "file_sha256", "NOT_A_MEDICAL_DEVICE"]

NOT_A_MEDICAL_DEVICE = ("Not a medical device. minicnn is for research and teaching only: its models and "
                        "reports must not be used to diagnose, treat or make decisions about patients.")

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
.meta { color: #555; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; }
th { background: #f2f2f2; }
td.name, th.name { text-align: left; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
.plots img { max-width: 520px; width: 100%; border: 1px solid #ddd; }
.case { border: 1px solid #ddd; padding: 0.6em; margin: 0.8em 0; }
.case img { max-width: 100%; }
.wrong { color: #b00020; font-weight: bold; }
.note { color: #555; font-size: 0.9em; }
.notice { border: 2px solid #b00020; padding: 0.5em 0.8em; background: #fff4f4; }
"""

_ROWS = [("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC (average precision)"), ("accuracy", "Accuracy"),
         ("sensitivity", "Sensitivity (recall, TPR)"), ("specificity", "Specificity (TNR)"),
         ("ppv", "PPV (precision)"), ("npv", "NPV"), ("f1", "F1")]


def _e(value) -> str:
    return html.escape(str(value), quote=True)


_CI_KEYS = ("roc_auc", "sensitivity", "specificity", "ppv", "npv")   # the rows with a 95% CI


def _ci(ci) -> str:
    return format_interval(ci, " &ndash; ", "n/a")


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def provenance(model_path=None, data=None, **extra) -> dict:
    """What a reader needs to trace a report: the model file and its SHA-256, the data, the date
    (UTC) and the minicnn version, plus ``extra`` facts (e.g. ``split``)."""
    from . import __version__
    out = {}
    if model_path is not None:
        out["model file"] = os.path.abspath(os.fspath(model_path))
        out["model SHA-256"] = file_sha256(model_path)
    if data is not None:
        out["data"] = os.path.abspath(os.fspath(data)) if os.path.exists(os.fspath(data)) else os.fspath(data)
    out.update({k.replace("_", " "): v for k, v in extra.items()})
    out["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out["minicnn version"] = __version__
    return out


def _img(name: str, alt: str) -> str:
    return f'<img src="{quote(name)}" alt="{_e(alt)}">'


def _column_names(metrics: dict, classes, k: int) -> list[str]:
    per_class = metrics.get("per_class") or {}
    if len(per_class) == k:
        return [str(c) for c in per_class]
    names = [str(c) for c in classes]
    if len(names) == k:
        return names
    if k == 1 and metrics.get("positive_class"):
        return [str(metrics["positive_class"])]
    raise UsageError(f"{k} output column(s) but classes {names}: cannot name the columns")


def _binary_labels(positive: str, classes) -> list[str]:
    """[negative name, positive name] for a confusion matrix of one output: the other class's own
    name when the two classes are known, else 'not <positive>'."""
    classes = [str(c) for c in classes]
    if len(classes) == 2 and positive in classes:
        return [next(c for c in classes if c != positive), positive]
    return [f"not {positive}", positive]


def _metrics_table(metrics: dict, names: list[str]) -> str:
    multi = len(names) > 1
    head = "<tr><th class='name'>metric</th><th>" + ("overall" if multi else "value") + "</th>"
    head += "<th>95% CI</th>" if not multi else "".join(f"<th>{_e(n)}</th>" for n in names)
    head += "</tr>"
    rows = [head]
    per_class = metrics.get("per_class") or {}
    for key, label in _ROWS:
        row = f"<tr><td class='name'>{_e(label)}</td><td>{format_number(metrics.get(key))}</td>"
        if multi:
            row += "".join(f"<td>{format_number(per_class.get(n, {}).get(key))}</td>" for n in names)
        else:
            row += f"<td>{_ci(metrics.get(key + '_ci95')) if key in _CI_KEYS else ''}</td>"
        rows.append(row + "</tr>")
        if multi and key in _CI_KEYS:
            rows.append(f"<tr><td class='name'>&nbsp;&nbsp;95% CI</td><td>{_ci(metrics.get(key + '_ci95'))}</td>"
                        + "".join(f"<td>{_ci(per_class.get(n, {}).get(key + '_ci95'))}</td>" for n in names)
                        + "</tr>")
    if multi:
        for key, label in (("threshold", "threshold"), ("n_pos", "positives"), ("n_neg", "negatives")):
            rows.append(f"<tr><td class='name'>{label}</td><td></td>"
                        + "".join(f"<td>{format_number(per_class.get(n, {}).get(key))}</td>" for n in names) + "</tr>")
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def _case_html(i: int, item: dict, png: str) -> str:
    true, pred = item.get("true_label"), item.get("prediction")
    wrong = true is not None and str(true) != str(pred)
    probs = item.get("probabilities") or {}
    prob_rows = "".join(f"<tr><td class='name'>P({_e(c)})</td><td>{format_number(v)}</td></tr>" for c, v in probs.items())
    return (f"<div class='case'><h3>{i + 1}. {_e(item['file'])}</h3>\n"
            f"<p>true: <b>{_e(true)}</b> &middot; predicted: "
            f"<span class='{'wrong' if wrong else ''}'>{_e(pred)}</span></p>\n"
            f"<table>{prob_rows}</table>\n"
            + (f"<p class='note'>{_e(item['heatmap_label'])}</p>\n" if item.get("heatmap_label") else "")
            + f"{_img(png, 'image ' + str(item['file']))}</div>")


def write_html_report(out_dir, metrics: dict, y_true, y_prob, classes, images=None,
                      title: str = "minicnn evaluation report", images_heading: str = "Most confident errors",
                      n_bins: int | None = None, class_names=None, provenance: dict | None = None,
                      class_weighted: bool | None = None) -> Path:
    """Write ``out_dir/report.html`` and its PNGs; return the path of ``report.html``.

    (Long because it is the page itself, section after section, in the order a reader sees them.)

    ``metrics``: the dict of :func:`minicnn.metrics.evaluate_predictions` (optionally with ``split``
    and ``threshold_rule``). ``y_true``/``y_prob``: ``(N, K)`` or ``(N,)``, the same predictions the
    metrics were computed from (for the ROC and calibration plots). ``classes``: the class names.
    ``images``: a list of dicts ``{"file", "image", "heatmap", "true_label", "probabilities",
    "prediction"}`` chosen by the caller (e.g. the most confident errors), shown under
    ``images_heading``; ``image`` is HW/HWC/CHW with values in [0, 255], ``heatmap`` is ``(h, w)`` in
    [0, 1] or ``None``, ``probabilities`` maps class name to probability; an optional
    ``heatmap_label`` overrides the colour-bar text.
    ``n_bins``: calibration bins (default ``metrics.calibration_bins(N)``: about sqrt(N), 2 to 10).
    ``class_names``: all class names (e.g. ``["NORMAL", "PNEUMONIA"]``), so a one-output model's
    confusion matrix names the negative class instead of "not PNEUMONIA" (default: ``classes``).
    ``provenance``: ``{label: value}`` shown as a table (``report.provenance(model_path, data)``).
    ``class_weighted``: the model was trained with class weights; the calibration section says what
    that does to its probabilities.

    Files written: ``report.html``, ``roc.png``, ``confusion.png`` (plus ``confusion_<j>.png`` per
    class when K > 1), ``calibration.png`` and ``case_<i>.png`` per listed image.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y, p = viz._as_2d(y_true, y_prob)
    k = y.shape[1]
    names = _column_names(metrics, classes, k)
    all_classes = list(class_names) if class_names else list(metrics.get("classes") or classes)
    n_bins = calibration_bins(y.shape[0]) if n_bins is None else int(n_bins)

    viz.plot_roc(y, p, names, out / "roc.png")
    viz.plot_calibration(y, p, out / "calibration.png", n_bins=n_bins, labels=names)
    plots = [("roc.png", "ROC curve"), ("calibration.png", "calibration plot")]
    if metrics.get("confusion"):
        if k == 1:
            viz.plot_confusion(metrics["confusion"], _binary_labels(names[0], all_classes), out / "confusion.png",
                               title=f"Confusion matrix ({names[0]})")
        else:
            viz.plot_confusion(metrics["confusion"], ["absent", "present"], out / "confusion.png",
                               title="Confusion matrix, all classes pooled")
        plots.insert(1, ("confusion.png", "confusion matrix"))
    if k > 1:
        for j, name in enumerate(names):
            cm = (metrics.get("per_class") or {}).get(name, {}).get("confusion")
            if cm:
                fname = f"confusion_{j}.png"
                viz.plot_confusion(cm, [f"not {name}", name], out / fname, title=f"Confusion matrix: {name}")
                plots.append((fname, f"confusion matrix {name}"))

    thr = metrics.get("threshold")
    thr_text = ", ".join(format_number(t) for t in thr) if isinstance(thr, list) else format_number(thr)
    meta = [f"n = {_e(metrics.get('n', y.shape[0]))} images"]
    if metrics.get("split"):
        meta.insert(0, f"split: <b>{_e(metrics['split'])}</b>")
    if metrics.get("positive_class"):
        meta.append(f"positive class: <b>{_e(metrics['positive_class'])}</b>")
    meta.append(f"decision threshold: {_e(thr_text)}"
                + (f" ({_e(metrics['threshold_rule'])})" if metrics.get("threshold_rule") else "")
                + " &mdash; a case is called positive when its probability is &ge; the threshold")
    classes_text = ", ".join(str(c) for c in all_classes)
    calibration_note = (f"Calibration ({n_bins} equal-width bins for {y.shape[0]} images, about the square "
                        "root of their number): in a well-calibrated model the observed fraction of positives "
                        "in each probability bin equals the mean predicted probability (the diagonal).")
    if class_weighted:
        calibration_note += (" This model was trained with class weights (positives and negatives count "
                             "equally in the loss), which moves its probabilities towards the rarer class: they "
                             "are not the probability of the finding at the data's prevalence, so points off "
                             "the diagonal are expected; the threshold, not 0.5, is the decision rule.")

    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p class='notice'><b>{_e(NOT_A_MEDICAL_DEVICE.split('. ', 1)[0])}.</b> "
        f"{_e(NOT_A_MEDICAL_DEVICE.split('. ', 1)[1])}</p>",
        f"<p class='meta'>{' &middot; '.join(meta)}<br>classes: {_e(classes_text)}</p>",
        "<h2>Metrics</h2>",
        _metrics_table(metrics, names),
        "<p class='note'>95% CI: ROC-AUC by percentile bootstrap over images (images resampled with "
        "replacement); sensitivity, specificity, PPV and NPV by the Wilson score interval. "
        + ("Overall ROC-AUC and PR-AUC are macro means over classes; the threshold metrics and the "
           "confusion matrix pool every (image, class) decision (micro). " if k > 1 else "")
        + "Sensitivity = TP/(TP+FN), specificity = TN/(TN+FP), PPV = TP/(TP+FP), NPV = TN/(TN+FN); "
          "n/a where the denominator is zero.</p>",
        "<h2>Plots</h2>",
        "<div class='plots'>" + "".join(_img(f, alt) for f, alt in plots) + "</div>",
        f"<p class='note'>{_e(calibration_note)}</p>",
    ]
    if provenance:
        parts.append("<h2>Provenance</h2>")
        parts.append("<table>" + "".join(f"<tr><td class='name'>{_e(k)}</td><td class='name'>{_e(v)}</td></tr>"
                                         for k, v in provenance.items()) + "</table>")

    if images:
        parts.append(f"<h2>{_e(images_heading)}</h2>")
        for i, item in enumerate(images):
            missing = [key for key in ("file", "image", "true_label", "probabilities", "prediction")
                       if key not in item]
            if missing:
                raise UsageError(f"report image {i} lacks the key(s) {missing}")
            png = f"case_{i:02d}.png"
            caption = f"{item['file']}: true {item['true_label']}, predicted {item['prediction']}"
            if item.get("heatmap") is not None:
                label = item.get("heatmap_label") or f"Grad-CAM: high = more evidence for {item['prediction']}"
                viz.overlay_heatmap(item["image"], item["heatmap"], out / png, title=caption, label=label)
            else:
                viz.plot_image(item["image"], out / png, title=caption)
            parts.append(_case_html(i, item, png))
    parts.append("<p class='note'>Generated by minicnn.</p></body></html>")

    path = out / "report.html"
    fileio.write_text(path, "\n".join(parts) + "\n")
    return path


def write_evaluation_report(model, dataset, y_true, y_prob, metrics: dict, out_dir, n_errors: int = 6,
                            threshold: float | None = None, model_path=None, data=None, outputs=None,
                            explain: str | None = None) -> str:
    """HTML report: metrics with CIs, ROC, confusion matrix, calibration, provenance, most confident
    errors with Grad-CAM (for a missed positive, the positive class's map).

    ``outputs``: the names of ``y_prob``'s columns when they are some of the model's outputs (a chest
    X-ray model evaluated on the labels a dataset has); ``explain``: the model output whose Grad-CAM
    every error shows (such a model has no output for the negative class). Rows with an unknown
    label (NaN: CheXpert's uncertain/blank) are left out of the plots; the metrics masked them."""
    known = ~np.isnan(np.asarray(y_true, dtype=np.float64)).any(axis=1)
    if not known.all():
        y_true, y_prob = y_true[known], y_prob[known]
        dataset = dataset.subset(np.flatnonzero(known))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = []
    negative, positive = binary_class_names({"classes": dataset.classes, "positive_class": dataset.positive_class})
    if dataset.paths is not None and y_true.shape[1] == 1:
        pre = Preprocessing.of(model)
        thr = float(np.atleast_1d(model.meta.get("threshold", 0.5))[0]) if threshold is None else float(threshold)
        pred = (y_prob[:, 0] >= thr).astype(float)
        wrong = np.flatnonzero(pred != y_true[:, 0])
        confidence = np.abs(y_prob[wrong, 0] - thr)
        names = {1.0: positive, 0.0: negative}
        for i in wrong[np.argsort(-confidence)][:n_errors]:
            path = dataset.paths[i]
            missed = y_true[i, 0] == 1.0          # a false negative: show where the model saw the finding
            explained = explain or (positive if missed else names[pred[i]])
            heat, _ = gradcam(model, pre.load_files([path]), target_class=explained)
            label = (f"Grad-CAM of {explained}" + (" (missed)" if missed else "")
                     + f": high = more evidence for {explained}") if explain else (
                f"Grad-CAM of {positive} (missed): high = more evidence for {positive}" if missed
                else f"Grad-CAM: high = more evidence for {explained}")
            images.append({"file": Path(path).name, "image": pre.read(path), "heatmap": heat, "heatmap_label": label,
                           "true_label": names[y_true[i, 0]], "prediction": names[pred[i]],
                           "probabilities": {names[0.0]: float(1 - y_prob[i, 0]), names[1.0]: float(y_prob[i, 0])}})
    facts = provenance(model_path, data if data is not None else dataset.source, split=metrics.get("split"))
    return str(write_html_report(out_dir, metrics, y_true, y_prob,
                                 list(outputs or output_names(model) or dataset.output_names),
                                 images=images, title="minicnn evaluation", class_names=list(dataset.classes),
                                 provenance={k: v for k, v in facts.items() if v is not None},
                                 class_weighted=model.meta.get("class_weighted")))
