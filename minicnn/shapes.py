"""Small shared checks that raise ``ValueError`` / ``TypeError`` naming both sides.

Shape letters used across minicnn (defined once here and in the README):
    N batch, C input channels, H W input height/width, F output channels (filters),
    KH KW kernel height/width, OH OW output height/width, G groups.
"""
from __future__ import annotations

import numpy as np

from .errors import UsageError


def as_pair(value, name: str = "value") -> tuple[int, int]:
    """``3 -> (3, 3)``, ``(1, 7) -> (1, 7)``; anything else is a ``ValueError``."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return int(value[0]), int(value[1])
    raise UsageError(f"{name} must be an int or a pair of ints, got {value!r}")


def normalize_padding(padding, kernel_size=(1, 1), stride=(1, 1), dilation=(1, 1), in_hw=None):
    """Return padding as ``(top, bottom, left, right)`` zeros added around H and W.

    ``padding`` may be an int, ``(ph, pw)``, ``(top, bottom, left, right)``, ``'valid'`` or
    ``'same'``. ``'same'`` follows TensorFlow: output size ``ceil(H / stride)``, total padding
    ``max((OH - 1) * stride + (KH - 1) * dilation + 1 - H, 0)``, the extra row/column (odd total)
    at the bottom/right. It depends on the input size, so ``in_hw`` is needed to resolve it.
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0, 0, 0)
        if mode != "same":
            raise UsageError(f"padding must be an int, a tuple, 'same' or 'valid', got {padding!r}")
        if in_hw is None:
            raise UsageError("padding='same' needs the input height and width to be resolved")
        out = []
        for size, k, s, d in zip(in_hw, kernel_size, stride, dilation):
            o = -(-size // s)  # ceil(size / s)
            total = max((o - 1) * s + (k - 1) * d + 1 - size, 0)
            out += [total // 2, total - total // 2]
        return tuple(out)
    if isinstance(padding, (int, np.integer)):
        p = int(padding)
        result = (p, p, p, p)
    elif isinstance(padding, (tuple, list)) and len(padding) == 2:
        ph, pw = (int(v) for v in padding)
        result = (ph, ph, pw, pw)
    elif isinstance(padding, (tuple, list)) and len(padding) == 4:
        result = tuple(int(v) for v in padding)
    else:
        raise UsageError(
            f"padding must be an int, (ph, pw), (top, bottom, left, right), 'same' or 'valid', got {padding!r}")
    if min(result) < 0:
        raise UsageError(f"padding must be non-negative, got {padding!r}")
    return result


def conv_output_size(size: int, k: int, stride: int, pad_before: int, pad_after: int, dilation: int = 1) -> int:
    """``floor((size + pads - dilation * (k - 1) - 1) / stride) + 1``."""
    return (size + pad_before + pad_after - dilation * (k - 1) - 1) // stride + 1


def check_input(layer, x, ndim: int = 4, channels: int | None = None, axis: int = 1):
    """Check rank and channel count of ``x``; the error names the layer and both shapes."""
    x = np.asarray(x)
    if x.ndim != ndim:
        raise UsageError(f"{layer!r} expects a {ndim}-D input, got x.shape={x.shape}")
    if channels is not None and x.shape[axis] != channels:
        raise UsageError(
            f"{layer!r} expects {channels} channel(s) on axis {axis}, got x.shape={x.shape}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{layer!r} expects float32 or float64 input, got dtype {x.dtype}")
    return x
