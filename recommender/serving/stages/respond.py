"""Stage 6: ids, titles, scores and reasons, as the answer a client reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from recommender.serving.types import Ranked, Recommendation, RecommendedItem, Request, UserState

if TYPE_CHECKING:
    from recommender.serving.model import LoadedModel

__all__ = ["respond"]


def respond(
    model: LoadedModel,
    ranked: Sequence[Ranked],
    reasons: Sequence[list[list[dict[str, Any]]]],
    states: Sequence[UserState],
    reqs: Sequence[Request],
) -> list[Recommendation]:
    """One :class:`Recommendation` per request."""
    ids, titles = model.catalogue.ids, model.catalogue.titles
    return [
        Recommendation(
            user_id=req.user_id,
            items=[
                RecommendedItem(ids[j], titles[j], float(s), rs)
                for j, s, rs in zip(r.idx, r.scores, why, strict=True)
            ],
            cold_start=st.cold,
            group=st.group,
            model=model.tag,
        )
        for r, why, st, req in zip(ranked, reasons, states, reqs, strict=True)
    ]
