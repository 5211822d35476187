"""A training run and an evaluation, from typed arguments: what ``minicnn train`` / ``evaluate`` do.

    result = train_run(TrainConfig(data="chest_xray", out="runs/a", arch="small", epochs=8))
    result = train_run(resume_config("runs/a", epochs=12), resume=True)
    ev = evaluate_run("runs/a/model.npz", "chest_xray", split="test")       # ev.metrics, ev.paths

A run directory holds ``model.npz`` (the best epoch), ``last.npz`` (resumable, with the config),
``history.csv/json`` and ``plots/``. ``log`` receives the lines the command line prints
(progress bars go to stderr); results are returned.

While ``train_run`` works on a run directory it holds ``fcntl.flock`` on ``RUN_LOCK`` in it
(``run_lock``): a second training into the same directory is refused at once, naming the holder
(pid, host, start time, written into the lock file). The kernel drops the lock when the holder
exits, however it exits (a SIGKILL too), so no stale lock is ever left. Where ``fcntl`` does not
exist (Windows) the directory is not locked and a warning says so.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import fileio, losses, metrics, optim, small_cnn
from .callbacks import Callback
from .data.augment import Augmenter
from .data.datasets import available_splits, load_dataset
from .data.loader import BatchLoader, fit_preprocessing
from .data.preprocessing import Preprocessing
from .data.splits import training_splits, warn_to_stderr
from .errors import TrainingError, UsageError
from .data.datasets import binary_class_names, match_output_names
from .serialization import load
from .predict import predict_loader
from .report import write_evaluation_report
from .train import TrainConfig, TrainState, fit, load_checkpoint, resume_state_from
from .transfer import TransferResult, transfer_learn
from .viz import (plot_calibration, plot_confusion, plot_feature_maps, plot_filters, plot_history,
                  plot_image_grid, plot_roc)


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    model_path: str
    state: TrainState


def resume_config(run, epochs: int | None = None) -> TrainConfig:
    """The config ``run/last.npz`` recorded (``out`` = ``run``), to continue it for ``epochs`` in all
    (default: the epochs it was started with)."""
    run = Path(run)
    _check_resumable(run)
    _, info, _ = load_checkpoint(run / "last.npz")
    saved = info["extra"].get("args")
    if not saved:
        raise UsageError(f"{run / 'last.npz'} does not record the training arguments; it cannot be resumed "
                         f"with --resume (start a new run)")
    override = {"out": str(run), "overwrite": False}
    if epochs is not None:
        override["epochs"] = epochs
    return TrainConfig.from_saved(saved, **override)


RUN_FILES = ("model.npz", "last.npz", "history.csv", "history.json", "head_history.json", "metrics.json",
             "plots", "report", "bad_files.txt")


RUN_LOCK = ".minicnn-lock"

try:
    import fcntl
except ImportError:          # Windows: no advisory locks of this kind
    fcntl = None


@contextlib.contextmanager
def run_lock(out, log=print):
    """Hold an exclusive ``fcntl.flock`` on ``out/.minicnn-lock`` for the block, or refuse at once.

    The lock file names its holder (``pid``, ``host``, ``started``); it is truncated (not removed,
    which would race with a process opening it) when the block ends -- unless the block created
    ``out`` and left nothing else in it (a run that failed at once leaves no empty folder). A killed
    holder's lock is released by the kernel, so the next run takes it."""
    out = Path(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUN_LOCK
    if fcntl is None:
        log(f"WARNING: this platform has no fcntl: {out} is not locked against a second `minicnn train` into it")
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd, out, path, log):
            yield
            return
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            if created and os.listdir(out) == [RUN_LOCK]:   # a run that failed before writing anything
                with contextlib.suppress(OSError):
                    path.unlink()
                    out.rmdir()
    finally:
        os.close(fd)          # closing the last descriptor releases the lock


def _try_lock(fd, out, path, log) -> bool:
    """Lock ``fd``: True; False (warned) on a file system without locks; ``UsageError`` if it is held."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            log(f"WARNING: the file system of {out} does not support locks: it is not locked against a "
                f"second `minicnn train` into it")
            return False
        if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
    raise UsageError(f"{out} is in use by another minicnn train ({_lock_holder(path)}); wait for it to "
                     f"finish, or choose another --out", path=path)


def _lock_holder(path) -> str:
    """``pid 123 on host, started 2026-...Z`` from a held lock file (the holder writes it just after locking)."""
    for _ in range(20):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            h = json.loads(Path(path).read_text())
            return f"pid {h['pid']} on {h['host']}, started {h['started']}"
        time.sleep(0.01)
    return "holder not recorded yet"


def _check_resumable(out) -> None:
    if not (Path(out) / "last.npz").exists():
        raise UsageError(f"{out} has no last.npz to resume (was the run killed before its first checkpoint?); "
                         f"start it again with --overwrite")


def prepare_run_dir(out, resume: bool = False, overwrite: bool = False) -> None:
    """Refuse to mix two runs in one folder: a run directory that already holds a run needs
    ``resume`` (continue it) or ``overwrite`` (remove that run's files first, so none is left stale)."""
    out = Path(out)
    found = [name for name in RUN_FILES if (out / name).exists()]
    if resume:
        _check_resumable(out)
        fileio.remove_stale_temporaries(out)      # a write a kill interrupted (call it holding run_lock)
        return
    if found and not overwrite:
        raise UsageError(f"{out} already holds a run ({', '.join(found)}); pass --resume to continue it or "
                         f"--overwrite to replace it, or choose another --out")
    for name in found:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    fileio.remove_stale_temporaries(out)


def train_run(config: TrainConfig, resume: bool = False, log=print) -> TrainResult | TransferResult:
    """Train a CNN from scratch (or, with ``config.backbone``, a head on a pretrained backbone).

    Holds the run directory's lock (``run_lock``) throughout. A full disk raises ``TrainingError``
    naming the file; the checkpoint written before it is kept."""
    if resume:
        _check_resumable(config.out)        # refuse before creating anything
    with run_lock(config.out, log=log):
        prepare_run_dir(config.out, resume=resume, overwrite=config.overwrite)
        try:
            return _train_locked(config, resume, log)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            last = Path(config.out) / "last.npz"
            then = (f"the previous checkpoint {last} is kept: free some space, then continue with "
                    f"`minicnn train --resume {config.out}`" if last.exists() else
                    "free some space, then start the run again with --overwrite")
            raise TrainingError(f"no space left on the device writing {exc.filename or config.out}; {then}",
                                path=exc.filename) from exc


def _train_locked(config: TrainConfig, resume: bool, log):
    if config.backbone:
        if not config.dask:
            result = transfer_learn(config, log=log)
        else:
            from . import distributed                # optional extra: only with --dask
            client = distributed.connect(config.dask)
            try:
                extract = distributed.feature_extractor(client, Path(config.out) / "features-dask",
                                                        on_bad_file=config.on_bad_file)
                result = transfer_learn(config, log=log, extract=extract)
            finally:
                distributed.close(client)
        BadFiles(warn_to_stderr).write_names(config.out, result.skipped)
        return result
    c = dataclasses.replace(config, image_size=config.image_size or 64)
    train_ds, val_ds, how = training_splits(c.data, train_split=c.train_split, val_split=c.val_split,
                                       val_from_train=c.val_from_train, test_split=c.test_split,
                                       positive_class=c.positive_class, seed=c.seed, warn=warn_to_stderr)
    for ds in (train_ds, val_ds):
        if ds is not None:
            ds.require_known_labels("training")
    bad = BadFiles(warn_to_stderr)
    pre = fit_preprocessing(Preprocessing(c.image_size, c.channels, mode=c.normalize), train_ds,
                            sample=c.norm_sample, seed=c.seed, on_bad_file=c.on_bad_file, warn=bad.warn)
    common = dict(batch_size=c.batch_size, seed=c.seed, cache_bytes=c.cache_mb * 2**20, on_bad_file=c.on_bad_file,
                  warn=bad.warn)
    train = BatchLoader(train_ds, pre, training=True, augment=Augmenter() if c.augment else None, **common)
    val = BatchLoader(val_ds, pre, training=False, **common) if val_ds is not None else None
    log(f"validation: {how}")
    log(f"train: {len(train_ds)} images, val: {len(val_ds) if val_ds is not None else 0}; "
        f"outputs {train_ds.output_names}; normalisation {_normalisation_text(pre)}")

    w_pos, w_neg = losses.class_weights(train_ds.labels, train_ds.output_names) if c.class_weights else (1.0, 1.0)
    loss = losses.WeightedBCE(w_pos, w_neg)
    if resume:
        model, info, opt_sd = load_checkpoint(Path(c.out) / "last.npz")
    else:
        model = small_cnn.conv_net(c.arch, in_channels=c.channels, outputs=train_ds.labels.shape[1],
                              image_size=c.image_size, seed=c.seed)
        model.meta.update({"classes": list(train_ds.classes), "outputs": list(train_ds.output_names),
                           "positive_class": train_ds.positive_class, "preprocessing": pre.to_dict(),
                           "threshold": [0.5] * train_ds.labels.shape[1], "threshold_rule": "default-0.5",
                           "class_weighted": bool(c.class_weights)})
    opt = optim.Adam(model.params(), lr=c.lr, weight_decay=c.weight_decay)
    sched = optim.ReduceLROnPlateau(opt, mode="max", factor=0.3, patience=1)
    state = None
    if resume:
        opt.load_state_dict(opt_sd)
        if info.get("scheduler"):
            sched.load_state_dict(info["scheduler"])
        state = resume_state_from(info)
        log(f"resuming {c.out} at epoch {state.epoch + 1}, batch {state.batch}")
    state = fit(model, loss, opt, train, val, epochs=c.epochs, out_dir=c.out, scheduler=sched,
                patience=c.patience, seed=c.seed, resume_state=state, progress=not c.quiet, log=log,
                checkpoint_extra={"args": dataclasses.asdict(c)},
                callbacks=[_BadFilesEachEpoch(bad, c.out, [train, val])])
    listed = bad.write(c.out, [train, val])
    if listed:
        log(f"WARNING: {listed} unreadable image(s) skipped (--on-bad-file skip); listed in {Path(c.out) / BAD_FILES}")
    plots_after_training(c.out, state.history, val if val is not None else train)
    return TrainResult(os.path.join(c.out, "model.npz"), state)


BAD_FILES = "bad_files.txt"


class BadFiles:
    """The unreadable images a run skipped: each warned about once, then listed in ``bad_files.txt``
    (``path<TAB>reason`` lines; a resumed run adds to the list its earlier part wrote)."""

    def __init__(self, warn):
        self._warn, self._said = warn, set()

    def warn(self, message: str) -> None:
        if message not in self._said:
            self._said.add(message)
            self._warn(message)

    def write(self, out, loaders) -> int:
        """Write the list into ``out`` (if anything was skipped); returns how many files it names."""
        return self.write_names(out, {loader.dataset.name(i): reason for loader in loaders
                                      for i, reason in getattr(loader, "skipped", {}).items()})

    def write_names(self, out, skipped: dict) -> int:
        """``write`` for ``{file name: reason}`` (the images a backbone's feature extraction left out)."""
        path = Path(out) / BAD_FILES
        found = {}
        if path.exists():
            found.update(line.split("\t", 1) for line in path.read_text(encoding="utf-8").splitlines() if "\t" in line)
        found.update({name: " ".join(str(reason).split()) for name, reason in skipped.items()})
        if found:
            fileio.write_text(path, "".join(f"{name}\t{why}\n" for name, why in sorted(found.items())))
        return len(found)


class _BadFilesEachEpoch(Callback):
    """Keeps ``bad_files.txt`` up to date after every epoch, so a killed run lists what it skipped."""

    def __init__(self, bad: BadFiles, out, loaders):
        self.bad, self.out, self.loaders = bad, out, loaders

    def on_epoch_end(self, epoch, logs, model):
        self.bad.write(self.out, self.loaders)


def _normalisation_text(pre: Preprocessing) -> str:
    """The normalisation as ``minicnn train`` has always printed it (before Preprocessing existed)."""
    stats = ""
    if pre.mean is not None:
        stats = f", mean={np.round(pre.mean, 3).tolist()}, std={np.round(pre.std, 3).tolist()}"
    return f"Normalizer({pre.mode!r}{stats})"


def plots_after_training(out, history, loader) -> None:
    """Training curves, the best model's first-layer filters and its feature maps for one image."""
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
    model.predict(x[:1], batch_size=1, logits=True, keep=[first.name])
    plot_feature_maps(model.activations[first.name], os.path.join(plots, "feature_maps_first_conv.png"))


# ------------------------------------------------------------------------------------------------
# evaluation
# ------------------------------------------------------------------------------------------------
@dataclass
class EvaluationResult:
    metrics: dict
    metrics_path: Path
    plots: Path
    report_path: str | None = None
    y_true: np.ndarray = field(repr=False, default=None)
    y_prob: np.ndarray = field(repr=False, default=None)


def _evaluation_data(model, data, split):
    """``(dataset, mapping)``: ``mapping`` is None when the data's outputs are the model's, else (a
    chest X-ray model, ``meta['pathology_outputs']``, whose named outputs the data's labels are
    matched to) ``(model output indices, their names, the data's names for them, unused data
    labels, skipped model outputs)``."""
    splits = available_splits(data)
    chosen = split if split in splits else (None if splits in ([], [None]) else split)
    if chosen is not None and chosen not in splits:
        raise UsageError(f"{data} has no split {split!r}; it has {splits}")
    if model.meta.get("pathology_outputs"):
        return _pathology_data(model, load_dataset(data, split=chosen), data)
    ds = load_dataset(data, split=chosen, positive_class=model.meta.get("positive_class"),
                      classes=model.meta.get("classes"))
    outputs = model.meta.get("outputs") or ds.output_names
    softmax_over_classes = model.output_activation == "softmax" and list(outputs) == list(ds.classes)
    if list(ds.output_names) != list(outputs) and not softmax_over_classes:
        raise UsageError(f"the data's outputs {ds.output_names} do not match the model's {outputs}")
    return ds, None


def _pathology_data(model, ds, data):
    """The data's label columns matched to the model's pathology outputs by name
    (``datasets.match_output_names``): only the outputs the data has are evaluated."""
    outputs = list(model.meta.get("outputs") or [])
    pairs, unused, skipped = match_output_names(ds.output_names, outputs)
    if not pairs:
        raise UsageError(f"none of the labels of {data} ({', '.join(ds.output_names)}) is an output of the model "
                         f"({', '.join(o for o in outputs if o)}); nothing to evaluate")
    cols = [i for i, _ in pairs]
    names = [outputs[j] for _, j in pairs]
    if len(pairs) == 1 and ds.labels.shape[1] == 1:
        mapped = dataclasses.replace(ds, positive_class=ds.output_names[0])     # e.g. NORMAL/PNEUMONIA
    else:
        mapped = dataclasses.replace(ds, labels=ds.labels[:, cols], classes=names, positive_class=None,
                                     unknown=None if ds.unknown is None else ds.unknown[:, cols])
    return mapped, ([j for _, j in pairs], names, [ds.output_names[i] for i in cols], unused, skipped)


def evaluate_run(model, data, split: str = "test", out=None, threshold=None, n_boot: int = 1000,
                 batch_size: int = 32, report: bool = False, report_errors: int = 6,
                 on_bad_file: str = "fail", warn=warn_to_stderr, dask: str | None = None,
                 shard_size: int = 256, overwrite: bool = False) -> EvaluationResult:
    """Metrics (with a bootstrap CI), ``metrics.json`` and plots of ``model`` on ``data``'s ``split``.

    ``model``: a Graph, or the path it was loaded from (then ``out`` defaults to its folder).
    ``on_bad_file``: ``"fail"`` (an unreadable image is an error: metrics over part of a test set
    mislead) or ``"skip"`` (left out, warned, counted in ``metrics.json`` as ``skipped_files``).
    """
    where = Path(model) if isinstance(model, (str, os.PathLike)) else None
    model = load(model) if where is not None else model
    pre = Preprocessing.of(model)
    ds, mapping = _evaluation_data(model, data, split)
    if out is None and where is not None:
        out = where if where.is_dir() else where.parent
    if dask is None:
        loader = BatchLoader(ds, pre, batch_size=batch_size, training=False, on_bad_file=on_bad_file, warn=warn)
        y, p, _ = predict_loader(model, loader)
        bad = set(loader.skipped)
    else:                              # the same predictions, computed on a Dask cluster (minicnn.distributed)
        y, p, bad = _predictions_on_dask(model, ds, dask, out, batch_size, shard_size, on_bad_file, overwrite)
        loader = BatchLoader(ds, pre, batch_size=batch_size, training=False)
    skipped = sorted(ds.name(i) for i in bad)
    if skipped:                        # the rest of the evaluation sees only the images that were read
        ds = ds.subset([i for i in range(len(ds)) if i not in bad])
        loader = BatchLoader(ds, pre, batch_size=batch_size, training=False)
    if model.output_activation == "softmax" and p.shape[1] == 2 and y.shape[1] == 1:
        p = p[:, 1:2]  # P(positive class) from a two-class softmax
    thr = model.meta.get("threshold", 0.5) if threshold is None else threshold
    out_names, positive = list(ds.output_names), ds.positive_class
    if mapping is not None:            # only the model outputs the data has labels for
        picked, out_names, data_names, unused, skipped_outputs = mapping
        p = p[:, picked]
        if np.ndim(thr) and np.size(thr) > 1:
            thr = np.asarray(thr, dtype=np.float64)[picked].tolist()
        positive = out_names[0] if len(out_names) == 1 else None
    m = metrics.evaluate_predictions(y, p, out_names, threshold=thr, positive_class=positive, n_boot=n_boot)
    rule = model.meta.get("threshold_rule", "given") if threshold is None else "command-line"
    m = {"split": split, **m, "threshold_rule": rule}
    if mapping is not None:
        m["evaluated_outputs"] = dict(zip(out_names, data_names))     # model output -> the data's label
        m["skipped_outputs"] = skipped_outputs
        m["unused_labels"] = unused
        untrained = sum(1 for o in model.meta.get("outputs") or [] if not o)
        warn(f"evaluated {len(out_names)} of the model's outputs ({', '.join(out_names)}); skipped (not in the "
             f"data): {', '.join(skipped_outputs) or 'none'}" + (f"; {untrained} untrained output(s) named ''"
                                                                  if untrained else "")
             + (f"; data labels no output is: {', '.join(unused)}" if unused else ""))
    masked = ds.masked_counts()
    if masked:
        m["masked_labels"] = masked
        warn("masked labels the data declares unknown (scored without them): " + "; ".join(
            f"{k}: {v['uncertain']} uncertain, {v['blank']} blank" for k, v in masked.items()))
    if skipped:
        m["skipped_files"] = skipped
    if out is None:
        if where is None:
            raise UsageError("give out=... (where metrics.json and the plots go)")
        out = where if where.is_dir() else where.parent
    out = Path(out)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    known = ~np.isnan(y).any(axis=1)           # the plots show the images whose labels are all known
    plot_roc(y[known], p[known], out_names, plots / f"roc_{split}.png")
    if y.shape[1] == 1:
        neg, _ = binary_class_names({"classes": ds.classes, "positive_class": ds.positive_class})
        plot_confusion(m["confusion"], [neg, ds.positive_class], plots / f"confusion_{split}.png")
        plot_calibration(y[known, 0], p[known, 0], plots / f"calibration_{split}.png",
                         n_bins=metrics.calibration_bins(int(known.sum())))
        if known.all():
            _plot_examples(loader, ds, y, p, float(np.atleast_1d(thr)[0]), [neg, ds.positive_class],
                           plots / f"examples_{split}.png")
    fileio.write_json(out / "metrics.json", metrics.to_jsonable(m), indent=2, allow_nan=False)
    path = None
    if report:
        path = write_evaluation_report(model, ds, y, p, m, out / "report", n_errors=report_errors,
                                       threshold=float(np.atleast_1d(thr)[0]), model_path=_model_file(where),
                                       data=data, outputs=out_names if mapping is not None else None,
                                       explain=out_names[0] if mapping is not None and len(out_names) == 1 else None)
    return EvaluationResult(m, out / "metrics.json", plots, path, y, p)


def _model_file(where):
    """The model file evaluated (a run directory's model.npz), for the report's provenance."""
    if where is None:
        return None
    return where / "model.npz" if where.is_dir() else where


def _predictions_on_dask(model, ds, address, out, batch_size, shard_size, on_bad_file, overwrite):
    """``(y, p, bad indices)`` of ``ds`` predicted on the cluster at ``address`` (shards in
    ``out/predictions-dask``), as the in-process loop would give them."""
    from . import distributed                    # optional extra: only with --dask
    if ds.paths is None:
        raise UsageError("--dask evaluates image files (a folder or CSV dataset)")
    if out is None:
        raise UsageError("give out=... (where metrics.json, the plots and the Dask shards go)")
    client = distributed.connect(address)
    try:
        probs = distributed.probabilities(client, model, list(ds.paths), Path(out) / "predictions-dask",
                                          batch_size=batch_size, shard_size=shard_size, on_bad_file=on_bad_file,
                                          overwrite=overwrite)
    finally:
        distributed.close(client)
    bad = {i for i in range(len(probs)) if np.isnan(probs[i]).all()}
    keep = [i for i in range(len(probs)) if i not in bad]
    return np.asarray(ds.labels)[keep], probs[keep].astype(np.float32), bad


def _plot_examples(loader, ds, y, p, thr, names, path, n=16):
    """A grid of evaluated images (a seeded sample) with true label, prediction and P(positive)."""
    idx = np.sort(np.random.default_rng(0).choice(len(ds), size=min(n, len(ds)), replace=False))
    images = np.stack([ds.image(i, size=loader.image_size, color="grayscale") for i in idx])
    titles = [{"true": names[int(y[i, 0])], "pred": names[int(p[i, 0] >= thr)], "prob": p[i, 0]} for i in idx]
    plot_image_grid(images, titles, path, title=f"P({names[1]}) at threshold {thr:.3f}")
