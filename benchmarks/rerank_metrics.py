"""Metrics of the reranker benchmark at K=10: accuracy, diversity, calibration, tail, coverage.

See :mod:`benchmarks.rerank_quality` for their definitions.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recommender.eval import coverage_at_k, hit_rate_at_k, ndcg_at_k

__all__ = ["COLS", "K", "calibration_kl", "evaluate", "ild"]

#: Length of the evaluated lists.
K = 10
#: The metrics :func:`evaluate` returns, in table order.
COLS = ["ndcg@10", "hr@10", "ild", "ild_genre", "calib_kl", "longtail", "coverage@10"]


def ild(topk: np.ndarray, vecs: np.ndarray) -> float:
    """Mean over users of ``1 - mean pairwise cosine`` within the list."""
    v = vecs[topk]  # (U, K, d)
    v = v / np.maximum(np.linalg.norm(v, axis=2, keepdims=True), 1e-12)
    sims = np.einsum("ukd,ujd->ukj", v, v)
    k = topk.shape[1]
    off = (sims.sum(axis=(1, 2)) - np.trace(sims, axis1=1, axis2=2)) / (k * (k - 1))
    return float(np.mean(1.0 - off))


def calibration_kl(
    topk: np.ndarray, dist: sp.csr_matrix, profiles: np.ndarray, alpha: float = 0.01
) -> float:
    """Mean Steck KL(p_u || q~_list) with uniform item weights."""
    kls = []
    for u in range(topk.shape[0]):
        p = profiles[u]
        q = np.asarray(dist[topk[u]].mean(axis=0)).ravel()
        q = (1 - alpha) * q + alpha * p
        m = p > 0
        kls.append(float((p[m] * np.log(p[m] / q[m])).sum()))
    return float(np.mean(kls))


def evaluate(topk, test_idx, *, vecs, genre_vecs, dist, profiles, tail, n_items) -> dict:
    return {
        "ndcg@10": ndcg_at_k(topk, test_idx, K),
        "hr@10": hit_rate_at_k(topk, test_idx, K),
        "ild": ild(topk, vecs),
        "ild_genre": ild(topk, genre_vecs),
        "calib_kl": calibration_kl(topk, dist, profiles),
        "longtail": float(tail[topk].mean()),
        "coverage@10": coverage_at_k(topk, n_items, K),
    }
