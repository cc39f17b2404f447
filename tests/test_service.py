"""The service three ways: direct calls, the ASGI app, and one real `bentoml serve`."""

from __future__ import annotations

import importlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def service_module(toy_model):
    os.environ["RECBENTO_MODEL"] = "svc-toy"
    sys.path.insert(0, str(ROOT))
    module = importlib.import_module("service")
    module = importlib.reload(module)
    assert module.MODEL_TAG == toy_model
    yield module
    os.environ.pop("RECBENTO_MODEL", None)


@pytest.fixture(scope="module")
def direct(service_module):
    return service_module.Recommender()


def test_direct_recommend_excludes_seen(direct):
    out = direct.recommend(user_id=10, k=3)
    assert len(out["items"]) == 3
    assert {1, 2}.isdisjoint(i["item_id"] for i in out["items"])
    assert out["cold_start"] is False


def test_direct_query_goes_through_the_encoder(direct):
    out = direct.recommend(query="an animated comedy", k=2)
    assert len(out["items"]) == 2 and out["cold_start"] is False


def test_direct_errors_are_json_responses(direct):
    resp = direct.recommend(user_id=10, k=0)
    assert resp.status_code == 422
    assert b'"field":"k"' in resp.body


def test_direct_encode_is_batched_and_normalised(direct):
    v = np.asarray(direct.encode(["a", "b c"]))
    assert v.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def asgi(service_module):
    from starlette.testclient import TestClient

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
def test_real_bentoml_serve(service_module):
    port = _free_port()
    env = {**os.environ, "RECBENTO_MODEL": "svc-toy"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            "service:Recommender",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode()
            time.sleep(0.5)
        r = httpx.post(f"{url}/recommend", json={"user_id": 30, "k": 3}, timeout=30)
        assert r.status_code == 200, r.text
        assert {1, 4, 5, 7}.isdisjoint(i["item_id"] for i in r.json()["items"])
        r = httpx.post(f"{url}/recommend", json={"query": "crime", "k": 2}, timeout=30)
        assert r.status_code == 200 and len(r.json()["items"]) == 2
        r = httpx.post(f"{url}/encode", json={"texts": ["x"] * 3}, timeout=30)
        assert r.status_code == 200 and np.asarray(r.json()).shape == (3, 32)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
