"""The household stage: several members' states and relevance rows become one.

Members' rows are combined by a strategy of :mod:`recommender.group_recs` (average,
least misery, most pleasure, Borda); their histories join into one (each item keeps
its member's recency weight), so graph expansion, explanations and calibration see
everyone; nothing any member has seen is recommended. The user group is the one
nearest the members' mean vector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from recommender.group_recs import aggregate_group_scores, group_context
from recommender.history import History
from recommender.serving.types import UserState

if TYPE_CHECKING:
    from recommender.serving.model import LoadedModel

__all__ = ["aggregate"]


def aggregate(
    model: LoadedModel,
    members: Sequence[Any],
    states: Sequence[UserState],
    rel: np.ndarray,
    trained: Sequence[bool],
    strategy: str,
) -> tuple[UserState, np.ndarray, bool]:
    """The household's state, its relevance row and whether the tower scored it."""
    row = aggregate_group_scores(rel, strategy).astype(np.float32)
    items = np.concatenate([st.history.items for st in states])
    ts = np.concatenate([st.history.timestamps for st in states])
    w = np.concatenate([st.history.weights for st in states])
    rw = np.concatenate([st.weights for st in states])
    order = np.argsort(ts, kind="stable")
    warm = [i for i, st in enumerate(states) if not st.cold]
    group, vector = None, np.zeros(model.item_vectors.shape[1], np.float32)
    if warm:
        vecs = np.stack([states[i].vector for i in warm])
        group, _ = group_context(vecs, None, model.groups)
        mean = vecs.mean(axis=0)
        vector = (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)
    state = UserState(
        history=History(items[order], ts[order], w[order]),
        weights=rw[order],
        vector=vector,
        query_vector=None,
        cold=not warm,
        seen=np.unique(np.concatenate([st.seen for st in states])),
        allowed=states[0].allowed,
        group=group,
        members=list(members),
        cold_members=[m for m, st in zip(members, states, strict=True) if st.cold],
    )
    return state, row, any(trained)
