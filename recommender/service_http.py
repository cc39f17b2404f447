"""HTTP-facing types and the one place where domain errors become HTTP responses.

Also the service's guards: request-body size limit (an ASGI middleware), the optional
bearer token of mutating APIs, and text checks (lone surrogates, NUL) that would
otherwise surface deep in the encoder or the JSON writer as a 500.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from recommender.errors import InputError, RecbentoError
from recommender.pipeline import Request

__all__ = [
    "AuthError",
    "BodyLimit",
    "FeedbackEvent",
    "Filters",
    "Knobs",
    "PayloadTooLarge",
    "RecommendRequest",
    "call",
    "check_text",
    "check_token",
    "encoder_settings",
    "error_response",
    "service_limits",
    "similar_items",
]

log = logging.getLogger(__name__)

#: ``{"genres": ["Comedy", "Drama"]}``: attribute -> accepted values.
Filters = dict[str, list[str]]

#: Per-request tuning of the reranker, e.g. ``{"diversity": 0.3, "kg_weight": 0.5}``.
Knobs = dict[str, Annotated[float, Field(allow_inf_nan=False)]]


class AuthError(RecbentoError):
    """A mutating API was called without the configured bearer token."""

    status_code = 401


class PayloadTooLarge(RecbentoError):
    """The request body is over ``RECBENTO_MAX_BODY_BYTES``."""

    status_code = 413


class RecommendRequest(BaseModel):
    """Body of one recommendation request (also an element of ``recommend_batch``)."""

    model_config = ConfigDict(extra="forbid")

    user_id: int | str | None = None
    history: list[int | str] | None = None
    query: str | None = None
    k: Annotated[int, Field(description="number of items")] = 10
    exclude_seen: bool = True
    include: Filters | None = None
    exclude: Filters | None = None
    explain: bool = False
    rerank: bool = True
    knobs: Knobs | None = None

    def to_request(self) -> Request:
        """The pipeline's :class:`~recommender.pipeline.Request`, text fields checked."""
        check_text(self.user_id, "user_id")
        check_text(self.query, "query")
        for n, h in enumerate(self.history or []):
            check_text(h, f"history[{n}]")
        for name, spec in (("include", self.include), ("exclude", self.exclude)):
            for col, values in (spec or {}).items():
                check_text(col, f"{name}.{col!r}")
                for v in values:
                    check_text(v, f"{name}.{col}")
        return Request(**self.model_dump())


class FeedbackEvent(BaseModel):
    """One interaction reported back by a client (same fields as the interaction log)."""

    model_config = ConfigDict(extra="forbid")

    user_id: int | str
    item_id: int | str
    timestamp: Annotated[int | str, Field(description="unix seconds or an ISO-8601 time")]
    rating: Annotated[float | None, Field(allow_inf_nan=False)] = None
    weight: Annotated[float | None, Field(allow_inf_nan=False, ge=0)] = None

    def checked(self, n: int) -> dict[str, Any]:
        """The event as a dict, text fields checked (field names ``events[n].x``)."""
        for name in ("user_id", "item_id", "timestamp"):
            check_text(getattr(self, name), f"events[{n}].{name}")
        return self.model_dump()


def check_text(value: Any, field: str) -> None:
    """Reject strings the pipeline cannot carry: lone surrogates and NUL.

    Lone surrogates (``"\\ud800"``) are valid JSON escapes but not encodable as UTF-8,
    so they would break the tokenizer and the JSON response; NUL breaks C-level
    string handling. Other unicode (RTL marks, combining characters, emoji) is fine.
    """
    if not isinstance(value, str):
        return
    if "\x00" in value:
        raise InputError(f"{field}: NUL characters are not allowed", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"{field}: not valid unicode (lone surrogate at position {exc.start})",
            field=field,
        ) from None


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
            "header Authorization: expected 'Bearer <token>' (the service's "
            f"{env}); missing or wrong",
            field="Authorization",
        )


def service_limits() -> dict[str, int]:
    """Request limits from the environment (defaults in parentheses).

    ``RECBENTO_MAX_BODY_BYTES`` (1 MiB), ``RECBENTO_MAX_EVENTS`` per feedback call
    (1000), ``RECBENTO_MAX_GROUP`` members of ``recommend_group`` (50), and
    ``RECBENTO_WORKERS``, the API service's worker processes (2; workers share the
    feedback store, so feedback taken by one counts in every worker's next answer), and
    ``RECBENTO_API_THREADS``, math threads (BLAS, torch) per API worker (1: requests run
    in parallel across threads and workers, and multi-threaded BLAS on a one-request
    matrix-vector product mostly spins).
    """
    return {
        "max_body_bytes": int(os.environ.get("RECBENTO_MAX_BODY_BYTES", str(1 << 20))),
        "max_events": int(os.environ.get("RECBENTO_MAX_EVENTS", "1000")),
        "max_group": int(os.environ.get("RECBENTO_MAX_GROUP", "50")),
        "workers": int(os.environ.get("RECBENTO_WORKERS", "2")),
        "api_threads": int(os.environ.get("RECBENTO_API_THREADS", "1")),
    }


def limit_math_threads(n: int) -> None:
    """Cap BLAS/OpenMP and torch intra-op threads of this process at ``n``."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_num_threads(n)


class BodyLimit:
    """ASGI middleware: answer 413 JSON for request bodies over ``max_bytes``.

    Checks ``Content-Length`` up front and, for chunked bodies, counts while
    buffering, so the application never sees an oversized body.
    """

    def __init__(self, app: Any, max_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes or service_limits()["max_body_bytes"]

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                n = -1
            if n > self.max_bytes or n < 0:
                await self._reject(scope, send, n)
                return
            await self.app(scope, receive, send)
            return
        if scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                break
            body = msg.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._reject(scope, send, size)
                return
            chunks.append(body)
            if not msg.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def receive_buffered() -> dict:
            return replay.pop() if replay else await receive()

        await self.app(scope, receive_buffered, send)

    async def _reject(self, scope: dict, send: Callable, size: int) -> None:
        exc = PayloadTooLarge(
            f"request body of {size} bytes is over the limit of {self.max_bytes} "
            "(RECBENTO_MAX_BODY_BYTES)",
            field="body",
            value=size,
        )
        log.info("rejected %s: %s", scope.get("path"), exc.message)
        body = json.dumps(exc.to_dict()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": exc.status_code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def similar_items(rec: Any, item_id: int | str, k: int) -> dict[str, Any]:
    """The ``similar_items`` response: ``{"item_id", "items": [...]}``."""
    check_text(item_id, "item_id")
    return {"item_id": item_id, "items": [i.to_dict() for i in rec.similar_items(item_id, k)]}


def error_response(exc: RecbentoError) -> JSONResponse:
    """A domain error as a JSON response with its 4xx status."""
    return JSONResponse(exc.to_dict(), status_code=exc.status_code)


def call(fn: Callable[[], Any], ctx: Any = None) -> Any:
    """Run ``fn``; a :class:`RecbentoError` becomes its JSON error response.

    APIs that take a BentoML context must pass it: BentoML then sets the response
    status from ``ctx.response.status_code``, overriding the error response's own.
    """
    try:
        return fn()
    except RecbentoError as exc:
        log.info("rejected request: %s", exc.message)
        if ctx is not None:
            ctx.response.status_code = exc.status_code
        return error_response(exc)


def encoder_settings() -> dict[str, int]:
    """Adaptive-batching limits of ``encode``, from the environment.

    ``max_latency_ms`` is generous on purpose: on a 2-core CPU a batch of 64 short
    texts takes about 160 ms, and a tight limit makes BentoML shed load with 503s.
    """
    return {
        "max_batch_size": int(os.environ.get("RECBENTO_ENCODE_MAX_BATCH", "64")),
        "max_latency_ms": int(os.environ.get("RECBENTO_ENCODE_MAX_LATENCY_MS", "10000")),
    }
