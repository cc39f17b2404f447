"""Requests that arrive together are answered together: one relevance product per batch.

Scoring one user reads the whole item-vector matrix (a matrix-vector product bound by
memory bandwidth); scoring several reads it once. :class:`RequestBatcher` lets the
request threads of an API worker take turns as the one that runs a batch: a thread that
finds no batch running takes every request waiting (up to ``max_batch``) and runs them
through :func:`~recommender.serving.recommend_batch` at once, queries encoded in one
encoder call; the others wait for their answer. Nothing waits for a batch to fill: an
idle worker answers a lone request at once, and batches grow only as requests queue up
under load. The batch runs in a request thread, the kind of thread BentoML's client of
the encoder service must be called from.

A request whose input is bad must not fail its batch-mates: a batch that raises is
answered again request by request, so each gets its own answer or its own error.
"""

from __future__ import annotations

import logging
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
    >>> RequestBatcher(lambda xs: [x * 2 for x in xs]).submit(21)
    42
    """

    def __init__(self, fn: Callable[[Sequence[Req]], Sequence[Ans]], max_batch: int = 32) -> None:
        self.fn = fn
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._pending: list[tuple[Req, Future]] = []
        self._running = False

    def submit(self, request: Req) -> Ans:
        """The answer to ``request`` (its own exception when it fails)."""
        fut: Future = Future()
        with self._cond:
            self._pending.append((request, fut))
            while not fut.done():
                if self._running:
                    self._cond.wait()
                    continue
                self._running = True  # this thread runs the next batch
                batch = self._pending[: self.max_batch]
                del self._pending[: self.max_batch]
                self._cond.release()
                try:
                    self._answer(batch)
                finally:
                    self._cond.acquire()
                    self._running = False
                    self._cond.notify_all()
        return fut.result()

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
