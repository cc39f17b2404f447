"""Row standardisation, so that scores from different scorers share one scale.

The trained hybrid mixes its tower and co-occurrence halves on it (training, tuning and
serving alike), the relevance stage puts a trained row and a query's text relevance on
it, and group scores can be normalised with it.
"""

from __future__ import annotations

import numpy as np

from recommender.jit import njit

__all__ = ["zscore"]


def zscore(x: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` of a vector or of each row of a matrix, as float32.

    The standard deviation is the population one (``ddof=0``); a row whose standard
    deviation is 0 or not a number (a constant row, a row holding an infinity) becomes
    zeros. A row is standardised the same whatever else is in the matrix.

    >>> zscore(np.array([1.0, 2.0, 3.0])).astype(float).round(4).tolist()
    [-1.2247, 0.0, 1.2247]
    >>> rows = np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0], [1.0, np.inf, 3.0]])
    >>> zscore(rows).astype(float).round(4).tolist()
    [[-1.2247, 0.0, 1.2247], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    rows = np.ascontiguousarray(x, dtype=np.float32)
    flat = rows.reshape(1, -1) if rows.ndim == 1 else rows
    out = np.empty_like(flat)
    _standardise(flat, out)
    return out.reshape(rows.shape)


@njit(fastmath={"reassoc", "contract"})  # vectorised sums; NaN and infinity still seen
def _standardise(x: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    """``out[r] = (x[r] - mean) / std`` for each row, sums in float64; zeros where std is 0."""
    b, n = x.shape
    for r in range(b):
        total = 0.0
        for i in range(n):
            total += np.float64(x[r, i])
        mean = total / max(n, 1)
        sq = 0.0
        for i in range(n):
            d = np.float64(x[r, i]) - mean
            sq += d * d
        sd = np.sqrt(sq / max(n, 1))
        if sd > 0:
            inv = 1.0 / sd
            for i in range(n):
                out[r, i] = np.float32((np.float64(x[r, i]) - mean) * inv)
        else:
            for i in range(n):
                out[r, i] = 0.0
