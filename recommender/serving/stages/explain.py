"""Stage 5: why each final item suits the request, as knowledge-graph paths.

Only the final ``k`` items are explained, and only when the request asks. The graph
reads the same history and recency weights that made the user vector, and the
entities and titles the query names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from recommender.serving.types import Ranked, Request, UserState

if TYPE_CHECKING:
    from recommender.serving.model import LoadedModel

__all__ = ["explain"]

Reasons = list[list[dict[str, Any]]]


def explain(
    model: LoadedModel,
    ranked: Sequence[Ranked],
    states: Sequence[UserState],
    reqs: Sequence[Request],
) -> list[Reasons]:
    """Per request, per item, a list of reason dicts (empty when not asked or no graph)."""
    out: list[Reasons] = []
    for r, st, req in zip(ranked, states, reqs, strict=True):
        if not (req.explain and model.graph is not None and len(r.idx)):
            out.append([[] for _ in r.idx])
            continue
        found = model.graph.explain_batch(
            r.idx,
            st.history.items,
            st.query_entities,
            max_reasons=model.serving.max_reasons,
            history_weights=st.weights,
            query_items=st.query_items,
        )
        out.append([[reason.to_dict() for reason in rs] for rs in found])
    return out
