"""Weight initialisers. Each takes an explicit ``np.random.Generator`` (or a seed) — no global RNG."""
from __future__ import annotations

import numpy as np

from .errors import UsageError


def rng_from(seed_or_rng) -> np.random.Generator:
    """``None`` -> a fresh unseeded generator, an int -> ``default_rng(int)``, a Generator -> itself."""
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    return np.random.default_rng(seed_or_rng)


def he_normal(shape, fan_in: int, rng=None, dtype=np.float32) -> np.ndarray:
    """Kaiming/He normal: ``N(0, 2 / fan_in)``, the usual choice before a ReLU."""
    return (rng_from(rng).standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def glorot_uniform(shape, fan_in: int, fan_out: int, rng=None, dtype=np.float32) -> np.ndarray:
    """Glorot/Xavier uniform: ``U(-a, a)`` with ``a = sqrt(6 / (fan_in + fan_out))``."""
    a = np.sqrt(6.0 / (fan_in + fan_out))
    return rng_from(rng).uniform(-a, a, size=shape).astype(dtype)


def initialize(shape, fan_in: int, fan_out: int, init: str = "he", rng=None, dtype=np.float32):
    """Dispatch by name: ``'he'``, ``'glorot'``, or ``'assigned'``: zeros and no random draw, for
    weights an importer assigns right after building the layer (not a training initialisation)."""
    if init == "assigned":
        return np.zeros(shape, dtype)
    if init == "he":
        return he_normal(shape, fan_in, rng, dtype)
    if init == "glorot":
        return glorot_uniform(shape, fan_in, fan_out, rng, dtype)
    raise UsageError(f"init must be 'he' or 'glorot' ('assigned' for imported weights), got {init!r}")
