"""Helpers shared by the fast conv methods (``conv_im2col``, ``conv_banded``, ``conv_pointwise``, ``conv_direct``).

Inner loops of the Numba kernels run over a row segment ``k in range(m)`` starting at a
precomputed offset: indices that are provably non-negative let LLVM vectorise (an index like
``ow + w0`` with ``w0 < 0`` would need Numba's negative-index wraparound check on every element).
:func:`valid_range` gives that segment.
"""
from __future__ import annotations

from ..runtime import njit, work_split


@njit(cache=True)
def valid_range(OW, sw, pl, offset, W):
    """Output columns ``ow`` whose input column ``ow*sw - pl + offset`` lies inside ``[0, W)``."""
    lo = 0
    while lo < OW and lo * sw - pl + offset < 0:
        lo += 1
    hi = OW
    while hi > lo and (hi - 1) * sw - pl + offset >= W:
        hi -= 1
    return lo, hi


def is_pointwise(KH, KW, sh, sw, pt, pb, pl, pr) -> bool:
    """1x1 kernel, stride 1, no padding: the columns of such a conv are its input itself."""
    return KH == KW == sh == sw == 1 and pt == pb == pl == pr == 0


def split_rows(rows: int, items: int) -> int:
    """Rows per chunk so that ``items`` times the number of chunks gives every Numba thread work."""
    per = -(-work_split() // max(items, 1))                           # chunks per item (ceil)
    return max(1, -(-rows // per)) if per > 1 else rows
