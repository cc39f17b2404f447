"""Stage 1: who is asking. Requests -> :class:`UserState` (history, vector, what to skip).

A request speaks for a stored user (``user_id``: the log plus live feedback), for a
history it sends, for a free-text query, or any mix. The history's recency weights
make both the user vector and, later, the knowledge graph's seeds. Every query of a
batch is encoded in one call, so concurrent requests reach the encoder together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from recommender.history import History, recency_weights, weighted_vector
from recommender.serving.types import Request, UserState
from recommender.setops import union_sorted, unique_sorted

if TYPE_CHECKING:
    from recommender.serving.model import LoadedModel

__all__ = ["resolve_history", "user_group", "user_states"]

_NONE = np.zeros(0, dtype=np.int64)


def user_states(
    model: LoadedModel,
    reqs: Sequence[Request],
    query_vectors: Sequence[np.ndarray | None] | None = None,
) -> list[UserState]:
    """One :class:`UserState` per request.

    ``query_vectors[i]``, when given, is request ``i``'s query already encoded (by the
    caller, e.g. one encoder call per request so the encoder service batches them);
    queries without one are encoded here, all in one call.
    """
    s = model.serving
    states = []
    for req in reqs:
        full = resolve_history(model, req)
        h = full.last(s.history_max)
        w = recency_weights(h, half_life_days=s.half_life_days, position_decay=s.position_decay)
        seen = unique_sorted(full.items) if req.exclude_seen else _NONE
        disliked = _NONE
        if req.user_id is not None:  # never again what the user disliked
            disliked = model.live.disliked(model.catalogue.user_key(req.user_id))
            if len(disliked):  # a union sorts again even with nothing to add
                seen = union_sorted(seen, disliked)
        if req.exclude_items:
            seen = union_sorted(seen, model.catalogue.rows(req.exclude_items, "exclude_items"))
        states.append(
            UserState(
                history=h,
                weights=w,
                vector=weighted_vector(model.item_vectors, h.items, w),
                query_vector=None,
                cold=len(h) == 0,
                seen=seen,
                disliked=disliked,
                allowed=model.catalogue.allowed(req.include, req.exclude),
            )
        )
    _add_queries(model, reqs, states, query_vectors)
    for req, st in zip(reqs, states, strict=True):
        st.group = None if st.cold else user_group(model, req, st.vector)
    return states


def _add_queries(
    model: LoadedModel,
    reqs: Sequence[Request],
    states: list[UserState],
    given: Sequence[np.ndarray | None] | None,
) -> None:
    """Encode the batch's queries in one call and blend them into the user vectors."""
    rows = [i for i, r in enumerate(reqs) if r.query and r.query.strip()]
    if not rows:
        return
    given = given or [None] * len(reqs)
    todo = [i for i in rows if given[i] is None]
    encoded = (
        dict(zip(todo, model.encode([reqs[i].query.strip() for i in todo]), strict=True))
        if todo
        else {}
    )
    vectors = [given[i] if given[i] is not None else encoded[i] for i in rows]
    w = model.serving.query_weight
    for j, i in enumerate(rows):
        st, q = states[i], vectors[j]
        st.query_vector = q
        if not st.cold:
            v = w * q + (1 - w) * st.vector
            q = v / max(float(np.linalg.norm(v)), 1e-12)
        st.vector = q.astype(np.float32)
        st.cold = False
        if model.graph is not None:
            match = model.graph.match_query(reqs[i].query)
            st.query_entities = list(match.entities)
            st.query_items = np.asarray(match.items, dtype=np.int64)


def resolve_history(model: LoadedModel, req: Request) -> History:
    """The history a request speaks for: stored log + live feedback + the sent items."""
    stored = History.empty()
    if req.user_id is not None:
        key = model.catalogue.user_key(req.user_id)
        stored = model.histories.get(key)
        live = model.live.get(key)
        if live is not None:
            stored = stored.extend(live)
    if req.history:
        rows = model.catalogue.rows(req.history, "history")
        base = int(stored.timestamps.max()) + 1 if len(stored) else 0
        stored = stored.extend(History(rows, base + np.arange(len(rows)), np.ones(len(rows))))
    return stored


def user_group(model: LoadedModel, req: Request, vector: np.ndarray) -> int | None:
    """The stored group of a known user asking for themself, else the nearest group."""
    if model.groups is None:
        return None
    if req.user_id is not None and not req.history and not req.query:
        row = model.user_rows.get(model.catalogue.user_key(req.user_id))
        if row is not None and row < len(model.groups.labels_):
            return int(model.groups.labels_[row])
    if not np.any(vector):
        return None
    return int(model.groups.predict(vector[None, :].astype(np.float64))[0])
