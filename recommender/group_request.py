"""Recommendations for a group of known users (a household, a team) on the request path.

Each member is scored like a single-user request (history vector, tower, popularity
for cold members); the members' relevance rows are aggregated with one of the
strategies of :mod:`recommender.group_recs`; items any member has seen are excluded;
the reranker (when the model has one) picks the final list for the group's nearest
user group and the members' mean entity profile.

Examples
--------
>>> out = recommend_group(rec, [10, 20], k=3, strategy="least_misery")  # doctest: +SKIP
>>> [i["item_id"] for i in out["items"]]                               # doctest: +SKIP
[6, 3, 8]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from recommender.errors import InputError
from recommender.group_recs import aggregate_group_scores, group_context
from recommender.item_signals import user_entity_profile
from recommender.pipeline import Request, top_k

if TYPE_CHECKING:
    from recommender.pipeline import Recommender

__all__ = ["GROUP_STRATEGIES", "groups_summary", "recommend_group"]

log = logging.getLogger(__name__)

#: Strategies the ``recommend_group`` API accepts.
GROUP_STRATEGIES: tuple[str, ...] = ("average", "least_misery", "most_pleasure", "borda")


def recommend_group(
    rec: Recommender,
    user_ids: Sequence[Any],
    k: int = 10,
    strategy: str = "average",
    knobs: Mapping[str, float] | None = None,
    *,
    rerank: bool = True,
    max_members: int = 50,
) -> dict[str, Any]:
    """Top-k items for ``user_ids`` together.

    Parameters
    ----------
    rec : Recommender
        The loaded pipeline.
    user_ids : sequence of int or str
        The members (1 to ``max_members``, duplicates ignored). Unknown users are
        cold members: popularity stands in for their taste and ``cold_start`` lists them.
    k : int
        Number of items (1 to the model's ``k_max``).
    strategy : {"average", "least_misery", "most_pleasure", "borda"}
        How members' scores combine (see :mod:`recommender.group_recs`).
    knobs : dict, optional
        Reranker knobs for this request (as in ``recommend``).
    rerank : bool
        Use the model's reranker when it has one.
    max_members : int
        Upper bound on the group size.

    Returns
    -------
    dict
        ``{"user_ids", "strategy", "items": [{"item_id", "title", "score", "reasons"}],
        "cold_start": [members without history], "group", "model"}``.

    Raises
    ------
    InputError
        Empty or oversized group, unsupported strategy, ``k`` out of range, bad knobs.
    """
    rec.validate(Request(k=k))
    if strategy not in GROUP_STRATEGIES:
        raise InputError(
            f"strategy={strategy!r}: expected one of {list(GROUP_STRATEGIES)}",
            field="strategy",
            value=strategy,
        )
    from recommender.service_http import check_text

    for n, u in enumerate(user_ids or []):
        check_text(u, f"user_ids[{n}]")
    members = list(dict.fromkeys(user_ids or []))
    if not 1 <= len(members) <= max_members:
        raise InputError(
            f"user_ids has {len(members)} distinct users; expected 1 to {max_members}",
            field="user_ids",
            value=len(members),
        )
    reqs = [Request(user_id=u, k=k) for u in members]
    vecs, hists, cold = rec.user_vectors(reqs)
    scores = rec.relevance(vecs, hists, reqs, cold)
    seen = [np.unique(h.items) for h in hists]
    exclude = np.unique(np.concatenate(seen)) if seen else np.zeros(0, np.int64)
    group_scores = aggregate_group_scores(scores, strategy).astype(np.float32)
    group_scores[exclude] = -np.inf

    knobs = dict(knobs or {})
    knobs.pop("kg_weight", None)  # the graph stage is single-user; accepted and ignored
    use_rerank = rerank and rec.reranker is not None
    n_cand = max(k, rec.config.n_candidates) if use_rerank else k
    idx, sc = top_k(group_scores[None, :], n_cand)
    keep = idx[0] >= 0
    idx, sc = idx[0][keep], sc[0][keep]
    group = None
    warm = [i for i, c in enumerate(cold) if not c]
    if use_rerank and len(idx):
        profiles = None
        if rec.reranker.item_dist is not None and warm:
            profiles = np.stack(
                [user_entity_profile(rec.reranker.item_dist, hists[i].items) for i in warm]
            )
        if warm:
            group, profile = group_context(vecs[warm], profiles, rec.groups)
        else:
            profile = None
        cfg = rec.reranker.config.replace(**knobs)
        idx, sc = rec.reranker.rerank(idx, sc, k, group=group, user_profile=profile, config=cfg)
    elif knobs:
        raise InputError(
            f"knobs {sorted(knobs)} need the reranker, which is off for this request",
            field="knobs",
        )
    elif warm and rec.groups is not None:
        group, _ = group_context(vecs[warm], None, rec.groups)
    idx, sc = idx[:k], sc[:k]
    return {
        "user_ids": members,
        "strategy": strategy,
        "items": [
            {"item_id": rec.item_ids[j], "title": rec.titles[j], "score": float(s), "reasons": []}
            for j, s in zip(idx, sc, strict=True)
        ],
        "cold_start": [u for u, c in zip(members, cold, strict=True) if c],
        "group": group,
        "model": rec.tag,
    }


def groups_summary(rec: Recommender) -> dict[str, Any]:
    """Portraits of the model's user groups: ``{"n_groups", "silhouette", "groups"}``.

    Raises :class:`~recommender.errors.NotFoundError` when the model has no groups.
    """
    from recommender.errors import NotFoundError

    g = rec.groups
    if g is None:
        raise NotFoundError(
            f"model={rec.tag!r} has no user groups (too few users when it was built)",
            field="groups",
        )
    portraits = getattr(g, "portraits_", None) or []
    return {
        "n_groups": int(g.n_groups_),
        "silhouette": _finite(g.silhouette_),
        "groups": [p.to_dict() for p in portraits],
    }


def _finite(x: Any) -> float | None:
    f = float(x) if x is not None else float("nan")
    return f if np.isfinite(f) else None
