"""What each API does, without BentoML: bodies in, JSON-able answers out.

:class:`Handlers` holds one worker's loaded model and its feedback store; the BentoML
classes of :mod:`recommender.services.factory` call one method per API. Domain errors
become JSON answers with their 4xx status in one place, :func:`answer` (and
:func:`answer_async` for the async ``recommend``).
"""

from __future__ import annotations

import gc
import hmac
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import numpy as np
from starlette.responses import JSONResponse

from recommender.errors import AuthError, NotFoundError, RecbentoError
from recommender.refresh import open_feedback, record_feedback, sync_feedback
from recommender.services.batcher import RequestBatcher
from recommender.services.metrics import requests_per_pass
from recommender.services.online import OnlineServing, online_metrics_answer
from recommender.services.schemas import (
    FeedbackBody,
    OnlineMetricsBody,
    RecommendBatchBody,
    RecommendBody,
    RecommendGroupBody,
    SimilarItemsBody,
    check_text,
)
from recommender.services.settings import ServiceSettings
from recommender.serving import (
    EncodeFn,
    LoadedModel,
    recommend_group,
    validate,
    warm_up,
)

__all__ = [
    "Handlers",
    "answer",
    "answer_async",
    "check_token",
    "freeze_heap",
    "groups_summary",
    "limit_math_threads",
]

log = logging.getLogger(__name__)


class Handlers:
    """One worker's APIs over ``model``, with feedback shared through ``store``.

    Every answer first applies the events other workers (or replicas) stored since
    this worker's last answer, so acknowledged feedback counts everywhere at once.
    """

    def __init__(self, model: LoadedModel, store: Any, settings: ServiceSettings) -> None:
        self.model = model
        self.store = store
        self.settings = settings
        self.online = OnlineServing(lambda: self.model, store)  # follows a swapped model
        # concurrent requests are scored together (see recommender.services.batcher): a
        # busy worker waits a few milliseconds for as many as it recently had in flight;
        # scoring runs on the event loop unless the store's queries cross a network
        self._batcher = RequestBatcher(
            self._recommend_many,
            max_batch=32,
            linger=settings.recommend_linger_ms / 1000,
            follow_load=True,
            in_thread=not store.local,
        )
        # free-text queries waiting together are encoded at once: one forward pass in
        # this worker, or one call to the encoder service, whose adaptive batching then
        # merges the calls of every worker (recommender.services.encoding); a worker
        # that has just encoded some waits up to RECBENTO_QUERY_LINGER_MS for
        # RECBENTO_QUERY_MIN_BATCH of them, so passes grow under load; a failed call
        # fails its queries, which were checked before they queued, without a call each
        self._queries = RequestBatcher(
            self._encode_queries,
            max_batch=settings.encode_max_batch,
            retry_alone=False,
            min_batch=settings.query_min_batch,
            linger=settings.query_linger_ms / 1000,
        )

    def _recommend_many(
        self, items: Sequence[tuple[RecommendBody, np.ndarray | None]]
    ) -> list[dict[str, Any]]:
        bodies = [b for b, _ in items]
        requests_per_pass().observe(len(bodies))
        return self.online.recommend(
            [b.to_request() for b in bodies],
            [b.exclude_shown for b in bodies],
            query_vectors=[v for _, v in items],
        )

    @classmethod
    def open(
        cls, name: str, *, encode: EncodeFn | None = None, settings: ServiceSettings | None = None
    ) -> Handlers:
        """Load model ``name`` from the store and open its feedback store."""
        from recommender.service_core import load

        settings = settings or ServiceSettings.from_env()
        limit_math_threads(settings.api_threads)
        model = load(name, encode=encode)
        warm_up(model)
        handlers = cls(model, open_feedback(model), settings)
        freeze_heap()
        return handlers

    def _fresh(self) -> LoadedModel:
        model = self.model  # one version for the whole request, even if a newer one arrives
        sync_feedback(model, self.store)
        return model

    async def recommend_async(self, body: RecommendBody) -> dict[str, Any]:
        """:meth:`recommend` on the event loop: scored with the requests waiting with it."""
        text = self._query_text(body)
        vec = None if text is None else await self._queries.submit(text)
        return await self._batcher.submit((body, vec))

    def recommend(self, body: RecommendBody) -> dict[str, Any]:
        """One request, answered in the calling thread through the same path."""
        text = self._query_text(body)
        vec = None if text is None else self._encode_queries([text])[0]
        return self._recommend_many([(body, vec)])[0]

    def _query_text(self, body: RecommendBody) -> str | None:
        """The query to encode (``None``: none), its length checked before it is encoded."""
        if not (body.query and body.query.strip()):
            return None
        validate(self.model, body.to_request())
        return body.query.strip()

    def _encode_queries(self, texts: Sequence[str]) -> list[np.ndarray]:
        return list(self.model.encode(list(texts)))

    def recommend_batch(self, body: RecommendBatchBody) -> list[dict[str, Any]]:
        reqs = [b.to_request() for b in body.requests]
        return self.online.recommend(reqs, [b.exclude_shown for b in body.requests])

    def recommend_group(self, body: RecommendGroupBody) -> dict[str, Any]:
        greq = body.to_request()
        model = self._fresh()
        out = recommend_group(model, greq, max_members=self.settings.max_group)
        return self.online.served(out, None, model)

    def similar_items(self, body: SimilarItemsBody) -> dict[str, Any]:
        check_text(body.item_id, "item_id")
        items = self.model.similar_items(body.item_id, body.k)
        return {"item_id": body.item_id, "items": [i.to_dict() for i in items]}

    def feedback(self, body: FeedbackBody, headers: Mapping[str, str] | None) -> dict[str, int]:
        check_token(headers)
        rows = [e.checked(n) for n, e in enumerate(body.events)]
        model = self.model  # one version for the whole request, even if a newer one arrives
        out = record_feedback(model, self.store, rows, max_events=self.settings.max_events)
        self.online.count_feedback(rows)
        return out

    def groups(self) -> dict[str, Any]:
        return groups_summary(self.model)

    def online_metrics(
        self, body: OnlineMetricsBody, headers: Mapping[str, str] | None
    ) -> dict[str, Any]:
        check_token(headers)
        return online_metrics_answer(self.store, body, n_items=self.model.n_items)

    def close(self) -> None:
        """Write the impressions still queued (at shutdown)."""
        self.online.close()


def answer(fn: Callable[[], Any], ctx: Any = None) -> Any:
    """Run ``fn``; a :class:`RecbentoError` becomes its JSON answer with its 4xx status.

    APIs that take a BentoML context must pass it: BentoML then sets the response
    status from ``ctx.response.status_code``, overriding the error response's own.
    """
    try:
        return fn()
    except RecbentoError as exc:
        return _rejected(exc, ctx)


async def answer_async(work: Awaitable[Any], ctx: Any = None) -> Any:
    """:func:`answer` for an async API: await ``work``, errors as JSON answers."""
    try:
        return await work
    except RecbentoError as exc:
        return _rejected(exc, ctx)


def _rejected(exc: RecbentoError, ctx: Any) -> JSONResponse:
    log.info("rejected request: %s", exc.message)
    if ctx is not None:
        ctx.response.status_code = exc.status_code
    return JSONResponse(exc.to_dict(), status_code=exc.status_code)


def check_token(headers: Mapping[str, str] | None, *, env: str = "RECBENTO_API_TOKEN") -> None:
    """Raise :class:`AuthError` unless ``Authorization: Bearer <$RECBENTO_API_TOKEN>``.

    No token configured means the API is open. The comparison is constant-time.
    """
    token = os.environ.get(env)
    if not token:
        return
    got = (headers or {}).get("authorization") or ""
    scheme, _, value = got.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        value.strip().encode(), token.encode()
    ):
        raise AuthError(
            f"header Authorization: expected 'Bearer <token>' (the service's {env}); "
            "missing or wrong",
            field="Authorization",
        )


def groups_summary(model: LoadedModel) -> dict[str, Any]:
    """Portraits of the model's user groups: ``{"n_groups", "silhouette", "groups"}``."""
    g = model.groups
    if g is None:
        raise NotFoundError(
            f"model={model.tag!r} has no user groups (too few users when it was built)",
            field="groups",
        )
    sil = float(g.silhouette_) if g.silhouette_ is not None else float("nan")
    return {
        "n_groups": int(g.n_groups_),
        "silhouette": sil if np.isfinite(sil) else None,
        "groups": [p.to_dict() for p in getattr(g, "portraits_", None) or []],
    }


def freeze_heap(*, refreeze: bool = False) -> None:
    """Take what is alive now (the loaded model) out of the garbage collector's rounds.

    A full collection walks every tracked object: about 160 ms over a loaded demo
    model's 318k, a pause that every request of the worker waits out (two such pauses,
    of up to 235 ms, in 3,000 requests at concurrency 8). Frozen objects are still freed
    when their last reference goes. ``refreeze`` (after a new version is swapped in)
    first thaws the old one, so that its reference cycles are collected.
    """
    t0 = time.perf_counter()
    if refreeze:
        gc.unfreeze()
    gc.collect()
    gc.freeze()
    ms = (time.perf_counter() - t0) * 1000
    log.debug("heap frozen in %.0f ms: %d objects", ms, gc.get_freeze_count())


def limit_math_threads(n: int) -> None:
    """Cap BLAS/OpenMP and torch intra-op threads of this process at ``n``."""
    import torch
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    torch.set_num_threads(n)
