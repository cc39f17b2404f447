"""Requests that arrive together are answered together: one relevance product per batch.

Scoring one user reads the whole item-vector matrix (a matrix-vector product bound by
memory bandwidth); scoring several reads it once. :class:`RequestBatcher` gives each
API worker one dispatcher thread: request threads hand it their request and wait; it
takes every request waiting (up to ``max_batch``) and runs them through
:func:`~recommender.serving.recommend_batch` at once, queries encoded in one encoder
call. Nothing waits for a batch to fill: an idle worker answers a lone request at once,
and batches grow only as requests queue up under load.

A request whose input is bad must not fail its batch-mates: a batch that raises is
answered again request by request, so each gets its own answer or its own error.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

__all__ = ["RequestBatcher"]

log = logging.getLogger(__name__)

Req = TypeVar("Req")
Ans = TypeVar("Ans")


class RequestBatcher(Generic[Req, Ans]):
    """Run ``fn`` over batches of whatever requests are waiting.

    Parameters
    ----------
    fn : callable
        ``list of requests -> list of answers``, one answer per request, in order.
    max_batch : int
        Most requests in one call.

    Examples
    --------
    >>> b = RequestBatcher(lambda xs: [x * 2 for x in xs])
    >>> b.submit(21)
    42
    >>> b.close()
    """

    def __init__(self, fn: Callable[[Sequence[Req]], Sequence[Ans]], max_batch: int = 32) -> None:
        self.fn = fn
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[Req, Future] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="recbento-batcher", daemon=True)
        self._thread.start()

    def submit(self, request: Req) -> Ans:
        """The answer to ``request`` (its own exception when it fails)."""
        fut: Future = Future()
        self._queue.put((request, fut))
        return fut.result()

    def close(self) -> None:
        """Stop the dispatcher once the requests already queued are answered."""
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._answer(batch)
                    return
                batch.append(nxt)
            self._answer(batch)

    def _answer(self, batch: list[tuple[Req, Future]]) -> None:
        try:
            answers = self.fn([r for r, _ in batch])
        except Exception as exc:  # noqa: BLE001 - handed to the request it belongs to
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            for item in batch:  # one bad request: answer each alone
                self._answer([item])
            return
        for (_, fut), ans in zip(batch, answers, strict=True):
            fut.set_result(ans)
