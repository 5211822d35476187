"""Each plot writes a real, non-blank PNG; the heatmap upsampling is checked against Pillow."""
import numpy as np
import pytest
from PIL import Image

from minicnn import viz


def assert_png(path, min_size=(100, 100)):
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()
        assert im.size[0] >= min_size[0] and im.size[1] >= min_size[1]
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.std() > 1.0  # something was drawn
    return pixels


def test_plot_history_dict_and_rows(tmp_path):
    hist = {"epoch": [1, 2, 3, 4], "loss": [0.9, 0.6, 0.5, 0.45], "val_loss": [0.8, 0.7, None, 0.6],
            "val_auc": [0.6, 0.75, 0.8, 0.78], "lr": [1e-3] * 4, "note": ["a", "b", "c", "d"]}
    p = viz.plot_history(hist, tmp_path / "sub" / "history.png")
    assert p == tmp_path / "sub" / "history.png"
    wide = assert_png(p)
    rows = [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.7}]
    narrow = assert_png(viz.plot_history(rows, tmp_path / "h2.png"))
    assert wide.shape[1] > narrow.shape[1]  # the AUC panel was added only when there is an AUC
    with pytest.raises(ValueError, match="empty"):
        viz.plot_history({}, tmp_path / "h3.png")


def test_plot_roc_binary_and_multilabel(tmp_path, rng):
    y = rng.integers(0, 2, (120, 3))
    y[:, 2] = 0  # undefined AUC: listed, not drawn, no crash
    p = np.clip(0.4 * y + 0.6 * rng.random((120, 3)), 0, 1)
    assert_png(viz.plot_roc(y, p, ["A", "B", "C"], tmp_path / "roc.png"))
    assert_png(viz.plot_roc(y[:, 0], p[:, 0], ["PNEUMONIA"], tmp_path / "roc1.png"))
    with pytest.raises(ValueError, match="class names"):
        viz.plot_roc(y, p, ["A", "B"], tmp_path / "bad.png")


def test_plot_confusion_and_calibration(tmp_path, rng):
    assert_png(viz.plot_confusion([[50, 10], [5, 80]], ["NORMAL", "PNEUMONIA"], tmp_path / "cm.png"))
    assert_png(viz.plot_confusion([[0, 0], [0, 0]], ["neg", "pos"], tmp_path / "cm0.png"))
    with pytest.raises(ValueError, match="2x2"):
        viz.plot_confusion([[1, 2, 3]], ["a", "b"], tmp_path / "bad.png")
    y = rng.integers(0, 2, 300)
    p = np.clip(0.5 * y + 0.5 * rng.random(300), 0, 1)
    assert_png(viz.plot_calibration(y, p, tmp_path / "cal.png", n_bins=8))
    assert_png(viz.plot_calibration(np.stack([y, 1 - y], 1), np.stack([p, 1 - p], 1), tmp_path / "cal2.png",
                                    labels=["a", "b"]))


@pytest.mark.parametrize("shape", [(5, 16, 20), (5, 16, 20, 3), (5, 1, 16, 20), (5, 3, 16, 20)])
def test_plot_image_grid_layouts(tmp_path, rng, shape):
    images = rng.normal(size=shape)
    titles = [{"true": "NORMAL", "pred": "PNEUMONIA", "prob": 0.91}] + [f"img {i}" for i in range(4)]
    assert_png(viz.plot_image_grid(images, titles, tmp_path / "grid.png", ncols=3))
    with pytest.raises(ValueError, match="titles"):
        viz.plot_image_grid(images, titles[:2], tmp_path / "bad.png")


def test_format_title():
    assert viz.format_title("NORMAL", "PNEUMONIA", 0.873) == "true: NORMAL\npred: PNEUMONIA (p=0.87)"


def test_plot_filters_and_feature_maps(tmp_path, rng):
    assert_png(viz.plot_filters(rng.normal(size=(12, 3, 5, 5)), tmp_path / "f_rgb.png"))
    assert_png(viz.plot_filters(rng.normal(size=(20, 8, 3, 3)), tmp_path / "f_mean.png", max_filters=12))
    assert_png(viz.plot_filters(rng.normal(size=(4, 8, 3, 3)), tmp_path / "f_ch.png", channel=2))
    with pytest.raises(ValueError, match="out of range"):
        viz.plot_filters(rng.normal(size=(4, 8, 3, 3)), tmp_path / "bad.png", channel=8)
    assert_png(viz.plot_feature_maps(rng.random((20, 9, 9)), tmp_path / "fm.png", max_maps=16))
    assert_png(viz.plot_feature_maps(rng.random((1, 3, 9, 9)), tmp_path / "fm1.png"))
    assert_png(viz.plot_image(rng.random((3, 12, 12)), tmp_path / "one.png", title="x"))


def test_upsample_bilinear_matches_pillow(rng):
    m = rng.random((7, 5)).astype(np.float32)
    ours = viz.upsample_bilinear(m, (150, 120))
    assert ours.shape == (150, 120)
    pil = np.asarray(Image.fromarray(m, mode="F").resize((120, 150), Image.BILINEAR))
    np.testing.assert_allclose(ours, pil, atol=1e-5)
    assert ours.min() >= m.min() - 1e-12 and ours.max() <= m.max() + 1e-12
    const = viz.upsample_bilinear(np.full((3, 3), 0.25), (10, 11))
    np.testing.assert_allclose(const, 0.25)


def test_overlay_heatmap(tmp_path, rng):
    image = rng.integers(0, 256, (150, 150)).astype(np.float64)
    heat = np.zeros((5, 5))
    heat[1, 3] = 1.0
    out = viz.overlay_heatmap(image, heat, tmp_path / "cam.png", title="PNEUMONIA p=0.93",
                              label="Grad-CAM: high = more evidence for PNEUMONIA")
    pixels = assert_png(out)
    # the hot spot is drawn in the jet colour map's red somewhere in the overlay
    r, g, b = (pixels[..., i].astype(int) for i in range(3))
    assert np.any((r > 150) & (g < 120) & (b < 120))
    rgb = rng.integers(0, 256, (64, 80, 3))
    assert_png(viz.overlay_heatmap(rgb, rng.random((4, 5)), tmp_path / "cam_rgb.png"))
    with pytest.raises(ValueError, match="NaN"):
        viz.overlay_heatmap(image, np.full((5, 5), np.nan), tmp_path / "bad.png")

