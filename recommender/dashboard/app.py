"""The operator dashboard: a static page and read-only JSON, mounted into the API service.

:func:`dashboard_app` makes a Starlette app that :func:`recommender.services.make_services`
mounts at ``/dashboard`` with :func:`bentoml.asgi_app`, so the same ``bentoml serve`` (and
the same worker, the same loaded model) serves it. Routes, relative to the mount:

``/``                       the page (HTML, scripts and styles from the package; public)
``/static/...``             its assets, Apache ECharts included (no CDN, no web fonts)
``/api/overview``           counts, model version, the offline quality stored with it
``/api/users?q=&limit=``    stored users, most active first
``/api/users/{id}``         a user's history (stored log + live feedback) and group
``/api/recommend``          POST, a ``recommend`` body: the list the user would get, not logged
``/api/items/{id}``         an item's attributes and knowledge-graph neighbourhood
``/api/user_map``           stored users on their vectors' two principal axes
``/api/titles?ids=1,2``     titles of catalogue items
``/api/knobs``              per-request knobs and the model's defaults
``/api/experiments``        experiments, per-arm metrics with intervals, verdicts

Every ``/api`` route needs ``Authorization: Bearer $RECBENTO_API_TOKEN`` when that
variable is set (as ``feedback`` and ``online_metrics`` do); the page asks for the token
and keeps it for the browser tab. The page also calls the public ``similar_items``,
``groups`` and ``online_metrics`` APIs. ``/api/recommend`` answers through the request
path exactly as ``recommend`` does (same experiment arm, same stages) but logs no
impression, so looking at users does not dilute the online metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as HTTPRequest
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from recommender.dashboard import data
from recommender.errors import InputError, NotFoundError, RecbentoError
from recommender.services.handlers import check_token
from recommender.services.schemas import RecommendBody, check_ids, check_text

__all__ = ["STATIC", "dashboard_app"]

log = logging.getLogger(__name__)

#: The page's files, shipped inside the package.
STATIC = Path(__file__).resolve().parent / "static"

HandlersFn = Callable[[], Any]


def dashboard_app(handlers: HandlersFn) -> Starlette:
    """The dashboard over the APIs' :class:`~recommender.services.handlers.Handlers`.

    ``handlers`` returns the worker's handlers when a request comes (the service
    instance exists only once the worker has started); their ``model`` is the one the
    APIs serve now, a newer version included once swapped in.
    """

    def guarded(request: HTTPRequest, fn: Callable[[Any, HTTPRequest], Any]) -> Response:
        try:
            check_token(request.headers)
            return JSONResponse(fn(handlers(), request))
        except RecbentoError as exc:
            log.info("dashboard rejected %s: %s", request.url.path, exc.message)
            return JSONResponse(exc.to_dict(), status_code=exc.status_code)

    def json_route(path: str, fn: Callable[[Any, HTTPRequest], Any]) -> Route:
        return Route(path, lambda request: guarded(request, fn))  # sync: run in a thread

    async def recommend(request: HTTPRequest) -> Response:
        raw = await request.body()
        return await run_in_threadpool(guarded, request, lambda h, _: _recommend(h, raw))

    def index(request: HTTPRequest) -> Response:
        if not request.url.path.endswith("/"):  # relative asset links need the slash
            return RedirectResponse(str(request.url.replace(path=request.url.path + "/")))
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    routes = [
        Route("/", index),
        json_route("/api/overview", lambda h, r: data.overview(h.model, h.store)),
        json_route("/api/users", _users),
        json_route("/api/users/{user_id:path}", _user),
        Route("/api/recommend", recommend, methods=["POST"]),
        json_route("/api/items/{item_id:path}", _item),
        json_route("/api/user_map", lambda h, r: data.user_map(h.model)),
        json_route("/api/titles", _titles),
        json_route("/api/knobs", lambda h, r: data.knobs(h.model)),
        json_route("/api/experiments", lambda h, r: data.experiments(h.store, h.model)),
        Route("/api/{rest:path}", _no_route, methods=["GET", "POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes)


def _users(h: Any, request: HTTPRequest) -> Any:
    q = request.query_params.get("q") or None
    check_text(q, "q")
    return data.users(h.model, q=q, limit=int_param(request, "limit", 50, 1, 1000))


def _user(h: Any, request: HTTPRequest) -> Any:
    user_id = request.path_params["user_id"]
    check_text(user_id, "user_id")
    return data.user_detail(h.model, user_id, limit=int_param(request, "limit", 50, 1, 1000))


def _item(h: Any, request: HTTPRequest) -> Any:
    item_id = request.path_params["item_id"]
    check_text(item_id, "item_id")
    return data.item_detail(
        h.model,
        item_id,
        radius=int_param(request, "radius", 2, 1, 2),
        max_nodes=int_param(request, "max_nodes", 40, 2, 200),
    )


def _titles(h: Any, request: HTTPRequest) -> Any:
    ids = [i for i in (request.query_params.get("ids") or "").split(",") if i]
    if not 1 <= len(ids) <= 1000:
        raise InputError(
            f"ids has {len(ids)} ids; expected 1 to 1000, comma-separated",
            field="ids",
            value=len(ids),
        )
    check_ids(ids, "ids")
    return data.titles(h.model, ids)


def _recommend(h: Any, raw: bytes) -> dict[str, Any]:
    """``recommend`` for a preview: the user's arm, the request path, no impression."""
    import json

    try:
        body = RecommendBody.model_validate(json.loads(raw or b"{}"))
    except json.JSONDecodeError as exc:
        raise InputError(f"body: not JSON ({exc.msg})", field="body") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "body"
        raise InputError(
            f"{field}={err.get('input')!r}: {err['msg']}", field=field, value=err.get("input")
        ) from None
    return h.online.recommend([body.to_request()], [body.exclude_shown], log_impressions=False)[0]


def int_param(request: HTTPRequest, name: str, default: int, lo: int, hi: int) -> int:
    """Query parameter ``name`` as an integer in ``[lo, hi]``; an :class:`InputError` else."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        raise InputError(
            f"{name}={raw!r}: expected an integer from {lo} to {hi}", field=name, value=raw
        )
    return value


def _no_route(request: HTTPRequest) -> Response:
    path = request.path_params["rest"]
    exc = NotFoundError(
        f"path=/api/{path}: no such dashboard endpoint; expected one of "
        "overview, users, users/{id}, recommend, items/{id}, user_map, titles, knobs, "
        "experiments",
        field="path",
        value=f"/api/{path}",
    )
    return JSONResponse(exc.to_dict(), status_code=exc.status_code)
