"""Requests that arrive together are answered together: one thread hop, one relevance product.

Scoring one user reads the whole item-vector matrix (a matrix-vector product bound by
memory bandwidth); scoring several reads it once. :class:`RequestBatcher` does
continuous batching on the worker's event loop: a request's coroutine queues it and
waits; while no batch is running, the requests waiting (up to ``max_batch``) go to a
worker thread together, through :func:`~recommender.serving.recommend_batch` at once.
Requests that arrive meanwhile form the next batch. Nothing waits for a batch to fill:
an idle worker answers a lone request at once, and batches grow only as requests queue
up under load. Each batch costs one hand-over to a thread and one back, where a sync
API paid both for every request.

A request whose input is bad must not fail its batch-mates: a batch that raises is
answered again request by request, so each gets its own answer or its own error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import anyio.to_thread

__all__ = ["RequestBatcher"]

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Ans = TypeVar("Ans")


class RequestBatcher(Generic[Req, Ans]):
    """Run ``fn`` in a worker thread over batches of whatever requests are waiting.

    Parameters
    ----------
    fn : callable
        ``list of requests -> list of answers``, one answer per request, in order.
        It runs in a worker thread, one batch at a time.
    max_batch : int
        Most requests in one call.

    Examples
    --------
    >>> import asyncio
    >>> asyncio.run(RequestBatcher(lambda xs: [x * 2 for x in xs]).submit(21))
    42
    """

    def __init__(self, fn: Callable[[Sequence[Req]], Sequence[Ans]], max_batch: int = 32) -> None:
        self.fn = fn
        self.max_batch = max_batch
        self._pending: list[tuple[Req, asyncio.Future]] = []
        self._drainer: asyncio.Task | None = None

    async def submit(self, request: Req) -> Ans:
        """The answer to ``request`` (its own exception when it fails)."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((request, fut))
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            try:
                outcomes = await anyio.to_thread.run_sync(self._answer, [r for r, _ in batch])
            except BaseException as exc:  # the hand-over itself failed (shutdown)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc if isinstance(exc, Exception) else RuntimeError(exc))
                raise
            for (_, fut), (ok, value) in zip(batch, outcomes, strict=True):
                if fut.done():  # its caller went away
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

    def _answer(self, batch: list[Req]) -> list[tuple[bool, object]]:
        try:
            return [(True, a) for a in self.fn(batch)]
        except Exception as exc:  # noqa: BLE001 - handed to the request it belongs to
            if len(batch) == 1:
                return [(False, exc)]
            return [self._answer([r])[0] for r in batch]  # one bad request: answer each alone
