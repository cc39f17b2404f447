"""Recommendations for a group of people (a household, a team).

Each member's scores over the same items are first put on one scale (min-max per member by
default, so that one member's wider score range does not dominate), then aggregated:

* ``average`` -- mean of the members' scores (utilitarian);
* ``least_misery`` -- the minimum: an item is as good as its least happy member finds it;
* ``most_pleasure`` -- the maximum: the happiest member decides;
* ``borda`` -- Borda count: each member gives ``n_items - 1 - rank`` points; points add up;
* ``average_without_misery`` -- the mean, but items any member scores below ``threshold``
  (on the normalised scale) are pushed to the bottom.

Examples
--------
>>> import numpy as np
>>> s = np.array([[1.0, 0.6, 0.0],
...               [0.0, 0.5, 1.0]])
>>> aggregate_group_scores(s, "least_misery").tolist()
[0.0, 0.5, 0.0]
>>> top_k_for_group(s, 1, "least_misery")[0].tolist()
[1]
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

from recommender.errors import InputError
from recommender.scale import zscore
from recommender.topk import top_k

if TYPE_CHECKING:
    from recommender.groups import UserGroups

__all__ = [
    "GROUP_STRATEGIES",
    "STRATEGIES",
    "GroupStrategy",
    "Strategy",
    "aggregate_group_scores",
    "group_context",
    "top_k_for_group",
]

log = logging.getLogger(__name__)

#: The strategies a ``recommend_group`` request may name (the HTTP schema and the
#: request path check requests against them).
GroupStrategy = Literal["average", "least_misery", "most_pleasure", "borda"]
GROUP_STRATEGIES: tuple[str, ...] = get_args(GroupStrategy)
#: Every strategy of the library (``average_without_misery`` is not offered over HTTP).
Strategy = Literal[GroupStrategy, "average_without_misery"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)


def _normalise(scores: np.ndarray, how: str) -> np.ndarray:
    if how == "none":
        return scores
    if how == "minmax":
        lo = scores.min(axis=1, keepdims=True)
        span = scores.max(axis=1, keepdims=True) - lo
        return np.divide(scores - lo, span, out=np.zeros_like(scores), where=span > 0)
    if how == "zscore":
        return zscore(scores)
    raise InputError(
        f"normalise={how!r} is not supported; expected one of ['minmax', 'zscore', 'none']",
        field="normalise",
        value=how,
    )


def aggregate_group_scores(
    score_matrix: np.ndarray,
    strategy: Strategy | str = "average",
    *,
    normalise: str = "minmax",
    threshold: float = 0.2,
) -> np.ndarray:
    """Combine members' scores over the same items into one group score per item.

    Parameters
    ----------
    score_matrix : ndarray, shape (n_members, n_items)
        Row ``m`` is member ``m``'s relevance for every item. Non-finite entries (e.g. items a
        member has already seen, set to ``-inf``) count as that member's lowest score.
    strategy : {"average", "least_misery", "most_pleasure", "borda", "average_without_misery"}
    normalise : {"minmax", "zscore", "none"}
        Per-member scaling applied first (Borda ignores it: ranks are scale-free).
    threshold : float
        Misery threshold of ``average_without_misery`` on the normalised scale.

    Returns
    -------
    ndarray, shape (n_items,)
        Higher is better.
    """
    s = np.atleast_2d(np.asarray(score_matrix, dtype=np.float64))
    if s.ndim != 2 or s.shape[0] == 0 or s.shape[1] == 0:
        raise InputError(
            f"score_matrix must be (n_members, n_items) with both > 0, got {s.shape}",
            field="score_matrix",
        )
    if strategy not in STRATEGIES:
        raise InputError(
            f"strategy={strategy!r} is not supported; expected one of {list(STRATEGIES)}",
            field="strategy",
            value=strategy,
        )
    finite = np.isfinite(s)
    if not finite.all():
        row_min = np.where(finite, s, np.inf).min(axis=1, keepdims=True)
        row_min = np.where(np.isfinite(row_min), row_min, 0.0)
        s = np.where(finite, s, row_min)
    if strategy == "borda":
        n_items = s.shape[1]
        order = np.argsort(-s, axis=1, kind="stable")
        points = np.empty_like(s)
        rows = np.arange(s.shape[0])[:, None]
        points[rows, order] = n_items - 1 - np.arange(n_items)[None, :]
        return points.sum(axis=0)
    z = _normalise(s, normalise)
    if strategy == "average":
        return z.mean(axis=0)
    if strategy == "least_misery":
        return z.min(axis=0)
    if strategy == "most_pleasure":
        return z.max(axis=0)
    # average_without_misery
    mean = z.mean(axis=0)
    miserable = (z < threshold).any(axis=0)
    return np.where(miserable, mean - (mean.max() - mean.min() + 1.0), mean)


def top_k_for_group(
    score_matrix: np.ndarray,
    k: int,
    strategy: Strategy | str = "average",
    *,
    exclude: np.ndarray | None = None,
    **kwargs: object,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k item indices and group scores (ties broken by item index).

    ``exclude`` is a boolean mask or index array of items not to recommend (e.g. seen by any
    member). Extra keyword arguments go to :func:`aggregate_group_scores`.
    """
    if int(k) < 1:
        raise InputError(f"k={k} must be >= 1", field="k", value=k)
    g = aggregate_group_scores(score_matrix, strategy, **kwargs)  # type: ignore[arg-type]
    ex = np.zeros(0, np.int64) if exclude is None else np.asarray(exclude)
    if ex.dtype == bool:
        ex = np.flatnonzero(ex)
    idx, sc = top_k(g, int(k), exclude=[ex.astype(np.int64)])
    keep = idx[0] >= 0
    return idx[0][keep], g[idx[0][keep]]


def group_context(
    member_vectors: np.ndarray,
    member_profiles: np.ndarray | None = None,
    groups: UserGroups | None = None,
) -> tuple[int | None, np.ndarray | None]:
    """What the reranker needs for a group of people: one user group and one entity profile.

    The people's user group is the group nearest to the mean of their L2-normalised vectors;
    their profile (for calibration) is the mean of their entity distributions.

    Parameters
    ----------
    member_vectors : ndarray, shape (n_members, d)
    member_profiles : ndarray, shape (n_members, n_entities), optional
        Each member's ``user_entity_profile``.
    groups : UserGroups, optional
        Fitted groups; without them the returned group is ``None``.

    Returns
    -------
    group : int or None
    profile : ndarray of shape (n_entities,) or None
    """
    v = np.atleast_2d(np.asarray(member_vectors, dtype=np.float64))
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    mean = np.divide(v, norms, out=np.zeros_like(v), where=norms > 0).mean(axis=0)
    group = None if groups is None else int(groups.predict(mean[None, :])[0])
    profile = None
    if member_profiles is not None:
        prof = np.atleast_2d(np.asarray(member_profiles, dtype=np.float64)).mean(axis=0)
        profile = prof / prof.sum() if prof.sum() > 0 else prof
    return group, profile
