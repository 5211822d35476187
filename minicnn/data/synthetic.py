"""A synthetic chest-X-ray-like dataset, written in the pneumonia dataset's folder layout.

    make_synthetic("synth", n=3000, size=128)  ->  synth/{train,val,test}/{NORMAL,PNEUMONIA}/*.png

It is for tests, examples and smoke runs only. It is NOT a substitute for real radiographs, and
nothing learned on it says anything about real patients.

Each image: a dark background, a soft body outline, a bright spine/mediastinum band, two lung
fields (darker than the soft tissue, brighter than the background) crossed by curved ribs, smooth
and fine noise, then a random global gain and offset (exposure). A "pneumonia" image adds one to
three localised soft bright opacities inside a lung. The opacities are plain to see locally, but
they change an image's mean intensity far less than the exposure does, so the mean alone is a
poor classifier (a test holds logistic regression on it to ROC-AUC <= 0.75).

File names follow the public dataset so patient ids parse: ``person123_synth_0.png`` for
PNEUMONIA and ``IM-0123-0001.png`` for NORMAL; some patients have several images (sharing their
anatomy), and no patient spans two splits. Generation is vectorised: thousands of 128 px images
take seconds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from ..errors import DataError

CLASSES = ("NORMAL", "PNEUMONIA")
DEFAULT_SPLITS = (("train", 0.8), ("val", 0.1), ("test", 0.1))
_CHUNK = 256


def _soft_inside(r, edge):
    """1 inside (r < 1), 0 outside, a smooth step of width ``edge`` at r = 1."""
    return 1.0 / (1.0 + np.exp(np.clip((r - 1.0) / edge, -30, 30)))


def f32(v):
    return np.asarray(v, dtype=np.float32)


def _exp_neg(z):
    """exp(-z) for z >= 0, with z capped so the exponential never underflows (slow in libm)."""
    return np.exp(-np.minimum(z, np.float32(30.0)))


def synthetic_images(pneumonia, size=128, rng=None, patient=None) -> np.ndarray:
    """Images for the given labels -> uint8 (N, size, size).

    (Long because it draws one picture step by step: body, lungs, texture, opacities, noise.)

    pneumonia: (N,) bools. patient: (N,) ints; images of one patient share their anatomy
    (default: every image its own patient). rng: a ``numpy.random.Generator``.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    pneumonia = np.asarray(pneumonia, dtype=bool)
    n = len(pneumonia)
    patient = np.arange(n) if patient is None else np.unique(np.asarray(patient), return_inverse=True)[1]
    p = int(patient.max()) + 1 if n else 0
    out = np.empty((n, size, size), np.uint8)

    # anatomy per patient, a small jitter per image
    def per_patient(lo, hi, jitter):
        return rng.uniform(lo, hi, p)[patient] + rng.normal(0.0, jitter, n)

    anatomy = dict(
        body_cx=per_patient(-0.04, 0.04, 0.01), body_ax=per_patient(0.74, 0.9, 0.01),
        body_ay=per_patient(1.0, 1.2, 0.01), lung_dx=per_patient(0.33, 0.42, 0.01),
        lung_cy=per_patient(-0.12, 0.02, 0.01), lung_ax=per_patient(0.2, 0.27, 0.005),
        lung_ay=per_patient(0.42, 0.55, 0.01), rib_f=per_patient(4.0, 5.5, 0.05),
        rib_phase=per_patient(0.0, 2 * np.pi, 0.1), rib_curve=per_patient(0.25, 0.45, 0.01),
    )
    gain = rng.uniform(0.5, 1.5, n)
    offset = rng.uniform(-0.06, 0.08, n)
    # opacities: up to three per image, inside one of the lungs
    n_blobs = np.where(pneumonia, rng.integers(1, 4, n), 0)
    side = rng.choice([-1.0, 1.0], size=(n, 3))
    angle = rng.uniform(0, 2 * np.pi, (n, 3))
    radius = np.sqrt(rng.uniform(0, 1, (n, 3))) * 0.6
    sigma = rng.uniform(0.07, 0.13, (n, 3))
    amp = rng.uniform(0.25, 0.42, (n, 3))
    smooth_seeds = rng.integers(0, 2**63 - 1, n)

    lin = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    yy, xx = np.meshgrid(lin, lin, indexing="ij")
    for start in range(0, n, _CHUNK):
        s = slice(start, min(n, start + _CHUNK))
        m = s.stop - s.start
        a = {k: f32(v[s])[:, None, None] for k, v in anatomy.items()}
        body = _soft_inside(np.hypot((xx - a["body_cx"]) / a["body_ax"], (yy - 0.15) / a["body_ay"]), 0.03)
        lungs = np.zeros((m, size, size), np.float32)
        for sgn in (-1.0, 1.0):
            r = np.hypot((xx - a["body_cx"] - sgn * a["lung_dx"]) / a["lung_ax"], (yy - a["lung_cy"]) / a["lung_ay"])
            lungs = np.maximum(lungs, _soft_inside(r, 0.06))
        z = ((xx - a["body_cx"]) / 0.11) ** 2
        spine = _exp_neg(z * z)
        ribs = (0.5 + 0.5 * np.cos(2 * np.pi * a["rib_f"] * (yy - a["rib_curve"] * xx ** 2) + a["rib_phase"])) ** 6
        img = 0.04 + body * (0.46 + 0.25 * spine * (1 - lungs)) - 0.26 * lungs * body + 0.12 * ribs * lungs

        # opacities, computed only for the images that have a k-th one
        for k in range(3):
            idx = np.nonzero(n_blobs[s] > k)[0]
            if not len(idx):
                continue
            g = start + idx  # rows of the per-image parameter arrays

            def col(v):
                return f32(v)[:, None, None]

            # a point inside the chosen lung's ellipse (radius <= 0.6 of its semi-axes)
            cx = (a["body_cx"][idx] + col(side[g, k]) * a["lung_dx"][idx]
                  + col(radius[g, k] * np.cos(angle[g, k])) * a["lung_ax"][idx])
            cy = a["lung_cy"][idx] + col(radius[g, k] * np.sin(angle[g, k])) * a["lung_ay"][idx]
            d2 = (xx - cx) ** 2 + (yy - cy) ** 2
            img[idx] += col(amp[g, k]) * _exp_neg(d2 * col(0.5 / sigma[g, k] ** 2)) * lungs[idx]

        # texture: smooth blotches plus fine grain, different per image
        noise_rng = np.random.default_rng(smooth_seeds[s.start])
        smooth = ndimage.gaussian_filter(noise_rng.standard_normal((m, size, size), np.float32),
                                         sigma=(0, size / 40, size / 40))
        smooth *= 0.03 / max(float(smooth.std()), 1e-6)
        grain = noise_rng.standard_normal((m, size, size), np.float32) * np.float32(0.015)
        img = img + body * smooth + grain
        img = img * f32(gain[s])[:, None, None] + f32(offset[s])[:, None, None]
        out[s] = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return out


def _resolve_counts(n, splits):
    values = [v for _, v in splits]
    if all(isinstance(v, (int, np.integer)) for v in values):
        return [(name, int(v)) for name, v in splits]
    if sum(values) > 1.0 + 1e-9:
        raise DataError(f"split fractions add up to {sum(values)} > 1: {splits}")
    return [(name, int(round(n * float(v)))) for name, v in splits]


def make_synthetic(out_dir, n=3000, size=128, pneumonia_fraction=0.6, splits=DEFAULT_SPLITS, seed=0,
                   fmt="png", overwrite=False) -> dict:
    """Write the synthetic dataset to ``out_dir/<split>/{NORMAL,PNEUMONIA}/``; returns counts.

    splits: ``(name, fraction of n)`` pairs, or ``(name, count)`` pairs with int counts.
    pneumonia_fraction: share of PNEUMONIA images in every split (class imbalance).
    fmt: ``png`` (lossless) or ``jpeg``. The same arguments always give the same pixels.
    Returns ``{split: {"NORMAL": count, "PNEUMONIA": count}}``.
    """
    if fmt not in ("png", "jpeg"):
        raise DataError(f"fmt must be 'png' or 'jpeg', got {fmt!r}")
    if not 0.0 <= pneumonia_fraction <= 1.0:
        raise DataError(f"pneumonia_fraction must be in [0, 1], got {pneumonia_fraction}")
    if size < 16:
        raise DataError(f"size must be at least 16 pixels, got {size}")
    out_dir = Path(out_dir)
    counts = _resolve_counts(n, splits)
    for name, _ in counts:
        for cls in CLASSES:
            folder = out_dir / name / cls
            existing = [f for f in folder.glob("*") if f.is_file()] if folder.is_dir() else []
            if existing and not overwrite:
                raise FileExistsError(f"{folder} already holds {len(existing)} file(s); "
                                      "choose an empty folder or pass overwrite=True")
            for f in existing:
                if f.suffix.lower() in (".png", ".jpeg", ".jpg"):
                    f.unlink()
    summary = {}
    next_patient = 1
    for split_index, (name, count) in enumerate(counts):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 11, split_index]))
        n_pos = int(round(count * pneumonia_fraction))
        summary[name] = {"NORMAL": count - n_pos, "PNEUMONIA": n_pos}
        labels, patients, files = [], [], []
        for cls, k in (("NORMAL", count - n_pos), ("PNEUMONIA", n_pos)):
            left = k
            while left > 0:
                m = min(left, int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1])))
                for j in range(m):
                    if cls == "PNEUMONIA":
                        fname = f"person{next_patient}_synth_{j}.{fmt}"
                    else:
                        fname = f"IM-{next_patient:04d}-{j + 1:04d}.{fmt}"
                    files.append(out_dir / name / cls / fname)
                    labels.append(cls == "PNEUMONIA")
                    patients.append(next_patient)
                next_patient += 1
                left -= m
        for cls in CLASSES:
            (out_dir / name / cls).mkdir(parents=True, exist_ok=True)
        if not files:
            continue
        images = synthetic_images(np.array(labels), size, rng, np.array(patients))
        for path, img in zip(files, images):
            pil = Image.fromarray(img, mode="L")
            if fmt == "png":
                pil.save(path, format="PNG", compress_level=1)
            else:
                pil.save(path, format="JPEG", quality=95)
    return summary
