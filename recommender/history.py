"""User histories and the history -> user vector stage.

A history is three aligned arrays (item indices, unix timestamps, weights), oldest first.
The user vector is the recency-weighted mean of the history's item vectors, re-normalised
to unit length. Recency counts twice: by age (a half-life in days) and by position (each
step back in the history multiplies the weight by ``position_decay``), because logs
often hold whole sessions with one timestamp, where age alone cannot say what came last.

Examples
--------
>>> import numpy as np
>>> V = np.eye(3, dtype=np.float32)
>>> h = History(np.array([0, 1]), np.array([0, 86400]), np.array([1.0, 1.0]))
>>> v = history_vector(V, h, half_life_days=1.0)
>>> bool(v[1] > v[0])   # the newer item weighs twice as much
True
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from recommender.jit import njit
from recommender.schemas import InteractionSchema

__all__ = [
    "History",
    "Histories",
    "history_vector",
    "history_vectors",
    "popularity",
    "recency_weights",
    "weighted_vector",
]

log = logging.getLogger(__name__)

_EMPTY = np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class History:
    """One user's interactions, oldest first."""

    items: np.ndarray
    timestamps: np.ndarray
    weights: np.ndarray

    @classmethod
    def empty(cls) -> History:
        return cls(_EMPTY, _EMPTY, np.zeros(0, dtype=np.float64))

    def __len__(self) -> int:
        return len(self.items)

    def last(self, n: int) -> History:
        """The ``n`` most recent interactions."""
        if n <= 0 or len(self) <= n:
            return self
        return History(self.items[-n:], self.timestamps[-n:], self.weights[-n:])

    def extend(self, other: History) -> History:
        """Concatenate and re-sort by time (feedback events on top of the log)."""
        items = np.concatenate([self.items, other.items])
        ts = np.concatenate([self.timestamps, other.timestamps])
        w = np.concatenate([self.weights, other.weights])
        order = np.argsort(ts, kind="stable")
        return History(items[order], ts[order], w[order])


class Histories:
    """Every user's history, built once from the interaction log.

    Parameters
    ----------
    interactions : pandas.DataFrame
        Validated interactions (``user_id, item_id, timestamp, weight``).
    item_index : dict
        ``item_id -> row`` of the items table.
    """

    def __init__(self, interactions: pd.DataFrame, item_index: dict[Any, int]) -> None:
        df = interactions.sort_values(
            [InteractionSchema.user_id, InteractionSchema.timestamp, InteractionSchema.item_id],
            kind="stable",
        )
        rows = df[InteractionSchema.item_id].map(item_index)
        df = df[rows.notna()]
        rows = rows[rows.notna()].astype(np.int64).to_numpy()
        users = df[InteractionSchema.user_id].to_numpy()
        ts = df[InteractionSchema.timestamp].to_numpy(dtype=np.int64)
        w = df[InteractionSchema.weight].to_numpy(dtype=np.float64)
        self._by_user: dict[Any, History] = {}
        if len(users):
            starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
            ends = np.r_[starts[1:], len(users)]
            for s, e in zip(starts, ends, strict=True):
                self._by_user[_native(users[s])] = History(rows[s:e], ts[s:e], w[s:e])

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._by_user

    def __len__(self) -> int:
        return len(self._by_user)

    def get(self, user_id: object) -> History:
        """The user's history, empty for an unknown user."""
        return self._by_user.get(user_id, History.empty())

    def user_ids(self) -> list[Any]:
        return list(self._by_user)


def _native(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def recency_weights(
    history: History,
    *,
    half_life_days: float = 30.0,
    position_decay: float = 1.0,
    now: float | None = None,
) -> np.ndarray:
    """Weight of each history item: age decay x position decay x its own weight.

    Ages are measured from ``now`` (default: the newest interaction), so a history
    replayed later weighs the same; the ``j``-th newest item is further weighted by
    ``position_decay ** j``; the items' own weights (ratings) are scaled to a maximum
    of 1. The user vector and the knowledge graph's seeds both use these weights.

    >>> h = History(np.array([4, 2]), np.array([0, 86400]), np.array([1.0, 1.0]))
    >>> recency_weights(h, half_life_days=1.0).tolist()
    [0.5, 1.0]
    >>> recency_weights(h, half_life_days=0, position_decay=0.5).tolist()
    [0.5, 1.0]
    """
    if len(history) == 0:
        return np.zeros(0)
    ts = history.timestamps.astype(np.float64)
    ref = float(ts.max()) if now is None else float(now)
    age_days = np.maximum(ref - ts, 0.0) / 86400.0
    decay = np.power(0.5, age_days / half_life_days) if half_life_days > 0 else np.ones_like(ts)
    if position_decay != 1.0:
        decay = decay * np.power(float(position_decay), np.arange(len(history))[::-1])
    w = history.weights.astype(np.float64)
    w = w / w.max() if w.max() > 0 else np.ones_like(w)
    return decay * w


def weighted_vector(item_vectors: np.ndarray, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Unit-length weighted mean of ``item_vectors[items]``; zeros when ``items`` is empty."""
    out = np.zeros(item_vectors.shape[1], dtype=np.float32)
    if len(items) == 0:
        return out
    w = weights if weights.sum() > 0 else np.ones_like(weights)
    items = np.asarray(items, dtype=np.int64)
    # with a position decay most of a long history weighs under 2**-60 of its newest
    # item: together less than the float64 rounding of the sum, far under float32's, so
    # those rows are not read (50-60 rows instead of up to history_max at decay 0.5)
    keep = w >= float(w.max()) * 2.0**-60
    if not keep.all():
        items, w = items[keep], w[keep]
    v = _weighted_sum(item_vectors, items, w.astype(np.float64))
    norm = np.linalg.norm(v)
    return (v / norm).astype(np.float32) if norm > 0 else out


@njit()
def _weighted_sum(
    vectors: np.ndarray, items: np.ndarray, w: np.ndarray
) -> np.ndarray:  # pragma: no cover - compiled
    """``sum_j w[j] * vectors[items[j]]`` in float64, rows added in order.

    A fixed order and no BLAS: the vector is the same in every process whatever its
    thread count. Read in place, where gathering the rows first (for ``einsum``) copied
    up to ``history_max`` of them and took twice as long.
    """
    out = np.zeros(vectors.shape[1])
    for j in range(items.size):
        row = vectors[items[j]]
        wj = w[j]
        for d in range(out.size):
            out[d] += wj * row[d]
    return out


def history_vector(
    item_vectors: np.ndarray,
    history: History,
    *,
    half_life_days: float = 30.0,
    now: float | None = None,
    position_decay: float = 1.0,
) -> np.ndarray:
    """Recency-weighted mean of the history's item vectors, unit length.

    Weights are :func:`recency_weights`. An empty history gives a zero vector.
    """
    w = recency_weights(
        history, half_life_days=half_life_days, position_decay=position_decay, now=now
    )
    return weighted_vector(item_vectors, history.items, w)


def history_vectors(
    item_vectors: np.ndarray,
    histories: list[History],
    *,
    half_life_days: float = 30.0,
    position_decay: float = 1.0,
) -> np.ndarray:
    """:func:`history_vector` for many users, ``(len(histories), dim)``."""
    out = np.zeros((len(histories), item_vectors.shape[1]), dtype=np.float32)
    for i, h in enumerate(histories):
        out[i] = history_vector(
            item_vectors, h, half_life_days=half_life_days, position_decay=position_decay
        )
    return out


def popularity(
    interactions: pd.DataFrame,
    item_index: dict[Any, int],
    n_items: int,
    *,
    half_life_days: float | None = None,
) -> np.ndarray:
    """Interaction counts per item, optionally time-decayed from the newest event."""
    rows = interactions[InteractionSchema.item_id].map(item_index)
    ok = rows.notna().to_numpy()
    rows = rows[ok].astype(np.int64).to_numpy()
    w = np.ones(len(rows))
    if half_life_days:
        ts = interactions[InteractionSchema.timestamp].to_numpy(dtype=np.float64)[ok]
        w = np.power(0.5, (ts.max() - ts) / 86400.0 / half_life_days)
    return np.bincount(rows, weights=w, minlength=n_items).astype(np.float64)
