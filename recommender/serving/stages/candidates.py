"""Stage 3: the pool the reranker picks from: graph expansion, filters, top-N.

Knowledge-graph candidates are blended into each relevance row (``kg_weight`` scaled
by the spread of the row's head, so it means the same for text and tower scores);
items the request may not get (seen, ``exclude_items``, attribute filters) are
removed; the best ``n_candidates`` remain (``k`` when the request is not reranked).

The graph walks need no relevance, so :func:`graph_walks` can run before stage 2:
:func:`~recommender.serving.path.recommend_batch` walks while the graph's arrays are
still in the CPU's caches, before the relevance pass streams the whole item matrix
through them (the walks took about twice as long after it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from knowledge_graph.expand import WalkStart, blend
from recommender.jit import njit
from recommender.serving.knobs import Knobs, resolve_knobs
from recommender.serving.types import Candidates, Request, UserState
from recommender.topk import kth_smallest, top_k

if TYPE_CHECKING:
    from recommender.serving.model import LoadedModel

__all__ = ["Walk", "candidates", "graph_walks", "request_knobs"]


#: A request's knobs and its graph candidates (``None``: no walk).
Walk = tuple[Knobs, tuple[np.ndarray, np.ndarray] | None]


def graph_walks(
    model: LoadedModel,
    states: Sequence[UserState],
    trained: Sequence[bool],
    reqs: Sequence[Request],
) -> list[Walk]:
    """Each request's knobs and graph candidates: the part of stage 3 that reads no
    relevance (``trained``: whether the tower scores the request, see
    :func:`~recommender.serving.stages.relevance.tower_scored`). The requests that walk
    do so together, reading the graph's matrix once
    (:meth:`~knowledge_graph.graph.KnowledgeGraph.expand_many`)."""
    knobs = [request_knobs(model, req, trained=t) for req, t in zip(reqs, trained, strict=True)]
    starts: dict[int, WalkStart] = {}
    if model.graph is not None:
        for i, (st, kn) in enumerate(zip(states, knobs, strict=True)):
            if kn.kg_weight > 0 and not st.cold:
                start = _walk_start(model, st)
                if start is not None:
                    starts[i] = start
    walks = {}
    if starts:
        found = model.graph.expand_many(list(starts.values()), n=model.serving.n_candidates)
        walks = dict(zip(starts, found, strict=True))
    return [(kn, walks.get(i)) for i, kn in enumerate(knobs)]


def candidates(
    model: LoadedModel,
    states: Sequence[UserState],
    rel: np.ndarray,
    trained: Sequence[bool],
    reqs: Sequence[Request],
    walks: Sequence[Walk] | None = None,
) -> list[Candidates]:
    """One :class:`Candidates` per request (``walks``: from :func:`graph_walks`, when
    the caller walked already)."""
    walks = graph_walks(model, states, trained, reqs) if walks is None else walks
    out = []
    for i, (st, req, (knobs, walk)) in enumerate(zip(states, reqs, walks, strict=True)):
        row = rel[i]
        if walk is not None:
            row = _blend(model, row, st, walk, knobs.kg_weight)
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


def _walk_start(model: LoadedModel, st: UserState) -> WalkStart | None:
    """Where the request's graph walk starts (``None``: no seeds, no query entities)."""
    w = st.weights
    seeds = np.concatenate([st.history.items, st.query_items]).astype(np.int64)
    if not len(seeds) and not st.query_entities:
        return None
    top = float(w.max()) if len(w) else 1.0
    return WalkStart(
        seeds,
        np.concatenate([w, np.full(len(st.query_items), top)]),
        model.graph.entity_columns(st.query_entities),
        model.serving.query_weight if len(st.history) else 1.0,
        st.seen,
    )


def _blend(
    model: LoadedModel,
    row: np.ndarray,
    st: UserState,
    walk: tuple[np.ndarray, np.ndarray],
    weight: float,
) -> np.ndarray:
    """Blend the graph's candidates for one request into its relevance row."""
    kg_idx, kg_sc = walk
    if model.index is not None:
        # an approximate row scored only its own candidates: score the graph's too
        row = row.copy()
        missing = kg_idx[~np.isfinite(row[kg_idx])]
        row[missing] = model.item_vectors[missing] @ st.vector
    return blend(row, kg_idx, kg_sc, weight * _head_spread(row))


@njit()
def _head_spread(row: np.ndarray) -> float:  # pragma: no cover - compiled
    """Spread of the row's head (its maximum minus its median), so ``kg_weight`` is scale-free.

    Non-finite entries (skipped items) are left out; NumPy's maximum and median, the
    same values, read in one pass over a catalogue's row (:func:`_max_and_median`).

    >>> float(_head_spread(np.array([0.0, 1.0, 2.0, 10.0, -np.inf])))
    8.5
    """
    top, mid, count = _max_and_median(row) if row.size >= 4096 else _exact_max_and_median(row)
    if count < 2:
        return 1.0
    spread = float(top) - float(mid)
    return spread if spread > 0 else 1.0


@njit()
def _max_and_median(x: np.ndarray) -> tuple[float, float, int]:  # pragma: no cover - compiled
    """The largest and the median finite value of ``x`` (as NumPy gives them), and how many.

    Partitioning a whole row mispredicts a branch at every other comparison, which made
    the median a fifth of this stage. A strided sample of about 1,024 finite values
    brackets the median instead (the sample's 44th and 56th percentiles); one pass
    counts the finite values, finds the largest, counts those below the bracket and
    copies those inside it, without branches, and the median is selected among those
    (:func:`~recommender.topk.kth_smallest`). When the median falls outside the bracket,
    NumPy's median of every finite value is taken, as before.
    """
    n = x.size
    step = n // 1024
    sample = np.empty(n // step + 1, dtype=x.dtype)
    s = 0
    for i in range(0, n, step):
        if np.isfinite(x[i]):
            sample[s] = x[i]
            s += 1
    if s < 64:  # mostly skipped items: no bracket
        return _exact_max_and_median(x)
    d = s // 16
    lo = kth_smallest(sample[:s], s // 2 - d)  # finite
    hi = kth_smallest(sample[:s], s // 2 + d)
    count = below = m = 0
    top = lo
    inside = np.empty(n, dtype=x.dtype)
    for v in x:
        finite = np.isfinite(v)
        count += finite
        below += finite & (v < lo)
        inside[m] = v
        m += (v >= lo) & (v <= hi)  # never true for NaN or infinities
        top = v if finite and v > top else top
    lo_rank, hi_rank = (count - 1) // 2, count // 2  # the middle values' ranks (equal: odd)
    if not below <= lo_rank or not hi_rank < below + m:
        return _exact_max_and_median(x)
    low = kth_smallest(inside[:m], lo_rank - below)
    if lo_rank == hi_rank:
        return top, low, count
    return top, (low + kth_smallest(inside[:m], hi_rank - below)) / 2, count


@njit()
def _exact_max_and_median(x: np.ndarray) -> tuple[float, float, int]:  # pragma: no cover
    """NumPy's maximum and median of the finite values of ``x``, and how many (zeros
    when there are none): short rows, and the rows whose sample brackets no median."""
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return 0.0, 0.0, 0
    return finite.max(), np.median(finite), finite.size
