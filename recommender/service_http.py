"""HTTP-facing types and the one place where domain errors become HTTP responses."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from recommender.errors import RecbentoError
from recommender.pipeline import Request

__all__ = ["Filters", "RecommendRequest", "call", "encoder_settings", "error_response"]

log = logging.getLogger(__name__)

#: ``{"genres": ["Comedy", "Drama"]}``: attribute -> accepted values.
Filters = dict[str, list[str]]


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

    def to_request(self) -> Request:
        return Request(**self.model_dump())


def error_response(exc: RecbentoError) -> JSONResponse:
    """A domain error as a JSON response with its 4xx status."""
    return JSONResponse(exc.to_dict(), status_code=exc.status_code)


def call(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; a :class:`RecbentoError` becomes its JSON error response."""
    try:
        return fn()
    except RecbentoError as exc:
        log.info("rejected request: %s", exc.message)
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
