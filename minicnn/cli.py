"""The ``minicnn`` command line. The only module that prints user errors and calls ``sys.exit``.

    minicnn synth DIR                         write a synthetic chest-X-ray-like dataset
    minicnn train DATA --out RUN              train a CNN (or a head on a pretrained backbone)
    minicnn evaluate RUN_OR_MODEL DATA        metrics table, metrics.json, plots (and --report HTML)
    minicnn predict MODEL IMAGE_OR_FOLDER     probabilities and decisions per image
    minicnn explain MODEL IMAGE               Grad-CAM overlay PNG
    minicnn summary MODEL | gradcheck | features | convert | demo
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

import numpy as np


from .errors import MinicnnError, UsageError

def _is_user_error(e: BaseException) -> bool:
    """minicnn's own error types, and OSErrors about a named path (not found, permission, disk full).

    Everything else is a bug in minicnn and keeps its traceback."""
    if isinstance(e, MinicnnError):
        return True
    return isinstance(e, OSError) and (e.filename is not None or e.errno is not None and
                                       e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS))


def _one_line(e: BaseException) -> str:
    if isinstance(e, OSError) and not isinstance(e, MinicnnError) and e.filename is not None:
        return f"{e.strerror or 'cannot use this path'}: {e.filename}"
    return " ".join(str(e).split("\n"))


def _add_threads(p):
    p.add_argument("--threads", type=int, default=None, help="threads for Numba kernels and BLAS (default: all cores)")


def _model_path(run_or_model: str) -> str:
    p = Path(run_or_model)
    if p.is_dir():
        if (p / "model.npz").exists():
            return str(p / "model.npz")
        raise UsageError(f"{p} is a folder without model.npz (is it a run directory from `minicnn train`?)")
    if not p.exists():
        raise UsageError(f"model not found: {p}")
    return str(p)


def _load_model(run_or_model: str):
    from .model import load
    return load(_model_path(run_or_model))


# -- synth ------------------------------------------------------------------------------------------
def cmd_synth(a):
    from .data.synthetic import make_synthetic
    out = make_synthetic(a.out, n=a.n, size=a.size, pneumonia_fraction=a.pneumonia_fraction, seed=a.seed)
    print(f"wrote a synthetic dataset of {a.n} images ({a.size}x{a.size}) to {a.out}"
          + (f": {out}" if isinstance(out, (str, dict)) else ""))
    print("It is generated data for trying minicnn out, not a substitute for real X-rays.")


# -- train ------------------------------------------------------------------------------------------
def _datasets(a):
    from .data.splits import training_splits, warn_to_stderr
    return training_splits(a.data, train_split=a.train_split, val_split=a.val_split, val_from_train=a.val_from_train,
                           test_split=a.test_split, positive_class=a.positive_class, seed=a.seed, warn=warn_to_stderr)


def cmd_train(a):
    from . import losses, nets, optim
    from .data.augment import Augmenter
    from .data.loader import BatchLoader, fit_normalizer
    from .data.normalize import Normalizer
    from .train import fit, load_checkpoint, resume_state_from, set_threads

    set_threads(a.threads)
    if a.resume:
        run = Path(a.resume)
        _, info, _ = load_checkpoint(run / "last.npz")
        saved = info["extra"].get("args")
        if not saved:
            raise UsageError(f"{run / 'last.npz'} does not record the training arguments; it cannot be resumed "
                            f"with --resume (start a new run)")
        for k, v in saved.items():
            if k not in ("resume", "epochs", "threads", "func"):
                setattr(a, k, v)
        a.out = str(run)
    if a.backbone:
        return _train_head(a)
    a.image_size = a.image_size or 64
    train_ds, val_ds = _datasets(a)
    norm = Normalizer(a.normalize)
    fit_normalizer(norm, train_ds, image_size=a.image_size, channels=a.channels, sample=a.norm_sample, seed=a.seed)
    common = dict(batch_size=a.batch_size, image_size=a.image_size, channels=a.channels, normalizer=norm,
                  seed=a.seed, cache_bytes=a.cache_mb * 2**20)
    train = BatchLoader(train_ds, training=True, augment=Augmenter() if a.augment else None, **common)
    val = BatchLoader(val_ds, training=False, **common) if val_ds is not None else None
    print(f"train: {len(train_ds)} images, val: {len(val_ds) if val_ds is not None else 0}; "
          f"outputs {train_ds.output_names}; normalisation {norm!r}")

    w_pos, w_neg = losses.class_weights(train_ds.labels, train_ds.output_names) if a.class_weights else (1.0, 1.0)
    loss = losses.WeightedBCE(w_pos, w_neg)
    if a.resume:
        model, info, opt_sd = load_checkpoint(Path(a.resume) / "last.npz")
    else:
        model = nets.conv_net(a.arch, in_channels=a.channels, outputs=train_ds.labels.shape[1],
                              image_size=a.image_size, seed=a.seed)
        model.meta.update({"classes": list(train_ds.classes), "outputs": list(train_ds.output_names),
                           "positive_class": train_ds.positive_class, "preprocessing": train.config(),
                           "threshold": [0.5] * train_ds.labels.shape[1], "threshold_rule": "default-0.5"})
    opt = optim.Adam(model.params(), lr=a.lr, weight_decay=a.weight_decay)
    sched = optim.ReduceLROnPlateau(opt, mode="max", factor=0.3, patience=1)
    state = None
    if a.resume:
        opt.load_state_dict(opt_sd)
        if info.get("scheduler"):
            sched.load_state_dict(info["scheduler"])
        state = resume_state_from(info)
        print(f"resuming {a.out} at epoch {state.epoch + 1}, batch {state.batch}")
    args = {k: v for k, v in vars(a).items() if k != "func"}
    state = fit(model, loss, opt, train, val, epochs=a.epochs, out_dir=a.out, scheduler=sched,
                patience=a.patience, seed=a.seed, resume_state=state, progress=not a.quiet,
                checkpoint_extra={"args": args})
    _plots_after_training(a.out, state.history, val if val is not None else train)
    best = f"{state.best_score:.4f} (epoch {state.best_epoch})" if state.best_score is not None else "n/a"
    print(f"done: best validation ROC-AUC {best}; model saved to {os.path.join(a.out, 'model.npz')}")


def _plots_after_training(out, history, loader):
    """Training curves, the best model's first-layer filters and its feature maps for one image."""
    from .model import load
    from .viz import plot_feature_maps, plot_filters, plot_history
    plots = os.path.join(out, "plots")
    os.makedirs(plots, exist_ok=True)
    if history:
        plot_history(history, os.path.join(plots, "history.png"))
    best = os.path.join(out, "model.npz")
    if not os.path.exists(best):
        return
    model = load(best)
    first = next((n for n in model.nodes.values() if type(n.layer).__name__ == "Conv2D"), None)
    if first is None:
        return
    plot_filters(first.layer.params["W"], os.path.join(plots, "filters_first_conv.png"))
    x, _ = loader.batch(0, 0, training=False)
    model.forward(x[:1], training=False, keep=[first.name], _cache=False)
    plot_feature_maps(model.activations[first.name], os.path.join(plots, "feature_maps_first_conv.png"))


def _train_head(a):
    from .pretrained.transfer import train_head_cli
    return train_head_cli(a)


# -- evaluate ---------------------------------------------------------------------------------------
def cmd_evaluate(a):
    from . import metrics
    from .data.datasets import available_splits, load_dataset
    from .data.loader import BatchLoader
    from .data.normalize import Normalizer
    from .model import binary_class_names
    from .train import predict_loader, set_threads
    from .viz import plot_calibration, plot_confusion, plot_roc

    set_threads(a.threads)
    model = _load_model(a.model)
    pre = model.meta.get("preprocessing") or {}
    if not pre:
        raise UsageError("the model carries no preprocessing; convert it with `minicnn convert` first")
    splits = available_splits(a.data)
    split = a.split if a.split in splits else (None if splits in ([], [None]) else a.split)
    if split is not None and split not in splits:
        raise UsageError(f"{a.data} has no split {a.split!r}; it has {splits}")
    positive = model.meta.get("positive_class")
    ds = load_dataset(a.data, split=split, positive_class=positive, classes=model.meta.get("classes"))
    outputs = model.meta.get("outputs") or ds.output_names
    softmax_over_classes = model.output_activation == "softmax" and list(outputs) == list(ds.classes)
    if list(ds.output_names) != list(outputs) and not softmax_over_classes:
        raise UsageError(f"the data's outputs {ds.output_names} do not match the model's {outputs}")
    norm = Normalizer.from_dict(pre["normalizer"]) if pre.get("normalizer") else None
    loader = BatchLoader(ds, batch_size=a.batch_size, image_size=tuple(pre["image_size"]), channels=pre["channels"],
                         training=False, normalizer=norm, interpolation=pre.get("interpolation", "bilinear"),
                         fit=pre.get("fit", "stretch"))
    y, p, _ = predict_loader(model, loader)
    if model.output_activation == "softmax" and p.shape[1] == 2 and y.shape[1] == 1:
        p = p[:, 1:2]  # P(positive class) from a two-class softmax
    thr = model.meta.get("threshold", 0.5) if a.threshold is None else a.threshold
    out_names = list(ds.output_names)
    m = metrics.evaluate_predictions(y, p, out_names, threshold=thr, positive_class=ds.positive_class,
                                     n_boot=a.n_boot)
    m = {"split": a.split, **m, "threshold_rule": model.meta.get("threshold_rule", "given") if a.threshold is None else "command-line"}
    print(metrics.format_metrics_table(m))
    out = Path(a.out) if a.out else (Path(a.model) if Path(a.model).is_dir() else Path(a.model).parent)
    out.mkdir(parents=True, exist_ok=True)
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    plot_roc(y, p, out_names, plots / f"roc_{a.split}.png")
    if y.shape[1] == 1:
        neg, _ = binary_class_names({"classes": ds.classes, "positive_class": ds.positive_class})
        plot_confusion(m["confusion"], [neg, ds.positive_class], plots / f"confusion_{a.split}.png")
        plot_calibration(y[:, 0], p[:, 0], plots / f"calibration_{a.split}.png")
        _plot_examples(loader, ds, y, p, float(np.atleast_1d(thr)[0]), [neg, ds.positive_class],
                       plots / f"examples_{a.split}.png")
    tmp = out / ".metrics.json.tmp"
    tmp.write_text(json.dumps(metrics.to_jsonable(m), indent=2, allow_nan=False))
    os.replace(tmp, out / "metrics.json")
    print(f"wrote {out / 'metrics.json'} and plots in {plots}")
    if a.report:
        from .explain import write_evaluation_report
        path = write_evaluation_report(model, ds, y, p, m, out / "report", n_errors=a.report_errors,
                                       threshold=float(np.atleast_1d(thr)[0]))
        print(f"wrote the HTML report {path}")


def _plot_examples(loader, ds, y, p, thr, names, path, n=16):
    """A grid of evaluated images (a seeded sample) with true label, prediction and P(positive)."""
    from .viz import plot_image_grid
    idx = np.sort(np.random.default_rng(0).choice(len(ds), size=min(n, len(ds)), replace=False))
    images = np.stack([ds.image(i, size=loader.image_size, color="grayscale") for i in idx])
    titles = [{"true": names[int(y[i, 0])], "pred": names[int(p[i, 0] >= thr)], "prob": p[i, 0]} for i in idx]
    plot_image_grid(images, titles, path, title=f"P({names[1]}) at threshold {thr:.3f}")


# -- predict ----------------------------------------------------------------------------------------
def cmd_predict(a):
    from .predict import predict_files
    from .train import set_threads
    set_threads(a.threads)
    model = _load_model(a.model)
    records = predict_files(model, a.images, batch_size=a.batch_size)
    names = list(records[0]["probabilities"]) if records else []
    width = max([len(os.path.basename(r["file"])) for r in records] + [4])
    print(f"{'file':<{width}}  " + "  ".join(f"P({n})" for n in names) + "  prediction")
    for r in records:
        print(f"{os.path.basename(r['file']):<{width}}  "
              + "  ".join(f"{r['probabilities'][n]:>{len(n) + 3}.4f}" for n in names) + f"  {r['prediction']}")
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        if out.suffix.lower() == ".json":
            tmp.write_text(json.dumps(records, indent=2))
        else:
            import csv
            with open(tmp, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["file"] + [f"P({n})" for n in names] + ["prediction"])
                for r in records:
                    w.writerow([r["file"]] + [r["probabilities"][n] for n in names] + [r["prediction"]])
        os.replace(tmp, out)
        print(f"wrote {out}")


# -- summary, gradcheck -------------------------------------------------------------------------
def cmd_summary(a):
    model = _load_model(a.model)
    print(model.summary())
    if model.meta:
        shown = {k: v for k, v in model.meta.items() if k in ("classes", "outputs", "positive_class", "threshold",
                                                               "preprocessing", "source")}
        print(json.dumps(shown, indent=1))


def cmd_gradcheck(a):
    from . import layers, losses
    from .gradient_check import gradcheck
    rng = np.random.default_rng(a.seed)

    def away_from_zero(shape):
        return rng.choice([-1.0, 1.0], shape) * rng.uniform(0.1, 1.0, shape)

    def distinct(shape):
        return rng.permutation(int(np.prod(shape))).reshape(shape) / 10.0

    cases = [
        (layers.Conv2D(2, 3, 3, stride=2, padding=1, seed=0), rng.standard_normal((2, 2, 7, 7)), {}),
        (layers.Conv2D(4, 4, 3, padding="same", dilation=2, groups=2, seed=0), rng.standard_normal((1, 4, 6, 6)), {}),
        (layers.DepthwiseConv2D(3, 3, padding=1, seed=0), rng.standard_normal((1, 3, 5, 5)), {}),
        (layers.SeparableConv2D(3, 4, 3, padding="same", seed=0), rng.standard_normal((1, 3, 5, 5)), {}),
        (layers.Dense(5, 3, seed=0), rng.standard_normal((4, 5)), {}),
        (layers.ReLU(), away_from_zero((2, 3, 4, 4)), {}),
        (layers.Sigmoid(), rng.standard_normal((2, 5)), {}),
        (layers.Softmax(), rng.standard_normal((2, 5)), {}),
        (layers.MaxPool2D(2), distinct((2, 2, 4, 4)), {}),
        (layers.MaxPool2D(3, 2, padding=1), distinct((1, 2, 5, 5)), {}),
        (layers.AvgPool2D(3, 2, padding=1, count_include_pad=False), rng.standard_normal((1, 2, 5, 5)), {}),
        (layers.GlobalAvgPool2D(), rng.standard_normal((2, 3, 4, 4)), {}),
        (layers.GlobalMaxPool2D(), distinct((2, 3, 4, 4)), {}),
        (layers.BatchNorm2D(3), rng.standard_normal((4, 3, 3, 3)), {"training": True}),
        (layers.BatchNorm2D(3), rng.standard_normal((4, 3, 3, 3)), {"training": False}),
        (layers.Dropout(0.3, seed=0), rng.standard_normal((2, 6)), {"training": True}),
        (layers.Flatten(), rng.standard_normal((2, 2, 3, 3)), {}),
        (layers.ZeroPad2D((0, 1, 0, 1)), rng.standard_normal((1, 2, 3, 3)), {}),
        (layers.Concat(), [rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((1, 1, 3, 3))], {}),
        (layers.Add(), [rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((1, 2, 3, 3))], {}),
    ]
    worst = 0.0
    print(f"{'layer':<58} max relative error per tensor (float64, central differences, h=1e-6)")
    for layer, x, kw in cases:
        errs = gradcheck(layer, x, **kw)
        worst = max(worst, max(errs.values()))
        mode = " [training]" if kw.get("training") else ""
        print(f"{(repr(layer) + mode)[:57]:<58} " + "  ".join(f"{k}: {v:.1e}" for k, v in errs.items()))
    y = (rng.random((4, 3)) < 0.5).astype(float)
    for loss, pred in ((losses.WeightedBCE([0.7, 0.5, 0.2], [0.3, 0.5, 0.8]), rng.normal(0, 2, (4, 3))),
                       (losses.WeightedBCE(0.6, 0.4, from_logits=False), rng.uniform(0.05, 0.95, (4, 3)))):
        err = gradcheck(loss, (pred, y))["x"]
        worst = max(worst, err)
        print(f"{repr(loss)[:57]:<58} x: {err:.1e}")
    print(f"worst: {worst:.1e} ({'ok' if worst < 1e-6 else 'LARGER THAN 1e-6'})")
    if worst >= 1e-6:
        raise UsageError("a gradient check failed")


# -- convert, explain, features, demo (pretrained / Keras import) -------------------------------
def cmd_convert(a):
    from .pretrained.convert import convert
    out = convert(a.model, a.out, preprocess=a.preprocess, image_size=a.image_size, resize=a.resize,
                  classes=a.classes.split(",") if a.classes else None, channels=a.channels,
                  positive_class=a.positive_class)
    print(f"wrote {out}")


def cmd_explain(a):
    from .explain import explain_file
    from .train import set_threads
    set_threads(a.threads)
    model = _load_model(a.model)
    out = a.out or (Path(a.image).stem + "_gradcam.png")
    info = explain_file(model, a.image, out, target_class=a.target_class, node=a.layer)
    print(f"wrote {out} (Grad-CAM of {info['class']!r} at node {info['node']!r}, P = {info['probability']:.4f})")


def cmd_features(a):
    from .pretrained.transfer import features_cli
    return features_cli(a)


def cmd_demo(a):
    from .demo import run_demo
    return run_demo(out=a.out, wheel=a.wheel, threads=a.threads)


# -- parser -----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minicnn", description="A readable CNN engine in NumPy/Numba for chest X-rays.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("synth", help="write a synthetic chest-X-ray-like dataset (folder layout)")
    s.add_argument("out", help="output folder (gets train/ val/ test/ with NORMAL/ PNEUMONIA/)")
    s.add_argument("--n", type=int, default=3000, help="number of images (default 3000)")
    s.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    s.add_argument("--pneumonia-fraction", type=float, default=0.6)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("train", help="train a model on a folder, CSV or .npz dataset")
    s.add_argument("data", nargs="?", help="dataset: folder (root/<split>/<CLASS>/*), CSV or MedMNIST .npz")
    s.add_argument("--out", default="runs/run", help="run directory (default runs/run)")
    s.add_argument("--arch", default="small", help="from-scratch architecture: tiny, small, medium (default small)")
    s.add_argument("--backbone", default=None, help="pretrained backbone (densenet121, vgg16, resnet50, inception_v3)")
    s.add_argument("--weights", default=None, help="backbone weight file or registry name")
    s.add_argument("--fine-tune", type=int, default=0, metavar="EPOCHS",
                   help="with --backbone: then unfreeze the last block and fine-tune it for EPOCHS epochs")
    s.add_argument("--fine-tune-from", default=None, metavar="NODE",
                   help="first node to unfreeze (default: the backbone's last block, e.g. features.denseblock4)")
    s.add_argument("--image-size", type=int, default=None,
                   help="input size (default 64; a backbone's own size with --backbone: 224, InceptionV3 299)")
    s.add_argument("--channels", type=int, default=1, choices=(1, 3))
    s.add_argument("--epochs", type=int, default=8)
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--lr", type=float, default=3e-3)
    s.add_argument("--weight-decay", type=float, default=0.0)
    s.add_argument("--patience", type=int, default=None, help="early stopping patience in epochs")
    s.add_argument("--normalize", default="dataset",
                   help="dataset (default), sample, seed, imagenet-torch, imagenet-caffe, tf")
    s.add_argument("--norm-sample", type=int, default=1000, help="training images used to fit the statistics")
    s.add_argument("--no-augment", dest="augment", action="store_false")
    s.add_argument("--no-class-weights", dest="class_weights", action="store_false")
    s.add_argument("--positive-class", default=None)
    s.add_argument("--train-split", default="train")
    s.add_argument("--val-split", default=None, help="use this split for validation instead of --val-from-train")
    s.add_argument("--test-split", default="test", help="checked for patient leakage against train")
    s.add_argument("--val-from-train", type=float, default=0.1,
                   help="patient-aware validation fraction carved from the training split (default 0.1)")
    s.add_argument("--cache-mb", type=int, default=512, help="memory for decoded images (default 512 MB)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--resume", default=None, metavar="RUN", help="continue the run in RUN from its last.npz")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_threads(s)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="evaluate a model on a dataset split")
    s.add_argument("model", help="run directory or model .npz")
    s.add_argument("data")
    s.add_argument("--split", default="test")
    s.add_argument("--out", default=None, help="where metrics.json and plots go (default: the run directory)")
    s.add_argument("--threshold", type=float, default=None, help="override the model's saved threshold")
    s.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the AUC CI")
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--report", action="store_true", help="also write an HTML report with Grad-CAM of errors")
    s.add_argument("--report-errors", type=int, default=6)
    _add_threads(s)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("predict", help="predict image files or folders")
    s.add_argument("model")
    s.add_argument("images", nargs="+")
    s.add_argument("--out", default=None, help="write a .csv or .json")
    s.add_argument("--batch-size", type=int, default=16)
    _add_threads(s)
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("explain", help="Grad-CAM heatmap overlay for one image")
    s.add_argument("model")
    s.add_argument("image")
    s.add_argument("--out", default=None, help="output PNG (default IMAGE_gradcam.png)")
    s.add_argument("--class", dest="target_class", default=None, help="class to explain (default: predicted)")
    s.add_argument("--layer", default=None, help="node whose output is explained (default: before global pooling)")
    _add_threads(s)
    s.set_defaults(func=cmd_explain)

    s = sub.add_parser("summary", help="print a model's layers and parameter counts")
    s.add_argument("model")
    s.set_defaults(func=cmd_summary)

    s = sub.add_parser("gradcheck", help="gradient-check every layer and loss; print relative errors")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_gradcheck)

    s = sub.add_parser("convert", help="wrap a Keras/PyTorch model file as a minicnn model with its preprocessing")
    s.add_argument("model", help=".keras, .h5, .pth, .safetensors")
    s.add_argument("out", help="output .npz")
    s.add_argument("--preprocess", required=True, help="tf, imagenet-torch, imagenet-caffe, dataset stats not allowed")
    s.add_argument("--image-size", type=int, required=True)
    s.add_argument("--resize", default="bilinear", choices=("bilinear", "nearest", "bicubic"))
    s.add_argument("--channels", type=int, default=3, choices=(1, 3))
    s.add_argument("--classes", default=None, help="comma-separated class names in output order")
    s.add_argument("--positive-class", default=None)
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("features", help="extract (and cache) pooled backbone features of a dataset")
    s.add_argument("data")
    s.add_argument("--backbone", required=True)
    s.add_argument("--weights", default=None)
    s.add_argument("--split", default="train")
    s.add_argument("--image-size", type=int, default=None)
    s.add_argument("--out", default=None, help="write the features to this .npz")
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--seed", type=int, default=0, help="initialisation seed when --weights is not given")
    _add_threads(s)
    s.set_defaults(func=cmd_features)

    s = sub.add_parser("demo", help="run a real Keras pneumonia model on 16 real X-rays, with Grad-CAM")
    s.add_argument("--out", default="minicnn-demo", help="output folder (default ./minicnn-demo)")
    s.add_argument("--wheel", default=None, help="pneumonia-model-package wheel already downloaded")
    _add_threads(s)
    s.set_defaults(func=cmd_demo)
    for s in sub.choices.values():
        s.add_argument("--traceback", action="store_true",
                       help="show the full traceback of an error (for bug reports)")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.command == "train" and not a.data and not a.resume:
        parser.error("train needs DATA (or --resume RUN)")
    try:
        a.func(a)
    except KeyboardInterrupt as e:
        print(f"\nminicnn: {e or 'interrupted'}", file=sys.stderr)
        return 130
    except Exception as e:
        if a.traceback or not _is_user_error(e):
            raise
        print(f"minicnn {a.command}: error: {_one_line(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
