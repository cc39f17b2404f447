"""The dashboard's JSON endpoints, in process, through the service's own ASGI app.

The pages themselves are tested in a real browser in ``test_dashboard_browser.py``.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path

import pytest

from tests.test_service import reset_bentoml_metrics

ROOT = Path(__file__).resolve().parent.parent
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def client(toy_model, tmp_path_factory):
    """The service's ASGI app over the toy model, with a private feedback store."""
    from starlette.testclient import TestClient

    os.environ["RECBENTO_MODEL"] = "svc-toy"
    os.environ["RECBENTO_FEEDBACK_DB"] = str(tmp_path_factory.mktemp("fb") / "feedback.db")
    sys.path.insert(0, str(ROOT))
    module = importlib.reload(importlib.import_module("service"))
    reset_bentoml_metrics()
    try:
        with TestClient(module.Recommender.to_asgi()) as c:
            yield c
    finally:
        os.environ.pop("RECBENTO_MODEL", None)
        os.environ.pop("RECBENTO_FEEDBACK_DB", None)


def test_the_page_and_its_assets_are_served(client):
    r = client.get("/dashboard/")
    assert r.status_code == 200 and "<title>recbento dashboard</title>" in r.text
    assert "http://" not in r.text and "https://" not in r.text  # nothing from elsewhere
    r = client.get("/dashboard", follow_redirects=False)
    assert r.status_code in (301, 307) and r.headers["location"].endswith("/dashboard/")
    for asset in ("app.js", "pages.js", "pages_more.js", "style.css"):
        assert client.get(f"/dashboard/static/{asset}").status_code == 200
    js = client.get("/dashboard/static/vendor/echarts/echarts.min.js")
    assert js.status_code == 200 and len(js.content) > 500_000


def test_overview_counts_the_served_model(client):
    body = client.get("/dashboard/api/overview").json()
    assert body["model"].startswith("svc-toy:")
    assert (body["n_items"], body["n_users"], body["n_interactions"]) == (8, 4, 9)
    assert body["n_groups"] >= 2 and {"graph", "groups"} <= set(body["components"])
    assert body["quality"] is None  # the toy model was not trained


def test_user_history_is_the_stored_log_newest_first(client):
    body = client.get("/dashboard/api/users/30").json()
    assert body["user_id"] == 30 and body["n_events"] == 4
    assert [h["item_id"] for h in body["history"]] == [5, 1, 7, 4]
    assert body["history"][0]["title"] == "Up (2009)"
    users = client.get("/dashboard/api/users", params={"limit": 2}).json()
    assert users["total"] == 4 and [u["user_id"] for u in users["users"]] == [30, 10]


def test_preview_equals_the_recommend_api_and_logs_nothing(client):
    body = {"user_id": 10, "k": 4, "explain": True, "knobs": {"diversity": 0.9}}
    before = client.post("/online_metrics", json={"by": []}).json()["rows"]
    preview = client.post("/dashboard/api/recommend", json=body).json()
    api = client.post("/recommend", json=body).json()
    assert [i["item_id"] for i in preview["items"]] == [i["item_id"] for i in api["items"]]
    assert [i["reasons"] for i in preview["items"]] == [i["reasons"] for i in api["items"]]
    assert "request_id" not in preview and "request_id" in api
    from recommender.impressions import impressions_frame
    from recommender.refresh import open_store

    with open_store(os.environ["RECBENTO_FEEDBACK_DB"]) as store:
        for _ in range(50):  # the API's impression is written off the request path
            logged = impressions_frame(store)
            if len(logged):
                break
            time.sleep(0.1)
    assert list(logged["request_id"]) == [api["request_id"]]  # the preview left no trace
    assert not before


def test_item_neighbourhood_comes_from_the_graph(client):
    body = client.get("/dashboard/api/items/1").json()
    assert body["title"] == "Heat (1995)" and body["attributes"]["director"] == "Michael Mann"
    assert {"type": "genre", "value": "Crime"} in body["entities"]
    nodes = {n["id"]: n for n in body["graph"]["nodes"]}
    assert body["graph"]["center"] == "item:1" and "item:2" in nodes  # shares Michael Mann
    edges = {(e["source"], e["target"]) for e in body["graph"]["edges"]}
    assert all(s in nodes and t in nodes for s, t in edges)


def test_user_map_has_every_stored_user_in_their_group(client):
    body = client.get("/dashboard/api/user_map").json()
    groups = client.post("/groups", json={}).json()
    assert sorted(p["user_id"] for p in body["points"]) == [10, 20, 30, 40]
    sizes = {g["group"]: g["size"] for g in groups["groups"]}
    for g, size in sizes.items():
        assert sum(p["group"] == g for p in body["points"]) == size


@pytest.mark.parametrize(
    ("path", "status", "field", "value"),
    [
        ("/dashboard/api/users/999", 404, "user_id", "999"),
        ("/dashboard/api/items/999", 404, "item_id", "999"),
        ("/dashboard/api/users?limit=0", 422, "limit", "0"),
        ("/dashboard/api/users?limit=ten", 422, "limit", "ten"),
        ("/dashboard/api/items/1?radius=3", 422, "radius", "3"),
        ("/dashboard/api/titles?ids=1,77", 404, "ids[1]", "77"),
        ("/dashboard/api/nothing", 404, "path", "/api/nothing"),
    ],
)
def test_bad_input_is_json_naming_the_field(client, path, status, field, value):
    r = client.get(path)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["field"] == field and str(body["value"]) == value and body["message"]


def test_bad_preview_body_names_the_field(client):
    r = client.post("/dashboard/api/recommend", json={"user_id": 10, "knobs": {"bogus": 1}})
    assert r.status_code == 422 and r.json()["field"] == "knobs.bogus"
    r = client.post("/dashboard/api/recommend", json={"user_id": 10, "k": "ten"})
    assert r.status_code == 422 and r.json()["field"] == "k" and r.json()["value"] == "ten"
    r = client.post("/dashboard/api/recommend", json={"user_id": 10, "colour": "red"})
    assert r.status_code == 422 and r.json()["field"] == "colour"
    r = client.post("/dashboard/api/recommend", content=b"{not json", headers=JSON)
    assert r.status_code == 400 and r.json()["field"] == "body"


def test_every_data_endpoint_needs_the_token_when_one_is_set(client, monkeypatch):
    monkeypatch.setenv("RECBENTO_API_TOKEN", "s3cret")
    assert client.get("/dashboard/").status_code == 200  # the shell alone is public
    gets = ["overview", "users", "users/10", "items/1", "user_map", "titles?ids=1", "knobs"]
    for path in [*gets, "experiments"]:
        r = client.get(f"/dashboard/api/{path}")
        assert r.status_code == 401 and r.json()["field"] == "Authorization", path
        ok = client.get(f"/dashboard/api/{path}", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200, (path, ok.text)
    r = client.post("/dashboard/api/recommend", json={"user_id": 10})
    assert r.status_code == 401
