"""recbento's BentoML services: a thin HTTP adapter over :mod:`recommender`.

``Encoder`` owns the BERT model (GPU when present) and batches ``encode`` calls
adaptively; ``Recommender`` owns the bundle and depends on ``Encoder`` for free-text
queries. Everything worth testing lives in the library.

    bentoml serve                      # the demo model, built on first start
    RECBENTO_MODEL=movies bentoml serve
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import bentoml
import numpy as np
from bentoml.validators import ContentType
from pydantic import Field

from recommender.service_core import ensure_model
from recommender.service_http import (
    BodyLimit,
    FeedbackEvent,
    Filters,
    Knobs,
    RecommendRequest,
    call,
    check_token,
    encoder_settings,
    limit_math_threads,
    service_limits,
)
from recommender.service_http import similar_items as similar

#: JSON answers with their media type declared, so BentoML does not derive it from the
#: output's JSON schema on every response (a measurable share of a request's CPU).
JSONObject = Annotated[dict[str, Any], ContentType("application/json")]
JSONList = Annotated[list[dict[str, Any]], ContentType("application/json")]

MODEL_TAG = ensure_model()
ENCODE_BATCH = encoder_settings()
LIMITS = service_limits()


@bentoml.service(
    name="recbento-encoder",
    resources={"gpu": 1, "cpu": "2"},
    workers=1,
    traffic={"timeout": 120},
)
class Encoder:
    """Text -> unit vectors with the model's BERT encoder; batches across requests."""

    bundle = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        from recommender.encoder import TextEncoder

        cfg = json.loads(Path(self.bundle.path, "config.json").read_text())["encoder"]
        self.encoder = TextEncoder.from_pretrained(
            cfg.get("path") or cfg.get("name"), max_length=cfg.get("max_length", 128)
        )

    @bentoml.api(
        batchable=True,
        max_batch_size=ENCODE_BATCH["max_batch_size"],
        max_latency_ms=ENCODE_BATCH["max_latency_ms"],
    )
    def encode(self, texts: list[str]) -> np.ndarray:
        """Encode texts into L2-normalised vectors (one row per text)."""
        return self.encoder.encode(texts)


@bentoml.service(
    name="recbento",
    workers=LIMITS["workers"],
    traffic={"timeout": 60},
    http={"cors": {"enabled": False}},
)
class Recommender:
    """Recommendations, similar items and encoding over HTTP."""

    bundle = bentoml.models.BentoModel(MODEL_TAG)
    encoder = bentoml.depends(Encoder)

    def __init__(self) -> None:
        from recommender.bundle import Bundle
        from recommender.pipeline import Recommender as Pipeline
        from recommender.refresh import open_feedback

        limit_math_threads(LIMITS["api_threads"])
        self.pipeline = Pipeline(
            Bundle.load(self.bundle.path), encode=self._encode_remote, tag=MODEL_TAG
        )
        self.feedback_store = open_feedback(self.pipeline)

    def _fresh(self) -> Any:
        """The pipeline, with feedback that other workers stored since the last call."""
        from recommender.refresh import sync_feedback

        sync_feedback(self.pipeline, self.feedback_store)
        return self.pipeline

    def _encode_remote(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.encoder.encode(texts), dtype=np.float32)

    @bentoml.api
    def recommend(
        self,
        user_id: int | str | None = None,
        history: list[int | str] | None = None,
        query: str | None = None,
        k: int = 10,
        exclude_seen: bool = True,
        include: Filters | None = None,
        exclude: Filters | None = None,
        explain: bool = False,
        rerank: bool = True,
        knobs: Knobs | None = None,
    ) -> JSONObject:
        """Top-k items for a known user, a history of item ids, and/or a free-text query."""
        req = RecommendRequest.model_validate(
            {k_: v for k_, v in locals().items() if k_ in RecommendRequest.model_fields}
        )
        return call(lambda: self._fresh().recommend(req.to_request()).to_dict())

    @bentoml.api
    def recommend_batch(
        self, requests: Annotated[list[RecommendRequest], Field(max_length=1024)]
    ) -> JSONList:
        """Many requests in one call; scored with one matrix product."""
        return call(
            lambda: [
                r.to_dict()
                for r in self._fresh().recommend_batch([q.to_request() for q in requests])
            ]
        )

    @bentoml.api
    def similar_items(self, item_id: int | str, k: int = 10) -> JSONObject:
        """Items nearest to ``item_id``."""
        return call(lambda: similar(self.pipeline, item_id, k))

    @bentoml.api
    def feedback(
        self,
        events: Annotated[list[FeedbackEvent], Field(min_length=1)],
        ctx: bentoml.Context = None,  # type: ignore[assignment]
    ) -> JSONObject:
        """Store interaction events durably and reflect them in the users' next requests.

        Needs ``Authorization: Bearer $RECBENTO_API_TOKEN`` when that variable is set.
        """
        return call(lambda: self._feedback(events, ctx), ctx)

    def _feedback(self, events: list[FeedbackEvent], ctx: Any) -> dict[str, Any]:
        from recommender.refresh import record_feedback

        check_token(None if ctx is None else ctx.request.headers)
        rows = [e.checked(n) for n, e in enumerate(events)]
        return record_feedback(
            self.pipeline, self.feedback_store, rows, max_events=LIMITS["max_events"]
        )

    @bentoml.api
    def groups(self) -> JSONObject:
        """Portraits of the model's user groups."""
        from recommender.group_request import groups_summary

        return call(lambda: groups_summary(self.pipeline))

    @bentoml.api
    def recommend_group(
        self,
        user_ids: Annotated[list[int | str], Field(min_length=1)],
        k: int = 10,
        strategy: Literal["average", "least_misery", "most_pleasure", "borda"] = "average",
        knobs: Knobs | None = None,
        rerank: bool = True,
    ) -> JSONObject:
        """Top-k items for a household or team, members' tastes combined by ``strategy``."""
        from recommender.group_request import recommend_group

        limit = LIMITS["max_group"]
        return call(
            lambda: recommend_group(
                self._fresh(), user_ids, k, strategy, knobs, rerank=rerank, max_members=limit
            )
        )

    @bentoml.api
    def encode(
        self, texts: Annotated[list[str], Field(min_length=1, max_length=1024)]
    ) -> np.ndarray:
        """Texts -> vectors through the batching encoder service."""
        return self.encoder.encode(texts)


Recommender.add_asgi_middleware(BodyLimit, max_bytes=LIMITS["max_body_bytes"])
