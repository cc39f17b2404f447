"""Requests that arrive together are answered together: one relevance product for them all.

Scoring one user reads the whole item-vector matrix (a matrix-vector product bound by
memory bandwidth); scoring several reads it once. :class:`RequestBatcher` does
continuous batching on the worker's event loop: a request's coroutine queues it and
waits; while no batch is running, the requests waiting (up to ``max_batch``) are
answered together, through :func:`~recommender.serving.recommend_batch` at once.
Requests that arrive meanwhile form the next batch. An idle worker answers a lone
request at once, and batches grow as requests queue up under load. A batch that runs in
the batcher's thread costs one hand-over to it and one back, where a sync API paid both
for every request.

A worker runs two: free-text queries waiting together are encoded at once (one forward
pass in the worker, or one HTTP call to the encoder service for all of them), then their
requests are scored together with the others waiting.

A batcher may also linger while busy (``min_batch``, ``linger``): right after a batch,
it waits a few milliseconds for more requests when fewer than ``min_batch`` are
waiting. A request reaching an idle batcher still goes at once; under load the next
batch is larger, which is what a forward pass of the encoder wants (per text, a pass
over 3 queries costs about twice one over 8 or 12).

With ``follow_load`` the number waited for is the worker's own recent concurrency: the
most requests in flight (in a batch or waiting) at any of its last 16 batches. Closed-loop
clients (a page's widgets, a gateway's pool, a load generator) send their next request
when the last answer arrives, so the requests of one batch come back together but not
at the same instant; without a linger the first of them went alone and the rest
followed as a second batch. A worker with one client at a time never waits (its
concurrency is 1), and the wait ends as soon as the usual number is there. Scoring
``recommend`` has a fixed cost per batch (reading the item matrix, about 0.45 ms on the
demo catalogue) that a larger batch shares.

``in_thread=False`` runs ``fn`` on the event loop itself, for work that never waits on
I/O (a local SQLite store): no hand-over to a thread and back, and no contention for
the interpreter lock between the loop, reading the next requests, and the thread
scoring the last ones.

A request whose input is bad must not fail its batch-mates: a batch that raises is
answered again request by request, so each gets its own answer or its own error (unless
``retry_alone=False``: queries checked before they queue fail together when the encoder
does, rather than calling a failing service once more each).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import anyio
import anyio.to_thread

__all__ = ["RequestBatcher"]

log = logging.getLogger(__name__)

#: Batches whose requests in flight make a ``follow_load`` batcher's concurrency.
_RECENT = 16

Req = TypeVar("Req")
Ans = TypeVar("Ans")


class ThreadLimit:
    """At most ``total`` AnyIO worker threads at once, apart from the pool other work shares.

    AnyIO's limiters belong to one event loop, so one is made for the running loop on
    first use (and again for a new loop, as a test's ``asyncio.run`` makes).
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self._made: tuple[asyncio.AbstractEventLoop, anyio.CapacityLimiter] | None = None

    def __call__(self) -> anyio.CapacityLimiter:
        loop = asyncio.get_running_loop()
        if self._made is None or self._made[0] is not loop:
            self._made = (loop, anyio.CapacityLimiter(self.total))
        return self._made[1]


class RequestBatcher(Generic[Req, Ans]):
    """Run ``fn`` over batches of whatever requests are waiting, in a thread of its own
    or on the event loop (``in_thread``).

    Parameters
    ----------
    fn : callable
        ``list of requests -> list of answers``, one answer per request, in order,
        one batch at a time. In its own worker thread (``in_thread``), work in other
        threads (another batcher waiting for the encoder) never holds it up.
    max_batch : int
        Most requests in one call.
    retry_alone : bool
        Answer a failed batch again request by request, so that one bad request fails
        alone (right when requests can be bad, as bodies are). Off when the requests were
        checked already and a failure is the callee's (an encoder service that is down or
        shedding load): every caller gets that error, without one more call each.
    min_batch, linger : int, float
        Right after a batch, wait up to ``linger`` seconds until ``min_batch`` requests
        are waiting (default: never wait).
    follow_load : bool
        Wait (up to ``linger``) for the worker's recent concurrency instead of
        ``min_batch``: the most requests in flight at any of the last 16 batches.
    in_thread : bool
        Run ``fn`` in a worker thread (default), or on the event loop, holding it while
        it runs (only for work that never blocks on I/O).

    Examples
    --------
    >>> import asyncio
    >>> asyncio.run(RequestBatcher(lambda xs: [x * 2 for x in xs]).submit(21))
    42
    """

    def __init__(
        self,
        fn: Callable[[Sequence[Req]], Sequence[Ans]],
        max_batch: int = 32,
        *,
        retry_alone: bool = True,
        min_batch: int = 1,
        linger: float = 0.0,
        follow_load: bool = False,
        in_thread: bool = True,
    ) -> None:
        self.fn = fn
        self.max_batch = max_batch
        self.retry_alone = retry_alone
        self.min_batch = min(max(int(min_batch), 1), max_batch)
        self.linger = max(float(linger), 0.0)
        self.follow_load = follow_load
        self.in_thread = in_thread
        self._in_flight: collections.deque[int] = collections.deque([1], maxlen=_RECENT)
        self._wanted = self.min_batch  # what a lingering drainer waits for
        self._pending: list[tuple[Req, asyncio.Future]] = []
        self._enough: asyncio.Event | None = None  # set when _wanted are waiting
        self._drainer: asyncio.Task | None = None
        self._thread = ThreadLimit(1)

    async def submit(self, request: Req) -> Ans:
        """The answer to ``request`` (its own exception when it fails)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((request, fut))
        if self._enough is not None and len(self._pending) >= self._wanted:
            self._enough.set()
        self._ensure_drainer(loop)
        return await fut

    def _ensure_drainer(self, loop: asyncio.AbstractEventLoop) -> None:
        d = self._drainer
        if d is None or d.done() or d.get_loop() is not loop:  # none, ended, or a closed loop's
            self._drainer = loop.create_task(self._drain())

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        busy = False  # a batch just ran: the next may wait for more (never the first)
        while True:
            if busy and self.linger > 0:
                want = max(self._in_flight) if self.follow_load else self.min_batch
                if len(self._pending) < want:
                    await self._gather_more(want)
            busy = True
            # requests whose caller went away (a timeout, a closed connection, a loop
            # that was shut down) are neither scored nor logged
            live = [(r, f) for r, f in self._pending if not f.done() and f.get_loop() is loop]
            batch, self._pending = live[: self.max_batch], live[self.max_batch :]
            if not batch:
                return
            self._in_flight.append(min(len(live), self.max_batch))
            work = [r for r, _ in batch]
            try:
                if self.in_thread:
                    # an AnyIO worker thread: the only kind from which BentoML's sync
                    # client of another service (the encoder) can be called
                    outcomes = await anyio.to_thread.run_sync(
                        self._answer, work, limiter=self._thread()
                    )
                else:
                    outcomes = self._answer(work)
            except asyncio.CancelledError:  # the loop is shutting down
                for _, fut in batch:
                    fut.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - the hand-over failed: tell each caller
                outcomes = [(False, exc)] * len(batch)
            for (_, fut), (ok, value) in zip(batch, outcomes, strict=True):
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)  # type: ignore[arg-type]

    async def _gather_more(self, want: int) -> None:
        """Wait until ``want`` requests are waiting, or ``linger`` seconds."""
        self._wanted = want
        self._enough = asyncio.Event()
        try:
            await asyncio.wait_for(self._enough.wait(), self.linger)
        except asyncio.TimeoutError:
            pass
        finally:
            self._enough = None

    def _answer(self, batch: list[Req]) -> list[tuple[bool, object]]:
        try:
            answers = list(self.fn(batch))
            if len(answers) != len(batch):
                raise RuntimeError(f"{len(answers)} answers for {len(batch)} requests")
            return [(True, a) for a in answers]
        except Exception as exc:  # noqa: BLE001 - handed to the request it belongs to
            if len(batch) == 1 or not self.retry_alone:
                return [(False, exc)] * len(batch)
            return [self._answer([r])[0] for r in batch]  # one bad request: answer each alone
