"""The service three ways: direct calls, the ASGI app, and one real `bentoml serve`."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def service_module(toy_model, tmp_path_factory):
    """``service.py`` over the toy model, with a feedback store private to the module."""
    os.environ["RECBENTO_MODEL"] = "svc-toy"
    os.environ["RECBENTO_FEEDBACK_DB"] = str(tmp_path_factory.mktemp("fb") / "feedback.db")
    sys.path.insert(0, str(ROOT))
    module = importlib.import_module("service")
    module = importlib.reload(module)
    yield module
    os.environ.pop("RECBENTO_MODEL", None)
    os.environ.pop("RECBENTO_FEEDBACK_DB", None)


def ask(svc, **body):
    """The async ``recommend`` API called as a dependent service's code would."""
    return asyncio.run(svc.recommend(**body))


@pytest.fixture(scope="module")
def direct(service_module, toy_model):
    svc = service_module.Recommender()
    assert svc.handlers.model.tag == toy_model  # RECBENTO_MODEL picked the model
    return svc


def test_direct_recommend_excludes_seen(direct):
    out = ask(direct, user_id=10, k=3)
    assert len(out["items"]) == 3
    assert {1, 2}.isdisjoint(i["item_id"] for i in out["items"])
    assert out["cold_start"] is False


def test_direct_query_goes_through_the_encoder(direct):
    out = ask(direct, query="an animated comedy", k=2)
    assert len(out["items"]) == 2 and out["cold_start"] is False


def test_direct_errors_are_json_responses(direct):
    resp = ask(direct, user_id=10, k=0)
    assert resp.status_code == 422
    assert b'"field":"k"' in resp.body


def test_direct_encode_is_batched_and_normalised(direct):
    v = np.asarray(direct.encode(["a", "b c"]))
    assert v.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def reset_bentoml_metrics() -> None:
    """Unregister BentoML's Prometheus collectors so another ASGI app can start in process."""
    from prometheus_client import REGISTRY

    for collector, names in list(REGISTRY._collector_to_names.items()):
        if any(n.startswith("bentoml_") for n in names):
            REGISTRY.unregister(collector)


@pytest.fixture(scope="module")
def asgi(service_module):
    from starlette.testclient import TestClient

    reset_bentoml_metrics()
    app = service_module.Recommender.to_asgi()
    with TestClient(app) as client:
        yield client


def test_asgi_recommend(asgi):
    r = asgi.post("/recommend", json={"user_id": 20, "k": 2})
    assert r.status_code == 200
    got = [i["item_id"] for i in r.json()["items"]]
    assert len(got) == 2 and {4, 5}.isdisjoint(got)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"user_id": 10, "k": 1000}, 422, "k"),
        ({"history": [1, 9999]}, 404, "history[1]"),
        ({"user_id": 10, "include": {"colour": ["red"]}}, 422, "include.colour"),
    ],
)
def test_asgi_domain_errors_name_the_field(asgi, body, status, field):
    r = asgi.post("/recommend", json=body)
    assert r.status_code == status
    assert r.json()["field"] == field


def test_asgi_wrong_types_are_400(asgi):
    r = asgi.post("/recommend", json={"user_id": 10, "k": "ten"})
    assert r.status_code == 400 and "k" in r.text


def test_asgi_similar_items_and_batch(asgi):
    r = asgi.post("/similar_items", json={"item_id": 7, "k": 2})
    assert r.status_code == 200 and len(r.json()["items"]) == 2
    r = asgi.post(
        "/recommend_batch", json={"requests": [{"user_id": 10, "k": 2}, {"user_id": 404, "k": 1}]}
    )
    assert r.status_code == 200
    body = r.json()
    assert [len(b["items"]) for b in body] == [2, 1] and body[1]["cold_start"] is True


def test_direct_feedback_is_stored_and_reflected_at_once(direct):
    before = [i["item_id"] for i in ask(direct, user_id=10, k=6)["items"]]
    assert 3 in before
    out = direct.feedback(events=_events({"user_id": 10, "item_id": 3, "timestamp": 500}))
    assert out["stored"] == 1 and out["total"] == direct.handlers.store.count()
    after = [i["item_id"] for i in ask(direct, user_id=10, k=6)["items"]]
    assert 3 not in after


def test_direct_feedback_makes_a_new_user_warm(direct):
    assert ask(direct, user_id="newbie", k=2)["cold_start"] is True
    direct.feedback(events=_events({"user_id": "newbie", "item_id": 7, "timestamp": 10}))
    out = ask(direct, user_id="newbie", k=3)
    assert out["cold_start"] is False and 7 not in [i["item_id"] for i in out["items"]]


def test_direct_feedback_reports_every_bad_event(direct):
    n = direct.handlers.store.count()
    resp = direct.feedback(
        events=_events(
            {"user_id": 10, "item_id": 9999, "timestamp": 1},
            {"user_id": 10, "item_id": 1, "timestamp": 2},
            {"user_id": 10, "item_id": 8888, "timestamp": 3},
        )
    )
    assert resp.status_code == 422
    assert b"9999" in resp.body and b"8888" in resp.body
    assert direct.handlers.store.count() == n  # nothing stored


def _events(*events):
    from recommender.services.schemas import FeedbackEvent

    return [FeedbackEvent(**e) for e in events]


def test_asgi_feedback_then_recommend(asgi):
    ev = {"user_id": 20, "item_id": 6, "timestamp": 300, "rating": 4.5}
    r = asgi.post("/feedback", json={"events": [ev]})
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 1
    r = asgi.post("/recommend", json={"user_id": 20, "k": 5})
    assert 6 not in [i["item_id"] for i in r.json()["items"]]


def test_asgi_feedback_needs_the_token_when_set(asgi, monkeypatch):
    monkeypatch.setenv("RECBENTO_API_TOKEN", "s3cret")
    body = {"events": [{"user_id": 40, "item_id": 8, "timestamp": 60}]}
    r = asgi.post("/feedback", json=body)
    assert r.status_code == 401 and r.json()["field"] == "Authorization"
    r = asgi.post("/feedback", json=body, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    r = asgi.post("/feedback", json=body, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200, r.text
    # reads stay open
    assert asgi.post("/recommend", json={"user_id": 40, "k": 1}).status_code == 200


def test_asgi_groups(asgi):
    r = asgi.post("/groups", json={})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["n_groups"] == len(body["groups"]) >= 2
    assert sum(g["size"] for g in body["groups"]) == 4


@pytest.mark.parametrize("strategy", ["average", "least_misery", "most_pleasure", "borda"])
def test_asgi_recommend_group_excludes_what_any_member_saw(asgi, strategy):
    # k=2: the module's instances share one feedback store, and user 10's feedback on
    # item 3 (taken by the `direct` instance) may already count here, leaving {6, 8}
    r = asgi.post(
        "/recommend_group", json={"user_ids": [10, 30, "stranger"], "k": 2, "strategy": strategy}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    got = [i["item_id"] for i in body["items"]]
    assert len(got) == 2 and {1, 2, 4, 5, 7}.isdisjoint(got)
    assert body["cold_start"] == ["stranger"] and body["strategy"] == strategy


def test_recommend_group_strategies_differ_on_the_toy(direct):
    model = direct.handlers.model
    # 10 likes crime (1, 2), 20 animation (4, 5): the average favours neither extreme
    tops = {
        s: [
            i.item_id
            for i in model.recommend_group(user_ids=[10, 20], k=6, strategy=s, rerank=False).items
        ]
        for s in ("average", "least_misery", "most_pleasure", "borda")
    }
    for got in tops.values():
        assert {1, 2, 4, 5}.isdisjoint(got)
    assert tops["most_pleasure"][0] in {3, 6}  # a favourite of one member


def test_recommend_group_bad_input(asgi):
    r = asgi.post("/recommend_group", json={"user_ids": [10], "strategy": "dictator"})
    assert r.status_code == 400 and "strategy" in r.text
    r = asgi.post("/recommend_group", json={"user_ids": [], "k": 2})
    assert r.status_code == 400 and "user_ids" in r.text
    r = asgi.post("/recommend_group", json={"user_ids": [10], "k": 0})
    assert r.status_code == 422 and r.json()["field"] == "k"
    r = asgi.post("/recommend_group", json={"user_ids": [10], "knobs": {"bogus": 1}})
    assert r.status_code == 422 and r.json()["field"] == "knobs.bogus"


def test_asgi_recommend_accepts_knobs_and_rerank(asgi):
    r = asgi.post("/recommend", json={"user_id": 30, "k": 2, "rerank": False})
    assert r.status_code == 200 and len(r.json()["items"]) == 2
    r = asgi.post("/recommend", json={"user_id": 30, "k": 2, "knobs": {"bogus": 0.1}})
    assert r.status_code == 422 and r.json()["field"] == "knobs.bogus"


def test_asgi_household_runs_the_same_stages_as_one_user(asgi):
    """Filters, exclude_items, explanations and knobs work for a household too."""
    body = {
        "user_ids": [10, 20],
        "k": 3,
        "include": {"genres": ["Sci-Fi"]},
        "exclude_items": [8],
        "explain": True,
        "knobs": {"kg_weight": 0.5, "diversity": 0.0},
    }
    r = asgi.post("/recommend_group", json=body)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["item_id"] for i in items] == [7]  # the one Sci-Fi film left
    r = asgi.post("/recommend_group", json={**body, "include": None, "exclude_items": None})
    got = r.json()["items"]
    assert {1, 2, 4, 5}.isdisjoint(i["item_id"] for i in got)  # seen by a member
    assert any(i.get("reasons") for i in got)  # explained from the members' histories


def test_asgi_answers_carry_a_request_id_that_feedback_and_online_metrics_use(asgi):
    # a user of its own: earlier tests of this module leave user 30 few unseen items
    body = {"user_id": "asgi-online", "k": 2, "exclude_shown": 3}
    out = asgi.post("/recommend", json=body).json()
    assert len(out["request_id"]) == 32 and len(out["items"]) == 2
    click = {
        "user_id": "asgi-online",
        "item_id": out["items"][0]["item_id"],
        "timestamp": 2_000_000_000,
        "type": "click",
        "request_id": out["request_id"],
    }
    assert asgi.post("/feedback", json={"events": [click]}).status_code == 200
    bad = asgi.post("/feedback", json={"events": [{**click, "type": "bought"}]})
    assert bad.status_code == 400 and "type" in bad.text
    r = asgi.post("/online_metrics", json={"by": ["model"]})
    assert r.status_code == 200, r.text
    assert r.json()["by"] == ["model"] and isinstance(r.json()["rows"], list)
    assert asgi.post("/online_metrics", json={"by": ["colour"]}).status_code == 400
