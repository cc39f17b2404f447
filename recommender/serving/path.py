"""The request path, one function per entry point, every one through the same stages.

::

    recommend_batch:  user_states -> (graph walks) -> relevance -> candidates -> rerank -> ...
    recommend_group:  user_states -> relevance -> aggregate -> candidates -> rerank -> ...

The service, ``recbento batch``, the Ray engine and the benchmarks all call these.

Examples
--------
>>> out = recommend_batch(model, [Request(user_id=1, k=3)])        # doctest: +SKIP
>>> [i.title for i in out[0].items]                                 # doctest: +SKIP
['Heat (1995)', 'Ronin (1998)', 'Casino (1995)']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from recommender.errors import InputError
from recommender.group_recs import GROUP_STRATEGIES
from recommender.serving.stages.aggregate import aggregate
from recommender.serving.stages.candidates import candidates, graph_walks
from recommender.serving.stages.explain import explain
from recommender.serving.stages.relevance import relevance, tower_scored
from recommender.serving.stages.rerank import rerank
from recommender.serving.stages.respond import respond
from recommender.serving.stages.users import user_states
from recommender.serving.types import GroupRequest, Recommendation, RecommendedItem, Request
from recommender.topk import top_k

if TYPE_CHECKING:
    from recommender.serving.model import LoadedModel

__all__ = ["recommend_batch", "recommend_group", "similar_items", "validate", "warm_up"]


def recommend_batch(
    model: LoadedModel,
    reqs: Sequence[Request],
    *,
    query_vectors: Sequence[np.ndarray | None] | None = None,
) -> list[Recommendation]:
    """Answer many requests; relevance is one pass over the item vectors for the batch.

    ``query_vectors`` (one per request, ``None`` where there is no query or it is to be
    encoded here) lets a caller encode queries itself.
    """
    if not reqs:
        return []
    for r in reqs:
        validate(model, r)
    states = user_states(model, reqs, query_vectors)
    # the graph walks first, while the graph is in the caches (see stages.candidates)
    walks = graph_walks(model, states, tower_scored(model, states), reqs)
    rel, trained = relevance(model, states, reqs)
    cands = candidates(model, states, rel, trained, reqs, walks)
    ranked = rerank(model, cands, states, reqs)
    return respond(model, ranked, explain(model, ranked, states, reqs), states, reqs)


def recommend_group(
    model: LoadedModel, greq: GroupRequest, *, max_members: int = 50
) -> Recommendation:
    """One list for ``greq.user_ids`` together; nothing any member has seen.

    Unknown members are cold: popularity stands in for their taste and the answer's
    ``cold_start`` lists them.
    """
    req = greq.as_request()
    validate(model, req)
    if greq.strategy not in GROUP_STRATEGIES:
        raise InputError(
            f"strategy={greq.strategy!r}: expected one of {list(GROUP_STRATEGIES)}",
            field="strategy",
            value=greq.strategy,
        )
    members = list(dict.fromkeys(greq.user_ids or []))
    if not 1 <= len(members) <= max_members:
        raise InputError(
            f"user_ids has {len(members)} distinct users; expected 1 to {max_members}",
            field="user_ids",
            value=len(members),
        )
    each = [
        Request(
            user_id=u,
            k=req.k,
            exclude_items=req.exclude_items,
            include=req.include,
            exclude=req.exclude,
        )
        for u in members
    ]
    states = user_states(model, each)
    rel, trained = relevance(model, states, each)
    state, row, scored = aggregate(model, members, states, rel, trained, greq.strategy)
    cands = candidates(model, [state], row[None, :], [scored], [req])
    ranked = rerank(model, cands, [state], [req])
    out = respond(model, ranked, explain(model, ranked, [state], [req]), [state], [req])[0]
    out.user_ids, out.strategy, out.cold_members = members, greq.strategy, state.cold_members
    return out


def similar_items(model: LoadedModel, item_id: Any, k: int = 10) -> list[RecommendedItem]:
    """Items nearest to ``item_id`` by text vector, the item itself excluded."""
    validate(model, Request(k=k))
    row = model.catalogue.row(item_id)
    vec = model.item_vectors[row]
    if model.index is not None:
        idx, sc = model.index.search(vec, k, exclude=[np.array([row])])
    else:
        idx, sc = top_k(model.item_vectors @ vec, k, exclude=[np.array([row])])
    ids, titles = model.catalogue.ids, model.catalogue.titles
    return [
        RecommendedItem(ids[j], titles[j], float(s))
        for j, s in zip(idx[0], sc[0], strict=True)
        if j >= 0
    ]


def validate(model: LoadedModel, req: Request) -> None:
    """Range checks every entry point shares; :class:`InputError` names the field."""
    s = model.serving
    k = req.k
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= s.k_max:
        raise InputError(f"k={k!r}: expected an integer from 1 to {s.k_max}", field="k", value=k)
    for name in ("history", "exclude_items"):
        seq = getattr(req, name)
        if seq is not None and len(seq) > s.history_max:
            raise InputError(
                f"{name} has {len(seq)} items; at most {s.history_max} allowed",
                field=name,
                value=len(seq),
            )
    if req.query is not None and len(req.query) > s.query_max_chars:
        raise InputError(
            f"query has {len(req.query)} characters; at most {s.query_max_chars} allowed",
            field="query",
            value=len(req.query),
        )


def warm_up(model: LoadedModel) -> None:
    """Answer a cold start and a one-item history that nobody asked for.

    The path's compiled loops (:mod:`recommender.topk`, :mod:`recommender.rerank_greedy`)
    are compiled, or read from Numba's cache, on their first call: a worker calls this
    when it starts so that its first real requests do not wait for that.
    """
    if model.n_items:
        recommend_batch(model, [Request(k=1), Request(history=[model.catalogue.ids[0]], k=1)])
