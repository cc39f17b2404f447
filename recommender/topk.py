"""The one top-k of recbento: every stage, index, metric and benchmark ranks with it.

Ties are broken by the lower item index, so a ranking never depends on how
``argpartition`` happened to order equal scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["top_k"]


def top_k(
    scores: np.ndarray,
    k: int,
    *,
    exclude: Sequence[np.ndarray] | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` per row of a ``(b, n)`` score matrix (a ``(n,)`` row is ``b = 1``).

    Parameters
    ----------
    scores : ndarray
        Higher is better; ``-inf`` marks items that may not be returned.
    k : int
        Items per row, at least 1.
    exclude : sequence of int arrays, optional
        ``exclude[i]`` lists item indices never returned for row ``i``.
    allowed : bool ndarray, optional
        Mask over items, ``(n,)`` shared by every row or ``(b, n)``.

    Returns
    -------
    idx, scores : ndarray, ndarray
        ``(b, k)`` each, best first. Rows with fewer than ``k`` eligible items are
        padded with index -1 and score ``-inf``.

    Examples
    --------
    >>> idx, _ = top_k(np.array([[0.1, 0.9, 0.5]]), 2, exclude=[np.array([1])])
    >>> idx.tolist()
    [[2, 0]]
    >>> top_k(np.array([0.5, 0.7, 0.5]), 3)[0].tolist()   # ties: lower index first
    [[1, 0, 2]]
    """
    s = np.array(scores, dtype=np.float32, copy=True, ndmin=2)
    b, n = s.shape
    if allowed is not None:
        s[~np.broadcast_to(allowed, s.shape)] = -np.inf
    if exclude is not None:
        for i, ex in enumerate(exclude):
            if len(ex):
                s[i, np.asarray(ex, dtype=np.int64)] = -np.inf
    k_eff = min(int(k), n)
    if k_eff <= 0:
        return np.full((b, max(int(k), 0)), -1, np.int64), np.full((b, max(int(k), 0)), -np.inf)
    part = np.argpartition(-s, k_eff - 1, axis=1)[:, :k_eff]
    part_scores = np.take_along_axis(s, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    sc = np.take_along_axis(part_scores, order, axis=1)
    idx = np.where(np.isfinite(sc), idx, -1)
    if k_eff < k:
        idx = np.pad(idx, ((0, 0), (0, k - k_eff)), constant_values=-1)
        sc = np.pad(sc, ((0, 0), (0, k - k_eff)), constant_values=-np.inf)
    return idx.astype(np.int64), sc
