"""The impression log: every list the service served, kept in the feedback store.

Each recommend answer carries a ``request_id`` (uuid4 hex); the list behind it is
logged with the user, the items in rank order with their scores, the model version,
the experiment arm and the user group. A client reporting a ``click`` with that
``request_id`` attributes it to the list, which is what online metrics
(:mod:`recommender.online_metrics`) are computed from.

Writing stays off the request path: :class:`ImpressionLog` queues impressions (a
bounded queue, so a slow or unreachable store can never hold requests or memory) and a
background thread writes them in batches, one transaction per batch. When the queue is
full an impression is dropped and counted, never waited for. :meth:`ImpressionLog.close`
writes what is queued (at shutdown).

The table lives in the same store as the events (SQLite or PostgreSQL), so every
worker and replica writes to one log.

Examples
--------
>>> import tempfile, os
>>> from recommender.feedback import open_store
>>> store = open_store(os.path.join(tempfile.mkdtemp(), "fb.db"))
>>> log_ = ImpressionLog(store)
>>> log_.put(Impression("r1", 7, 100.0, "m:v1", None, 2, [("a", 0.9), ("b", 0.5)]))
True
>>> log_.close()
>>> shown_items(store, 7, last=1)
['a', 'b']
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from recommender.event_store import insert_statements, range_clause
from recommender.feedback_rows import encode_id

__all__ = [
    "POSTGRES_SCHEMA",
    "SQLITE_SCHEMA",
    "Impression",
    "ImpressionLog",
    "impressions_frame",
    "shown_items",
    "write_impressions",
]

log = logging.getLogger(__name__)

TABLE = "feedback_impressions"

SQLITE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    request_id TEXT PRIMARY KEY,
    user_id    TEXT,              -- JSON-encoded like the events; NULL: no user_id
    served_at  REAL    NOT NULL,  -- unix seconds
    model      TEXT,
    arm        TEXT,
    user_group INTEGER,
    items      TEXT    NOT NULL   -- JSON [[item_id, score], ...] in rank order
);
CREATE INDEX IF NOT EXISTS {TABLE}_by_user ON {TABLE} (user_id, served_at);
CREATE INDEX IF NOT EXISTS {TABLE}_by_time ON {TABLE} (served_at);
"""

POSTGRES_SCHEMA = (
    f"""
    CREATE TABLE IF NOT EXISTS {TABLE} (
        request_id TEXT PRIMARY KEY,
        user_id    TEXT,
        served_at  DOUBLE PRECISION NOT NULL,
        model      TEXT,
        arm        TEXT,
        user_group INTEGER,
        items      TEXT NOT NULL
    )""",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_by_user ON {TABLE} (user_id, served_at)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_by_time ON {TABLE} (served_at)",
)

#: Columns of :func:`impressions_frame`.
IMPRESSION_COLUMNS = (
    "request_id",
    "user_id",
    "served_at",
    "model",
    "arm",
    "user_group",
    "items",
    "scores",
)


@dataclass(frozen=True)
class Impression:
    """One served list. ``user_id`` as the model's log types it (None: anonymous)."""

    request_id: str
    user_id: Any
    served_at: float
    model: str | None
    arm: str | None
    group: int | None
    items: Sequence[tuple[Any, float]]

    def row(self) -> tuple:
        user = None if self.user_id is None else encode_id(self.user_id, "user_id")
        items = json.dumps([[_native(i), round(float(s), 6)] for i, s in self.items])
        group = None if self.group is None else int(self.group)
        return (self.request_id, user, float(self.served_at), self.model, self.arm, group, items)


def write_impressions(store: Any, impressions: Sequence[Impression]) -> int:
    """Store ``impressions`` in one transaction (a ``request_id`` already stored is kept).

    Many lists to a statement (:func:`~recommender.event_store.insert_statements`).
    """
    if not impressions:
        return 0
    store._write_many(
        insert_statements(
            f"INSERT INTO {TABLE} (request_id, user_id, served_at, model, arm, user_group, items)",
            [imp.row() for imp in impressions],
            store._param,
            " ON CONFLICT (request_id) DO NOTHING",
        )
    )
    return len(impressions)


def shown_items(store: Any, user_id: Any, *, last: int) -> list[Any]:
    """Items of the user's ``last`` stored impressions, newest list first, no repeats.

    One indexed query (``user_id, served_at``). ``user_id`` typed as the model's log.
    """
    p = store._param
    rows = store._query(
        f"SELECT items FROM {TABLE} WHERE user_id = {p} ORDER BY served_at DESC LIMIT {p}",
        [encode_id(user_id, "user_id"), int(last)],
    )
    out: dict[Any, None] = {}
    for (items,) in rows:
        for item, _ in json.loads(items):
            out.setdefault(item, None)
    return list(out)


def impressions_frame(
    store: Any, *, since: float | None = None, until: float | None = None
) -> pd.DataFrame:
    """Stored impressions served in ``[since, until)`` (unix seconds), oldest first.

    Columns :data:`IMPRESSION_COLUMNS`; ``items`` and ``scores`` are lists in rank order.
    """
    bounds, args = range_clause(
        "served_at", store._param, since, until, low_op=">=", high_op="<", cast=float
    )
    sql = (
        "SELECT request_id, user_id, served_at, model, arm, user_group, items "
        f"FROM {TABLE} WHERE 1=1{bounds} ORDER BY served_at, request_id"
    )
    rows = store._query(sql, args)
    records = []
    for rid, user, at, model, arm, group, items in rows:
        pairs = json.loads(items)
        records.append(
            (
                rid,
                None if user is None else json.loads(user),
                float(at),
                model,
                arm,
                None if group is None else int(group),
                [i for i, _ in pairs],
                [float(s) for _, s in pairs],
            )
        )
    df = pd.DataFrame(records, columns=list(IMPRESSION_COLUMNS))
    for col in ("user_id", "user_group"):  # None stays None next to ints
        df[col] = pd.Series([r[IMPRESSION_COLUMNS.index(col)] for r in records], dtype=object)
    return df


class ImpressionLog:
    """Writes impressions to ``store`` from a background thread, never blocking callers.

    Parameters
    ----------
    store : recommender.feedback.EventStore
        Where impressions go (the service's feedback store).
    max_queue : int
        Impressions waiting at most; beyond it new ones are dropped and counted.
    batch : int
        Most impressions per insert transaction.
    linger : float
        Seconds the writer gathers impressions after the first one before it commits them
        together: one transaction (and one disk sync) per interval rather than per served
        list, which cost the service more CPU than the recommendations themselves.

    Attributes
    ----------
    written, dropped, failed : int
        Impressions stored; dropped because the queue was full; lost because the store
        refused a batch (logged).
    """

    def __init__(
        self, store: Any, *, max_queue: int = 10_000, batch: int = 500, linger: float = 0.25
    ) -> None:
        self.store = store
        self.batch = batch
        self.linger = max(float(linger), 0.0)
        self.written = self.dropped = self.failed = 0
        self._queue: queue.Queue[Impression | None] = queue.Queue(maxsize=max_queue)
        self._idle = threading.Condition()
        self._pending = 0
        self._last_warning = 0.0
        self._thread = threading.Thread(target=self._run, name="impression-log", daemon=True)
        self._thread.start()

    def put(self, impression: Impression) -> bool:
        """Queue ``impression``; False (and counted in :attr:`dropped`) when the queue is full."""
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(impression)
        except queue.Full:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()
            self.dropped += 1
            now = time.monotonic()
            if now - self._last_warning >= 10:
                self._last_warning = now
                log.warning(
                    "impression queue full (%d waiting): %d impressions dropped so far",
                    self._queue.maxsize,
                    self.dropped,
                )
            return False
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued impression is written (or failed); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread (the store stays open)."""
        if not self._thread.is_alive():
            return
        self.flush(timeout)
        self._queue.put(None)
        self._thread.join(timeout)
        log.info(
            "impression log closed: %d written, %d dropped, %d failed",
            self.written,
            self.dropped,
            self.failed,
        )

    def _run(self) -> None:
        full = False
        while True:
            first = self._queue.get()
            if first is None:
                return
            if not full:
                # gather what arrives meanwhile while asleep: a writer waiting on the
                # queue is woken by every put, a thread switch per served list
                time.sleep(self.linger)
            batch, stop = [first], False
            while len(batch) < self.batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            full = len(batch) == self.batch  # more may be waiting: no sleep next time
            self._write(batch)
            if stop:
                return

    def _write(self, batch: list[Impression]) -> None:
        try:
            write_impressions(self.store, batch)
            self.written += len(batch)
        except Exception:  # the store is down or closed: count, log, keep serving
            self.failed += len(batch)
            log.exception("could not store %d impressions", len(batch))
        finally:
            with self._idle:
                self._pending -= len(batch)
                self._idle.notify_all()


def _native(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v
