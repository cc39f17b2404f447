"""Stage 3: the pool the reranker picks from: graph expansion, filters, top-N.

Knowledge-graph candidates are blended into each relevance row (``kg_weight`` scaled
by the spread of the row's head, so it means the same for text and tower scores);
items the request may not get (seen, ``exclude_items``, attribute filters) are
removed; the best ``n_candidates`` remain (``k`` when the request is not reranked).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from knowledge_graph.expand import blend
from recommender.serving.knobs import Knobs, resolve_knobs
from recommender.serving.types import Candidates, Request, UserState
from recommender.topk import top_k

if TYPE_CHECKING:
    from recommender.serving.model import LoadedModel

__all__ = ["candidates", "request_knobs"]


def candidates(
    model: LoadedModel,
    states: Sequence[UserState],
    rel: np.ndarray,
    trained: Sequence[bool],
    reqs: Sequence[Request],
) -> list[Candidates]:
    """One :class:`Candidates` per request."""
    out = []
    for i, (st, req) in enumerate(zip(states, reqs, strict=True)):
        knobs = request_knobs(model, req, trained=trained[i])
        row = rel[i]
        if model.graph is not None and knobs.kg_weight > 0 and not st.cold:
            row = _expand(model, row, st, knobs.kg_weight)
        n = max(req.k, model.serving.n_candidates) if knobs.rerank is not None else req.k
        idx, sc = top_k(row, n, exclude=[st.seen], allowed=st.allowed)
        keep = idx[0] >= 0
        # the new-item slot ranks new items by relevance before the graph blend: the
        # graph's boost (up to kg_weight x the head's spread) is larger than the
        # differences between new items' text scores, and reordered them by graph
        # proximity, which found fewer of the new items users went on to pick
        out.append(Candidates(idx[0][keep], sc[0][keep], rel[i], knobs, trained[i]))
    return out


def request_knobs(model: LoadedModel, req: Request, *, trained: bool) -> Knobs:
    """The request's knobs over the model's defaults (see :mod:`~recommender.serving.knobs`)."""
    s = model.serving
    return resolve_knobs(
        req.knobs,
        kg_default=s.kg_weight_trained if trained else s.kg_weight,
        rerank=None if model.reranker is None else model.reranker.config,
        rerank_on=req.rerank,
    )


def _expand(model: LoadedModel, row: np.ndarray, st: UserState, weight: float) -> np.ndarray:
    """Blend the graph's candidates for one request into its relevance row."""
    w = st.weights
    seeds = np.r_[st.history.items, st.query_items].astype(np.int64)
    if not len(seeds) and not st.query_entities:
        return row
    top = float(w.max()) if len(w) else 1.0
    kg_idx, kg_sc = model.graph.expand(
        seeds,
        np.r_[w, np.full(len(st.query_items), top)],
        query_entities=st.query_entities,
        query_weight=model.serving.query_weight if len(st.history) else 1.0,
        n=model.serving.n_candidates,
        exclude=st.seen,
    )
    if model.index is not None:
        # an approximate row scored only its own candidates: score the graph's too
        row = row.copy()
        missing = kg_idx[~np.isfinite(row[kg_idx])]
        row[missing] = model.item_vectors[missing] @ st.vector
    return blend(row, kg_idx, kg_sc, weight * _head_spread(row))


def _head_spread(row: np.ndarray) -> float:
    """Spread of the row's head (its maximum minus its median), so ``kg_weight`` is scale-free.

    >>> _head_spread(np.array([0.0, 1.0, 2.0, 10.0, -np.inf]))
    8.5
    """
    finite = row[np.isfinite(row)]
    if finite.size < 2:
        return 1.0
    mid = finite.size // 2
    part = np.partition(finite, [mid - 1, mid])  # one partition gives the median
    median = float(part[mid]) if finite.size % 2 else float(part[mid - 1 : mid + 1].mean())
    spread = float(finite.max()) - median
    return spread if spread > 0 else 1.0
