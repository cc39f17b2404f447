"""Concurrent single requests are answered together, each with its own answer or error."""

from __future__ import annotations

import threading
import time

import pytest

from recommender.errors import NotFoundError
from recommender.services.batcher import RequestBatcher
from recommender.services.handlers import Handlers
from recommender.services.schemas import RecommendBody
from recommender.services.settings import ServiceSettings


def test_requests_waiting_together_run_as_one_batch():
    seen: list[int] = []
    gate = threading.Event()

    def double(xs):
        seen.append(len(xs))
        gate.wait(5)  # the first call holds the dispatcher while the others queue up
        return [x * 2 for x in xs]

    b = RequestBatcher(double)
    out: dict[int, int] = {}
    threads = [threading.Thread(target=lambda i=i: out.update({i: b.submit(i)})) for i in range(9)]
    threads[0].start()
    time.sleep(0.2)
    for t in threads[1:]:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join()
    assert out == {i: 2 * i for i in range(9)}
    assert seen == [1, 8]  # a lone request ran at once; the eight that queued ran together


def test_a_bad_request_fails_alone(toy_bundle, tmp_path, monkeypatch):
    from recommender.bundle import save_to_store

    monkeypatch.setenv("RECBENTO_FEEDBACK_DB", str(tmp_path / "fb.db"))
    save_to_store(toy_bundle, "batcher-toy")
    h = Handlers.open("batcher-toy", settings=ServiceSettings())
    alone = {u: h.model.recommend(user_id=u, k=3).to_dict() for u in (10, 20, 30)}
    results: dict[object, object] = {}

    def ask(key, body):
        try:
            results[key] = h.recommend(body)
        except NotFoundError as exc:
            results[key] = exc

    bodies = {u: RecommendBody(user_id=u, k=3) for u in (10, 20, 30)}
    bodies["bad"] = RecommendBody(history=[1, 404], k=3)
    threads = [threading.Thread(target=ask, args=kv) for kv in bodies.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(results["bad"], NotFoundError)
    assert results["bad"].field == "history[1]"
    for u in (10, 20, 30):  # batched or not, each answer is the one it gets alone
        got, want = results[u], alone[u]
        assert [i["item_id"] for i in got["items"]] == [i["item_id"] for i in want["items"]]
        assert [i["score"] for i in got["items"]] == pytest.approx(
            [i["score"] for i in want["items"]], abs=1e-5
        )
    with pytest.raises(NotFoundError):
        h.recommend(RecommendBody(history=[404]))
