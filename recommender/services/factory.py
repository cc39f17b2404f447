"""recbento's BentoML services, made for one model by :func:`make_services`.

``Encoder`` owns the BERT checkpoint (CUDA in fp16 when present) and batches ``encode``
calls across requests; ``Recommender`` owns the model and depends on ``Encoder`` for
``/encode`` and, where the encoder has an accelerator or runs elsewhere, for free-text
queries (:mod:`~.encoding`). Every API method is one line over :class:`~.handlers.Handlers`.

Making the classes does no work: it reads at most the model's ``config.json`` (to know
which encoder checkpoint to reference). A missing demo model is built by a deployment
hook when ``bentoml serve`` starts, not at import.

Examples
--------
In a ``service.py`` of your own::

    import bentoml
    from recommender.services import make_services

    Encoder, Recommender = make_services("movies")

    @bentoml.service
    class Shop:
        recs = bentoml.depends(Recommender)

        @bentoml.api
        async def for_you(self, user_id: int) -> list[str]:
            answer = await self.recs.recommend(user_id=user_id, k=5)  # an async API
            return [i["title"] for i in answer["items"]]
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.validators import ContentType
from pydantic import BaseModel

from recommender.build import DEMO_MODEL
from recommender.config import EncoderConfig
from recommender.model_store import newest_version
from recommender.service_core import ensure_model, model_name, share_model_store, stored_config
from recommender.services.encoding import encode_site, texts_per_pass, worker_encoder
from recommender.services.guard import RequestGuard
from recommender.services.handlers import Handlers, answer, answer_async, freeze_heap
from recommender.services.keepalive import KeepAliveLimit
from recommender.services.reload import (
    ModelWatcher,
    follows_latest,
    follows_new_versions,
    start_demo_training,
)
from recommender.services.schemas import (
    EmptyBody,
    EncodeBody,
    FeedbackBody,
    OnlineMetricsBody,
    RecommendBatchBody,
    RecommendBody,
    RecommendGroupBody,
    SimilarItemsBody,
)
from recommender.services.settings import ServiceSettings

__all__ = ["ServiceArgs", "encoder_service", "make_services"]

log = logging.getLogger(__name__)

#: JSON answers with their media type declared, so BentoML does not derive it from the
#: output's JSON schema on every response.
JSONObject = Annotated[dict[str, Any], ContentType("application/json")]
JSONList = Annotated[list[dict[str, Any]], ContentType("application/json")]
#: Vectors, one row per text (JSON to outside callers; BentoML's own serde between services).
Vectors = Annotated[np.ndarray, ContentType("application/json")]

#: BentoML's client of a dependency replaces its connection pool every ``max_requests``
#: calls (default 100) or ``max_age`` seconds, closing requests still in flight on the old
#: pool: under concurrent load a share of calls failed with "Server disconnected". The
#: setting is read from the service called, so both services keep their callers' pools
#: for the life of the calling worker.
KEEP_POOL = {"max_requests": 2**62, "max_age": 10.0**12}

#: Route -> body model, for the request guard.
BODIES: dict[str, type[BaseModel]] = {
    "/recommend": RecommendBody,
    "/recommend_batch": RecommendBatchBody,
    "/recommend_group": RecommendGroupBody,
    "/similar_items": SimilarItemsBody,
    "/feedback": FeedbackBody,
    "/groups": EmptyBody,
    "/encode": EncodeBody,
    "/online_metrics": OnlineMetricsBody,
    "/dashboard/api/recommend": RecommendBody,  # the dashboard's preview of a list
}


class ServiceArgs(BaseModel):
    """``bentoml serve service:Recommender --arg model=movies`` (``bentoml.use_arguments``)."""

    model: str | None = None


def encoder_service(
    config: EncoderConfig | None = None,
    *,
    name: str = "recbento-encoder",
    settings: ServiceSettings | None = None,
) -> Any:
    """A BentoML service encoding texts with the checkpoint ``config`` names.

    It references only that checkpoint (``config.model_tag``) in the model store, or
    nothing for the packaged default encoder.
    """
    config = config or EncoderConfig()
    settings = settings or ServiceSettings.from_env()

    @bentoml.service(
        name=name,
        resources={"gpu": 1, "cpu": "2"},
        workers=1,
        traffic={"timeout": 120},
        runner_connection=KEEP_POOL,
    )
    class Encoder:
        """Text -> unit vectors; batches calls from every caller."""

        if config.model_tag:
            checkpoint = bentoml.models.BentoModel(config.model_tag)

        def __init__(self) -> None:
            from recommender.serving.model import load_encoder

            self.encoder = load_encoder(  # the checkpoint this service declared, if any
                config,
                precision=settings.encode_precision,
                path=self.checkpoint.path if config.model_tag else None,
            )
            freeze_heap()  # the checkpoint's objects stay out of the collector's rounds

        @bentoml.api(
            batchable=True,
            max_batch_size=settings.encode_max_batch,
            max_latency_ms=settings.encode_max_latency_ms,
        )
        def encode(self, texts: list[str]) -> Vectors:
            """Encode texts into L2-normalised vectors (one row per text)."""
            texts_per_pass().labels(service=name).observe(len(texts))
            return self.encoder.encode(texts)

    return Encoder


def make_services(
    model: str | None = None,
    *,
    name: str = "recbento",
    settings: ServiceSettings | None = None,
) -> tuple[Any, Any]:
    """``(Encoder, Recommender)`` BentoML services serving ``model``.

    Parameters
    ----------
    model : str, optional
        ``name`` or ``name:version`` in the model store; default ``RECBENTO_MODEL``,
        else the model a built Bento packed, else the demo model.
    name : str
        Service name; the encoder service is ``<name>-encoder``. Give each pair a
        name of its own to serve several models in one Bento.
    settings : ServiceSettings, optional
        Workers, concurrency and limits; default from ``RECBENTO_*`` variables.
    """
    share_model_store()  # RECBENTO_MODEL_STORE: before anything reads the store
    target = model or model_name()
    settings = settings or ServiceSettings.from_env()
    config = stored_config(target)
    encoder_cfg = EncoderConfig.from_config(config["encoder"]) if config else None
    Encoder = encoder_service(encoder_cfg, name=f"{name}-encoder", settings=settings)
    from recommender.dashboard.app import dashboard_app

    # the dashboard reads the handlers (and so the model) of the worker's instance
    dashboard = dashboard_app(lambda: bentoml.get_current_service().handlers)

    @bentoml.asgi_app(dashboard, path="/dashboard")
    @bentoml.service(
        name=name,
        workers=settings.workers,
        threads=settings.concurrency,
        traffic={"timeout": 60},
        http={"cors": {"enabled": False}},
        runner_connection=KEEP_POOL,  # for the clients of services that depend on this one
    )
    class Recommender:
        """Recommendations, similar items, feedback and groups over HTTP; the operator
        dashboard at ``/dashboard/``."""

        if config is not None:  # so that `bentoml build` packs it
            bundle = bentoml.models.BentoModel(target)
        encoder = bentoml.depends(Encoder)

        @bentoml.on_deployment
        def prepare() -> None:
            """Build the demo model on first start (any other missing model is an error);
            train it in the background, to be swapped in when ready."""
            tag = ensure_model(target)
            if target.split(":")[0] == DEMO_MODEL and follows_latest(target):
                start_demo_training(tag)

        def __init__(self) -> None:
            follows = follows_new_versions(target)
            serve = newest_version(target) if follows else target
            encode = self._encode  # through the encoder service, or in this worker:
            if encode_site(settings.encode_in, Encoder.name) == "worker":
                stored = stored_config(serve) or {}
                encode = worker_encoder(
                    EncoderConfig.from_config(stored.get("encoder")),
                    name,
                    precision=settings.encode_precision,
                )
            self.handlers = Handlers.open(serve, encode=encode, settings=settings)
            if follows:  # a pinned version is kept, unless refreshed
                ModelWatcher(self.handlers, target, settings.reload_seconds).start()

        def _encode(self, texts: list[str]) -> np.ndarray:
            return np.asarray(self.encoder.encode(texts), dtype=np.float32)

        @bentoml.api(input_spec=RecommendBody)
        async def recommend(self, **body: Any) -> JSONObject:
            """Top-k items for a known user, a history of item ids, and/or a free-text query."""
            b = RecommendBody.model_validate(body)
            return await answer_async(self.handlers.recommend_async(b))

        @bentoml.api(input_spec=RecommendBatchBody)
        def recommend_batch(self, **body: Any) -> JSONList:
            """Many requests in one call; scored with one matrix product."""
            b = RecommendBatchBody.model_validate(body)
            return answer(lambda: self.handlers.recommend_batch(b))

        @bentoml.api(input_spec=RecommendGroupBody)
        def recommend_group(self, **body: Any) -> JSONObject:
            """One list for a household or a team, members' tastes combined by ``strategy``."""
            b = RecommendGroupBody.model_validate(body)
            return answer(lambda: self.handlers.recommend_group(b))

        @bentoml.api(input_spec=SimilarItemsBody)
        def similar_items(self, **body: Any) -> JSONObject:
            """Items nearest to ``item_id``."""
            b = SimilarItemsBody.model_validate(body)
            return answer(lambda: self.handlers.similar_items(b))

        @bentoml.api(input_spec=FeedbackBody)
        def feedback(self, ctx: bentoml.Context = None, **body: Any) -> JSONObject:  # type: ignore[assignment]
            """Store events durably; they count in every worker's next answer.

            Needs ``Authorization: Bearer $RECBENTO_API_TOKEN`` when that variable is set.
            """
            b = FeedbackBody.model_validate(body)
            headers = None if ctx is None else ctx.request.headers
            return answer(lambda: self.handlers.feedback(b, headers), ctx)

        @bentoml.api(input_spec=EmptyBody)
        def groups(self) -> JSONObject:
            """Portraits of the model's user groups."""
            return answer(self.handlers.groups)

        @bentoml.api(input_spec=OnlineMetricsBody)
        def online_metrics(self, ctx: bentoml.Context = None, **body: Any) -> JSONObject:  # type: ignore[assignment]
            """CTR, conversion, hit rate, coverage and novelty of served lists, per slice.

            Needs ``Authorization: Bearer $RECBENTO_API_TOKEN`` when that variable is set.
            """
            b = OnlineMetricsBody.model_validate(body)
            headers = None if ctx is None else ctx.request.headers
            return answer(lambda: self.handlers.online_metrics(b, headers), ctx)

        @bentoml.on_shutdown
        def flush_impressions(self) -> None:
            """Write the impressions still queued before the worker exits."""
            self.handlers.close()

        @bentoml.api(input_spec=EncodeBody)
        def encode(self, texts: list[str]) -> Vectors:
            """Texts -> vectors through the batching encoder service."""
            return self.encoder.encode(texts)

    Recommender.add_asgi_middleware(RequestGuard, max_bytes=settings.max_body_bytes, bodies=BODIES)
    Recommender.add_asgi_middleware(KeepAliveLimit, max_requests=settings.keepalive_requests)
    log.debug("services %s and %s-encoder for model %s", name, name, target)
    return Encoder, Recommender
