"""Sorted unique values of the small integer arrays on the request path.

NumPy 2's ``np.unique`` hashes the values, then sorts the unique ones; on the few
hundred item indices of a history that takes 3-4 times as long as one sort and a
comparison of neighbours (18 against 5 us for 300 indices, 28 against 7 for 500), and
each request needs it twice (the items it skips, the graph's seed rows).

>>> unique_sorted(np.array([5, 1, 5, 3])).tolist()
[1, 3, 5]
>>> union_sorted(np.array([4, 2]), [2, 9]).tolist()
[2, 4, 9]
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["union_sorted", "unique_sorted"]


def unique_sorted(values: Any) -> np.ndarray:
    """``np.unique(values)`` for integers: the distinct values, ascending, same dtype."""
    s = np.sort(np.asarray(values).ravel())
    if s.size < 2:
        return s
    keep = np.empty(s.size, dtype=np.bool_)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def union_sorted(a: Any, b: Any) -> np.ndarray:
    """``np.union1d(a, b)`` for integers: the distinct values of both, ascending."""
    return unique_sorted(np.concatenate([np.asarray(a).ravel(), np.asarray(b).ravel()]))
