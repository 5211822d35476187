"""The HTML report parses, escapes what it shows, and every image it references exists."""
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

from minicnn.metrics import evaluate_predictions
from minicnn.report import write_html_report


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.external, self.text, self.tags = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(attrs["src"])
        if tag in ("script", "link") or (tag == "img" and "://" in attrs.get("src", "")):
            self.external.append((tag, attrs))

    def handle_data(self, data):
        self.text.append(data)


def _parse(path: Path) -> _Collector:
    c = _Collector()
    c.feed(path.read_text(encoding="utf-8"))
    c.close()
    return c


def _cases(rng, n_cases=3):
    out = []
    for i in range(n_cases):
        out.append({"file": f"<b>x&{i}</b> \"odd\".jpeg", "image": rng.integers(0, 256, (40, 48)),
                    "heatmap": rng.random((5, 6)) if i != 1 else None,
                    "true_label": "NORMAL", "probabilities": {"NORMAL": 0.1, "PNEUMONIA": 0.9},
                    "prediction": "PNEUMONIA"})
    return out


@pytest.fixture
def binary_report(tmp_path, rng):
    y = rng.integers(0, 2, 120)
    p = np.clip(0.4 * y + 0.6 * rng.random(120), 0, 1)
    metrics = evaluate_predictions(y, p, ["NORMAL", "PNEUMONIA"], positive_class="PNEUMONIA", n_boot=100)
    metrics.update(split="test", threshold_rule="youden on val")
    path = write_html_report(tmp_path / "rep", metrics, y, p, ["NORMAL", "PNEUMONIA"], images=_cases(rng),
                             title="Test <report>")
    return path, metrics


def test_binary_report_parses_and_images_exist(binary_report):
    path, metrics = binary_report
    assert path.name == "report.html" and path.is_file()
    parsed = _parse(path)
    assert parsed.external == []  # self-contained: no scripts, stylesheets or remote images
    assert len(parsed.imgs) == 3 + 3  # roc, confusion, calibration + 3 cases
    for src in parsed.imgs:
        assert not os.path.isabs(src) and "/" not in src
        png = path.parent / unquote(src)
        assert png.is_file()
        with Image.open(png) as im:
            assert im.format == "PNG" and im.size[0] > 100
    text = " ".join(parsed.text)
    assert "Test <report>" in text  # escaped in the source, restored by the parser
    assert "<b>x&0</b> \"odd\".jpeg" in text
    raw = path.read_text(encoding="utf-8")
    assert "<b>x&amp;0" not in raw and "&lt;b&gt;x&amp;0&lt;/b&gt;" in raw
    lo, hi = metrics["roc_auc_ci95"]
    assert f"{metrics['roc_auc']:.3f}" in text and f"{lo:.3f}" in text and f"{hi:.3f}" in text
    assert "Most confident errors" in text and "youden on val" in text


def test_multilabel_report(tmp_path, rng):
    names = ["Atelectasis", "Effusion", "Pneumonia"]
    y = rng.integers(0, 2, (90, 3))
    p = np.clip(0.4 * y + 0.6 * rng.random((90, 3)), 0, 1)
    metrics = evaluate_predictions(y, p, names, n_boot=50)
    path = write_html_report(tmp_path, metrics, y, p, names)
    parsed = _parse(path)
    assert len(parsed.imgs) == 3 + 3  # roc, pooled confusion, calibration + one confusion per class
    for src in parsed.imgs:
        assert (tmp_path / unquote(src)).is_file()
    text = " ".join(parsed.text)
    for name in names:
        assert name in text
    assert "Most confident errors" not in text


def test_report_rejects_incomplete_image_entries(tmp_path, rng):
    y = np.array([0, 1, 0, 1])
    p = np.array([0.2, 0.8, 0.6, 0.4])
    metrics = evaluate_predictions(y, p, ["PNEUMONIA"], n_boot=10)
    with pytest.raises(ValueError, match="prediction"):
        write_html_report(tmp_path, metrics, y, p, ["PNEUMONIA"],
                          images=[{"file": "a.png", "image": np.zeros((8, 8)), "true_label": "x",
                                   "probabilities": {}}])


def _chromium():
    for candidate in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"),
                      shutil.which("google-chrome")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def test_report_renders_in_headless_chromium(binary_report, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed; the report was checked by parsing only")
    path, _ = binary_report
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1200,2000", path.resolve().as_uri()],
                   check=True, timeout=60, capture_output=True)
    with Image.open(shot) as im:
        assert im.format == "PNG"
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.std() > 5  # the page rendered text and images, not a blank canvas
