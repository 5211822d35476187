"""Image decoding: formats, bit depths, colour conversion, resizing and errors."""
import numpy as np
import pytest
from PIL import Image

from minicnn.data import ImageLoadError, load_image, prepare_array


def _gradient(h=30, w=40):
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy * 7 + xx * 3) % 256).astype(np.uint8)


def test_png_grayscale_roundtrip_exact(tmp_path):
    a = _gradient()
    Image.fromarray(a).save(tmp_path / "g.png")
    x = load_image(tmp_path / "g.png")
    assert x.dtype == np.float32 and x.shape == a.shape
    np.testing.assert_array_equal(x, a.astype(np.float32))
    rgb = load_image(tmp_path / "g.png", color="rgb")
    assert rgb.shape == a.shape + (3,)
    for c in range(3):
        np.testing.assert_array_equal(rgb[..., c], a)


def test_16bit_png_maps_full_range_to_0_255(tmp_path):
    a = np.array([[0, 65535], [32768, 257 * 100]], dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "d.png")
    assert Image.open(tmp_path / "d.png").mode.startswith("I")
    x = load_image(tmp_path / "d.png")
    np.testing.assert_allclose(x, a.astype(np.float64) * 255 / 65535, rtol=0, atol=1e-3)
    # resized in floating point: values between 8-bit levels survive
    big = load_image(tmp_path / "d.png", size=(4, 4))
    assert big.shape == (4, 4) and big.max() <= 255.0 and big.min() >= 0.0
    assert np.any(np.abs(big - np.round(big)) > 1e-3)


def test_rgba_and_rgb_to_grayscale_match_pillow(tmp_path):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (20, 24, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    g = load_image(tmp_path / "a.png", color="grayscale")
    expect = np.asarray(Image.open(tmp_path / "a.png").convert("L"), dtype=np.float32)
    np.testing.assert_array_equal(g, expect)
    rgb = load_image(tmp_path / "a.png", color="rgb")
    np.testing.assert_array_equal(rgb, rgba[..., :3].astype(np.float32))  # alpha dropped


def test_jpeg_loads(tmp_path):
    a = _gradient(64, 48)
    Image.fromarray(a).save(tmp_path / "j.jpeg", quality=95)
    x = load_image(tmp_path / "j.jpeg", size=32)
    assert x.shape == (32, 32)
    assert abs(float(x.mean()) - float(a.mean())) < 5


def test_nearest_equals_keras_load_img_recipe(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (37, 53), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "n.png")
    x = load_image(tmp_path / "n.png", size=(15, 20), color="rgb", interpolation="nearest")
    # Keras load_img(target_size=(15, 20), interpolation='nearest'): convert('RGB') then resize((w, h), NEAREST)
    ref = np.asarray(Image.open(tmp_path / "n.png").convert("RGB").resize((20, 15), Image.NEAREST), np.float32)
    np.testing.assert_array_equal(x, ref)
    bil = load_image(tmp_path / "n.png", size=(15, 20), color="rgb")
    ref_bil = np.asarray(Image.open(tmp_path / "n.png").convert("RGB").resize((20, 15), Image.BILINEAR), np.float32)
    np.testing.assert_array_equal(bil, ref_bil)


def test_pad_and_crop_keep_aspect(tmp_path):
    a = np.full((20, 40), 200, np.uint8)  # wide white image
    Image.fromarray(a).save(tmp_path / "w.png")
    pad = load_image(tmp_path / "w.png", size=(40, 40), fit="pad", interpolation="nearest")
    assert pad.shape == (40, 40)
    assert np.all(pad[:10] == 0) and np.all(pad[30:] == 0) and np.all(pad[10:30] == 200)
    # crop: centre square of a left-black / right-white image keeps both halves symmetric
    b = np.zeros((20, 60), np.uint8)
    b[:, 30:] = 255
    Image.fromarray(b).save(tmp_path / "c.png")
    crop = load_image(tmp_path / "c.png", size=(10, 10), fit="crop", interpolation="nearest")
    assert crop.shape == (10, 10)
    assert np.all(crop[:, :5] == 0) and np.all(crop[:, 5:] == 255)
    stretch = load_image(tmp_path / "c.png", size=(10, 10), interpolation="nearest")
    assert stretch.shape == (10, 10)


def test_prepare_array_matches_file_loading(tmp_path):
    a = _gradient(33, 21)
    Image.fromarray(a).save(tmp_path / "p.png")
    for kwargs in ({"size": 16}, {"size": (8, 12), "color": "rgb"}, {"size": 10, "fit": "pad"}):
        np.testing.assert_array_equal(prepare_array(a, **kwargs), load_image(tmp_path / "p.png", **kwargs))


def test_corrupt_and_missing_images_name_the_file(tmp_path):
    bad = tmp_path / "broken.jpeg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with pytest.raises(ImageLoadError, match="broken.jpeg"):
        load_image(bad)
    with pytest.raises(ImageLoadError, match="nothere.png"):
        load_image(tmp_path / "nothere.png")
    assert issubclass(ImageLoadError, ValueError)


def test_truncated_png_is_an_error(tmp_path):
    Image.fromarray(_gradient(64, 64)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="t.png"):
        load_image(tmp_path / "t.png")


def test_dicom_without_pydicom_gives_clean_message(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "pydicom":
            raise ImportError("No module named 'pydicom'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    (tmp_path / "scan.dcm").write_bytes(b"\0" * 200)
    with pytest.raises(ImageLoadError, match=r"pip install 'minicnn\[dicom\]'"):
        load_image(tmp_path / "scan.dcm")


def test_bad_options_are_rejected(tmp_path):
    Image.fromarray(_gradient()).save(tmp_path / "o.png")
    with pytest.raises(ValueError, match="interpolation"):
        load_image(tmp_path / "o.png", size=4, interpolation="cubic-ish")
    with pytest.raises(ValueError, match="fit"):
        load_image(tmp_path / "o.png", size=4, fit="squash")
    with pytest.raises(ValueError, match="color"):
        load_image(tmp_path / "o.png", color="cmyk")


def test_pixel_limit_is_checked_before_decoding(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((300, 400), np.uint8)).save(tmp_path / "big.png")
    assert load_image(tmp_path / "big.png").shape == (300, 400)
    with pytest.raises(ImageLoadError, match="400 x 300 pixels, over minicnn's limit of 100,000"):
        load_image(tmp_path / "big.png", max_pixels=100_000)
    # nothing was decoded: the header alone decided
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("the image was decoded"))
    with pytest.raises(ImageLoadError, match="over minicnn's limit"):
        load_image(tmp_path / "big.png", max_pixels=100_000)


def test_default_pixel_limit_is_fifty_million():
    from minicnn.data.limits import MAX_PIXELS
    assert MAX_PIXELS == 50_000_000
