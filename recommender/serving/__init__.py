"""The request path: a loaded model and one function per stage (see :mod:`.path`)."""

from __future__ import annotations

from recommender.serving.model import EncodeFn, LoadedModel, load_encoder, load_model
from recommender.serving.path import (
    recommend_batch,
    recommend_group,
    similar_items,
    validate,
    warm_up,
)
from recommender.serving.types import (
    GroupRequest,
    Recommendation,
    RecommendedItem,
    Request,
)

__all__ = [
    "EncodeFn",
    "GroupRequest",
    "LoadedModel",
    "Recommendation",
    "RecommendedItem",
    "Request",
    "load_encoder",
    "load_model",
    "recommend_batch",
    "recommend_group",
    "similar_items",
    "validate",
    "warm_up",
]
