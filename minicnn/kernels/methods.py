"""The ``method=`` vocabulary of the kernels that have one fast path beside their reference.

    "auto"        the default: the fast path where it applies (today: always, except ReLU on
                  small or unusual arrays, where plain NumPy is used)
    "fast"        the Numba kernel (a ``UsageError`` where it cannot run)
    "reference"   the readable plain-loop / plain-NumPy version the tests hold the fast one to

Convolution has several fast paths and names them (``minicnn.kernels.conv.CONV_METHODS``);
``"auto"`` and ``"reference"`` mean the same there.
"""
from __future__ import annotations

from ..errors import UsageError
from ..runtime import ensure_configured

KERNEL_METHODS = ("auto", "fast", "reference")


def check_method(method, allowed=KERNEL_METHODS) -> str:
    if method not in allowed:
        raise UsageError(f"unknown kernel method {method!r}; choose one of {', '.join(allowed)}")
    return method


def run_fast(method) -> bool:
    """True when ``method`` asks for the fast kernel ("auto" or "fast"; the thread policy is then
    applied first, ``minicnn.runtime.ensure_configured``); False for "reference"."""
    if check_method(method) == "reference":
        return False
    ensure_configured()
    return True
