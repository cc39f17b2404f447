"""Exact search: one matrix product per block of queries, then the one top-k."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from recommender.index.base import VectorIndex, _check_vectors
from recommender.topk import top_k

log = logging.getLogger(__name__)


class ExactIndex(VectorIndex):
    """Brute force: one matrix product per block of queries, then ``argpartition``.

    Parameters
    ----------
    score_budget_mb : int
        Largest ``(queries x items)`` float32 score block held at once, in MiB;
        bigger batches are scored in chunks.

    Examples
    --------
    >>> V = np.array([[1, 0], [0.6, 0.8], [0, 1]], dtype=np.float32)
    >>> ExactIndex().build(V).search(np.array([1, 0]), 2)[0].tolist()
    [[0, 1]]
    """

    kind = "exact"

    def __init__(self, *, score_budget_mb: int = 256) -> None:
        self.score_budget_mb = score_budget_mb

    def build(self, vectors: np.ndarray) -> ExactIndex:
        self.vectors_ = _check_vectors(vectors)
        return self

    def _search(
        self, q: np.ndarray, k: int, exclude: list[np.ndarray], mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        b, n = len(q), self.n_items
        rows = max(1, int(self.score_budget_mb * 2**20 // (4 * n)))
        idx = np.empty((b, k), np.int64)
        sc = np.empty((b, k), np.float32)
        for s in range(0, b, rows):
            e = min(b, s + rows)
            scores = q[s:e] @ self.vectors_.T
            if mask is not None:
                m = mask if mask.ndim == 1 else mask[s:e]
                scores[~np.broadcast_to(m, scores.shape)] = -np.inf
            for i in range(s, e):
                if len(exclude[i]):
                    scores[i - s, exclude[i]] = -np.inf
            idx[s:e], sc[s:e] = top_k(scores, k)
        return idx, sc

    def get_config(self) -> dict[str, Any]:
        return {"kind": self.kind, "score_budget_mb": self.score_budget_mb}
