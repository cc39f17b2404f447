"""Requests that arrive together are answered together: one thread hop, one relevance product.

Scoring one user reads the whole item-vector matrix (a matrix-vector product bound by
memory bandwidth); scoring several reads it once. :class:`RequestBatcher` does
continuous batching on the worker's event loop: a request's coroutine queues it and
waits; while no batch is running, the requests waiting (up to ``max_batch``) go to the
batcher's thread together, through :func:`~recommender.serving.recommend_batch` at once.
Requests that arrive meanwhile form the next batch. Nothing waits for a batch to fill:
an idle worker answers a lone request at once, and batches grow only as requests queue
up under load. Each batch costs one hand-over to a thread and one back, where a sync
API paid both for every request.

A worker runs two: free-text queries waiting together are encoded at once (one forward
pass in the worker, or one HTTP call to the encoder service for all of them), then their
requests are scored together with the others waiting.

A batcher may also linger while busy (``min_batch``, ``linger``): right after a batch,
it waits a few milliseconds for more requests when fewer than ``min_batch`` are
waiting. A request reaching an idle batcher still goes at once; under load the next
batch is larger, which is what a forward pass of the encoder wants (per text, a pass
over 3 queries costs about twice one over 8 or 12).

A request whose input is bad must not fail its batch-mates: a batch that raises is
answered again request by request, so each gets its own answer or its own error (unless
``retry_alone=False``: queries checked before they queue fail together when the encoder
does, rather than calling a failing service once more each).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import anyio
import anyio.to_thread

__all__ = ["RequestBatcher"]

log = logging.getLogger(__name__)

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
    """Run ``fn`` in a thread of its own over batches of whatever requests are waiting.

    Parameters
    ----------
    fn : callable
        ``list of requests -> list of answers``, one answer per request, in order.
        It runs in a worker thread of its own, one batch at a time, so work in other
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
    ) -> None:
        self.fn = fn
        self.max_batch = max_batch
        self.retry_alone = retry_alone
        self.min_batch = min(max(int(min_batch), 1), max_batch)
        self.linger = max(float(linger), 0.0)
        self._pending: list[tuple[Req, asyncio.Future]] = []
        self._enough: asyncio.Event | None = None  # set when min_batch are waiting
        self._drainer: asyncio.Task | None = None
        self._thread = ThreadLimit(1)

    async def submit(self, request: Req) -> Ans:
        """The answer to ``request`` (its own exception when it fails)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((request, fut))
        if self._enough is not None and len(self._pending) >= self.min_batch:
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
            if busy and self.linger > 0 and len(self._pending) < self.min_batch:
                await self._gather_more()
            busy = True
            # requests whose caller went away (a timeout, a closed connection, a loop
            # that was shut down) are neither scored nor logged
            live = [(r, f) for r, f in self._pending if not f.done() and f.get_loop() is loop]
            batch, self._pending = live[: self.max_batch], live[self.max_batch :]
            if not batch:
                return
            work = [r for r, _ in batch]
            try:
                # an AnyIO worker thread: the only kind from which BentoML's sync client
                # of another service (the encoder) can be called
                outcomes = await anyio.to_thread.run_sync(
                    self._answer, work, limiter=self._thread()
                )
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

    async def _gather_more(self) -> None:
        """Wait until ``min_batch`` requests are waiting, or ``linger`` seconds."""
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
