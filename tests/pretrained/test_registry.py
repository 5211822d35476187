"""Registry, fetch (against a loopback HTTP server this test starts) and preprocessing."""
import hashlib
import http.server
import os
import socket
import threading
import warnings

import numpy as np
import pytest

from minicnn.pretrained import preprocess, registry
from minicnn.pretrained.preprocess import check_input_range
from minicnn.pretrained.registry import FetchError, WeightsEntry, fetch

PAYLOAD = os.urandom(300_000)


@pytest.fixture
def server():
    """Serve PAYLOAD at /weights.bin on 127.0.0.1 (port chosen by the OS); counts requests."""
    hits = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            if self.path != "/weights.bin":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()


def entry(url, digest):
    return WeightsEntry("test-weights", "densenet121", "torchvision", url, digest, True, "torch", "test")


def test_registry_entries_carry_upstream_digests():
    e = registry.get("densenet121-keras-imagenet-notop")
    assert e.digest == ("md5", "30ee3e1110167f948a6b9946edeeb738") and e.source == "keras"
    assert registry.get("densenet121-keras-imagenet").digest[1] == "9d60b8095a5708f2dcce2bca79d332c7"
    tv = registry.get("densenet121-torchvision-imagenet")
    assert tv.digest == ("sha256", "a639ec97") and tv.filename == "densenet121-a639ec97.pth"
    assert all(registry.get(n).preprocessing in ("imagenet-torch", "imagenet-caffe", "tf", "xrv") and registry.get(n).licence
               for n in registry.names())
    with pytest.raises(KeyError, match="densenet121-keras-imagenet"):
        registry.get("densenet-imaginary")


def test_fetch_downloads_checks_and_caches(server, tmp_path, monkeypatch):
    url, hits = server
    monkeypatch.setenv("MINICNN_HOME", str(tmp_path))
    for digest in (("sha256", hashlib.sha256(PAYLOAD).hexdigest()[:8]), ("md5", hashlib.md5(PAYLOAD).hexdigest())):
        path = fetch(entry(f"{url}/weights.bin", digest), progress=False)
        assert path == str(tmp_path / "weights" / "weights.bin")
        assert open(path, "rb").read() == PAYLOAD
        n = len(hits)
        assert fetch(entry(f"{url}/weights.bin", digest), progress=False) == path   # cached: no request
        assert len(hits) == n
        os.unlink(path)
    assert os.listdir(tmp_path / "weights") == []                                 # no temporary files left


def test_fetch_digest_mismatch_leaves_nothing(server, tmp_path, monkeypatch):
    url, _ = server
    monkeypatch.setenv("MINICNN_HOME", str(tmp_path))
    with pytest.raises(FetchError, match="digest"):
        fetch(entry(f"{url}/weights.bin", ("md5", "0" * 32)), progress=False)
    assert os.listdir(tmp_path / "weights") == []
    # a corrupt file already in the cache is reported, not used
    (tmp_path / "weights" / "weights.bin").write_bytes(b"not the weights")
    with pytest.raises(FetchError, match="corrupt"):
        fetch(entry(f"{url}/weights.bin", ("md5", hashlib.md5(PAYLOAD).hexdigest())), progress=False)


def test_unpublished_digest_recorded_on_first_download_then_checked(server, tmp_path, monkeypatch):
    """torchxrayvision publishes no digest: the first download records its SHA-256, later uses check it."""
    url, hits = server
    monkeypatch.setenv("MINICNN_HOME", str(tmp_path))
    e = entry(f"{url}/weights.bin", ("sha256", None))
    path = fetch(e, progress=False)
    assert open(path, "rb").read() == PAYLOAD and len(hits) == 1
    record = tmp_path / "weights" / "weights.bin.sha256"
    assert record.read_text().split()[0] == hashlib.sha256(PAYLOAD).hexdigest()
    assert fetch(e, progress=False) == path and len(hits) == 1                      # cached, checked, no request
    with open(path, "r+b") as f:                                                     # the cached file changes
        f.write(b"tampered")
    with pytest.raises(FetchError, match="recorded when it was first used"):
        fetch(e, progress=False)
    # a file placed by hand (no record yet) is recorded at its first use
    os.unlink(path)
    os.unlink(record)
    (tmp_path / "weights" / "weights.bin").write_bytes(b"by hand")
    assert fetch(e, progress=False) == path and len(hits) == 1
    assert record.read_text().split()[0] == hashlib.sha256(b"by hand").hexdigest()
    # the torchxrayvision entries are of this kind, and a name in the registry resolves the entry
    assert registry.get("xrv-densenet121-all").digest == ("sha256", None)
    assert registry.get("xrv-densenet121-all").filename.startswith("nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121")


def test_fetch_offline_says_where_to_put_the_file(server, tmp_path, monkeypatch):
    url, _ = server
    monkeypatch.setenv("MINICNN_HOME", str(tmp_path))
    with socket.socket() as s:                      # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    with pytest.raises(FetchError) as e:
        fetch(entry(f"http://127.0.0.1:{dead}/weights.bin", ("md5", "0" * 32)), progress=False, timeout=5)
    assert str(tmp_path / "weights" / "weights.bin") in str(e.value) and "offline" in str(e.value)
    with pytest.raises(FetchError, match="404|Not Found"):
        fetch(entry(f"{url}/missing.bin", ("md5", "0" * 32)), progress=False)
    assert os.listdir(tmp_path / "weights") == []


# ------------------------------------------------------------------------------------------------
# preprocessing
# ------------------------------------------------------------------------------------------------
def test_preprocess_modes_by_hand():
    img = np.zeros((2, 3, 4, 3), np.uint8)                 # NHWC
    img[..., 0], img[..., 1], img[..., 2] = 255, 100, 0      # R, G, B
    t = preprocess(img, "imagenet-torch")
    assert t.shape == (2, 3, 3, 4) and t.dtype == np.float32
    np.testing.assert_allclose(t[0, :, 0, 0], [(1 - 0.485) / 0.229, (100 / 255 - 0.456) / 0.224, -0.406 / 0.225],
                               rtol=1e-6)
    c = preprocess(img, "imagenet-caffe")                             # BGR order, minus BGR means
    np.testing.assert_allclose(c[0, :, 0, 0], [0 - 103.939, 100 - 116.779, 255 - 123.68], rtol=1e-6)
    np.testing.assert_allclose(preprocess(img, "tf")[0, :, 0, 0], [1.0, 100 / 127.5 - 1, -1.0], rtol=1e-6)
    # HWC and grayscale inputs; the weights name picks the mode
    np.testing.assert_array_equal(preprocess(img[0], "densenet121-keras-imagenet"), t[:1])
    gray = preprocess(np.full((5, 6), 255, np.uint8), "imagenet-torch")
    assert gray.shape == (1, 3, 5, 6)
    with pytest.raises(ValueError, match="unknown preprocessing"):
        preprocess(img, "imagenet")


def test_range_check_warns_on_unnormalised_inputs():
    raw = np.random.default_rng(0).uniform(0, 255, (2, 3, 8, 8)).astype(np.float32)
    with pytest.warns(UserWarning, match="preprocess"):
        assert not check_input_range(raw, "imagenet-torch")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_input_range(preprocess(raw.transpose(0, 2, 3, 1), "imagenet-torch"), "imagenet-torch")
        assert check_input_range(preprocess(raw.transpose(0, 2, 3, 1), "imagenet-caffe"), "imagenet-caffe")
    with pytest.warns(UserWarning, match=r"\[0, 1\]"):
        check_input_range(raw / 255.0, "imagenet-caffe")
    with pytest.warns(UserWarning, match=r"\[0, 1\]"):
        preprocess(raw.transpose(0, 2, 3, 1) / 255.0, "tf")
