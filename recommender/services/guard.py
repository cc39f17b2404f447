"""The services' front door: an ASGI middleware that turns malformed bodies into 4xx.

Before BentoML parses a body, :class:`RequestGuard` answers, as JSON naming the
problem:

* 415 for a media type other than JSON (a ``multipart/form-data`` body without a
  boundary used to reach BentoML's parser and come back as a 500);
* 413 for a body over the limit, after reading it to the end, so that clients which
  send the whole body before reading the answer (urllib, requests) see the 413
  instead of a reset connection;
* 400 for a body that is not JSON;
* 422 for a field the API does not have, at any depth (``requests[3].filters``),
  where pydantic's ``extra="forbid"`` alone would give a 400.
"""

from __future__ import annotations

import functools
import json
import logging
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from recommender.errors import (
    BadRequest,
    InputError,
    PayloadTooLarge,
    RecbentoError,
    UnsupportedMediaType,
)

__all__ = ["RequestGuard", "unknown_field"]

log = logging.getLogger(__name__)

#: What BentoML's own client sends between services of one deployment; BentoML itself
#: refuses it on the entry service, so it never comes from outside.
_INTERNAL = "application/vnd.bentoml+pickle"

#: Beyond this many times the limit, an oversized body is no longer drained: the
#: connection is closed after the 413 instead.
_DRAIN_FACTOR = 64


class RequestGuard:
    """ASGI middleware checking POST bodies of the routes in ``bodies``.

    Parameters
    ----------
    app : ASGI app
    max_bytes : int
        Largest body accepted.
    bodies : mapping
        Route path -> the pydantic model of its body.
    """

    def __init__(self, app: Any, *, max_bytes: int, bodies: Mapping[str, type[BaseModel]]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.bodies = dict(bodies)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        model = self.bodies.get(scope.get("path", "")) if scope["type"] == "http" else None
        if model is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        try:
            media = _media_type(headers.get(b"content-type", b"").decode("latin-1"))
            body = await self._read(headers, receive)
            if media != _INTERNAL and body.strip():
                _check_fields(model, body)
        except RecbentoError as exc:
            log.info("rejected %s: %s", scope.get("path"), exc.message)
            await _answer(send, exc)
            return
        replay = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive_again() -> dict:
            return replay.pop() if replay else await receive()

        await self.app(scope, receive_again, send)

    async def _read(self, headers: dict[bytes, bytes], receive: Callable) -> bytes:
        declared = headers.get(b"content-length")
        if declared is not None and not declared.isdigit():
            raise BadRequest(
                f"Content-Length={declared.decode('latin-1')!r}: expected a byte count",
                field="Content-Length",
            )
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                break
            size += len(msg.get("body", b""))
            if size <= self.max_bytes:
                chunks.append(msg.get("body", b""))
            elif size > _DRAIN_FACTOR * self.max_bytes:
                break
            if not msg.get("more_body", False):
                break
        if size > self.max_bytes or int(declared or 0) > self.max_bytes:
            raise PayloadTooLarge(
                f"request body of {max(size, int(declared or 0))} bytes is over the limit of "
                f"{self.max_bytes} (RECBENTO_MAX_BODY_BYTES)",
                field="body",
                value=size,
            )
        return b"".join(chunks)


def unknown_field(
    model: type[BaseModel], data: Any, prefix: str = ""
) -> tuple[str, str, list[str]] | None:
    """The first field of ``data`` that ``model`` does not have: its path, the path of the
    object it is in (``""``: the body) and the fields expected there; else ``None``.

    >>> from recommender.services.schemas import RecommendBatchBody
    >>> path, where, known = unknown_field(
    ...     RecommendBatchBody, {"requests": [{"k": 1}, {"filters": {}}]}
    ... )
    >>> path, where, "include" in known
    ('requests[1].filters', 'requests[1]', True)
    """
    if not isinstance(data, dict):
        return None  # a type error: pydantic reports it
    fields = _fields(model)
    for key, value in data.items():
        if key not in fields:
            return f"{prefix}{key}", prefix.rstrip("."), list(fields)
        inner, many = fields[key]
        if inner is None:
            continue
        values = value if many and isinstance(value, list) else [value]
        for n, v in enumerate(values):
            where = f"{prefix}{key}[{n}]." if many else f"{prefix}{key}."
            found = unknown_field(inner, v, where)
            if found:
                return found
    return None


@functools.cache
def _fields(model: type[BaseModel]) -> dict[str, tuple[type[BaseModel] | None, bool]]:
    """``model``'s fields, each with the model it nests (see :func:`_nested_model`): read
    from the annotations once per model, not once per request."""
    return {name: _nested_model(info.annotation) for name, info in model.model_fields.items()}


def _nested_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """``(model, is_list)`` when an annotation holds a pydantic model (or a list of them)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _nested_model(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _nested_model(arg)
            if found[0] is not None:
                return found
        return None, False
    if origin is list:
        inner, _ = _nested_model(typing.get_args(annotation)[0])
        return inner, inner is not None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def _media_type(content_type: str) -> str:
    """The body's media type; :class:`UnsupportedMediaType` unless JSON (or internal)."""
    media = content_type.split(";")[0].strip().lower()
    if media not in ("", "application/json", _INTERNAL):
        raise UnsupportedMediaType(
            f"Content-Type={content_type!r}: expected application/json",
            field="Content-Type",
            value=content_type,
        )
    return media


def _check_fields(model: type[BaseModel], body: bytes) -> None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body: not valid JSON ({exc})", field="body") from None
    if not isinstance(data, dict):
        raise BadRequest(
            f"body: expected a JSON object of named fields, got {type(data).__name__}",
            field="body",
        )
    found = unknown_field(model, data)
    if found is not None:
        bad, where, known = found
        fields = f"fields of {where}" if where else "top-level fields"
        raise InputError(f"{bad}: unknown field ({fields} are {known})", field=bad, value=bad)


async def _answer(send: Callable, exc: RecbentoError) -> None:
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
