"""The one top-k of recbento: every stage, index, metric and benchmark ranks with it.

Ties are broken by the lower item index, so a ranking never depends on the order in
which equal scores were met. Selection is compiled (Numba): a sample of the row draws a
bar, one pass keeps the eligible scores at or above it (exclusions and filters applied
as it goes), and a branchless selection of those finds the ``k``-th best (see
:func:`select` and :func:`kth_smallest`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from recommender.jit import njit

__all__ = ["kth_smallest", "select", "top_k"]

_NO_ITEMS = np.zeros(0, dtype=np.int64)
_NO_MASK = np.zeros(0, dtype=np.bool_)


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
        Higher is better; ``-inf`` marks items that may not be returned (nor is any
        other non-finite score). Compared as float32.
    k : int
        Items per row, at least 1.
    exclude : sequence of int arrays, optional
        ``exclude[i]`` lists item indices never returned for row ``i`` (one array per
        row, each index in ``0..n-1``).
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
    >>> top_k(np.array([0.5, 0.7, 0.5, 0.5]), 3)[0].tolist()   # ties: lower index first
    [[1, 0, 2]]
    """
    s = np.ascontiguousarray(np.atleast_2d(scores), dtype=np.float32)
    b, n = s.shape
    k = max(int(k), 0)
    idx = np.full((b, k), -1, dtype=np.int64)
    out = np.full((b, k), -np.inf, dtype=np.float32)
    if k == 0:
        return idx, out
    # a mask of another shape raises here, as broadcasting it did
    masks = None if allowed is None else np.broadcast_to(np.asarray(allowed, np.bool_), s.shape)
    if exclude is not None and len(exclude) != b:
        raise ValueError(f"exclude has {len(exclude)} index arrays for {b} rows of scores")
    for i in range(b):
        ex = _NO_ITEMS if exclude is None else np.ascontiguousarray(exclude[i], dtype=np.int64)
        if ex.size and (ex.min() < 0 or ex.max() >= n):
            raise IndexError(f"exclude[{i}] holds an index outside 0..{n - 1}")
        m = _NO_MASK if masks is None else np.ascontiguousarray(masks[i])
        got, val = select(s[i], k, ex, m, -np.inf)
        idx[i, : got.size], out[i, : got.size] = got, val
    return idx, out


@njit()
def select(
    row: np.ndarray, k: int, exclude: np.ndarray, allowed: np.ndarray, above: float
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """The best ``k`` finite entries of ``row`` that are ``> above``: indices and values.

    ``exclude`` lists indices never returned; ``allowed``, when it has ``row``'s length,
    is a mask of those that may be. Best first, ties by the lower index.

    On a row many times longer than ``k``, a strided sample of about 1,024 of its
    eligible entries draws a bar that some ``2k`` of them reach, and one pass keeps only
    the entries at or above it (:func:`_cut_at_sample_bar`); otherwise, or when the bar
    lets fewer than ``k`` through, every eligible entry is gathered. A partition of
    what is kept finds the ``k``-th best, ``t``; every entry above ``t`` is kept, then
    entries equal to ``t`` by lowest index until there are ``k``. The cost does not
    depend on the order of the scores: a heap of the best so far did 2 to 7 times the
    work on rows whose scores rise with the item index (popularity-ordered catalogues),
    and on a catalogue's row, seen once, every comparison of a whole-row partition is a
    coin toss for the branch predictor, where the comparisons to the bar almost all
    fail alike.
    """
    n = row.size
    if k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=row.dtype)
    banned = np.zeros(n, dtype=np.bool_)
    for j in exclude:
        if 0 <= j < n:
            banned[j] = True
    masked = allowed.size == n
    vals, idx, m = _cut_at_sample_bar(row, k, banned, allowed, masked, above)
    if m < k:  # no bar, or it let too few through: every eligible entry
        m = 0
        for i in range(n):
            if _eligible(row, i, banned, allowed, masked, above):
                vals[m], idx[m] = row[i], i
                m += 1
    if m > k:
        t = kth_smallest(vals[:m], m - k)  # the k-th best value
        kv = np.empty(k, dtype=row.dtype)
        ki = np.empty(k, dtype=np.int64)
        g = 0
        for j in range(m):
            if vals[j] > t:
                kv[g], ki[g] = vals[j], idx[j]
                g += 1
        for j in range(m):  # ties at the threshold: the lowest indices
            if g == k:
                break
            if vals[j] == t:
                kv[g], ki[g] = vals[j], idx[j]
                g += 1
    else:
        kv, ki = vals[:m], idx[:m]
    # each part is in index order and the ties at t are the lowest values, so a stable
    # sort on the value alone leaves equal values in index order
    best_first = np.argsort(-kv, kind="mergesort")
    return ki[best_first], kv[best_first]


@njit()
def _cut_at_sample_bar(
    row: np.ndarray,
    k: int,
    banned: np.ndarray,
    allowed: np.ndarray,
    masked: bool,
    above: float,
) -> tuple[np.ndarray, np.ndarray, int]:  # pragma: no cover - compiled
    """The eligible entries of ``row`` at or above a bar, in index order, and their count;
    a count of -1 when the row's eligible entries are not many times ``k``.

    The bar is about the ``2k``-th best eligible entry, read from a strided sample of
    about 1,024 entries. Any value of the sample has at least its rank in the sample of
    entries at or above it, so when ``k`` or more pass, every entry left out is below
    all that passed and the best ``k`` are among them (the caller checks the count).
    """
    n = row.size
    vals = np.empty(n, dtype=row.dtype)
    idx = np.empty(n, dtype=np.int64)
    step = max(n // 1024, 1)
    rank = 2 * k // step + 1  # 0: the best
    best = np.empty(rank + 1, dtype=row.dtype)  # the sample's best, best first
    s = 0
    for i in range(0, n, step):
        if not _eligible(row, i, banned, allowed, masked, above):
            continue
        v = row[i]
        g = min(s, rank + 1)  # entries in ``best``
        s += 1
        if g == rank + 1:
            if not v > best[rank]:
                continue
            g -= 1
        while g > 0 and best[g - 1] < v:  # insert in order
            best[g] = best[g - 1]
            g -= 1
        best[g] = v
    if s * step < 8 * k:  # about s * step eligible entries in all: too few for a bar
        return vals, idx, -1
    bar = best[min(s - 1, rank)]
    m = 0
    for i in range(n):
        if row[i] >= bar and _eligible(row, i, banned, allowed, masked, above):  # few pass
            vals[m], idx[m] = row[i], i
            m += 1
    return vals, idx, m


@njit(inline="always")
def _eligible(
    row: np.ndarray, i: int, banned: np.ndarray, allowed: np.ndarray, masked: bool, above: float
) -> bool:  # pragma: no cover - compiled
    """Whether entry ``i`` may be returned: not excluded, finite, above ``above`` and,
    with a mask, allowed."""
    v = row[i]
    return not banned[i] and v > above and np.isfinite(v) and (not masked or allowed[i])


@njit()
def kth_smallest(x: np.ndarray, k: int) -> float:  # pragma: no cover - compiled
    """The ``k``-th smallest value of ``x`` (0: the least), as ``np.partition`` finds it.

    ``x`` holds no NaN and is left as it is; ``0 <= k < x.size``. Each round splits the
    values around a median-of-three pivot without branches (every value is written to
    both ends of a buffer and only the counts decide which write stays), so a round
    costs the same whatever the values; a partition's comparisons, on values seen once,
    are coin tosses for the branch predictor (about 15 against 5 us for 1,024 values).
    """
    n = x.size
    src = x.copy()
    dst = np.empty_like(src)
    rounds = 0
    while n > 16:
        rounds += 1
        if rounds > 64:  # pivots that keep missing: a partition finishes it
            return np.partition(src[:n], k)[k]
        a, b, c = src[0], src[n // 2], src[n - 1]
        p = max(min(a, b), min(max(a, b), c))
        below = above = 0
        for i in range(n):
            v = src[i]
            dst[below] = v
            below += v < p
            dst[n - 1 - above] = v
            above += v > p
        if k < below:
            src, dst, n = dst, src, below
        elif k < n - above:
            return p
        else:
            k -= n - above
            src[:above] = dst[n - above : n]
            n = above
    for i in range(1, n):  # the last few: insertion sort
        v = src[i]
        j = i
        while j > 0 and src[j - 1] > v:
            src[j] = src[j - 1]
            j -= 1
        src[j] = v
    return src[k]
