"""Fuzz every reader: derandomised hypothesis mutations of small valid files of each format.

Each case is a seed file (``builders.SEEDS``) with 1-4 byte-level mutations (bit flips,
truncations, insertions, deletions, overwrites, extreme values written into header fields, digit
runs replaced by huge numbers) or, for the formats that carry JSON, one JSON field replaced by a
hostile value or dropped. The case is loaded through minicnn's public loader for its format in a
long-lived worker process under ``RLIMIT_AS`` = 2 GiB with a per-case timeout (restarted after a
crash). Every case must load or raise a ``MinicnnError`` subclass: never another exception, a
crash, a timeout or a ``MemoryError``.

The torch zip formats (``pth_zip``, ``xrv_zip``) are also mutated inside their ``data.pkl`` member and repacked (a byte flip
in the zip itself mostly ends at the CRC check, before the unpickler): ``xrv_zip`` / ``xrv_legacy``
are a shrunk torchxrayvision ``DenseNet`` of the real classes saved by ``torch.save(model)``, read
at the reader level (detect -> ``read_torch_file`` -> module record -> state_dict / ``op_threshs``);
``xrv_full`` is a full-size DenseNet121 through ``minicnn.load`` (the whole path down to the xrv
builder; each case moves 28 MB); ``xrv_oldtorch`` is the torch < 1.6 form built by hand without
torch (module classes through persistent ids, ``_rebuild_tensor`` v1 on GPU storages). ``onnx`` / ``onnx_ext`` are a small conv net built with
``onnx.helper`` (``onnx_ext``: every initializer in ``weights.bin`` beside it) through
``minicnn.load_onnx``.

``MINICNN_FUZZ=long`` runs 2,000 cases per format (CI: 200; ``xrv_full`` 60). The per-format outcome counts are
printed (``-s``) and written to ``$MINICNN_FUZZ_REPORT`` when set.
"""
from __future__ import annotations

import collections
import json
import os
import time

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from . import builders
from .harness import Worker, apply_ops, hotspots

LONG = os.environ.get("MINICNN_FUZZ") == "long"
CASES = int(os.environ.get("MINICNN_FUZZ_CASES", 2000 if LONG else 200))
TORCH_FORMATS = {"pth_zip", "pth_legacy", "xrv_zip", "xrv_legacy", "xrv_full"}
XRV_FORMATS = {"xrv_zip", "xrv_legacy", "xrv_full"}
#: Formats whose ``data.pkl`` member is mutated (and repacked) as well as the whole file; only that for xrv_full.
#: Fewer cases in CI (not with MINICNN_FUZZ=long): every xrv_full case writes and reads 28 MB.
CI_CASES = {"xrv_full": 60}
PICKLE_MEMBER_FORMATS = {"pth_zip": False, "xrv_zip": False, "xrv_full": True}

_byte_op = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 30), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 30)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 30), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 1 << 30), st.integers(1, 16)),
    st.tuples(st.just("overwrite"), st.integers(0, 1 << 30), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("field"), st.integers(0, 1 << 30), st.sampled_from([1, 2, 4, 8]), st.integers(0, 100)),
    st.tuples(st.just("number"), st.integers(0, 1 << 30), st.integers(0, 100)),
)
_case = st.one_of(
    st.tuples(st.just("bytes"), st.lists(_byte_op, min_size=1, max_size=4)),
    st.tuples(st.just("json"), st.integers(0, 1 << 20), st.integers(0, 100), st.booleans()),
)

_member_case = st.tuples(st.just("member"), st.lists(_byte_op, min_size=1, max_size=4))
_pickle_case = st.one_of(st.tuples(st.just("bytes"), st.lists(_byte_op, min_size=1, max_size=4)), _member_case)

_worker = None
REPORT: dict = {}


@pytest.fixture(scope="module")
def worker():
    global _worker
    _worker = Worker(timeout=float(os.environ.get("MINICNN_FUZZ_TIMEOUT", 20)))
    yield _worker
    _worker.close()
    out = os.environ.get("MINICNN_FUZZ_REPORT")
    if out:
        with open(out, "w") as f:
            json.dump(REPORT, f, indent=1)


def _seed(fmt, tmp_path):
    if fmt in TORCH_FORMATS:
        pytest.importorskip("torch")
    if fmt in XRV_FORMATS:
        pytest.importorskip("torchxrayvision")
    if fmt.startswith("dicom"):
        pytest.importorskip("pydicom")
    if fmt.startswith("onnx"):
        pytest.importorskip("onnx")
    build = builders.SEEDS[fmt]
    return build(tmp_path) if fmt in builders.NEEDS_TMP else build()


@pytest.mark.parametrize("fmt", sorted(builders.SEEDS))
def test_fuzz_reader(fmt, worker, tmp_path):
    seed = _seed(fmt, tmp_path)
    if fmt == "onnx_ext":                    # the model, and its external data beside every case
        seed, blob = seed
        (tmp_path / builders.ONNX_EXTERNAL_NAME).write_bytes(blob)
    seed_path = tmp_path / f"seed{builders.SUFFIX[fmt]}"
    seed_path.write_bytes(seed)
    assert worker.run(fmt, str(seed_path))["outcome"] == "ok", "the seed file itself must load"
    spots = hotspots(seed)
    cases = CASES if LONG or "MINICNN_FUZZ_CASES" in os.environ else CI_CASES.get(fmt, CASES)
    strategy = _case
    if fmt in PICKLE_MEMBER_FORMATS:
        members, pkl = builders.pickle_member(seed)
        pkl_spots = hotspots(members[pkl])
        strategy = _member_case if PICKLE_MEMBER_FORMATS[fmt] else _pickle_case
    case_path = tmp_path / f"case{builders.SUFFIX[fmt]}"
    outcomes, bad = collections.Counter(), []
    start = time.perf_counter()

    @settings(max_examples=cases, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case):
        if case[0] == "member":
            data = builders.repack_torch_zip({**members, pkl: apply_ops(members[pkl], case[1], pkl_spots)})
        elif case[0] == "json" and fmt in builders.JSON_FORMATS:
            data = builders.rewrite_json(fmt, seed, case[1], case[2], case[3])
        elif case[0] == "json":
            data = apply_ops(seed, [("number", case[1], case[2])], spots)
        else:
            data = apply_ops(seed, case[1], spots)
        case_path.write_bytes(data)
        rep = worker.run(fmt, str(case_path))
        outcome = rep["outcome"]
        outcomes[outcome] += 1
        allowed = outcome == "ok" or (rep["minicnn"] and outcome != "MemoryError")
        if not allowed:
            keep = tmp_path / f"bad{len(bad)}{builders.SUFFIX[fmt]}"
            keep.write_bytes(data)
            bad.append(f"{outcome}: {rep['message']} [{keep}] {str(case)[:200]}")

    run()
    elapsed = time.perf_counter() - start
    total = sum(outcomes.values())
    REPORT[fmt] = {"cases": total, "seconds": round(elapsed, 2), "outcomes": dict(outcomes)}
    print(f"\nfuzz {fmt}: {total} cases in {elapsed:.1f} s: {dict(outcomes)}")
    assert total >= cases, f"only {total} cases ran"
    assert not bad, f"{len(bad)} of {total} {fmt} cases escaped as a non-minicnn error:\n" + "\n".join(bad[:15])


def test_harness_sees_memory_blowups_hangs_crashes_and_other_errors():
    """The worker runs under RLIMIT_AS, is killed on a timeout and restarted after a crash."""
    w = Worker(timeout=3.0)
    try:
        assert w.run("_selftest", "memory")["outcome"] == "MemoryError"
        assert w.run("_selftest", "hang")["outcome"] == "timeout"
        assert w.run("_selftest", "crash")["outcome"] == "crash"
        rep = w.run("_selftest", "other")
        assert rep["outcome"] == "TypeError" and rep["minicnn"] is False
        assert w.restarts == 2
    finally:
        w.close()
