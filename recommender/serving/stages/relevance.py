"""Stage 2: how relevant every item is to each request, as one ``(b, n_items)`` matrix.

Text relevance is the cosine of the user vector with every item, the whole batch in one
pass over the item vectors (:func:`~recommender.dots.item_dots`), or the approximate
index's candidates on large catalogues. With a trained tower, requests with a history
are scored by the tower and its collaborative hybrid instead, a query on top blended in
as standardised text relevance. Cold starts get popularity. Items close to what the
user disliked are lowered last (:func:`lower_disliked_neighbours`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from recommender.dots import item_dots
from recommender.errors import InputError
from recommender.scale import zscore
from recommender.serving.types import Request, UserState

if TYPE_CHECKING:
    from recommender.serving.model import LoadedModel

__all__ = [
    "tower_scored",
    "lower_disliked_neighbours",
    "relevance",
    "popularity_scores",
]


def relevance(
    model: LoadedModel, states: Sequence[UserState], reqs: Sequence[Request]
) -> tuple[np.ndarray, list[bool]]:
    """Relevance rows and, per request, whether the trained tower scored it.

    Each row is scored once, by what answers it: the tower (a history and a tower),
    popularity (a cold start) or text relevance (the rest).
    """
    dim = model.item_vectors.shape[1]
    for st in states:
        if st.vector.shape[-1] != dim:  # a query vector from another encoder
            raise InputError(
                f"query_vectors have {st.vector.shape[-1]} dimensions; "
                f"the model's items have {dim}",
                field="query_vectors",
                value=st.vector.shape[-1],
            )
    trained = tower_scored(model, states)
    text = [i for i, st in enumerate(states) if not (trained[i] or st.cold)]
    if model.index is None:
        scores = np.empty((len(states), model.n_items), dtype=np.float32)
        if text:
            users = np.stack([states[i].vector for i in text]).astype(np.float32, copy=False)
            if len(text) == len(states):
                item_dots(model.item_vectors, users, scores)
            else:
                part = np.empty((len(text), model.n_items), dtype=np.float32)
                item_dots(model.item_vectors, users, part)
                scores[text] = part
    else:
        scores = _approximate(model, states, reqs, text)
    rows = [i for i, t in enumerate(trained) if t]
    if rows:
        histories = [states[i].history.items for i in rows]
        learned = zscore(
            model.tower.scores(histories, item_table=model.item_table, runtime=model.tower_runtime)
        )
        w = model.serving.query_weight
        for j, i in enumerate(rows):
            row = learned[j]
            q = states[i].query_vector
            if q is not None:
                row = (1 - w) * row + w * zscore(model.item_vectors @ q)
            scores[i] = row
    penalty = model.config.event_weights.dislike_penalty
    for i, st in enumerate(states):
        if st.cold:
            scores[i] = popularity_scores(model)
        if len(st.disliked):
            scores[i] = lower_disliked_neighbours(
                scores[i], model.item_vectors, st.disliked, penalty
            )
    return scores, trained


def tower_scored(model: LoadedModel, states: Sequence[UserState]) -> list[bool]:
    """Per request, whether the trained tower scores it (it has a history, and the model
    a tower)."""
    return [model.tower is not None and len(st.history) > 0 for st in states]


def lower_disliked_neighbours(
    row: np.ndarray, item_vectors: np.ndarray, disliked: np.ndarray, penalty: float
) -> np.ndarray:
    """``row`` minus ``penalty`` x its spread x each item's similarity to a disliked item.

    The similarity is the largest cosine with any disliked item, floored at 0, so
    unrelated items keep their score; the spread (standard deviation of the finite
    scores) puts the penalty on the row's own scale, whatever scored it.

    >>> V = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]], dtype=np.float32)
    >>> lower_disliked_neighbours(np.array([1.0, 2.0, 3.0]), V, np.array([0]), 1.0).round(2)
    array([0.18, 1.35, 3.  ])
    """
    if len(disliked) == 0 or penalty <= 0:
        return row
    finite = np.isfinite(row)
    spread = float(row[finite].std()) if finite.any() else 0.0
    if spread == 0.0:
        return row
    sim = np.clip((item_vectors @ item_vectors[disliked].T).max(axis=1), 0.0, None)
    return (row - penalty * spread * sim).astype(row.dtype, copy=False)


def _approximate(
    model: LoadedModel, states: Sequence[UserState], reqs: Sequence[Request], text: list[int]
) -> np.ndarray:
    """Rows ``text`` holding only the approximate index's candidates (``-inf`` elsewhere)."""
    scores = np.full((len(states), model.n_items), -np.inf, dtype=np.float32)
    for i in text:
        st, req = states[i], reqs[i]
        n = max(req.k, model.serving.n_candidates)
        idx, sc = model.index.search(st.vector, n, exclude=[st.seen], allowed_mask=st.allowed)
        ok = idx[0] >= 0
        scores[i, idx[0][ok]] = sc[0][ok]
    return scores


def popularity_scores(model: LoadedModel) -> np.ndarray:
    """Popularity scaled to [0, 1]: the cold-start relevance."""
    pop = model.popularity
    top = pop.max() if len(pop) else 0
    return (pop / top).astype(np.float32) if top > 0 else pop.astype(np.float32)
