"""minicnn.distributed on a Dask LocalCluster (loopback, started by the tests): same numbers as in-process.

Light tests use an in-process cluster (``processes=False``); the fault and plugin tests use worker
processes, spawned, as a real cluster would.
"""
import contextlib
import json
import os
import pickle
import signal
import time

import numpy as np
import pytest

dd = pytest.importorskip("dask.distributed")

import minicnn.distributed as mdist                                     # noqa: E402
from minicnn import layers                                              # noqa: E402
from minicnn.data.preprocessing import Preprocessing                    # noqa: E402
from minicnn.data.synthetic import make_synthetic                       # noqa: E402
from minicnn.errors import ImageLoadError, UsageError                   # noqa: E402
from minicnn.predict import expand_paths, predict_files                 # noqa: E402
from minicnn.small_cnn import conv_net                                  # noqa: E402
from minicnn.transfer import extract_features                           # noqa: E402

SIZE = 24


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    make_synthetic(root / "data", n=60, size=SIZE, splits=(("test", 60),), seed=3)
    return root / "data" / "test"


@pytest.fixture(scope="module")
def model(data, tmp_path_factory):
    m = conv_net("tiny", in_channels=1, outputs=1, image_size=SIZE, seed=5)
    rng = np.random.default_rng(0)
    for n in m.nodes.values():                       # random BN statistics, so the numbers are not trivial
        if isinstance(n.layer, layers.BatchNorm2D):
            n.layer.buffers["running_mean"][...] = rng.uniform(-0.1, 0.1, n.layer.buffers["running_mean"].shape)
            n.layer.buffers["running_var"][...] = rng.uniform(0.5, 2, n.layer.buffers["running_var"].shape)
    m.output_activation = "sigmoid"
    m.meta.update(classes=["NORMAL", "PNEUMONIA"], outputs=["PNEUMONIA"], positive_class="PNEUMONIA",
                  threshold=0.5, preprocessing=Preprocessing((SIZE, SIZE), 1, mode="sample").to_dict())
    path = tmp_path_factory.mktemp("model") / "model.npz"
    m.save(path)
    return path


@pytest.fixture(scope="module")
def client():
    cluster = dd.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    c = dd.Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_predict_equals_in_process_in_input_order(client, model, data, tmp_path):
    paths = expand_paths(data)
    ref = list(predict_files(str(model), paths, batch_size=4))
    csv_path = mdist.predict(client, model, paths, tmp_path / "out", batch_size=4, shard_size=8)
    files, probs, errors = mdist.read_predictions(csv_path)
    assert files == paths and not any(errors)
    want = np.array([r["probabilities"]["PNEUMONIA"] for r in ref])
    got = probs[:, list(ref[0]["probabilities"]).index("PNEUMONIA")]
    assert np.array_equal(got, want)                         # same batches, same threads: bit-identical
    assert np.ptp(want) > 1e-3                               # the outputs differ across images
    assert len(list((tmp_path / "out").glob("shard-*.csv"))) == 8     # 60 files / 8 per shard
    # a rerun with the same inputs and options recomputes nothing
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("shard-*.csv")}
    mdist.predict(client, model, paths, tmp_path / "out", batch_size=4, shard_size=8)
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("shard-*.csv")}


def test_features_equal_extract_features(client, model, data, tmp_path):
    from minicnn.serialization import load
    backbone = load(model)
    backbone.output_activation = None
    paths = expand_paths(data)
    ref = extract_features(backbone, paths, batch_size=4)
    got = mdist.features(client, backbone, paths, tmp_path / "f", batch_size=4, shard_size=12)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.array_equal(got, ref)


def test_rerun_after_an_interrupted_run_skips_finished_shards(client, model, data, tmp_path):
    paths = expand_paths(data)
    out = tmp_path / "out"
    full = mdist.read_predictions(mdist.predict(client, model, paths, out, batch_size=4, shard_size=8))[1]
    shards = sorted(out.glob("shard-*.csv"))
    for s in shards[3:]:                                     # as if the run had stopped after 3 shards
        s.unlink()
    (out / "predictions.csv").unlink()
    done = {s: s.stat().st_mtime_ns for s in shards[:3]}
    again = mdist.read_predictions(mdist.predict(client, model, paths, out, batch_size=4, shard_size=8))[1]
    assert np.array_equal(again, full)
    assert done == {s: s.stat().st_mtime_ns for s in shards[:3]}      # not recomputed


def test_a_different_run_into_the_same_folder_is_refused(client, model, data, tmp_path):
    paths = expand_paths(data)
    out = tmp_path / "out"
    mdist.predict(client, model, paths[:20], out, batch_size=4, shard_size=8)
    with pytest.raises(UsageError, match=r"inputs_sha256.*--overwrite"):
        mdist.predict(client, model, paths, out, batch_size=4, shard_size=8)
    with pytest.raises(UsageError, match="batch_size"):
        mdist.predict(client, model, paths[:20], out, batch_size=2, shard_size=8)
    files, _, _ = mdist.read_predictions(mdist.predict(client, model, paths, out, batch_size=4, shard_size=8,
                                                       overwrite=True))
    assert files == paths
    assert json.loads((out / "manifest.json").read_text())["files"] == len(paths)


def test_a_corrupt_image_is_reported_not_fatal_with_skip(client, model, data, tmp_path):
    paths = expand_paths(data)[:16]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    paths = paths[:5] + [str(bad)] + paths[5:]
    with pytest.raises(ImageLoadError, match="broken.png"):
        mdist.predict(client, model, paths, tmp_path / "fail", batch_size=4, shard_size=8)
    files, probs, errors = mdist.read_predictions(
        mdist.predict(client, model, paths, tmp_path / "skip", batch_size=4, shard_size=8, on_bad_file="skip"))
    assert files == paths
    assert errors[5] and not any(e for i, e in enumerate(errors) if i != 5)
    assert np.isnan(probs[5]).all() and np.isfinite(np.delete(probs, 5, axis=0)).all()
    ref = list(predict_files(str(model), paths[:5] + paths[6:], batch_size=4))
    col = 1                                                   # P(PNEUMONIA) after P(NORMAL)
    np.testing.assert_allclose(np.delete(probs, 5, axis=0)[:, col],
                               [r["probabilities"]["PNEUMONIA"] for r in ref], rtol=0, atol=1e-6)


def test_connect_rejects_bad_addresses():
    for bad in ("", "local:0", "local:x", "somehost"):
        with pytest.raises(UsageError):
            mdist.connect(bad)


# ---- worker processes ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def process_cluster():
    import dask
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
        cluster = dd.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None)
    c = dd.Client(cluster)
    yield cluster, c
    c.close()
    # distributed's worker-status watcher can trip on the worker the kill test removed (a KeyError
    # in its own bookkeeping while closing); the cluster is closed either way
    with contextlib.suppress(KeyError):
        cluster.close()


def _loads(name):
    def count(dask_worker):
        p = dask_worker.plugins.get(name)
        return None if p is None else p.loads
    return count


def test_one_model_load_per_worker_also_for_a_worker_that_joins(process_cluster, model, data, tmp_path):
    cluster, client = process_cluster
    paths = expand_paths(data)
    seen = []

    def progress(_):
        seen.append(1)
        if len(seen) == 2:                                    # a third worker joins mid-run
            cluster.scale(3)

    out = tmp_path / "out"
    mdist.predict(client, model, paths, out, batch_size=4, shard_size=4, progress=progress)   # 15 tasks
    assert len(seen) == 15
    client.wait_for_workers(3, timeout=60)
    digest = json.loads((out / "manifest.json").read_text())["model_sha256"]
    counts = client.run(_loads(f"minicnn-model-{digest[:16]}"))
    assert len(counts) == 3 and set(counts.values()) == {1}, counts
    # a task carries only file paths: far under 10 kB
    args = ("minicnn-model-" + digest[:16], "logits", paths[:mdist.DEFAULT_SHARD_SIZE], 16, "fail")
    assert len(pickle.dumps(args)) < 10_000
    cluster.scale(2)
    # back to 2 before the next test: a worker still retiring when it registers its model plugin
    # breaks the scheduler's broadcast (seen once: CommClosedError in register_worker_plugin)
    deadline = time.monotonic() + 60
    while len(client.scheduler_info()["workers"]) != 2:
        assert time.monotonic() < deadline, "the third worker did not retire within 60 s"
        time.sleep(0.05)


def test_a_killed_worker_costs_only_its_task(process_cluster, model, data, tmp_path):
    cluster, client = process_cluster
    client.wait_for_workers(2, timeout=60)
    paths = expand_paths(data)
    ref = mdist.read_predictions(mdist.predict(client, model, paths, tmp_path / "ref", batch_size=4,
                                               shard_size=4))[1]
    killed = []

    def progress(_):
        if not killed:
            worker = sorted(client.scheduler_info()["workers"])[0]
            killed.append(worker)
            pid = client.run(os.getpid, workers=[worker])[worker]
            os.kill(pid, signal.SIGKILL)                          # the worker process dies mid-run

    got = mdist.read_predictions(mdist.predict(client, model, paths, tmp_path / "killed", batch_size=4,
                                               shard_size=4, progress=progress))[1]
    assert killed
    assert np.array_equal(got, ref)
    client.wait_for_workers(2, timeout=60)
    assert killed[0] not in client.scheduler_info()["workers"]          # it really died (and was replaced)
