"""Concurrent single requests are answered together, each with its own answer or error."""

from __future__ import annotations

import asyncio
import threading
import zlib

import numpy as np
import pytest

from recommender.errors import InputError, NotFoundError
from recommender.services.batcher import RequestBatcher
from recommender.services.handlers import Handlers
from recommender.services.schemas import RecommendBody
from recommender.services.settings import ServiceSettings


def test_requests_waiting_together_run_as_one_batch():
    seen: list[int] = []
    gate = threading.Event()

    def double(xs):
        seen.append(len(xs))
        gate.wait(5)  # the first batch holds the worker thread while the others queue up
        return [x * 2 for x in xs]

    async def main():
        b = RequestBatcher(double)
        first = asyncio.ensure_future(b.submit(0))
        await asyncio.sleep(0.2)
        rest = [asyncio.ensure_future(b.submit(i)) for i in range(1, 9)]
        await asyncio.sleep(0.2)
        gate.set()
        return await asyncio.gather(first, *rest)

    assert asyncio.run(main()) == [2 * i for i in range(9)]
    assert seen == [1, 8]  # a lone request ran at once; the eight that queued ran together


def test_more_waiting_than_a_batch_holds_run_in_turn():
    seen: list[int] = []

    async def main():
        b = RequestBatcher(lambda xs: seen.append(len(xs)) or list(xs), max_batch=3)
        return await asyncio.gather(*(b.submit(i) for i in range(7)))

    assert asyncio.run(main()) == list(range(7))
    assert seen == [3, 3, 1]


def test_a_busy_batcher_lingers_for_more_but_an_idle_one_does_not():
    """With ``min_batch`` and a linger, a lone request still runs at once; requests that
    arrive one by one while a batch runs are gathered until ``min_batch`` wait, and a
    linger that runs out sends what is there."""
    seen: list[int] = []
    gate = threading.Event()

    def double(xs):
        seen.append(len(xs))
        gate.wait(5)
        return [x * 2 for x in xs]

    async def main():
        b = RequestBatcher(double, min_batch=4, linger=30.0)
        # a lone request at an idle batcher: were it held for the linger, this would time out
        first = asyncio.ensure_future(b.submit(0))
        await asyncio.sleep(0.2)
        assert seen == [1]
        later = [asyncio.ensure_future(b.submit(1))]
        gate.set()  # the first batch ends with one request waiting: the batcher lingers
        await asyncio.sleep(0.3)
        assert seen == [1]
        for i in range(2, 5):  # the fourth waiting request ends the linger
            later.append(asyncio.ensure_future(b.submit(i)))
            await asyncio.sleep(0.05)
        return await asyncio.wait_for(asyncio.gather(first, *later), 5)

    assert asyncio.run(main()) == [0, 2, 4, 6, 8]
    assert seen == [1, 4]

    seen.clear()

    async def short_linger():
        b = RequestBatcher(double, min_batch=8, linger=0.2)
        first = asyncio.ensure_future(b.submit(0))
        await asyncio.sleep(0.05)  # the first batch is done; the batcher lingers
        second = asyncio.ensure_future(b.submit(1))
        return await asyncio.wait_for(asyncio.gather(first, second), 5)

    assert asyncio.run(short_linger()) == [0, 2]
    assert seen == [1, 1]  # the linger ran out with one waiting: it went alone


def _closed_loop(batcher: RequestBatcher, pauses: list[float], rounds: int) -> list[int]:
    """Clients that each send their next request ``pauses[i]`` s after their last answer."""

    async def client(i: int) -> list[int]:
        got = []
        for n in range(rounds):
            got.append(await batcher.submit(i * 100 + n))
            await asyncio.sleep(pauses[i])
        return got

    async def main() -> list[list[int]]:
        return await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(len(pauses)))), 20)

    answers = asyncio.run(main())
    return [a for got in answers for a in got]


def test_a_loaded_batcher_waits_for_its_usual_number_and_a_lone_client_never_waits():
    """``follow_load``: clients that come back at different moments after a shared
    answer are gathered again into one batch, where a batcher without a linger split
    them; one client at a time is never held for the linger."""
    seen: list[int] = []

    def run(xs):
        seen.append(len(xs))
        return list(xs)

    pauses = [0.0, 0.01, 0.02, 0.03]  # four clients, back 0-30 ms after their answer
    expected = sorted(i * 100 + n for i in range(4) for n in range(6))
    assert sorted(_closed_loop(RequestBatcher(run), pauses, 6)) == expected
    assert len(seen) > 12  # without a linger the four drift apart: mostly batches of 1

    seen.clear()
    b = RequestBatcher(run, linger=5.0, follow_load=True, in_thread=False)
    assert sorted(_closed_loop(b, pauses, 6)) == expected
    assert seen == [4] * 6  # after the first four, each batch waits for the other three

    seen.clear()  # one client: were it held for the 30 s linger, the loop would time out
    b = RequestBatcher(run, linger=30.0, follow_load=True, in_thread=False)
    assert _closed_loop(b, [0.01], 5) == list(range(5))
    assert seen == [1] * 5


def test_a_batcher_runs_its_work_on_the_event_loop_or_in_a_thread_as_asked():
    threads: list[int] = []

    def run(xs):
        threads.append(threading.get_ident())
        return list(xs)

    async def main(in_thread: bool) -> int:
        b = RequestBatcher(run, in_thread=in_thread)
        assert await asyncio.gather(b.submit(1), b.submit(2)) == [1, 2]
        return threading.get_ident()

    loop_thread = asyncio.run(main(in_thread=False))
    assert threads == [loop_thread]
    loop_thread = asyncio.run(main(in_thread=True))
    assert len(threads) == 2 and threads[1] != loop_thread


def test_a_caller_that_goes_away_does_not_stop_the_others():
    gate = threading.Event()

    def slow(xs):
        gate.wait(5)
        return list(xs)

    async def main():
        b = RequestBatcher(slow)
        gone = asyncio.ensure_future(b.submit("gone"))
        stays = asyncio.ensure_future(b.submit("stays"))
        await asyncio.sleep(0.1)
        gone.cancel()  # e.g. the client hung up
        gate.set()
        late = await b.submit("late")
        return await stays, late, gone.cancelled()

    assert asyncio.run(main()) == ("stays", "late", True)


def test_a_bad_request_fails_alone(toy_bundle, tmp_path, monkeypatch):
    from recommender.bundle import save_to_store

    monkeypatch.setenv("RECBENTO_FEEDBACK_DB", str(tmp_path / "fb.db"))
    save_to_store(toy_bundle, "batcher-toy")
    h = Handlers.open("batcher-toy", settings=ServiceSettings())
    alone = {u: h.model.recommend(user_id=u, k=3).to_dict() for u in (10, 20, 30)}
    bodies = {u: RecommendBody(user_id=u, k=3) for u in (10, 20, 30)}
    bodies["bad"] = RecommendBody(history=[1, 404], k=3)

    async def ask_together():
        answers = await asyncio.gather(
            *(h.recommend_async(b) for b in bodies.values()), return_exceptions=True
        )
        return dict(zip(bodies, answers, strict=True))

    results = asyncio.run(ask_together())
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


def test_scoring_runs_on_the_event_loop_only_with_a_store_that_never_waits_on_a_network(
    toy_bundle, tmp_path, monkeypatch
):
    from recommender.bundle import save_to_store
    from recommender.feedback import FeedbackStore

    class RemoteStore(FeedbackStore):  # stands in for a backend across a network
        local = False

    monkeypatch.setenv("RECBENTO_FEEDBACK_DB", str(tmp_path / "fb.db"))
    save_to_store(toy_bundle, "batcher-toy")
    sqlite = Handlers.open("batcher-toy", settings=ServiceSettings())
    remote = Handlers(sqlite.model, RemoteStore(tmp_path / "remote.db"), ServiceSettings())

    def scoring_thread(h: Handlers) -> tuple[int, int]:
        seen = []
        score = h.online.recommend
        monkeypatch.setattr(
            h.online,
            "recommend",
            lambda *a, **kw: seen.append(threading.get_ident()) or score(*a, **kw),
        )

        async def ask() -> int:
            answer = await h.recommend_async(RecommendBody(user_id=10, k=3))
            assert len(answer["items"]) == 3
            return threading.get_ident()

        loop_thread = asyncio.run(ask())
        return seen[0], loop_thread

    scored, loop = scoring_thread(sqlite)
    assert scored == loop  # SQLite: on the event loop, no hand-over
    scored, loop = scoring_thread(remote)
    assert scored != loop  # a network store's queries must not hold the loop
    sqlite.close()
    remote.close()


def test_queries_waiting_together_reach_the_encoder_in_one_call(toy_bundle, tmp_path, monkeypatch):
    from recommender.bundle import save_to_store

    monkeypatch.setenv("RECBENTO_FEEDBACK_DB", str(tmp_path / "fb.db"))
    save_to_store(toy_bundle, "batcher-queries")
    encoder = _HeldEncoder(lambda texts: np.stack([_vector(t, dim=4) for t in texts]))
    h = Handlers.open("batcher-queries", encode=encoder, settings=ServiceSettings())
    queries = ["space adventure", "  a quiet drama ", "comedy", "heist with a twist"]
    too_long = "x" * (h.model.serving.query_max_chars + 1)

    first, *answers = encoder.ask_behind_first(h, [*queries, too_long])
    # the four queries that waited went in one call, stripped; the bad one never did
    assert encoder.calls == [["first"], [q.strip() for q in queries]]
    assert isinstance(answers[-1], InputError) and answers[-1].field == "query"
    for q, got in zip(queries, answers, strict=False):  # each as it is answered alone
        want = h.recommend(RecommendBody(query=q, k=3))
        assert [i["item_id"] for i in got["items"]] == [i["item_id"] for i in want["items"]]
    assert first["items"]


def test_an_encoder_failure_fails_the_waiting_queries_without_a_call_each(
    toy_bundle, tmp_path, monkeypatch
):
    from recommender.bundle import save_to_store

    monkeypatch.setenv("RECBENTO_FEEDBACK_DB", str(tmp_path / "fb.db"))
    save_to_store(toy_bundle, "batcher-encoder-down")

    def shedding(texts):  # the encoder service answers 503 to every call
        raise RuntimeError("503 Service Unavailable")

    encoder = _HeldEncoder(shedding)
    h = Handlers.open("batcher-encoder-down", encode=encoder, settings=ServiceSettings())

    answers = encoder.ask_behind_first(h, [f"q{n}" for n in range(5)])
    assert all(isinstance(a, RuntimeError) and "503" in str(a) for a in answers)
    # the five that waited failed with their one call; none was retried alone
    assert encoder.calls == [["first"], [f"q{n}" for n in range(5)]]


class _HeldEncoder:
    """A stand-in for the encoder service whose first call stays out until released.

    Each call (one HTTP call to the encoder service, made in a thread) is recorded in
    ``calls`` and answered by ``answer``.
    """

    def __init__(self, answer):
        self.answer = answer
        self.calls: list[list[str]] = []
        self.release = threading.Event()

    def __call__(self, texts):
        self.calls.append(list(texts))
        if len(self.calls) == 1:
            self.release.wait(5)  # the first call holds the line while the others queue up
        return self.answer(texts)

    def ask_behind_first(self, h, queries):
        """Ask "first", then ``queries`` while its call is out: every answer or error."""

        async def ask():
            first = asyncio.ensure_future(h.recommend_async(RecommendBody(query="first", k=3)))
            while not self.calls:
                await asyncio.sleep(0.01)
            rest = [
                asyncio.ensure_future(h.recommend_async(RecommendBody(query=q, k=3)))
                for q in queries
            ]
            await asyncio.sleep(0.2)
            self.release.set()
            return await asyncio.gather(first, *rest, return_exceptions=True)

        return asyncio.run(ask())


def _vector(text: str, dim: int) -> np.ndarray:
    v = np.random.default_rng(zlib.crc32(text.encode())).normal(size=dim)
    return v / np.linalg.norm(v)


def test_a_batch_that_answers_wrongly_fails_its_requests_not_the_ones_after():
    calls: list[int] = []

    def short(xs):
        calls.append(len(xs))
        return list(xs)[1:] if len(xs) > 1 else list(xs)  # one answer missing for a batch

    async def main():
        b = RequestBatcher(short)
        pair = asyncio.gather(b.submit(1), b.submit(2), return_exceptions=True)
        first = await asyncio.wait_for(pair, 5)
        return first, await asyncio.wait_for(b.submit(3), 5)

    (first, later) = asyncio.run(main())
    assert first == [1, 2]  # the batch was answered again one by one
    assert later == 3 and calls == [2, 1, 1, 1]


def test_requests_left_on_a_closed_loop_do_not_block_the_next_loop():
    gate = threading.Event()

    def slow(xs):
        gate.wait(5)
        return list(xs)

    b = RequestBatcher(slow)
    loop = asyncio.new_event_loop()
    with pytest.raises(asyncio.TimeoutError):  # the caller gives up; the loop is dropped
        loop.run_until_complete(asyncio.wait_for(b.submit("old"), 0.05))
    loop.close()
    gate.set()
    assert asyncio.run(asyncio.wait_for(b.submit("new"), 5)) == "new"


def test_the_query_linger_comes_from_the_environment_and_bad_values_name_it(monkeypatch):
    s = ServiceSettings.from_env()
    assert (s.query_min_batch, s.query_linger_ms, s.recommend_linger_ms) == (12, 15, 3)
    monkeypatch.setenv("RECBENTO_RECOMMEND_LINGER_MS", "0")  # off: scoring never waits
    assert ServiceSettings.from_env().recommend_linger_ms == 0
    monkeypatch.setenv("RECBENTO_RECOMMEND_LINGER_MS", "-1")
    with pytest.raises(InputError, match="RECBENTO_RECOMMEND_LINGER_MS"):
        ServiceSettings.from_env()
    monkeypatch.delenv("RECBENTO_RECOMMEND_LINGER_MS")
    monkeypatch.setenv("RECBENTO_QUERY_LINGER_MS", "0")  # off: a pass never waits
    assert ServiceSettings.from_env().query_linger_ms == 0
    monkeypatch.setenv("RECBENTO_QUERY_MIN_BATCH", "0")
    with pytest.raises(InputError) as info:
        ServiceSettings.from_env()
    assert info.value.field == "RECBENTO_QUERY_MIN_BATCH"
    monkeypatch.setenv("RECBENTO_QUERY_MIN_BATCH", "8")
    monkeypatch.setenv("RECBENTO_QUERY_LINGER_MS", "soon")
    with pytest.raises(InputError, match="RECBENTO_QUERY_LINGER_MS='soon'"):
        ServiceSettings.from_env()
