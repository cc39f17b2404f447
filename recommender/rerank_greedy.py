"""The reranker's greedy pick, compiled with Numba.

:meth:`recommender.rerank.Reranker.rerank` picks ``k`` items one at a time; each step
rescores every unpicked candidate (relevance, similarity to the picks, the list's
calibration) and takes the best. Written with NumPy that was some twenty array calls
per step, most of a request's reranking time on a 200-candidate pool; here it is one
compiled loop that releases the GIL.

Calibration compares the user's entity distribution ``p`` with the list's ``q`` after
adding candidate ``i``: ``KL(p || q_i)``, ``q_i = a_t (qsum + d_i) + alpha p`` with
``a_t = (1 - alpha) / (t + 1)``. Only the entities of candidate ``i`` (``d_i > 0``) make
``q_i`` differ from the list's own, so the sum over entities is taken once per step and
corrected per candidate over its few entities:

``sum_e p_e log q_ie = sum_e p_e log c_e + sum_{e: d_ie > 0} p_e (log(c_e + a_t d_ie) - log c_e)``

with ``c_e = a_t qsum_e + alpha p_e`` (positive, as ``alpha > 0`` and ``p_e > 0``).

The correction's term depends only on the entity and the candidate's share ``d_ie``,
and candidates share them: an item's genres each hold ``1 / n`` of it, so 200
candidates of the demo bring some 540 (entity, share) pairs, about 70 distinct.
Each step takes the logarithm once per distinct pair (:func:`_share_pairs`) and each
candidate adds its pairs' terms in entity order, the same sum as before.
"""

from __future__ import annotations

import numpy as np

from recommender.jit import njit

__all__ = ["greedy_pick"]

#: Distinct shares per entity that :func:`_share_pairs` compares a share with.
SEARCHED = 32


@njit()
def greedy_pick(
    cand: np.ndarray,
    relevance_part: np.ndarray,
    k: int,
    diversity: float,
    vecs: np.ndarray,
    calibration: float,
    alpha: float,
    p: np.ndarray,
    dist: np.ndarray,
    tail: np.ndarray,
    n_tail: int,
) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """``k`` picks from ``cand``: item indices and each one's value when picked.

    Parameters
    ----------
    cand : int64 (n,)
        Candidate item indices.
    relevance_part : float64 (n,)
        ``(1 - diversity) * base`` per candidate.
    diversity : float
        Weight of the largest cosine to the picks (0: ``vecs`` is not read).
    vecs : float32 (n, d)
        The candidates' unit vectors.
    calibration, alpha : float
        Weight of ``KL(p || q)`` (0: ``p`` and ``dist`` are not read) and the mix of
        ``p`` into ``q``.
    p : float64 (s,)
        The user's entity distribution over its support (every ``p_e > 0``).
    dist : float64 (n, s)
        The candidates' entity distributions over that support.
    tail : bool (n,)
        Long-tail candidates; ``n_tail`` of the ``k`` picks must be long tail when
        there are enough (0: no floor).
    """
    n = cand.size
    k = min(k, n)  # never more picks than candidates
    s = p.size
    maxsim = np.zeros(n)
    taken = np.zeros(n, dtype=np.bool_)
    out_idx = np.empty(k, dtype=np.int64)
    out_val = np.empty(k)
    qsum = np.zeros(s)
    log_c = np.empty(s)
    p_log_p = 0.0
    for e in range(s):
        p_log_p += p[e] * np.log(p[e])
    if calibration > 0:
        starts, pair_of, shares, count = _share_pairs(dist)
    else:
        starts, pair_of = np.zeros(n + 1, np.int64), np.zeros(0, np.int64)
        shares, count = np.zeros((s, n)), np.zeros(s, np.int64)
    term = np.empty(s * n)
    tail_taken = 0
    for t in range(k):
        a = (1.0 - alpha) / (t + 1)
        shared = 0.0  # sum_e p_e log c_e
        if calibration > 0:
            for e in range(s):
                log_c[e] = np.log(a * qsum[e] + alpha * p[e])
                shared += p[e] * log_c[e]
            for e in range(s):
                for r in range(count[e]):  # each distinct (e, share) pair once
                    d = shares[e, r]
                    term[e * n + r] = p[e] * (np.log(a * (qsum[e] + d) + alpha * p[e]) - log_c[e])
        only_tail = False
        if n_tail > 0 and n_tail - tail_taken >= k - t:
            for i in range(n):
                if tail[i] and not taken[i]:
                    only_tail = True
                    break
        best, j = -np.inf, -1
        for i in range(n):
            if taken[i] or (only_tail and not tail[i]):
                continue
            v = relevance_part[i] - diversity * maxsim[i]
            if calibration > 0:
                fit = shared
                for r in range(starts[i], starts[i + 1]):
                    fit += term[pair_of[r]]
                v -= calibration * (p_log_p - fit)
            if j < 0 or v > best:
                best, j = v, i
        taken[j] = True
        out_idx[t], out_val[t] = cand[j], best
        if n_tail > 0 and tail[j]:
            tail_taken += 1
        if t == k - 1:  # the list is complete: nothing to rescore
            break
        if diversity > 0:
            sims = vecs @ vecs[j]
            for i in range(n):
                if sims[i] > maxsim[i]:
                    maxsim[i] = sims[i]
        if calibration > 0:
            for e in range(s):
                qsum[e] += dist[j, e]
    return out_idx, out_val


@njit()
def _share_pairs(
    dist: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - compiled
    """The distinct (entity, share) pairs of ``dist`` and which of them each row holds.

    Entity ``e``'s distinct shares are ``shares[e, :count[e]]``; pair ``(e, j)`` is
    numbered ``e * n + j``. Row ``i``'s pairs, one per positive share in entity order,
    are ``pair_of[starts[i]:starts[i + 1]]``. A share is looked for among its entity's
    first :data:`SEARCHED` distinct shares only (genre shares have a handful; weighted
    entities may have a different share per row): past them a share gets a pair of its
    own even when it repeats one, which costs a logarithm, never a wrong term.

    >>> dist = np.array([[0.5, 0.5], [1.0, 0.0], [0.5, 0.5]])
    >>> starts, pair_of, shares, count = _share_pairs(dist)
    >>> starts.tolist(), pair_of.tolist(), count.tolist()
    ([0, 2, 3, 5], [0, 3, 1, 0, 3], [2, 1])
    >>> shares[0, :2].tolist(), shares[1, :1].tolist()
    ([0.5, 1.0], [0.5])
    """
    n, s = dist.shape
    shares = np.empty((s, n))
    count = np.zeros(s, dtype=np.int64)
    starts = np.zeros(n + 1, dtype=np.int64)
    pair_of = np.empty(n * s, dtype=np.int64)
    m = 0
    for i in range(n):
        for e in range(s):
            d = dist[i, e]
            if d > 0:
                c, j = count[e], 0
                last = min(c, SEARCHED)
                while j < last and shares[e, j] != d:
                    j += 1
                if j == last:
                    j = c
                if j == c:
                    shares[e, j] = d
                    count[e] = c + 1
                pair_of[m] = e * n + j
                m += 1
        starts[i + 1] = m
    return starts, pair_of[:m], shares, count
