"""Stateless compute kernels: Numba fast paths with plain-loop references beside them.

Every kernel with a fast path takes ``method=``: ``"reference"`` runs the readable plain-loop
version (the one the tests hold the fast ones to), ``"auto"`` (the default) the fast choice.
Convolution names its fast methods (``im2col``, ``banded``, ``pointwise``, ``direct``: see
``conv.py``); pooling, batch-norm and ReLU have one each, ``"fast"``.

Importing this package changes nothing in the process. The thread policy (Numba threads, BLAS
limits, OpenMP's idle spin) lives in ``minicnn.runtime`` and is applied at the first parallel
kernel call (``runtime.ensure_configured()``), or earlier by ``minicnn.runtime.configure(...)``.
"""
