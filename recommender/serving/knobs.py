"""Per-request knobs: one place that reads them, for every entry point.

A request's ``knobs`` may set the graph's ``kg_weight`` and any of the reranker's
weights; an unknown name or a value out of range is an :class:`InputError` naming it.

Examples
--------
>>> from recommender.rerank import RerankConfig
>>> k = resolve_knobs({"kg_weight": 0.2, "diversity": 0.5}, kg_default=0.5,
...                   rerank=RerankConfig(), rerank_on=True)
>>> k.kg_weight, k.rerank.diversity
(0.2, 0.5)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from recommender.config import KNOBS
from recommender.errors import InputError
from recommender.rerank import RerankConfig
from recommender.validate import check_range

__all__ = ["Knobs", "resolve_knobs"]


@dataclass(frozen=True)
class Knobs:
    """What one request runs with: the graph's weight and the reranker's config."""

    kg_weight: float
    rerank: RerankConfig | None


def resolve_knobs(
    knobs: Mapping[str, float] | None,
    *,
    kg_default: float,
    rerank: RerankConfig | None,
    rerank_on: bool,
) -> Knobs:
    """The request's knobs over the model's defaults.

    Parameters
    ----------
    knobs : mapping, optional
        The request's ``knobs``.
    kg_default : float
        The model's ``kg_weight`` for this request (text or trained scoring).
    rerank : RerankConfig or None
        The model's reranker config; ``None`` when the model has no reranker.
    rerank_on : bool
        Whether the request asked for reranking.
    """
    knobs = dict(knobs or {})
    unknown = sorted(set(knobs) - set(KNOBS))
    if unknown:
        raise InputError(
            f"knobs.{unknown[0]}: unknown knob; expected some of {list(KNOBS)}",
            field=f"knobs.{unknown[0]}",
            value=unknown[0],
        )
    kg = check_range(knobs.pop("kg_weight", kg_default), field="knobs.kg_weight", low=0)
    use_rerank = rerank_on and rerank is not None
    if knobs and not use_rerank:
        why = "the request turned reranking off" if rerank is not None else "the model has none"
        raise InputError(
            f"knobs {sorted(knobs)} need the reranker ({why})", field="knobs", value=sorted(knobs)
        )
    cfg = None
    if use_rerank:
        try:
            cfg = rerank.replace(**knobs) if knobs else rerank
        except InputError as exc:
            raise InputError(
                f"knobs.{exc.message}", field=f"knobs.{exc.field}", value=exc.value
            ) from None
    return Knobs(float(kg), cfg)
