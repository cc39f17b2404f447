"""One module per stage of the request path, in the order a request meets them."""

from __future__ import annotations

from recommender.serving.stages.aggregate import aggregate
from recommender.serving.stages.candidates import candidates
from recommender.serving.stages.explain import explain
from recommender.serving.stages.relevance import relevance
from recommender.serving.stages.rerank import rerank
from recommender.serving.stages.respond import respond
from recommender.serving.stages.users import user_states

__all__ = ["aggregate", "candidates", "explain", "relevance", "rerank", "respond", "user_states"]
