"""The ``minicnn`` command line. The only module that prints user errors and calls ``sys.exit``.

    minicnn synth DIR                         write a synthetic chest-X-ray-like dataset
    minicnn train DATA --out RUN              train a CNN (or a head on a pretrained backbone)
    minicnn evaluate RUN_OR_MODEL DATA        metrics table, metrics.json, plots (and --report HTML)
    minicnn predict MODEL IMAGE_OR_FOLDER     probabilities and decisions per image
    minicnn explain MODEL IMAGE               Grad-CAM overlay PNG
    minicnn export MODEL OUT.onnx              the model as an ONNX file (minicnn[onnx])
    minicnn summary MODEL | gradcheck | features | convert | demo
    minicnn profile MODEL [--batch N]         time, FLOPs, GFLOP/s and share per node and layer type
"""
from __future__ import annotations

import argparse
import dataclasses
import errno
import json
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
    """A run folder, any model file minicnn recognises by content, or a registry name (minicnn.load)."""
    from .pretrained.loading import is_model_name, load
    if not Path(run_or_model).exists() and is_model_name(run_or_model):
        return load(run_or_model)
    return load(_model_path(run_or_model))


# -- synth ------------------------------------------------------------------------------------------
def cmd_synth(a):
    from .data.synthetic import make_synthetic
    out = make_synthetic(a.out, n=a.n, size=a.size, pneumonia_fraction=a.pneumonia_fraction, seed=a.seed)
    print(f"wrote a synthetic dataset of {a.n} images ({a.size}x{a.size}) to {a.out}"
          + (f": {out}" if isinstance(out, (str, dict)) else ""))
    print("It is generated data for trying minicnn out, not a substitute for real X-rays.")


# -- train ------------------------------------------------------------------------------------------
_DEFAULTS_WHEN_NONE = ("epochs",)     # options whose CLI default None means "the TrainConfig default"

def cmd_train(a):
    from .experiment import resume_config, train_run
    from .train import TrainConfig, set_threads

    set_threads(a.threads)
    if a.resume:
        config = resume_config(a.resume, epochs=a.epochs)
        if config.deterministic:     # the run was started with --deterministic: continue it so
            from . import runtime
            runtime.configure(deterministic=True)
        if config.backbone:          # a head on cached features is trained again from the start
            config = dataclasses.replace(config, overwrite=True)
    else:
        given = {f.name: getattr(a, f.name) for f in dataclasses.fields(TrainConfig)}
        config = TrainConfig(**{k: v for k, v in given.items() if v is not None or k not in _DEFAULTS_WHEN_NONE})
    if config.dask and not config.backbone:
        raise UsageError("--dask distributes the feature extraction of --backbone; training a whole network "
                         "runs here (give --backbone NAME, or drop --dask)")
    if config.backbone and config.weights is None and not _names_its_weights(config.backbone):
        print("WARNING: --weights not given: the backbone has random weights, so its features are not pretrained")
    result = train_run(config, resume=bool(a.resume) and not config.backbone, log=print)
    if config.backbone:
        auc = f"; validation ROC-AUC {result.val_roc_auc:.4f}" if result.val_roc_auc is not None else ""
        print(f"head trained on {result.images} images ({result.features} features){auc}; "
              f"backbone + head saved to {result.model_path}")
        return
    state = result.state
    best = f"{state.best_score:.4f} (epoch {state.best_epoch})" if state.best_score is not None else "n/a"
    print(f"done: best validation ROC-AUC {best}; model saved to {result.model_path}")


# -- evaluate ---------------------------------------------------------------------------------------
def _names_its_weights(backbone: str) -> bool:
    """A registry backbone (``xrv-densenet121-all``): the name is the weights, --weights is optional."""
    from .transfer import xrv_backbones
    return backbone in xrv_backbones()


def cmd_evaluate(a):
    from . import metrics
    from .experiment import evaluate_run
    from .train import set_threads

    set_threads(a.threads)
    exists = Path(a.model).exists()
    if exists and (Path(a.model).is_dir() or a.model.lower().endswith(".npz")):
        model = _model_path(a.model)              # a run or .npz: the report names the model file
    else:                                         # a torch/Keras/ONNX file or a registry name (minicnn.load)
        model = _load_model(a.model)
    out = Path(a.out) if a.out else (Path(a.model) if Path(a.model).is_dir() else
                                     Path(a.model).parent if exists else Path(".") / f"evaluate-{a.model}")
    ev = evaluate_run(model, a.data, split=a.split, out=out, threshold=a.threshold, n_boot=a.n_boot,
                      batch_size=a.batch_size, report=a.report, report_errors=a.report_errors,
                      on_bad_file=a.on_bad_file, dask=a.dask, shard_size=a.shard_size, overwrite=a.overwrite)
    print(metrics.format_metrics_table(ev.metrics))
    print(f"wrote {ev.metrics_path} and plots in {ev.plots}")
    if ev.report_path:
        print(f"wrote the HTML report {ev.report_path}")


# -- predict ----------------------------------------------------------------------------------------
TABLE_LIMIT = 50     # up to this many files `predict` prints the table; above it, a summary


def cmd_predict(a):
    from tqdm.auto import tqdm
    from .predict import expand_paths, format_records, predict_files, write_records
    from .train import set_threads
    set_threads(a.threads)
    model = _load_model(a.model)
    if a.dask:
        if a.protocol != "single":
            raise UsageError("--dask runs the single-crop protocol; drop --protocol tencrop or --dask")
        return _predict_on_dask(a, model)
    files = expand_paths(a.images)
    table = len(files) <= TABLE_LIMIT
    per_image = a.protocol == "tencrop"
    bar = tqdm(total=len(files) if per_image else -(-len(files) // a.batch_size), desc="predict",
               unit="image" if per_image else "batch", disable=None)
    records = predict_files(model, files, batch_size=a.batch_size, on_bad_file=a.on_bad_file,
                            warn=lambda message: print(f"WARNING: {message}", file=sys.stderr),
                            progress=lambda: bar.update(1), protocol=a.protocol)
    seen = []                       # the table's records, or (above TABLE_LIMIT) only what the summary needs

    def kept(rows):
        for r in rows:
            seen.append(r if table or a.gradcam else
                        {"file": r["file"], "prediction": r["prediction"], "true_label": r["true_label"]})
            yield r

    if a.gradcam:                   # the overlays go into the records, so collect them first
        records = list(kept(records))
        from .gradcam import explain_files
        cams = explain_files(model, [r["file"] for r in records], a.gradcam, node=a.layer)
        for r, c in zip(records, cams):
            r["gradcam"] = c["overlay"]
        print(f"wrote {len(cams)} Grad-CAM overlay(s) of the predicted class to {a.gradcam}")
        rows = records
    else:
        rows = kept(records)
    if a.out:
        written = write_records(rows, a.out)        # streamed: one batch at a time
    else:
        for _ in rows:
            pass
    bar.close()
    if table:
        print(format_records(seen, model))
    else:
        _print_prediction_summary(seen, model)
    if a.out:
        print(f"wrote {written}")


def _print_prediction_summary(records, model) -> None:
    from collections import Counter
    from .predict import decision_rule, labelled_summary
    counts = Counter(r["prediction"] for r in records)
    print(f"{len(records)} images predicted (more than {TABLE_LIMIT}: no table; --out FILE writes every row): "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print(decision_rule(model))
    summary = labelled_summary(records, model.meta.get("positive_class"))
    if summary:
        print(summary)


def _dask_client(address):
    from . import distributed                # MissingExtraError (one line) without minicnn[dask]
    return distributed, distributed.connect(address)


def _predict_on_dask(a, model) -> None:
    from tqdm.auto import tqdm
    if not a.out or Path(a.out).suffix.lower() in (".csv", ".json"):
        raise UsageError("--dask writes its results in shards: give --out DIR (a folder; "
                         "DIR/predictions.csv is the joined table)")
    if a.gradcam:
        raise UsageError("--gradcam is not available with --dask; run `minicnn predict --gradcam` on the files you want explained")
    distributed, client = _dask_client(a.dask)
    try:
        with tqdm(desc="predict (dask tasks)", unit="task", disable=None) as bar:
            path = distributed.predict(client, model, a.images, a.out, batch_size=a.batch_size,
                                       shard_size=a.shard_size, on_bad_file=a.on_bad_file,
                                       overwrite=a.overwrite, progress=bar.update)
    finally:
        distributed.close(client)
    rows = list(distributed.read_prediction_rows(path))
    bad = [r for r in rows if r["error"]]
    _print_prediction_summary([r for r in rows if not r["error"]], model)
    if bad:
        print(f"{len(bad)} file(s) could not be read (--on-bad-file skip): listed in the error column")
    print(f"wrote {path}")


# -- summary, gradcheck -------------------------------------------------------------------------
def cmd_summary(a):
    from .pretrained.describe import describe_file, describe_name, format_description
    from .pretrained.loading import is_model_name
    d = describe_name(a.model) if not Path(a.model).exists() and is_model_name(a.model) else \
        describe_file(_model_path(a.model))
    print(format_description(d))
    if d["model"] is not None and a.layers:
        print()
        print(d["model"].summary())


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


def cmd_export(a):
    out = _load_model(a.model).to_onnx(a.out, opset=a.opset)
    print(f"wrote {out} (ONNX opset {a.opset}, batch dimension symbolic, output activation included)")


def cmd_explain(a):
    from .gradcam import explain_file
    from .train import set_threads
    set_threads(a.threads)
    model = _load_model(a.model)
    out = a.out or (Path(a.image).stem + "_gradcam.png")
    info = explain_file(model, a.image, out, target_class=a.target_class, node=a.layer)
    print(f"wrote {out} (Grad-CAM of {info['class']!r} at node {info['node']!r}, P = {info['probability']:.4f})")


def cmd_features(a):
    from .fileio import savez
    from .train import set_threads
    from .transfer import dataset_features
    set_threads(a.threads)
    if a.dask:
        if not a.out:
            raise UsageError("--dask writes its shards beside the output: give --out FEATURES.npz")
        distributed, client = _dask_client(a.dask)
        shards = Path(a.out).with_suffix(".shards")
        try:
            def extract(backbone, paths, batch_size):
                return distributed.features(client, backbone, paths, shards, batch_size=batch_size,
                                            shard_size=a.shard_size, overwrite=a.overwrite)
            feats, ds = dataset_features(a.data, a.backbone, a.weights, split=a.split, image_size=a.image_size,
                                         batch_size=a.batch_size, seed=a.seed, extract=extract)
        finally:
            distributed.close(client)
        print(f"{len(ds)} images -> features {feats.shape} (on {a.dask}; shards in {shards})")
    else:
        feats, ds = dataset_features(a.data, a.backbone, a.weights, split=a.split, image_size=a.image_size,
                                     batch_size=a.batch_size, seed=a.seed)
        print(f"{len(ds)} images -> features {feats.shape} (cached)")
    if a.out:
        savez(a.out, {"features": feats, "labels": ds.labels, "paths": np.array(ds.paths),
                      "classes": np.array(ds.classes)})
        print(f"wrote {a.out}")


def cmd_demo(a):
    from .demo import run_demo
    return run_demo(out=a.out, wheel=a.wheel, threads=a.threads)


# -- profile ---------------------------------------------------------------------------------------
def _profile_model(name: str):
    """What `profile` runs: a model minicnn.load reads (file, run folder or registry name), else an
    architecture built with random weights (densenet121, ..., or the from-scratch tiny/small/medium)."""
    from .pretrained.loading import is_model_name
    from .pretrained.registry import ARCHITECTURES
    from .small_cnn import WIDTHS, conv_net
    if Path(name).exists() or is_model_name(name):
        return _load_model(name), None
    if name in ARCHITECTURES:
        return ARCHITECTURES[name].build(weights=None), "random weights"
    if name in WIDTHS:
        return conv_net(name), "random weights"
    raise UsageError(f"{name!r} is neither a model file nor a known name: give a file, a registry name "
                     f"(minicnn.pretrained.registry.names()), an architecture ({', '.join(ARCHITECTURES)}) "
                     f"or {', '.join(sorted(WIDTHS))}")


def cmd_profile(a):
    from .fileio import write_json
    from .profiling import profile
    from .train import set_threads
    set_threads(a.threads)
    model, note = _profile_model(a.model)
    shape = model.input_shape or (3, 224, 224)
    if a.image_size:
        shape = (shape[0], a.image_size, a.image_size)
    x = np.random.default_rng(a.seed).standard_normal((a.batch,) + tuple(shape)).astype(np.float32)
    if note:
        print(f"{a.model}: {note} (the timings do not depend on them)")
    p = profile(model, x, repeats=a.repeats, training=a.training)
    print(p.table(top=None if a.top == 0 else a.top))
    if a.json:
        write_json(a.json, p.to_dict(), indent=1)
        print(f"wrote {a.json}")


# -- parser -----------------------------------------------------------------------------------------
def _checked(convert, ok, what):
    """An argparse ``type``: ``convert`` the text, then refuse values for which ``ok`` is false."""
    def parse(text):
        value = convert(text)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value
    return parse


_positive_int = _checked(int, lambda v: v >= 1, "a whole number >= 1")
_nonnegative_int = _checked(int, lambda v: v >= 0, "a whole number >= 0")
_image_size = _checked(int, lambda v: v >= 8, "at least 8 pixels")
_positive_float = _checked(float, lambda v: v > 0 and np.isfinite(v), "a finite number > 0")
_nonnegative_float = _checked(float, lambda v: v >= 0 and np.isfinite(v), "a finite number >= 0")
_fraction = _checked(float, lambda v: 0 <= v < 1, "in [0, 1)")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default (none shown for flags and options without one)."""

    def _get_help_string(self, action):
        if action.default in (None, False, True, argparse.SUPPRESS) or action.option_strings == []:
            return action.help
        return super()._get_help_string(action)


def _add_threads(p):
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads for Numba kernels and BLAS (default: all cores)")
    p.add_argument("--deterministic", action="store_true",
                   help="results independent of --threads (kernels split their work as if "
                        "minicnn.runtime.DETERMINISTIC_SPLIT threads ran; without it, weights trained "
                        "with different thread counts differ in the last bits)")


def _add_dask(p, where):
    p.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="run on a Dask cluster: a scheduler (tcp://host:8786) or local:N (N local worker "
                        f"processes); needs minicnn[dask]; {where}")
    p.add_argument("--shard-size", type=_positive_int, default=256,
                   help="with --dask: files per task (rounded up to whole batches)")
    p.add_argument("--overwrite", action="store_true",
                   help="with --dask: start again in an output folder that holds another run's shards")


def _add_on_bad_file(p, default, skip_means):
    p.add_argument("--on-bad-file", choices=("skip", "fail"), default=default,
                   help=f"an unreadable or corrupt image: fail (an error naming it) or {skip_means}")


def _add_train(sub):
    s = sub.add_parser("train", help="train a model on a folder, CSV or .npz dataset", formatter_class=_Help)
    s.add_argument("data", nargs="?", help="dataset: folder (root/<split>/<CLASS>/*), CSV, RSNA labels CSV or MedMNIST .npz")
    s.add_argument("--out", default="runs/run", help="run directory")
    s.add_argument("--overwrite", action="store_true", help="replace the run already in --out (its files are removed)")
    s.add_argument("--resume", default=None, metavar="RUN", help="continue the run in RUN from its last.npz")
    s.add_argument("--arch", default="small", help="from-scratch architecture: tiny, small, medium")
    s.add_argument("--backbone", default=None, help="pretrained backbone (densenet121, vgg16, resnet50, inception_v3, or torchxrayvision's "
                        "xrv-densenet121-all, -nih, ...: 1-channel, its own preprocessing, --weights optional)")
    s.add_argument("--dask", default=None, metavar="ADDRESS",
                   help="with --backbone: extract the features on a Dask cluster (tcp://host:8786 or local:N; "
                        "needs minicnn[dask]); the head trains here")
    s.add_argument("--weights", default=None, help="backbone weight file or registry name")
    s.add_argument("--head-epochs", type=_positive_int, default=None,
                   help="with --backbone: epochs of head training on cached features (default: 10 x --epochs)")
    s.add_argument("--fine-tune", type=_nonnegative_int, default=0, metavar="EPOCHS",
                   help="with --backbone: then unfreeze the last block and fine-tune it for EPOCHS epochs")
    s.add_argument("--fine-tune-from", default=None, metavar="NODE",
                   help="first node to unfreeze (default: the backbone's last block, e.g. features.denseblock4)")
    s.add_argument("--image-size", type=_image_size, default=None,
                   help="input size (default 64; a backbone's own size with --backbone: 224, InceptionV3 299)")
    s.add_argument("--channels", type=int, default=1, choices=(1, 3), help="1 grayscale, 3 RGB")
    s.add_argument("--epochs", type=_positive_int, default=None,
                   help="training epochs (default 8; with --resume: the epochs the run was started with)")
    s.add_argument("--batch-size", type=_positive_int, default=32, help="images per batch")
    s.add_argument("--lr", type=_positive_float, default=3e-3, help="Adam learning rate")
    s.add_argument("--weight-decay", type=_nonnegative_float, default=0.0, help="Adam L2 weight decay")
    s.add_argument("--patience", type=_positive_int, default=None,
                   help="early stopping patience in epochs (default: no early stopping)")
    s.add_argument("--normalize", default="dataset",
                   help="dataset, sample, seed, imagenet-torch, imagenet-caffe, tf, none")
    s.add_argument("--norm-sample", type=_positive_int, default=1000, help="training images used to fit the statistics")
    s.add_argument("--no-augment", dest="augment", action="store_false", help="no flips/rotations/crops in training")
    s.add_argument("--no-class-weights", dest="class_weights", action="store_false",
                   help="plain BCE instead of the class-weighted loss")
    s.add_argument("--positive-class", default=None, help="the class the output predicts (default: the non-NORMAL one)")
    s.add_argument("--train-split", default="train", help="the split to train on")
    s.add_argument("--val-split", default=None,
                   help="validate on this split (default: the dataset's own 'val' split when it has one)")
    s.add_argument("--test-split", default="test", help="checked for patient leakage against train")
    s.add_argument("--val-from-train", type=_fraction, default=None,
                   help="validate on this patient-aware fraction of the training split instead "
                        "(default: 0.1 when the dataset has no 'val' split)")
    s.add_argument("--cache-mb", type=_nonnegative_int, default=512, help="memory for decoded images, MB")
    _add_on_bad_file(s, "skip", "skip: warn, leave it out and list it in RUN/bad_files.txt")
    s.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling, augmentation, dropout")
    s.add_argument("--quiet", action="store_true", help="no progress bars (they are shown only on a terminal anyway)")
    _add_threads(s)
    s.set_defaults(func=cmd_train)


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand and option (long, but declarative: one line per option, read top to bottom)."""
    p = argparse.ArgumentParser(prog="minicnn", description="A readable CNN engine in NumPy/Numba for chest X-rays. "
                                "Research and teaching use only: not a medical device.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("synth", help="write a synthetic chest-X-ray-like dataset (folder layout)", formatter_class=_Help)
    s.add_argument("out", help="output folder (gets train/ val/ test/ with NORMAL/ PNEUMONIA/)")
    s.add_argument("--n", type=_positive_int, default=3000, help="number of images")
    s.add_argument("--size", type=_image_size, default=64, help="image size in pixels")
    s.add_argument("--pneumonia-fraction", type=_fraction, default=0.6, help="fraction of PNEUMONIA images")
    s.add_argument("--seed", type=int, default=0, help="random seed")
    s.set_defaults(func=cmd_synth)

    _add_train(sub)

    s = sub.add_parser("evaluate", help="evaluate a model on a dataset split", formatter_class=_Help)
    s.add_argument("model", help="run directory, model .npz, any model file minicnn.load reads, or a registry name")
    s.add_argument("data", help="dataset (folder, CSV or .npz)")
    s.add_argument("--split", default="test", help="the split to evaluate")
    s.add_argument("--out", default=None, help="where metrics.json and plots go (default: the run directory)")
    s.add_argument("--threshold", type=float, default=None, help="override the model's saved threshold")
    s.add_argument("--n-boot", type=_nonnegative_int, default=1000, help="bootstrap resamples for the AUC CI")
    s.add_argument("--batch-size", type=_positive_int, default=32, help="images per batch")
    s.add_argument("--report", action="store_true", help="also write an HTML report with Grad-CAM of errors")
    s.add_argument("--report-errors", type=_nonnegative_int, default=6, help="errors shown in the report")
    _add_on_bad_file(s, "fail", "skip: warn, leave it out and list it in metrics.json")
    _add_dask(s, "the shards go to OUT/predictions-dask")
    _add_threads(s)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("predict", help="predict image files or folders", formatter_class=_Help)
    s.add_argument("model", help="run directory or model .npz")
    s.add_argument("images", nargs="+", help="image files or folders (a folder of class folders adds the true labels)")
    s.add_argument("--out", default=None, help="write a .csv or .json (a folder: FOLDER/predictions.csv)")
    s.add_argument("--batch-size", type=_positive_int, default=16, help="images per batch")
    s.add_argument("--protocol", choices=("single", "tencrop"), default="single",
                   help="tencrop: CheXNet's published protocol, Resize(256) + TenCrop(224), the ten outputs averaged")
    _add_on_bad_file(s, "fail", "skip: warn and leave it out")
    s.add_argument("--gradcam", default=None, metavar="DIR",
                   help="also write a Grad-CAM overlay of the predicted class for every image into DIR")
    s.add_argument("--layer", default=None, help="with --gradcam: node explained (default: before global pooling)")
    _add_dask(s, "--out DIR gets the shards and DIR/predictions.csv")
    _add_threads(s)
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("explain", help="Grad-CAM heatmap overlay for one image", formatter_class=_Help)
    s.add_argument("model", help="run directory or model .npz")
    s.add_argument("image", help="an image file")
    s.add_argument("--out", default=None, help="output PNG (default IMAGE_gradcam.png)")
    s.add_argument("--class", dest="target_class", default=None, help="class to explain (default: predicted)")
    s.add_argument("--layer", default=None, help="node whose output is explained (default: before global pooling)")
    _add_threads(s)
    s.set_defaults(func=cmd_explain)

    s = sub.add_parser("summary", help="what a model or weight file is: format, architecture, input size, "
                                       "classes, preprocessing (any file minicnn reads)", formatter_class=_Help)
    s.add_argument("model", help="run directory, minicnn .npz, .pth/.pt, .safetensors, .h5, .weights.h5 or .keras")
    s.add_argument("--no-layers", dest="layers", action="store_false",
                   help="leave out the table of layers (shown for files that hold an architecture)")
    s.set_defaults(func=cmd_summary)

    s = sub.add_parser("gradcheck", help="gradient-check every layer and loss; print relative errors",
                       formatter_class=_Help)
    s.add_argument("--seed", type=int, default=0, help="random seed of the inputs")
    s.set_defaults(func=cmd_gradcheck)

    s = sub.add_parser("convert", help="wrap a Keras/PyTorch model file as a minicnn model with its preprocessing",
                       formatter_class=_Help)
    s.add_argument("model", help=".keras, .h5, .pth, .safetensors, .onnx")
    s.add_argument("out", help="output .npz")
    s.add_argument("--preprocess", required=True, help="tf, imagenet-torch, imagenet-caffe (the weights' own)")
    s.add_argument("--image-size", type=_image_size, required=True, help="input size the model expects")
    s.add_argument("--resize", default="bilinear", choices=("bilinear", "nearest", "bicubic"), help="interpolation")
    s.add_argument("--channels", type=int, default=3, choices=(1, 3), help="input channels")
    s.add_argument("--classes", default=None, help="comma-separated class names in output order")
    s.add_argument("--positive-class", default=None, help="the class a single output predicts")
    s.set_defaults(func=cmd_convert)

    s = sub.add_parser("export", help="write a minicnn model as an ONNX file (needs minicnn[onnx])",
                       formatter_class=_Help)
    s.add_argument("model", help="run directory or model .npz")
    s.add_argument("out", help="output .onnx")
    s.add_argument("--opset", type=int, default=17, help="ONNX opset to target (13 to the installed onnx's newest)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("features", help="extract (and cache) pooled backbone features of a dataset",
                       formatter_class=_Help)
    s.add_argument("data", help="dataset (folder, CSV or .npz)")
    s.add_argument("--backbone", required=True,
                   help="densenet121, vgg16, resnet50, inception_v3, or torchxrayvision's xrv-densenet121-all, ...")
    s.add_argument("--weights", default=None, help="backbone weight file or registry name")
    s.add_argument("--split", default="train", help="the split to extract")
    s.add_argument("--image-size", type=_image_size, default=None, help="input size (default: the backbone's)")
    s.add_argument("--out", default=None, help="write the features to this .npz")
    s.add_argument("--batch-size", type=_positive_int, default=16, help="images per batch")
    s.add_argument("--seed", type=int, default=0, help="initialisation seed when --weights is not given")
    _add_dask(s, "the shards go to FEATURES.shards beside --out")
    _add_threads(s)
    s.set_defaults(func=cmd_features)

    s = sub.add_parser("profile", help="time, FLOPs, GFLOP/s and share of the pass per node and per layer type",
                       formatter_class=_Help)
    s.add_argument("model", help="model file, run directory, registry name, or an architecture (densenet121, "
                                 "resnet50, vgg16, inception_v3, small, ...) with random weights")
    s.add_argument("--batch", type=_positive_int, default=1, help="images per batch")
    s.add_argument("--image-size", type=_image_size, default=None, help="input size (default: the model's own)")
    s.add_argument("--repeats", type=_positive_int, default=3, help="timed passes (the median per node)")
    s.add_argument("--training", action="store_true", help="also time a training forward + backward")
    s.add_argument("--top", type=_nonnegative_int, default=25, help="slowest nodes listed (0: every node)")
    s.add_argument("--json", default=None, metavar="PATH", help="also write the whole profile as JSON")
    s.add_argument("--seed", type=int, default=0, help="seed of the random input")
    _add_threads(s)
    s.set_defaults(func=cmd_profile)

    s = sub.add_parser("demo", help="run a real Keras pneumonia model on 16 real X-rays, with Grad-CAM",
                       formatter_class=_Help)
    s.add_argument("--out", default="minicnn-demo", help="output folder")
    s.add_argument("--wheel", default=None, help="pneumonia-model-package wheel already downloaded")
    _add_threads(s)
    s.set_defaults(func=cmd_demo)
    for s in sub.choices.values():
        s.add_argument("--traceback", action="store_true",
                       help="show the full traceback of an error (for bug reports)")
    p.subcommands = sub.choices
    return p


def main(argv=None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.command == "train" and not a.data and not a.resume:
        train = parser.subcommands["train"]
        train.print_usage(sys.stderr)
        train.exit(2, "minicnn train: error: give DATA (a dataset) or --resume RUN; see minicnn train --help\n")
    try:
        if getattr(a, "deterministic", False):
            from . import runtime
            runtime.configure(deterministic=True)
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
