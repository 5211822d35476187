"""Predict, features and evaluation over many image files on a Dask cluster (``pip install "minicnn[dask]"``).

    from dask.distributed import Client
    import minicnn.distributed as mdist

    client = Client("tcp://scheduler:8786")          # or mdist.connect("local:4")
    mdist.predict(client, "model.npz", paths, out="preds/")         # preds/predictions.csv
    feats = mdist.features(client, "backbone.npz", paths, out="feats/")  # (N, F), feats/shard-*.npz

How it runs:

- the input list is cut into *shards* of ``shard_size`` files (a multiple of ``batch_size``, so
  every batch is the batch the in-process run makes: results are bit-identical to it when the
  threads match); one Dask task per shard, whose payload is the file paths only (a few kB);
- the model travels to each worker once, as minicnn's own ``.npz`` bytes (never a pickled
  ``Graph``), in a worker plugin (:class:`ModelPlugin`): its ``setup`` runs on every worker,
  including workers that join later; it loads the model, and sets the worker's Numba and BLAS
  threads to the worker's own thread count (tasks on one worker take turns on the model, so
  there is no oversubscription);
- each finished shard is written to ``out`` at once (atomically), so memory stays flat and a
  rerun of the same command skips the shards already there; ``out/manifest.json`` records the
  model's digest, a hash of the input list and the options, and a rerun with any difference is
  refused unless ``overwrite=True``;
- a worker that dies mid-task costs only its task (Dask reruns it elsewhere); a file that cannot
  be read is reported per ``on_bad_file``: ``"fail"`` stops the run naming the file, ``"skip"``
  leaves it out and lists it (the ``error`` column of predictions, ``errors`` of features).

Workers are separate processes started by *spawn* (Numba's OpenMP layer is not fork-safe); their
compiled kernels come from the same cache as every minicnn process (``$MINICNN_HOME/numba``).
Head training on the gathered features stays local (see ``minicnn.transfer``): it is small.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import pickle
import tempfile
import threading
import uuid
from pathlib import Path

import numpy as np

try:
    from dask.distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker
    import dask
except ImportError as exc:                                       # pragma: no cover - the extra is missing
    from .errors import MissingExtraError
    raise MissingExtraError('minicnn.distributed needs Dask: pip install "minicnn[dask]"') from exc

from . import __version__, fileio, runtime
from .data.preprocessing import Preprocessing
from .errors import DataError, ImageLoadError, MinicnnError, UsageError
from .model import Graph, apply_activation
from .predict import (decide, output_names, expand_paths, file_loader, is_feature_extractor, predict_batches,
                      probabilities_by_class, true_labels)
from .serialization import load
from .transfer import _pooled

__all__ = ["connect", "ModelPlugin", "predict", "features", "probabilities", "read_predictions",
           "read_features", "read_prediction_rows", "feature_extractor", "DEFAULT_SHARD_SIZE"]

DEFAULT_SHARD_SIZE = 256
MANIFEST = "manifest.json"
BAD_FILE_POLICIES = ("fail", "skip")


# ------------------------------------------------------------------------------------------------
# connecting
# ------------------------------------------------------------------------------------------------
def connect(address: str) -> Client:
    """A client for ``address``: ``tcp://host:8786`` (a running scheduler) or ``local:N`` (start a
    local cluster of N single-threaded worker processes, spawned, on loopback)."""
    if not isinstance(address, str) or not address:
        raise UsageError(f"--dask needs a scheduler address (tcp://host:8786) or local:N, got {address!r}")
    if address.startswith("local:"):
        n = address.split(":", 1)[1]
        if not n.isdigit() or int(n) < 1:
            raise UsageError(f"--dask local:N needs a positive number of workers, got {address!r}")
        with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
            # one thread per worker, and Numba's thread pool sized to it from the start (an idle
            # second OpenMP thread would only compete for the cores the other workers use)
            cluster = LocalCluster(n_workers=int(n), threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None, env={"NUMBA_NUM_THREADS": "1"})
        client = Client(cluster)
        client._minicnn_owns_cluster = cluster                   # closed with the client by `close`
        return client
    if "://" not in address:
        raise UsageError(f"--dask {address!r}: give a scheduler address like tcp://host:8786, or local:N")
    try:
        return Client(address, timeout="20s")
    except OSError as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {exc}; start one with "
                         "`dask scheduler` and workers with `dask worker ADDRESS`") from exc


def close(client: Client) -> None:
    """Close ``client`` (and the local cluster ``connect('local:N')`` started for it)."""
    cluster = getattr(client, "_minicnn_owns_cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


# ------------------------------------------------------------------------------------------------
# the model on each worker
# ------------------------------------------------------------------------------------------------
def model_bytes(model: Graph) -> bytes:
    """The model as the bytes of its minicnn ``.npz`` (what workers receive)."""
    with tempfile.TemporaryDirectory() as d:
        path = model.save(os.path.join(d, "model.npz"))
        return Path(path).read_bytes()


class ModelPlugin(WorkerPlugin):
    """Keeps one model per worker: loaded once in ``setup`` from ``.npz`` bytes (never a pickled Graph).

    ``loads`` counts how often this worker loaded it (1 after setup); tasks take turns on the model
    (``lock``), each using the worker's own thread count for Numba and BLAS.
    """

    def __init__(self, data: bytes, digest: str):
        self.data, self.digest = data, digest
        self.name = f"minicnn-model-{digest[:16]}"
        self.model = None
        self.loads = 0
        self.lock = None

    def setup(self, worker):
        threads = max(1, int(getattr(worker.state, "nthreads", 1) or 1))
        runtime.configure(threads=threads)
        with tempfile.TemporaryDirectory(dir=worker.local_directory) as d:
            path = os.path.join(d, "model.npz")
            Path(path).write_bytes(self.data)
            self.model = load(path)
        self.data = None                                          # the Graph is all a worker keeps
        self.loads += 1
        self.lock = threading.Lock()

    def run(self, kind: str, paths: list, batch_size: int, on_bad_file: str):
        with self.lock:
            return run_shard(self.model, kind, paths, batch_size, on_bad_file)


def _task(plugin_name: str, kind: str, paths: list, batch_size: int, on_bad_file: str):
    """One Dask task: a shard of file paths through the worker's resident model."""
    return get_worker().plugins[plugin_name].run(kind, paths, batch_size, on_bad_file)


# ------------------------------------------------------------------------------------------------
# one shard (the same code runs in-process for the reference result)
# ------------------------------------------------------------------------------------------------
def _bad_files(pre: Preprocessing, paths) -> dict:
    """``{index: message}`` of the files that cannot be read."""
    bad = {}
    for i, p in enumerate(paths):
        try:
            pre.read(p)
        except (MinicnnError, OSError, ValueError) as exc:
            bad[i] = str(exc)
    return bad


def run_shard(model: Graph, kind: str, paths: list, batch_size: int, on_bad_file: str = "fail") -> dict:
    """``{"values": (n_good, K) float32, "index": positions of the good files, "errors": {i: msg}}``.

    ``kind``: ``"logits"`` (the output node before the output activation, as ``predict_batches``)
    or ``"features"`` (pooled, after the activation, as ``transfer.extract_features``).
    """
    pre = Preprocessing.of(model)
    good, errors = list(range(len(paths))), {}
    outs = []
    for attempt in range(2):
        if not good:
            break
        try:
            outs = []
            for _, z in predict_batches(model, file_loader([paths[i] for i in good], pre, batch_size)):
                outs.append(_pooled(apply_activation(z, model.output_activation)).astype(np.float32)
                            if kind == "features" else np.asarray(z, np.float32))
            break
        except (ImageLoadError, DataError, OSError) as exc:
            if attempt:
                raise
            errors = _bad_files(pre, paths)
            if not errors:
                raise
            if on_bad_file == "fail":
                i, msg = next(iter(errors.items()))
                msg = msg if str(paths[i]) in msg else f"{paths[i]}: {msg}"
                raise ImageLoadError(f"{msg} (use on_bad_file='skip' / --on-bad-file skip "
                                     "to leave bad files out and list them)", path=paths[i]) from exc
            good = [i for i in range(len(paths)) if i not in errors]
    k = outs[0].shape[1] if outs else 0
    values = np.concatenate(outs) if outs else np.zeros((0, k), np.float32)
    return {"values": values, "index": np.asarray(good, np.int64), "errors": errors}


# ------------------------------------------------------------------------------------------------
# the client side: shards, manifest, streaming writes
# ------------------------------------------------------------------------------------------------
def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _inputs_hash(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(os.fsencode(p) + b"\0")
    return h.hexdigest()


def _check_options(batch_size, shard_size, on_bad_file):
    for name, v in (("batch_size", batch_size), ("shard_size", shard_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise UsageError(f"{name} must be a positive int, got {v!r}")
    if on_bad_file not in BAD_FILE_POLICIES:
        raise UsageError(f"on_bad_file must be one of {BAD_FILE_POLICIES}, got {on_bad_file!r}")
    return -(-shard_size // batch_size) * batch_size               # round up to whole batches


def _prepare_out(out: Path, manifest: dict, overwrite: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    mpath = out / MANIFEST
    if mpath.exists():
        try:
            old = json.loads(mpath.read_text())
        except ValueError:
            old = None
        if old != manifest:
            if not overwrite:
                diff = sorted(k for k in set(manifest) | set(old or {}) if (old or {}).get(k) != manifest.get(k))
                raise UsageError(f"{out} holds a run with other inputs or options ({', '.join(diff)} differ): "
                                 "give another output folder, or overwrite=True / --overwrite to start again")
            for f in out.glob("shard-*"):
                f.unlink()
    fileio.remove_stale_temporaries(out)
    fileio.write_json(mpath, manifest, indent=1)


def _shard_path(out: Path, k: int, kind: str) -> Path:
    return out / f"shard-{k:06d}.{'csv' if kind == 'predict' else 'npz'}"


def _run(client: Client, model, paths, kind: str, out, batch_size: int, shard_size: int,
         on_bad_file: str, overwrite: bool, progress, write_shard) -> tuple[Graph, list, Path, list]:
    shard_size = _check_options(batch_size, shard_size, on_bad_file)
    model = load(model) if isinstance(model, (str, os.PathLike)) else model
    if not isinstance(model, Graph):
        raise UsageError(f"model must be a minicnn Graph or the path of a model file, got {type(model).__name__}")
    paths = expand_paths(paths)
    data = model_bytes(model)
    digest = _digest(data)
    manifest = {"kind": kind, "model_sha256": digest, "inputs_sha256": _inputs_hash(paths), "files": len(paths),
                "batch_size": batch_size, "shard_size": shard_size, "on_bad_file": on_bad_file,
                "minicnn": __version__}
    out = Path(out)
    _prepare_out(out, manifest, overwrite)
    shards = [paths[s:s + shard_size] for s in range(0, len(paths), shard_size)]
    todo = [k for k in range(len(shards)) if not _shard_path(out, k, kind).exists()]
    payloads = []
    if todo:
        plugin = ModelPlugin(data, digest)
        client.register_plugin(plugin, name=plugin.name)
        what = "features" if kind == "features" else "logits"
        window = max(2, 2 * max(1, len(client.scheduler_info().get("workers", {})) or 1))
        pending, queue = as_completed(), list(todo)
        index_of = {}
        run_id = uuid.uuid4().hex[:12]                            # keys never meet an older run's results

        def submit_next():
            k = queue.pop(0)
            args = (plugin.name, what, shards[k], batch_size, on_bad_file)
            payloads.append(len(pickle.dumps(args)))
            fut = client.submit(_task, *args, key=f"minicnn-{kind}-{run_id}-{k}", pure=False, retries=2)
            index_of[fut.key] = k
            pending.add(fut)

        for _ in range(min(window, len(queue))):
            submit_next()
        for fut in pending:
            k = index_of.pop(fut.key)
            result = fut.result()
            write_shard(_shard_path(out, k, kind), shards[k], result, model)
            fut.release()
            if progress is not None:
                progress(1)
            if queue:
                submit_next()
    return model, paths, out, payloads


# -- predictions ---------------------------------------------------------------------------------
def _write_prediction_shard(path: Path, files, result, model) -> None:
    probs = apply_activation(result["values"].astype(np.float32), model.output_activation)
    names = list(probabilities_by_class(model, probs[:1])[0]) if len(probs) else _class_columns(model)
    records = dict(zip(result["index"].tolist(), zip(probabilities_by_class(model, probs), decide(model, probs))))
    truth = true_labels(model, files)
    with fileio.atomic_write(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file"] + [f"P({n})" for n in names] + ["prediction", "true_label", "error"])
        for i, p in enumerate(files):
            if i in records:
                pr, label = records[i]
                w.writerow([p] + [repr(pr[n]) for n in names] + [label, truth[i] or "", ""])
            else:
                w.writerow([p] + [""] * len(names) + ["", truth[i] or "", result["errors"].get(i, "")])


def _class_columns(model: Graph) -> list:
    k = max(1, len(output_names(model)))
    return list(probabilities_by_class(model, np.zeros((1, k), np.float32))[0])


def predict(client: Client, model, paths, out, batch_size: int = 16, shard_size: int = DEFAULT_SHARD_SIZE,
            on_bad_file: str = "fail", overwrite: bool = False, progress=None) -> Path:
    """Predict every image of ``paths`` (files or folders) on the cluster; returns ``out/predictions.csv``.

    The CSV (input order) has ``file, P(class)..., prediction, true_label, error``; shards are
    written to ``out`` as tasks finish, then joined in order by streaming (flat memory).
    """
    model = load(model) if isinstance(model, (str, os.PathLike)) else model
    if isinstance(model, Graph) and is_feature_extractor(model):
        raise UsageError("this model is a feature extractor: use minicnn.distributed.features / `minicnn features`")
    model, paths, out, _ = _run(client, model, paths, "predict", out, batch_size, shard_size, on_bad_file,
                                overwrite, progress, _write_prediction_shard)
    return join_prediction_shards(out)


def join_prediction_shards(out) -> Path:
    """``out/predictions.csv``: the shards' rows, in input order (streamed)."""
    out = Path(out)
    shards = sorted(out.glob("shard-*.csv"))
    with fileio.atomic_write(out / "predictions.csv", "w", newline="") as f:
        for k, s in enumerate(shards):
            with open(s, newline="") as src:
                lines = src.readlines()
            f.writelines(lines if k == 0 else lines[1:])
    return out / "predictions.csv"


def read_predictions(path) -> tuple[list, np.ndarray, list]:
    """``(files, probabilities (N, K) float64 with NaN for bad files, errors)`` from a predictions CSV."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    head = rows[0]
    cols = [i for i, h in enumerate(head) if h.startswith("P(")]
    err = head.index("error")
    probs = np.array([[float(r[i]) if r[i] else np.nan for i in cols] for r in rows[1:]], np.float64)
    return [r[0] for r in rows[1:]], probs.reshape(len(rows) - 1, len(cols)), [r[err] for r in rows[1:]]


def read_prediction_rows(path):
    """Iterate a predictions CSV as ``{"file", "prediction", "true_label", "error"}`` dicts (streamed)."""
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            yield {"file": r["file"], "prediction": r["prediction"], "true_label": r["true_label"] or None,
                   "error": r["error"]}


def probabilities(client: Client, model, paths, out, **kwargs) -> np.ndarray:
    """The model's outputs after its activation, ``(N, K)`` as ``Graph.predict`` gives them, for
    ``paths`` (NaN rows for skipped files), via :func:`predict`."""
    model = load(model) if isinstance(model, (str, os.PathLike)) else model
    _, probs, _ = read_predictions(predict(client, model, paths, out, **kwargs))
    if len(output_names(model)) == 1 and probs.shape[1] == 2:   # a binary model's CSV shows both classes
        probs = probs[:, 1:]
    return probs


# -- features ------------------------------------------------------------------------------------
def _write_feature_shard(path: Path, files, result, model) -> None:
    fileio.savez(path, {"features": result["values"], "index": result["index"],
                        "files": np.array([str(p) for p in files]),
                        "errors": np.array(json.dumps({str(k): v for k, v in result["errors"].items()}))})


def features(client: Client, backbone, paths, out, batch_size: int = 16, shard_size: int = DEFAULT_SHARD_SIZE,
             on_bad_file: str = "fail", overwrite: bool = False, progress=None) -> np.ndarray:
    """Pooled backbone features ``(N, F)`` float32 of ``paths`` (input order; NaN rows for skipped files),
    computed on the cluster and kept as ``.npz`` shards in ``out``."""
    _, paths, out, _ = _run(client, backbone, paths, "features", out, batch_size, shard_size, on_bad_file,
                            overwrite, progress, _write_feature_shard)
    return read_features(out)[0]


def feature_extractor(client: Client, root, shard_size: int = DEFAULT_SHARD_SIZE, on_bad_file: str = "fail",
                      progress=None):
    """``extract(backbone, paths, batch_size) -> (N, F)`` for ``minicnn.transfer``: the features of
    each list of files on the cluster, in ``root/<hash of the list>/`` (NaN rows for files skipped
    with ``on_bad_file="skip"``)."""
    def extract(backbone, paths, batch_size):
        out = Path(root) / _inputs_hash(paths)[:16]
        return features(client, backbone, paths, out, batch_size=batch_size, shard_size=shard_size,
                        on_bad_file=on_bad_file, progress=progress)
    return extract


def read_features(out) -> tuple[np.ndarray, list, dict]:
    """``(features (N, F), files, errors {file: message})`` from a features folder's shards."""
    feats, files, errors = [], [], {}
    for s in sorted(Path(out).glob("shard-*.npz")):
        with np.load(s, allow_pickle=False) as z:
            names = [str(f) for f in z["files"]]
            f = z["features"]
            full = np.full((len(names), f.shape[1] if f.ndim == 2 else 0), np.nan, np.float32)
            full[z["index"]] = f
            for k, v in json.loads(str(z["errors"])).items():
                errors[names[int(k)]] = v
        feats.append(full)
        files += names
    if not feats:
        raise DataError(f"{out} holds no feature shards", path=out)
    width = max(f.shape[1] for f in feats)
    feats = [f if f.shape[1] == width else np.full((len(f), width), np.nan, np.float32) for f in feats]
    return np.concatenate(feats), files, errors
