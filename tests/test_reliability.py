"""Bad input never breaks the service: every class of bad request gets a 4xx JSON error.

Everything runs against the ASGI app (``Recommender.to_asgi()``), in process; the last
test lets schemathesis generate requests from the service's own OpenAPI schema.
"""

from __future__ import annotations

import json

import pytest

from recommender.services import ServiceSettings
from tests.test_service import (  # noqa: F401  (module fixtures)
    asgi,
    ask,
    direct,
    reset_bentoml_metrics,
    service_module,
)

BIG = "x" * 1_000_000


def _post(client, path: str, raw: str | bytes):
    return client.post(path, content=raw, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("path", "raw", "status", "needle"),
    [
        ("/recommend", "{not json", 400, ""),
        ("/recommend", '{"user_id": 10, "k": NaN}', 400, "k"),
        ("/recommend", '{"user_id": 10, "k": Infinity}', 400, "k"),
        ("/recommend", '{"history": [Infinity]}', 400, "history"),
        ("/recommend", '{"user_id": 10, "k": 1e400}', 400, "k"),
        ("/recommend", '{"user_id": 10, "k": -1}', 422, "k"),
        ("/recommend", '{"user_id": 10, "k": 101}', 422, "k"),
        ("/recommend", '{"user_id": [1, 2]}', 400, "user_id"),
        ("/recommend", '{"user_id": 10, "knobs": {"diversity": NaN}}', 400, "knobs"),
        ("/recommend", '{"history": [1, 9999]}', 404, "history[1]"),
        ("/recommend", '{"history": [' + ",".join(["1"] * 501) + "]}", 422, "history"),
        ("/recommend", json.dumps({"query": BIG}), 422, "query"),
        ("/recommend", '{"query": "\\ud800 crime"}', 400, "Invalid JSON"),
        ("/recommend", '{"user_id": "\\udfff"}', 400, "Invalid JSON"),
        ("/recommend", '{"query": "nul \\u0000 byte"}', 422, "query"),
        ("/similar_items", '{"item_id": 9999}', 404, "item_id"),
        ("/similar_items", '{"item_id": "\\ud83d"}', 400, "Invalid JSON"),
        ("/similar_items", "{}", 400, "item_id"),
        ("/similar_items", '{"item_id": 1, "k": 0}', 422, "k"),
        ("/recommend_batch", '{"requests": [{"k": "ten"}]}', 400, "k"),
        ("/feedback", '{"events": []}', 400, "events"),
        ("/feedback", '{"events": [{"user_id": 1, "item_id": 1}]}', 400, "timestamp"),
        (
            "/feedback",
            '{"events": [{"user_id": 1, "item_id": 9999, "timestamp": 5}]}',
            422,
            "item_id",
        ),
        (
            "/feedback",
            '{"events": [{"user_id": 1, "item_id": 1, "timestamp": 5, "rating": NaN}]}',
            400,
            "rating",
        ),
        (
            "/feedback",
            '{"events": [{"user_id": 1, "item_id": 1, "timestamp": 5, "weight": -1}]}',
            400,
            "weight",
        ),
        (
            "/feedback",
            '{"events": [{"user_id": 1, "item_id": 1, "timestamp": "yesterday-ish"}]}',
            422,
            "timestamp",
        ),
        (
            "/feedback",
            '{"events": [{"user_id": "\\ud800", "item_id": 1, "timestamp": 5}]}',
            400,
            "Invalid JSON",
        ),
        ("/recommend_group", '{"user_ids": [10, "\\ud800"]}', 400, "Invalid JSON"),
        # a typo is not silently ignored: unknown fields are a 422 naming them, at any depth
        ("/recommend", '{"user_id": 10, "filters": {"genres": ["Comedy"]}}', 422, '"filters"'),
        ("/recommend_batch", '{"requests": [{"k": 1}, {"k": 2, "kk": 3}]}', 422, "requests[1].kk"),
        (
            "/feedback",
            '{"events": [{"user_id": 1, "item_id": 1, "timestamp": 5, "x": 1}]}',
            422,
            "events[0].x",
        ),
        (  # the hint lists the fields expected where the unknown one is, not the top level
            "/feedback",
            '{"events": [{"user_id": 1, "item_id": 1, "timestamp": 5, "event": "click"}]}',
            422,
            "fields of events[0] are ['user_id', 'item_id', 'timestamp'",
        ),
        ("/groups", '{"verbose": true}', 422, "verbose"),
        # a dot in a top-level name is still the top level
        ("/recommend", '{"user.id": 10}', 422, "top-level fields are"),
        # a body that is not a JSON object of fields is a 400
        ("/recommend", "user_id=10&k=3", 400, "not valid JSON"),
        ("/recommend", "[10, 3]", 400, "JSON object"),
        ("/similar_items", '"7"', 400, "JSON object"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(asgi, path, raw, status, needle):  # noqa: F811
    r = _post(asgi, path, raw)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert needle in r.text


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("text/plain", 415),
        ("multipart/form-data", 415),  # no boundary: BentoML's parser used to answer 500
        ("multipart/form-data; boundary=x", 415),
        ("application/x-www-form-urlencoded", 415),
        ("application/vnd.bentoml+pickle", 415),  # internal between services, never from outside
        ("application/json; charset=utf-8", 200),
    ],
)
def test_media_types_other_than_json_are_refused(asgi, content_type, status):  # noqa: F811
    r = asgi.post(
        "/recommend", content=b'{"user_id": 10, "k": 2}', headers={"content-type": content_type}
    )
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")


def test_empty_batch_is_an_empty_answer(asgi):  # noqa: F811
    r = asgi.post("/recommend_batch", json={"requests": []})
    assert r.status_code == 200 and r.json() == []


def test_lone_surrogates_are_rejected_by_the_library_too(direct):  # noqa: F811
    # the JSON layer already answers 400; direct callers get a 422 naming the field
    r = ask(direct, query="\ud800 crime", k=2)
    assert r.status_code == 422 and b'"field":"query"' in r.body
    r = direct.similar_items(item_id="a\x00b", k=2)
    assert r.status_code == 422 and b'"field":"item_id"' in r.body


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": "\u202edlrow\u202c", "k": 2},  # RTL override
        {"user_id": "👩‍👩‍👧", "k": 2},
        {"query": "e\u0301\u200b\ufeff comedy", "k": 2},
        {"user_id": 10**30, "k": 2},
        {"user_id": "", "k": 2},
    ],
)
def test_unicode_oddities_and_unknown_users_are_cold_starts(asgi, body):  # noqa: F811
    r = asgi.post("/recommend", json=body)
    assert r.status_code == 200, r.text
    if "query" not in body:
        assert r.json()["cold_start"] is True


def test_oversized_payload_is_413(asgi):  # noqa: F811
    limit = ServiceSettings().max_body_bytes
    events = [{"user_id": 1, "item_id": 1, "timestamp": 5}] * (limit // 40 + 10)
    r = asgi.post("/feedback", json={"events": events})
    assert r.status_code == 413 and r.json()["field"] == "body"


def test_body_limit_counts_chunked_bodies():
    import asyncio

    from recommender.services.guard import RequestGuard
    from recommender.services.schemas import FeedbackBody

    sent: list[dict] = []

    async def app(scope, receive, send):  # pragma: no cover - must not be reached
        raise AssertionError("oversized body reached the app")

    # popped from the end: two chunks with more to come, then the last one
    chunks = [{"type": "http.request", "body": b"x" * 60, "more_body": False}] + [
        {"type": "http.request", "body": b"x" * 60, "more_body": True}
    ] * 2

    async def receive():
        return chunks.pop()

    async def send(msg):
        sent.append(msg)

    guard = RequestGuard(app, max_bytes=100, bodies={"/feedback": FeedbackBody})
    asyncio.run(guard({"type": "http", "method": "POST", "path": "/feedback"}, receive, send))
    assert sent[0]["status"] == 413 and not chunks  # read to the end, then answered


def test_service_settings_are_per_service(toy_model, tmp_path, monkeypatch):
    """A second pair of services for the same model, with limits of its own."""
    from starlette.testclient import TestClient

    from recommender.services import make_services

    monkeypatch.setenv("RECBENTO_FEEDBACK_DB", str(tmp_path / "fb.db"))
    settings = ServiceSettings(max_events=2, max_body_bytes=4096, workers=1)
    _, small = make_services(toy_model, name="recbento-small", settings=settings)
    reset_bentoml_metrics()
    with TestClient(small.to_asgi()) as client:
        ev = {"user_id": 1, "item_id": 1, "timestamp": 5}
        r = client.post("/feedback", json={"events": [ev] * 3})
        assert r.status_code == 422 and r.json()["field"] == "events"
        r = client.post("/recommend", json={"user_id": 10, "history": [1] * 3000})
        assert r.status_code == 413 and r.json()["field"] == "body"
        assert client.post("/recommend", json={"user_id": 10, "k": 2}).status_code == 200


def test_schemathesis_finds_no_server_error(service_module):  # noqa: F811
    """Requests generated from the service's own OpenAPI schema never get a 5xx.

    Valid and invalid (negative) bodies for every API but ``encode`` (model-bound and
    slow); bounded examples so the run stays well under a minute on 2 cores.
    """
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error

    reset_bentoml_metrics()
    app = service_module.Recommender.to_asgi()
    schema = schemathesis.openapi.from_asgi("/docs.json", app)
    ops = [r.ok() for r in schema.get_all_operations()]
    ops = [op for op in ops if op.path in API_PATHS]
    assert {op.path for op in ops} == API_PATHS
    failures: list[str] = []
    calls = 0
    for op in ops:
        strategy = op.as_strategy(generation_mode=GenerationMode.POSITIVE) | op.as_strategy(
            generation_mode=GenerationMode.NEGATIVE
        )

        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run(case):
            nonlocal calls
            resp = case.call()
            calls += 1
            try:
                case.validate_response(resp, checks=[not_a_server_error])
            except Exception as exc:  # collect all, report together
                failures.append(f"{case.path}: {resp.status_code} {str(exc)[:300]}")

        run()
    assert calls >= 40 * len(API_PATHS) // 2
    assert not failures, failures


API_PATHS = {
    "/recommend",
    "/recommend_batch",
    "/similar_items",
    "/feedback",
    "/groups",
    "/recommend_group",
}
