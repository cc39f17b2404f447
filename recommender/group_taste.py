"""Taste profiles: group users by what their histories are about, and pick how many groups.

A user's taste profile is the log-lift of each entity (genre, director, ...) in their
history against the whole log: ``log((share_u + eps) / (share_all + eps))``, over the
entities that make up at least ``min_population_share`` of all mentions, L2-normalised.
Users who over-watch the same genres land together, so every group's portrait has an
entity that sets it apart (text-embedding user vectors mostly encode "likes popular
films" and give groups whose strongest lift is barely above 1).

The number of groups is chosen for groups that say something and stay put: among the
counts whose k-means labels agree across ``n_seeds`` seeds (adjusted Rand index at least
``min_stability``), the one whose least distinctive group has the highest top lift.

Examples
--------
>>> import numpy as np
>>> counts = np.array([[9, 1], [8, 1], [1, 9], [1, 8]] * 5, dtype=float)
>>> feats = taste_features(counts)
>>> k, labels, table = choose_groups(feats, counts, ks=[2, 3], seed=0)
>>> k, len(set(labels[:2])) == 1, bool(labels[0] != labels[2])
(2, True, True)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["taste_features", "top_lifts", "choose_groups"]

log = logging.getLogger(__name__)

_EPS = 1e-3


def _dense(counts: np.ndarray | sp.spmatrix) -> np.ndarray:
    return np.asarray(counts.todense() if sp.issparse(counts) else counts, dtype=np.float64)


def taste_features(
    counts: np.ndarray | sp.spmatrix, *, min_population_share: float = 0.002
) -> np.ndarray:
    """``(n_users, n_entities)`` mention counts -> unit-norm log-lift profiles.

    Users without any mention get a zero row.
    """
    c = _dense(counts)
    total = c.sum()
    pop = c.sum(axis=0) / total if total > 0 else np.zeros(c.shape[1])
    keep = pop >= min_population_share
    rows = c.sum(axis=1, keepdims=True)
    share = np.divide(c, rows, out=np.zeros_like(c), where=rows > 0)[:, keep]
    f = np.log((share + _EPS) / (pop[keep] + _EPS))
    f[rows[:, 0] == 0] = 0.0
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    return np.divide(f, norms, out=np.zeros_like(f), where=norms > 0)


def top_lifts(
    labels: np.ndarray, counts: np.ndarray | sp.spmatrix, n_groups: int, *, min_share: float = 0.01
) -> np.ndarray:
    """Each group's strongest entity lift, as its portrait reports it.

    ``lift = group share / population share`` over the entities that make up at least
    ``min_share`` of the group's mentions (see
    :func:`recommender.group_portraits.describe_groups`).
    """
    c = _dense(counts)
    pop = c.sum(axis=0) / max(c.sum(), 1e-12)
    out = np.zeros(n_groups)
    for g in range(n_groups):
        m = c[labels == g].sum(axis=0)
        if m.sum() <= 0:
            continue
        share = m / m.sum()
        ok = (share >= min_share) & (pop > 0)
        if ok.any():
            out[g] = float((share[ok] / pop[ok]).max())
    return out


def choose_groups(
    features: np.ndarray,
    counts: np.ndarray | sp.spmatrix,
    *,
    ks: Sequence[int],
    seed: int = 0,
    n_seeds: int = 3,
    n_init: int = 30,
    min_stability: float = 0.8,
) -> tuple[int, np.ndarray, list[dict[str, Any]]]:
    """Cluster ``features`` for every ``k``; return the chosen ``k``, its labels, the table.

    Each row of the table: ``k``, ``stability`` (smallest adjusted Rand index between the
    first seed's labels and each other seed's), ``min_top_lift`` (the least distinctive
    group's top lift). Chosen: the highest ``min_top_lift`` among stable ``k``; when none
    is stable, the most stable.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    table, fits = [], {}
    for k in ks:
        runs = [
            KMeans(n_clusters=k, n_init=n_init, random_state=seed + s).fit_predict(features)
            for s in range(n_seeds)
        ]
        stab = min((adjusted_rand_score(runs[0], r) for r in runs[1:]), default=1.0)
        lift = float(top_lifts(runs[0], counts, k).min())
        table.append({"k": int(k), "stability": float(stab), "min_top_lift": lift})
        fits[k] = runs[0]
        log.debug("taste groups k=%d stability %.3f min top lift %.2f", k, stab, lift)
    stable = [r for r in table if r["stability"] >= min_stability]
    if stable:
        best = max(stable, key=lambda r: (r["min_top_lift"], -r["k"]))
    else:
        best = max(table, key=lambda r: (r["stability"], -r["k"]))
    return best["k"], np.asarray(fits[best["k"]], dtype=np.int64), table
