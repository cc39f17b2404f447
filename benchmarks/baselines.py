"""Standard collaborative-filtering baselines for the quality benchmark.

Every baseline follows one contract: ``fit(X)`` on a binary ``(n_users, n_items)`` CSR
training matrix returns ``self``; ``score(users)`` returns a dense ``(len(users), n_items)``
float32 score matrix for those training-matrix rows. Items with no training interaction
get ``-inf`` from :func:`score_topk`: an ID-based model has learned nothing about them
(BPR would otherwise rank them by their random initial factors).

They are deliberately textbook: Pop, ItemKNN (cosine, full neighbourhood), EASE
(Steck 2019, lambda 500), and ALS / BPR from the ``implicit`` library with 64 factors.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp

from recommender.topk import top_k

__all__ = [
    "Pop",
    "ItemKNN",
    "EASE",
    "ImplicitALS",
    "ImplicitBPR",
    "BASELINES",
    "interaction_matrix",
    "score_topk",
]

log = logging.getLogger(__name__)


def interaction_matrix(
    user_idx: np.ndarray, item_idx: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    """Binary CSR matrix with a 1 wherever a user interacted with an item."""
    data = np.ones(len(user_idx), dtype=np.float32)
    X = sp.csr_matrix((data, (user_idx, item_idx)), shape=shape, dtype=np.float32)
    X.data[:] = 1.0
    return X


class Pop:
    """Most popular items by number of training users."""

    def fit(self, X: sp.csr_matrix) -> Pop:
        self.pop_ = np.asarray(X.sum(axis=0)).ravel().astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.pop_, (len(users), len(self.pop_))).copy()


class ItemKNN:
    """Item-item cosine similarity over the full neighbourhood; score = history @ S."""

    def fit(self, X: sp.csr_matrix) -> ItemKNN:
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=0)).ravel())
        norms[norms == 0] = 1.0
        Xn = X @ sp.diags(1.0 / norms).astype(np.float32)
        S = (Xn.T @ Xn).tocsr()
        S.setdiag(0.0)
        S.eliminate_zeros()
        self.X_, self.S_ = X, S.astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.asarray((self.X_[users] @ self.S_).todense(), dtype=np.float32)


class EASE:
    """Embarrassingly Shallow Autoencoder (Steck 2019) with L2 weight ``lam``."""

    def __init__(self, lam: float = 500.0) -> None:
        self.lam = lam

    def fit(self, X: sp.csr_matrix) -> EASE:
        active = np.flatnonzero(np.asarray(X.sum(axis=0)).ravel() > 0)
        Xa = X[:, active]
        G = (Xa.T @ Xa).toarray().astype(np.float64)
        G[np.diag_indices_from(G)] += self.lam
        P = np.linalg.inv(G)
        B = P / (-np.diag(P))
        B[np.diag_indices_from(B)] = 0.0
        self.X_, self.active_, self.B_ = X, active, B.astype(np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        out = np.zeros((len(users), self.X_.shape[1]), dtype=np.float32)
        out[:, self.active_] = self.X_[users][:, self.active_] @ self.B_
        return out


class _Implicit:
    """Shared wrapper: fit an ``implicit`` model, score = user factors @ item factors."""

    def __init__(self, factors: int = 64, random_state: int = 0) -> None:
        self.factors = factors
        self.random_state = random_state

    def _model(self):  # noqa: ANN202 - implicit has no public base type to annotate with
        raise NotImplementedError  # pragma: no cover - subclasses implement it

    def fit(self, X: sp.csr_matrix) -> _Implicit:
        model = self._model()
        model.fit(X.tocsr(), show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float32)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors_[users] @ self.item_factors_.T


class ImplicitALS(_Implicit):
    """``implicit.cpu.als.AlternatingLeastSquares`` with 64 factors."""

    def _model(self):  # noqa: ANN202
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(factors=self.factors, random_state=self.random_state)


class ImplicitBPR(_Implicit):
    """``implicit.cpu.bpr.BayesianPersonalizedRanking`` with 64 factors."""

    def _model(self):  # noqa: ANN202
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(factors=self.factors, random_state=self.random_state)


#: Name -> factory, in the order the benchmark table lists them.
BASELINES = {
    "Pop": Pop,
    "ItemKNN (cosine)": ItemKNN,
    "EASE (lambda 500)": EASE,
    "ALS (implicit, 64 factors)": ImplicitALS,
    "BPR (implicit, 64 factors)": ImplicitBPR,
}


def score_topk(
    model: object, X: sp.csr_matrix, users: np.ndarray, k: int = 10, batch: int = 256
) -> np.ndarray:
    """Top-``k`` item indices for ``users``: seen items and never-trained items excluded."""
    unseen = np.asarray(X.sum(axis=0)).ravel() == 0
    out = np.empty((len(users), k), dtype=np.int64)
    t0 = time.perf_counter()
    for start in range(0, len(users), batch):
        rows = users[start : start + batch]
        s = np.asarray(model.score(rows), dtype=np.float32)
        s[:, unseen] = -np.inf
        seen = X[rows]
        s[np.repeat(np.arange(len(rows)), np.diff(seen.indptr)), seen.indices] = -np.inf
        out[start : start + len(rows)] = top_k(s, k)[0]
    log.debug(
        "%s scored %d users in %.1fs", type(model).__name__, len(users), time.perf_counter() - t0
    )
    return out
