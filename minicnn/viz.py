"""Plots: training curves, ROC curves, confusion matrix, calibration, image grids, filters,
feature maps and heatmap overlays.

Every function draws on its own ``matplotlib.figure.Figure`` with the Agg canvas (no ``pyplot``,
no global figure state, no display needed), saves a PNG to ``path`` (parent folders are created)
and returns ``path`` as a ``pathlib.Path``.

Image layouts accepted by the image functions: ``(H, W)`` grayscale, ``(H, W, 3)`` RGB, or
channels-first ``(1, H, W)`` / ``(3, H, W)``; batches add a leading N. Images are shown with each
image's own value range stretched to full contrast, so normalised float inputs display fine,
except in :func:`overlay_heatmap`, which expects pixel values in [0, 255].

Grad-CAM itself (the heatmap) is computed in ``minicnn.gradcam``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .errors import UsageError
from . import metrics as _metrics

__all__ = [
    "plot_history", "plot_roc", "plot_confusion", "plot_calibration", "plot_image_grid", "plot_image",
    "plot_filters", "plot_feature_maps", "overlay_heatmap", "upsample_bilinear", "format_title",
]


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------

def _new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    """A figure on the Agg canvas. Grids of many small tiles pass ``layout=None`` (the constrained
    layout solver takes seconds on 64 axes) and are spaced by ``subplots_adjust`` instead."""
    fig = Figure(figsize=(width, height), dpi=100, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _as_2d(y, p) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    p = p[:, None] if p.ndim == 1 else p
    if y.ndim != 2 or y.shape != p.shape:
        raise UsageError(f"y_true and y_prob must have the same shape (N,) or (N, K), got {y.shape} and {p.shape}")
    return y, p


def _names(classes, k: int) -> list[str]:
    if classes is None:
        return [f"class {j}" for j in range(k)]
    classes = [str(c) for c in classes]
    if len(classes) != k:
        raise UsageError(f"{k} output column(s) but {len(classes)} class names {classes}; "
                         "give one name per column (for a binary model, the positive class)")
    return classes


def _to_hwc(image) -> np.ndarray:
    """One image as ``(H, W)`` or ``(H, W, 3)`` float64 from HW, HWC or CHW (C = 1 or 3)."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3 and a.shape[-1] not in (1, 3) and a.shape[0] in (1, 3):
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
        raise UsageError(f"an image must be (H, W), (H, W, 3), (1, H, W) or (3, H, W), got shape {a.shape}")
    return a


def _stretch(a: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] by the image's own min and max (a constant image becomes mid-grey)."""
    lo, hi = float(np.min(a)), float(np.max(a))
    return np.full_like(a, 0.5) if hi <= lo else (a - lo) / (hi - lo)


def _show(ax, image, stretch: bool = True):
    a = _to_hwc(image)
    a = _stretch(a) if stretch else np.clip(a / 255.0, 0, 1)
    if a.ndim == 2:
        ax.imshow(a, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(a, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _grid(n: int, ncols: int) -> tuple[int, int]:
    ncols = max(1, min(int(ncols), n))
    return math.ceil(n / ncols), ncols


# ------------------------------------------------------------------------------------------------
# Training and evaluation plots
# ------------------------------------------------------------------------------------------------

def _history_columns(history) -> dict[str, list]:
    if isinstance(history, dict):
        return {str(k): list(v) for k, v in history.items()}
    rows = list(history)
    keys = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    return {str(k): [row.get(k) for row in rows] for k in keys}


def _floats(values) -> np.ndarray | None:
    try:
        return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        return None  # a non-numeric column (e.g. a time stamp) is not plotted


def plot_history(history, path) -> Path:
    """Training curves per epoch: losses on the left, AUC (and other [0, 1] scores) on the right.

    ``history`` is a dict of lists (``{"epoch": [...], "loss": [...], "val_loss": [...],
    "val_auc": [...]}``) or a list of per-epoch dicts. Columns whose name ends in ``loss`` go to the
    loss panel; columns whose name contains ``auc``, ``acc``, ``sens``, ``spec`` or ``f1`` go to the
    metrics panel; ``epoch`` gives the x axis (1, 2, ... when absent); other columns are ignored.
    ``None``/``nan`` entries leave gaps.
    """
    cols = _history_columns(history)
    n = max((len(v) for v in cols.values()), default=0)
    if n == 0:
        raise UsageError("history is empty: nothing to plot")
    epochs = _floats(cols["epoch"]) if "epoch" in cols else np.arange(1, n + 1, dtype=np.float64)
    losses, scores = {}, {}
    for name, values in cols.items():
        if name == "epoch":
            continue
        v = _floats(values)
        if v is None or len(v) != len(epochs):
            continue
        if name.lower().endswith("loss"):
            losses[name] = v
        elif any(tag in name.lower() for tag in ("auc", "acc", "sens", "spec", "f1")):
            scores[name] = v
    panels = [("loss", losses)] + ([("score", scores)] if scores else [])
    fig = _new_figure(5.0 * len(panels), 3.8)
    for i, (ylabel, series) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for name, v in series.items():
            ax.plot(epochs, v, marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if series:
            ax.legend(fontsize=8)
        if ylabel == "score":
            best_name = next((k for k in ("val_auc", "val_roc_auc") if k in series), None)
            if best_name is not None and np.isfinite(series[best_name]).any():
                b = int(np.nanargmax(series[best_name]))
                ax.axvline(epochs[b], color="grey", linestyle=":", linewidth=1)
                ax.set_title(f"best {best_name} {series[best_name][b]:.3f} at epoch {epochs[b]:g}", fontsize=9)
    return _save(fig, path)


def plot_roc(y_true, y_prob, classes, path, title: str = "ROC curve") -> Path:
    """ROC curve of each output column, its AUC in the legend, and the chance diagonal.

    ``y_true``/``y_prob`` are ``(N, K)`` or ``(N,)``; ``classes`` has one name per column.
    A class without both labels is listed as "AUC undefined" and not drawn.
    """
    y, p = _as_2d(y_true, y_prob)
    names = _names(classes, y.shape[1])
    fig = _new_figure(5.2, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance (AUC 0.5)")
    for j, name in enumerate(names):
        auc = _metrics.roc_auc(y[:, j], p[:, j])
        if math.isnan(auc):
            ax.plot([], [], label=f"{name} (AUC undefined: one class only)")
            continue
        fpr, tpr, _ = _metrics.roc_curve(y[:, j], p[:, j])
        ax.plot(fpr, tpr, linewidth=1.6, label=f"{name} (AUC {auc:.3f})")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false-positive rate (1 - specificity)")
    ax.set_ylabel("true-positive rate (sensitivity)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_confusion(confusion, labels, path, title: str = "Confusion matrix") -> Path:
    """The 2x2 matrix ``[[tn, fp], [fn, tp]]`` as a heat map with each count (and its share of the
    true class) written in its cell. ``labels`` = ``[negative name, positive name]``."""
    cm = np.asarray(confusion, dtype=np.int64)
    if cm.shape != (2, 2):
        raise UsageError(f"confusion must be [[tn, fp], [fn, tp]] (2x2), got shape {cm.shape}")
    labels = [str(v) for v in labels]
    if len(labels) != 2:
        raise UsageError(f"labels must be [negative, positive], got {labels}")
    fig = _new_figure(4.6, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(int(cm.max()), 1))
    row_total = cm.sum(axis=1)
    for i in range(2):
        for j in range(2):
            share = f"\n{cm[i, j] / row_total[i]:.0%} of true" if row_total[i] else ""
            dark = cm[i, j] > 0.5 * cm.max()
            ax.text(j, i, f"{cm[i, j]}{share}", ha="center", va="center", fontsize=11,
                    color="white" if dark else "black")
    ax.set_xticks([0, 1], labels=[f"pred\n{labels[0]}", f"pred\n{labels[1]}"])
    ax.set_yticks([0, 1], labels=[f"true {labels[0]}", f"true {labels[1]}"])
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="count")
    return _save(fig, path)


def plot_calibration(y, p, path, n_bins: int = 10, labels=None, title: str = "Calibration") -> Path:
    """Reliability diagram: mean predicted probability vs observed fraction of positives per bin
    (equal-width bins), the diagonal of perfect calibration, and a histogram of the predictions.
    ``y``/``p`` are ``(N,)`` or ``(N, K)`` (one line per column, named by ``labels``)."""
    y2, p2 = _as_2d(y, p)
    names = _names(labels, y2.shape[1]) if labels is not None or y2.shape[1] > 1 else ["model"]
    fig = _new_figure(5.2, 6.0)
    grid = fig.add_gridspec(2, 1, height_ratios=[3, 1])
    ax = fig.add_subplot(grid[0])
    hist = fig.add_subplot(grid[1], sharex=ax)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    edges = np.linspace(0, 1, int(n_bins) + 1)
    for j, name in enumerate(names):
        mean_p, frac, _ = _metrics.calibration_curve(y2[:, j], p2[:, j], n_bins)
        ax.plot(mean_p, frac, marker="o", markersize=4, label=name)
        hist.hist(p2[:, j], bins=edges, histtype="step", linewidth=1.2)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("observed fraction positive")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.tick_params(labelbottom=False)
    hist.set_xlabel("predicted probability")
    hist.set_ylabel("count")
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------
# Images, filters, feature maps
# ------------------------------------------------------------------------------------------------

def _as_batch(images) -> list[np.ndarray]:
    a = np.asarray(images)
    if a.ndim == 3:  # (N, H, W)
        return [a[i] for i in range(a.shape[0])]
    if a.ndim == 4:
        if a.shape[-1] in (1, 3):  # NHWC
            return [a[i] for i in range(a.shape[0])]
        if a.shape[1] in (1, 3):  # NCHW
            return [np.moveaxis(a[i], 0, -1) for i in range(a.shape[0])]
    raise UsageError(f"images must be (N, H, W), (N, H, W, 3) or (N, C, H, W) with C = 1 or 3, got {a.shape}")


def format_title(true_label, pred_label, prob=None) -> str:
    """``"true: A\\npred: B (p=0.87)"``: the caption used by :func:`plot_image_grid` for dict titles."""
    text = f"true: {true_label}\npred: {pred_label}"
    return text + (f" (p={float(prob):.2f})" if prob is not None else "")


def plot_image_grid(images, titles, path, ncols: int = 4, title: str | None = None) -> Path:
    """A grid of images, each with its caption.

    ``images``: ``(N, H, W)``, ``(N, H, W, 3)`` or NCHW. ``titles``: N strings, or N dicts
    ``{"true": ..., "pred": ..., "prob": ...}`` (rendered by :func:`format_title`, in red when the
    prediction is wrong).
    """
    batch = _as_batch(images)
    titles = list(titles) if titles is not None else [""] * len(batch)
    if len(titles) != len(batch):
        raise UsageError(f"{len(batch)} images but {len(titles)} titles")
    rows, cols = _grid(len(batch), ncols)
    fig = _new_figure(2.6 * cols, 2.9 * rows + (0.4 if title else 0))
    for i, (img, cap) in enumerate(zip(batch, titles)):
        ax = fig.add_subplot(rows, cols, i + 1)
        _show(ax, img)
        colour = "black"
        if isinstance(cap, dict):
            colour = "black" if str(cap.get("true")) == str(cap.get("pred")) else "crimson"
            cap = format_title(cap.get("true"), cap.get("pred"), cap.get("prob"))
        ax.set_title(str(cap), fontsize=8, color=colour)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_image(image, path, title: str | None = None) -> Path:
    """One image (HW, HWC or CHW), contrast-stretched, with an optional title."""
    fig = _new_figure(4.5, 4.8 if title else 4.5)
    ax = fig.add_subplot(1, 1, 1)
    _show(ax, image)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def plot_filters(W, path, max_filters: int = 64, ncols: int = 8, channel="auto") -> Path:
    """Convolution filters ``W`` of shape ``(F, C, KH, KW)``, one tile per filter (first ``max_filters``).

    ``channel``: ``"auto"`` shows 3-channel filters as RGB and otherwise the mean over input
    channels; ``"mean"`` always averages; an int shows that input channel. Each tile is stretched
    to its own range (the colour shows the pattern, not the magnitude).
    """
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 4:
        raise UsageError(f"conv weights must be (F, C, KH, KW), got shape {W.shape}")
    F, C = W.shape[:2]
    if isinstance(channel, (int, np.integer)) and not 0 <= channel < C:
        raise UsageError(f"channel {channel} out of range for {C} input channels")
    n = min(F, int(max_filters))
    rows, cols = _grid(n, ncols)
    fig = _new_figure(1.3 * cols, 1.3 * rows + 0.5, layout=None)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.5 / (1.3 * rows + 0.5), hspace=0.35)
    for i in range(n):
        if isinstance(channel, (int, np.integer)):
            tile = W[i, int(channel)]
        elif channel == "auto" and C == 3:
            tile = np.moveaxis(W[i], 0, -1)
        else:
            tile = W[i].mean(axis=0)
        ax = fig.add_subplot(rows, cols, i + 1)
        _show(ax, tile)
        ax.set_title(str(i), fontsize=7)
    what = "RGB" if (channel == "auto" and C == 3) else (
        f"input channel {channel}" if isinstance(channel, (int, np.integer)) else "mean over input channels")
    fig.suptitle(f"{n} of {F} filters ({W.shape[2]}x{W.shape[3]}, {what})", fontsize=9)
    return _save(fig, path)


def plot_feature_maps(fmap, path, max_maps: int = 16, ncols: int = 4) -> Path:
    """Feature maps of one image, ``(C, H, W)`` (or ``(1, C, H, W)``): the first ``max_maps`` channels,
    each stretched to its own range (viridis; bright = high activation), its range in the title."""
    a = np.asarray(fmap, dtype=np.float64)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3:
        raise UsageError(f"feature maps must be (C, H, W) for one image, got shape {a.shape}")
    n = min(a.shape[0], int(max_maps))
    rows, cols = _grid(n, ncols)
    fig = _new_figure(2.2 * cols, 2.3 * rows, layout=None)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.93, hspace=0.3)
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(_stretch(a[i]), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"ch {i}  [{a[i].min():.2g}, {a[i].max():.2g}]", fontsize=7)
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------
# Heatmap overlay
# ------------------------------------------------------------------------------------------------

def upsample_bilinear(heatmap, size) -> np.ndarray:
    """Resize a 2-D map to ``size = (H, W)`` by bilinear interpolation (pixel centres aligned, edges
    clamped: the convention of Pillow and of ``align_corners=False``). Returns float64 ``(H, W)``.

    Each output pixel centre ``y_out + 0.5`` maps to ``(y_out + 0.5) * h / H - 0.5`` in the input,
    and the value is the weighted mean of the two nearest input rows (then columns).
    """
    m = np.asarray(heatmap, dtype=np.float64)
    if m.ndim != 2:
        raise UsageError(f"heatmap must be 2-D (h, w), got shape {m.shape}")
    H, W = int(size[0]), int(size[1])

    def coords(n_out, n_in):
        x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        x = np.clip(x, 0, n_in - 1)
        lo = np.floor(x).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, x - lo

    r0, r1, fr = coords(H, m.shape[0])
    c0, c1, fc = coords(W, m.shape[1])
    rows = m[r0] * (1 - fr)[:, None] + m[r1] * fr[:, None]  # (H, w)
    return rows[:, c0] * (1 - fc)[None, :] + rows[:, c1] * fc[None, :]


def overlay_heatmap(image, heatmap, path, title: str | None = None, alpha: float = 0.4,
                    label: str = "Grad-CAM: high = more evidence for the class") -> Path:
    """Draw ``heatmap`` (``(h, w)``, values in [0, 1]) over ``image`` (HW, HWC or CHW, pixel values in
    [0, 255]) and save it beside the plain image.

    The heatmap is upsampled bilinearly to the image size (:func:`upsample_bilinear`), drawn with the
    ``jet`` colour map on a fixed 0..1 scale at opacity ``alpha``, and a colour bar labelled
    ``label`` tells the reader what red means (e.g. ``"Grad-CAM: high = more evidence for PNEUMONIA"``).
    """
    img = _to_hwc(image)
    hm = np.asarray(heatmap, dtype=np.float64)
    if not np.isfinite(hm).all():
        raise UsageError("heatmap contains NaN/Inf values")
    up = np.clip(upsample_bilinear(hm, img.shape[:2]), 0.0, 1.0)
    fig = _new_figure(8.6, 4.6 if title else 4.2)
    left = fig.add_subplot(1, 2, 1)
    _show(left, img, stretch=False)
    left.set_title("image", fontsize=9)
    right = fig.add_subplot(1, 2, 2)
    _show(right, img, stretch=False)
    im = right.imshow(up, cmap="jet", vmin=0.0, vmax=1.0, alpha=float(alpha), interpolation="bilinear")
    right.set_title("heatmap overlay", fontsize=9)
    bar = fig.colorbar(im, ax=right, fraction=0.046, pad=0.04)
    bar.solids.set_alpha(1.0)
    bar.set_label(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)
