"""One real `bentoml serve` of the toy model per test: the service as its clients meet it."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import httpx
import numpy as np
import pytest

from tests.procs import free_port, kill_hard, serve, stop
from tests.test_service import service_module  # noqa: F401  (module fixture)

#: every test serves ``service.py`` over the toy model (``service_module`` sets it up)
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("service_module")]


def _serve(port: int, **env: str) -> subprocess.Popen:
    """``bentoml serve`` of the toy model on ``port``, ready."""
    return serve("svc-toy", port, env=env)


def test_real_bentoml_serve():
    port = free_port()
    # the queries in fp32, to compare the answer with one encoded in this process
    proc = _serve(port, RECBENTO_KEEPALIVE_REQUESTS="5", RECBENTO_ENCODE_PRECISION="float32")
    try:
        url = f"http://127.0.0.1:{port}"
        r = httpx.post(f"{url}/recommend", json={"user_id": 30, "k": 3}, timeout=30)
        assert r.status_code == 200, r.text
        assert {1, 4, 5, 7}.isdisjoint(i["item_id"] for i in r.json()["items"])
        r = httpx.post(f"{url}/recommend", json={"query": "crime", "k": 2}, timeout=30)
        assert r.status_code == 200 and len(r.json()["items"]) == 2
        # on a CPU the API worker encodes the query itself: the same list as in process
        served, local = r.json()["items"], _in_process("crime", 2)
        assert [i["item_id"] for i in served] == [i.item_id for i in local]
        assert [i["score"] for i in served] == pytest.approx([i.score for i in local], abs=1e-6)
        r = httpx.post(f"{url}/encode", json={"texts": ["x"] * 3}, timeout=30)
        assert r.status_code == 200 and np.asarray(r.json()).shape == (3, 32)
        passes = _texts_per_pass(httpx.get(f"{url}/metrics", timeout=30).text)
        assert passes == {"recbento": 1.0, "recbento-encoder": 3.0}  # query; /encode
        # two API workers (RECBENTO_WORKERS=2): feedback taken by either counts in both
        ev = {"user_id": 30, "item_id": 8, "timestamp": 900}
        assert httpx.post(f"{url}/feedback", json={"events": [ev]}, timeout=30).status_code == 200
        for _ in range(12):
            r = httpx.post(f"{url}/recommend", json={"user_id": 30, "k": 4}, timeout=30)
            assert 8 not in [i["item_id"] for i in r.json()["items"]]
        # one pooled connection: every fifth answer asks the client to reconnect
        # (RECBENTO_KEEPALIVE_REQUESTS=5), and the client carries on over a new one
        with httpx.Client(base_url=url, timeout=30) as client:
            closing = []
            for n in range(1, 13):
                r = client.post("/recommend", json={"user_id": 30, "k": 4})
                assert r.status_code == 200 and 8 not in [i["item_id"] for i in r.json()["items"]]
                if r.headers.get("connection") == "close":
                    closing.append(n)
        assert closing == [5, 10]
        # served lists are counted on /metrics (BentoML's multiprocess registry)
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        assert 'recbento_impressions_total{arm="none"}' in metrics
        # every recommend was scored in exactly one pass of one worker: 2 + 12 + 12
        assert _metric_sum(metrics, "recbento_recommend_batch_requests_sum") == 26
    finally:
        stop(proc)


def _in_process(query: str, k: int) -> list:
    """The items of a free-text ``recommend`` answered in this process (no server)."""
    from recommender.service_core import load
    from recommender.serving import Request, recommend_batch

    return recommend_batch(load("svc-toy"), [Request(query=query, k=k)])[0].items


def _samples(metrics: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Labels and value of every sample called ``name`` on ``/metrics``."""
    from prometheus_client.parser import text_string_to_metric_families

    return [
        (s.labels, s.value)
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == name
    ]


def _metric_sum(metrics: str, name: str) -> float:
    """``name``'s values on ``/metrics``, added up over its labels (and workers)."""
    return sum(value for _, value in _samples(metrics, name))


def _texts_per_pass(metrics: str) -> dict[str, float]:
    """Texts encoded so far by each service's forward passes, from ``/metrics``."""
    out: dict[str, float] = {}
    for labels, value in _samples(metrics, "recbento_encode_batch_texts_sum"):
        out[labels["service"]] = out.get(labels["service"], 0.0) + value
    return out


def test_acknowledged_feedback_survives_kill_9(tmp_path):
    from recommender.feedback import FeedbackStore

    db = str(tmp_path / "feedback.db")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(port, RECBENTO_FEEDBACK_DB=db, RECBENTO_API_TOKEN="tok")
    acked = 0
    try:
        auth = {"Authorization": "Bearer tok"}
        for n in range(20):
            ev = {"user_id": f"u{n % 4}", "item_id": 1 + n % 8, "timestamp": 1000 + n}
            r = httpx.post(f"{url}/feedback", json={"events": [ev]}, headers=auth, timeout=30)
            assert r.status_code == 200, r.text
            acked += r.json()["stored"]
        r = httpx.post(f"{url}/feedback", json={"events": [ev]}, timeout=30)
        assert r.status_code == 401
    finally:
        kill_hard(proc)  # server and workers: no shutdown hooks, no WAL checkpoint
    with FeedbackStore(db) as store:
        assert store.count() == acked == 20
    proc = _serve(port, RECBENTO_FEEDBACK_DB=db)
    try:
        # u0 consumed items 1 and 5 before the crash: the restarted server knows it
        r = httpx.post(f"{url}/recommend", json={"user_id": "u0", "k": 6}, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["cold_start"] is False
        assert {1, 5}.isdisjoint(i["item_id"] for i in body["items"])
    finally:
        stop(proc)


def test_served_contract_holds_for_plain_python_clients_and_schemathesis():
    """A real server: 413 readable by urllib, and schemathesis (every phase) finds no 5xx."""
    import json
    import urllib.error
    import urllib.request

    port = free_port()
    proc = _serve(port, RECBENTO_MAX_BODY_BYTES="65536", RECBENTO_WORKERS="1")
    url = f"http://127.0.0.1:{port}"
    try:
        big = json.dumps({"user_id": 10, "history": [1] * 40_000}).encode()  # ~120 kB
        req = urllib.request.Request(
            f"{url}/recommend", data=big, headers={"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=30)
        assert info.value.code == 413
        assert json.loads(info.value.read())["field"] == "body"
        out = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/docs.json"]
            + ["--phases", "examples,coverage,fuzzing", "--checks", "not_a_server_error"]
            + ["--max-examples", "25", "--workers", "2"]
            + ["--generation-deterministic", "--suppress-health-check", "all"],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
        assert "No issues found" in out.stdout or "passed" in out.stdout
    finally:
        stop(proc)


def test_concurrent_free_text_requests_all_succeed():
    """More concurrent encoder calls than BentoML's client pool used to survive.

    Its default client replaced the pool to the encoder every 100 calls, dropping the
    calls in flight ("Server disconnected"); 150 ``/encode`` calls (one encoder call
    each) beside 150 free-text queries at concurrency 24 cross that point. The queries
    waiting together in a worker go to the encoder in one call, and BentoML's adaptive
    batching merges concurrent calls into one forward pass.
    """

    port = free_port()
    # the queries through the encoder service too (on a CPU the workers encode them)
    proc = _serve(port, RECBENTO_WORKERS="1", RECBENTO_ENCODE_IN="service")
    base = f"http://127.0.0.1:{port}"

    async def run() -> list[int]:
        sem = asyncio.Semaphore(24)
        async with httpx.AsyncClient(timeout=60) as client:

            async def one(n: int) -> int:
                async with sem:
                    if n % 2:
                        r = await client.post(f"{base}/encode", json={"texts": [f"heist {n}"]})
                    else:
                        body = {"query": f"crime film {n}", "k": 3}
                        r = await client.post(f"{base}/recommend", json=body)
                    return r.status_code

            return await asyncio.gather(*(one(n) for n in range(300)))

    try:
        codes = asyncio.run(run())
        assert codes.count(200) == 300, sorted(set(codes))
        metrics = httpx.get(f"{base}/metrics", timeout=30).text

        def total(metric: str) -> float:
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in metrics.splitlines()
                if line.startswith(metric) and "encode" in line
            )

        texts, passes = (total(f"recbento_encode_batch_texts_{x}") for x in ("sum", "count"))
        calls = total("bentoml_service_adaptive_batch_size_sum")
        # every text reached the encoder, in fewer forward passes than texts
        assert texts == 300
        assert 0 < passes < 300
        # one forward pass per batch of BentoML's; each /encode is a call of its own, and
        # queries that waited together shared one
        assert total("bentoml_service_adaptive_batch_size_count") == passes
        assert 150 < calls < 300
    finally:
        stop(proc)
