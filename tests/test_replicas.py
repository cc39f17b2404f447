"""Two `bentoml serve` replicas sharing one PostgreSQL feedback store, over HTTP.

What an operator running several replicas behind a load balancer relies on: feedback
posted to any replica counts in every replica's next answer, and a replica killed
mid-stream loses no event it acknowledged.
"""

from __future__ import annotations

import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.procs import free_port, kill_hard, serve, stop


@pytest.fixture(scope="module")
def replicas(toy_model, pg_server):
    """Replicas A and B of the toy model (one API worker each), one shared database."""
    from tests.pg import with_schema

    db = with_schema(pg_server)
    env = {"RECBENTO_FEEDBACK_DB": db, "RECBENTO_WORKERS": "1"}
    ports = [free_port(), free_port()]
    with ThreadPoolExecutor(2) as pool:  # start both at once
        futures = [pool.submit(serve, "svc-toy", port, env=env) for port in ports]
        procs: list[subprocess.Popen] = []
        try:
            procs = [f.result() for f in futures]
        finally:
            if len(procs) < 2:
                for f in futures:
                    if f.exception() is None:
                        stop(f.result())
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    yield {"db": db, "a": urls[0], "b": urls[1], "procs": procs}
    with ThreadPoolExecutor(2) as pool:  # stop both at once (A may be dead already)
        list(pool.map(stop, procs))


def _recommend(url: str, user, k: int = 4) -> dict:
    r = httpx.post(f"{url}/recommend", json={"user_id": user, "k": k}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _feedback(url: str, *events: dict) -> int:
    r = httpx.post(f"{url}/feedback", json={"events": list(events)}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["stored"]


@pytest.mark.integration
def test_feedback_posted_to_one_replica_changes_the_others_next_answer(replicas):
    a, b = replicas["a"], replicas["b"]
    # user 30 has seen 1, 4, 5 and 7: B recommends some other item first
    top = _recommend(b, 30)["items"][0]["item_id"]
    assert _feedback(a, {"user_id": 30, "item_id": top, "timestamp": 900}) == 1
    assert top not in [i["item_id"] for i in _recommend(b, 30)["items"]]  # seen now
    # a user neither replica knows is cold on A until B takes their first event
    assert _recommend(a, "replica-newcomer")["cold_start"] is True
    assert _feedback(b, {"user_id": "replica-newcomer", "item_id": 6, "timestamp": 901}) == 1
    body = _recommend(a, "replica-newcomer")
    assert body["cold_start"] is False
    assert 6 not in [i["item_id"] for i in body["items"]]


@pytest.mark.integration
def test_killing_a_replica_mid_stream_loses_no_acknowledged_event(replicas):
    """SIGKILL replica A (server and workers) while a client streams feedback to it."""
    from recommender.feedback import open_store

    a, b = replicas["a"], replicas["b"]
    acked: list[dict] = []
    failed: list[str] = []
    enough = threading.Event()

    def stream() -> None:
        with httpx.Client(timeout=30) as client:
            for n in range(10_000):
                # one new user per event: the survivor shows each one as warm, or not
                ev = {"user_id": f"stream-{n}", "item_id": 1 + n % 8, "timestamp": 5000 + n}
                try:
                    r = client.post(f"{a}/feedback", json={"events": [ev]})
                except httpx.HTTPError as exc:  # the kill: not acknowledged
                    failed.append(type(exc).__name__)
                    return
                if r.status_code == 200 and r.json()["stored"] == 1:
                    acked.append(ev)
                    if len(acked) >= 40:
                        enough.set()
                else:
                    failed.append(f"{r.status_code} {r.text[:200]}")
                    return

    writer = threading.Thread(target=stream)
    writer.start()
    try:
        assert enough.wait(timeout=120), f"A acknowledged only {len(acked)} events: {failed}"
    finally:
        kill_hard(replicas["procs"][0])  # no shutdown hooks anywhere in A
        writer.join(timeout=60)
    assert failed, "the stream outlived the kill"
    assert not any(f[:1].isdigit() for f in failed), failed  # no HTTP error before the kill

    with open_store(replicas["db"]) as store:
        stored = store.all_events()
    keys = set(zip(stored["user_id"], stored["item_id"], stored["timestamp"], strict=True))
    lost = [ev for ev in acked if (ev["user_id"], ev["item_id"], ev["timestamp"]) not in keys]
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged events are not in the database"

    # the survivor applies every one of them before answering
    for ev in acked:
        body = _recommend(b, ev["user_id"])
        assert body["cold_start"] is False, ev
        assert ev["item_id"] not in [i["item_id"] for i in body["items"]], ev
