"""Limits that keep a hostile or damaged file from exhausting memory before it is even checked.

``MAX_PIXELS``: the largest image (rows x columns x frames) minicnn decodes, 50 million pixels by
default (a chest X-ray is 4-12 million), or ``MINICNN_MAX_PIXELS`` from the environment (read at
import). Readers compare a file's declared size with it before decoding; pass ``max_pixels=`` to a
reader to allow more for files you trust.
"""
from ..errors import env_int

MAX_PIXELS = env_int("MINICNN_MAX_PIXELS", 50_000_000)
