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
from recommender.jit import njit
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
    seeds = np.concatenate([st.history.items, st.query_items]).astype(np.int64)
    if not len(seeds) and not st.query_entities:
        return row
    top = float(w.max()) if len(w) else 1.0
    kg_idx, kg_sc = model.graph.expand(
        seeds,
        np.concatenate([w, np.full(len(st.query_items), top)]),
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


@njit()
def _head_spread(row: np.ndarray) -> float:  # pragma: no cover - compiled
    """Spread of the row's head (its maximum minus its median), so ``kg_weight`` is scale-free.

    >>> float(_head_spread(np.array([0.0, 1.0, 2.0, 10.0, -np.inf])))
    8.5
    """
    finite = row[np.isfinite(row)]
    if finite.size < 2:
        return 1.0
    spread = float(finite.max()) - float(_median(finite))
    return spread if spread > 0 else 1.0


@njit()
def _median(x: np.ndarray) -> float:  # pragma: no cover - compiled
    """``np.median(x)``, the same value, for a row of a catalogue.

    Partitioning a whole row mispredicts a branch at every other comparison, which
    made the median a fifth of this stage. A strided sample of about 1,024 values
    brackets the median instead (the sample's 44th and 56th percentiles); one pass
    counts the values below the bracket and copies those inside it, without branches,
    and only they are partitioned. When the median falls outside the bracket, the
    whole row is partitioned, as before.
    """
    n = x.size
    if n < 4096:
        return np.median(x)
    lo_rank, hi_rank = (n - 1) // 2, n // 2  # the middle values' ranks (equal: odd n)
    sample = x[:: n // 1024].copy()
    s = sample.size
    d = s // 16
    sample = np.partition(sample, np.array([s // 2 - d, s // 2 + d]))
    lo, hi = sample[s // 2 - d], sample[s // 2 + d]
    below = 0
    inside = np.empty(n, dtype=x.dtype)
    m = 0
    for v in x:
        below += v < lo
        inside[m] = v
        m += (v >= lo) & (v <= hi)
    if not below <= lo_rank or not hi_rank < below + m:
        return np.median(x)
    part = np.partition(inside[:m], np.array([lo_rank - below, hi_rank - below]))
    if lo_rank == hi_rank:
        return part[lo_rank - below]
    return (part[lo_rank - below] + part[hi_rank - below]) / 2
