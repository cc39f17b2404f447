"""Durable feedback store: interaction events acknowledged only once they are committed.

Events (``user_id, item_id, timestamp`` and optional ``rating``, ``weight``, ``type``
and ``request_id``) go to an append-only log. Every backend keeps one contract, :class:`EventStore`:

* :meth:`~EventStore.append` writes a whole request in one transaction and returns only
  after the commit, so an event the service acknowledged survives ``kill -9`` of the
  server;
* every event gets a sequence number ``seq``, and ``seq`` order is commit order: once a
  reader has seen ``seq = s``, no event with a smaller ``seq`` can still appear. That
  makes ``seq`` a safe high-water mark: a model refresh records the last ``seq`` it
  folded in, and each server worker applies only the events after the last one it saw.

Two backends, picked by :func:`open_store` from one setting (``RECBENTO_FEEDBACK_DB``):

* a file path: :class:`FeedbackStore`, embedded SQLite (WAL, ``synchronous=FULL``),
  the default. Every worker of one machine shares the file.
* a ``postgresql://`` (or ``postgres://``) URL:
  :class:`recommender.feedback_pg.PostgresFeedbackStore`, for several replicas on
  several machines sharing one database.

Ids keep their type (see :mod:`recommender.feedback_rows`).

Examples
--------
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "feedback.db")
>>> with open_store(path) as store:
...     store.append([{"user_id": 7, "item_id": "m1", "timestamp": 100, "rating": 4.0}])
...     store.events_for_user(7)[["user_id", "item_id", "weight"]].values.tolist()
1
[[7, 'm1', 4.0]]
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from recommender.errors import InputError
from recommender.feedback_rows import (
    EVENT_COLUMNS,
    encode_id,
    event_rows,
    events_frame,
    fold_events,
    to_history,
)

__all__ = [
    "EVENT_COLUMNS",
    "EventStore",
    "FeedbackStore",
    "fold_events",
    "is_database_url",
    "open_store",
    "to_history",
]

log = logging.getLogger(__name__)

_URL_SCHEMES = ("postgresql://", "postgres://")


class EventStore(ABC):
    """The feedback-store contract, shared by every backend.

    Subclasses provide storage (:meth:`_insert`, :meth:`_query`, :meth:`close`);
    validation, normalisation and the queries are written here once. SQL uses
    :attr:`_param` as its placeholder and :attr:`_table` as the events table.
    """

    _param = "?"
    _table = "events"

    # ----------------------------------------------------------------- write
    def append(
        self,
        events: pd.DataFrame | Sequence[Mapping[str, Any]],
        *,
        items: pd.DataFrame | None = None,
        user_key: Callable[[Any], Any] | None = None,
    ) -> int:
        """Store ``events`` in one transaction; return how many, after the commit.

        Parameters
        ----------
        events : pandas.DataFrame or list of dict
            ``user_id``, ``item_id``, ``timestamp`` (unix seconds or ISO-8601) and
            optionally ``rating``, ``weight`` (defaults to ``rating``, else 1.0),
            ``type`` (one of :data:`recommender.config.EVENT_TYPES`; none means a
            ``view``) and ``request_id`` (the recommend answer it reacts to).
        items : pandas.DataFrame, optional
            The catalogue. When given, events are validated with the interaction
            schema (:func:`recommender.schemas.validate_interactions`, unknown items
            rejected, every problem reported at once) and ids are normalised to the
            catalogue's type; otherwise each event is checked here and ids are kept
            exactly as sent.
        user_key : callable, optional
            Maps each (validated) ``user_id`` to the type of the model's interaction
            log, e.g. :meth:`recommender.serving.catalogue.Catalogue.user_key`, so that
            ``"7"`` sent for a log of int ids is stored as ``7``. Use the same
            function for :meth:`events_for_user`.

        Returns
        -------
        int
            Number of events stored. Nothing is stored when any event is invalid.

        Raises
        ------
        InputError
            An event is malformed (field, value and row named).
        ValidationError
            ``items`` was given and the schema rejected some rows.
        """
        return len(self.append_events(events, items=items, user_key=user_key))

    def append_events(
        self,
        events: pd.DataFrame | Sequence[Mapping[str, Any]],
        *,
        items: pd.DataFrame | None = None,
        user_key: Callable[[Any], Any] | None = None,
    ) -> pd.DataFrame:
        """Like :meth:`append`, but return the stored, normalised events.

        The frame has the columns of :data:`EVENT_COLUMNS` and the events' ``seq`` as
        index: what the service hands to the pipeline so the user's next request sees
        the events (:func:`recommender.refresh.apply_events`).
        """
        rows = event_rows(events, items, user_key)
        if not rows:
            return events_frame([])
        seqs = self._insert(rows)
        log.debug("stored %d feedback events", len(rows))
        return events_frame([(seq, *row) for seq, row in zip(seqs, rows, strict=True)])

    # ------------------------------------------------------------------ read
    def events_for_user(self, user_id: Any, *, since: int | None = None) -> pd.DataFrame:
        """One user's events (``seq > since`` when given), oldest first.

        ``user_id`` must have the type it was stored with (``7`` and ``"7"`` differ).
        """
        p = self._param
        sql = f"{self._select()} WHERE user_id = {p}"
        args: list[Any] = [encode_id(user_id, "user_id", 0)]
        if since is not None:
            sql += f" AND seq > {p}"
            args.append(int(since))
        return events_frame(self._query(sql + " ORDER BY timestamp, seq", args))

    def all_events(self, since: int | None = None, *, until: int | None = None) -> pd.DataFrame:
        """Every event with ``since < seq <= until`` (bounds optional), in commit order.

        ``since`` / ``until`` are sequence numbers: use :meth:`last_seq` to take a
        high-water mark before folding events into a model, and pass it as ``until``
        now and as ``since`` at the next refresh, so no event is folded twice or lost.
        """
        p = self._param
        sql = f"{self._select()} WHERE 1=1"
        args: list[Any] = []
        if since is not None:
            sql += f" AND seq > {p}"
            args.append(int(since))
        if until is not None:
            sql += f" AND seq <= {p}"
            args.append(int(until))
        return events_frame(self._query(sql + " ORDER BY seq", args))

    def dislikes(self, *, until: int | None = None) -> pd.DataFrame:
        """Every ``dislike`` event (``seq <= until`` when given), in commit order.

        Dislikes outlive refreshes (a refreshed model's histories leave them out), so a
        server reads them all at start.
        """
        p = self._param
        sql = f"{self._select()} WHERE event_type = {p}"
        args: list[Any] = ["dislike"]
        if until is not None:
            sql += f" AND seq <= {p}"
            args.append(int(until))
        return events_frame(self._query(sql + " ORDER BY seq", args))

    def count(self) -> int:
        """Number of stored events."""
        return int(self._query(f"SELECT COUNT(*) FROM {self._table}", [])[0][0])

    def last_seq(self) -> int:
        """Sequence number of the newest stored event (0 when empty): one index lookup."""
        return int(self._query(f"SELECT COALESCE(MAX(seq), 0) FROM {self._table}", [])[0][0])

    def copy_from(self, source: EventStore, *, batch: int = 10_000) -> int:
        """Copy every event of ``source`` into this empty store, each keeping its ``seq``.

        For moving to another backend: a refreshed model records the last ``seq`` it
        folded in, so the new store must number the old events as the old one did.
        Returns how many events were copied.
        """
        if self.last_seq():
            raise InputError(
                f"{self!r} already holds events: copy into an empty store",
                field="RECBENTO_FEEDBACK_DB",
                value=repr(self),
            )
        n, since, last = 0, 0, source.last_seq()
        while since < last:
            chunk = source.all_events(since=since, until=since + batch)
            if len(chunk):
                self._insert(event_rows(chunk), seqs=chunk.index.tolist())
                n += len(chunk)
            since += batch
        log.info("copied %d feedback events from %r to %r", n, source, self)
        return n

    # ------------------------------------------------------------- lifecycle
    @abstractmethod
    def close(self) -> None:
        """Release the connection(s); further calls raise :class:`InputError`."""

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------- backends
    @abstractmethod
    def _insert(self, rows: list[tuple], seqs: list[int] | None = None) -> list[int]:
        """Insert ``rows`` in one committed transaction; their ``seq``, in order.

        Must keep ``seq`` order equal to commit order across concurrent writers.
        ``seqs`` (a copy from another store) are used as given, and later events
        numbered after them.
        """

    @abstractmethod
    def _query(self, sql: str, args: list[Any]) -> list[tuple]:
        """Run a read-only query; all its rows."""

    @abstractmethod
    def _write(self, sql: str, rows: list[tuple]) -> None:
        """Run ``sql`` once per row in one committed transaction (side tables)."""

    def _select(self) -> str:
        return (
            "SELECT seq, user_id, item_id, timestamp, rating, weight, event_type, request_id "
            f"FROM {self._table}"
        )


_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT    NOT NULL,  -- JSON-encoded: 7 or "7"
    item_id     TEXT    NOT NULL,  -- JSON-encoded
    timestamp   INTEGER NOT NULL,  -- unix seconds, when the user acted
    rating      REAL,
    weight      REAL    NOT NULL,
    received_at REAL    NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0),
    event_type  TEXT,              -- NULL: a view (events stored before types)
    request_id  TEXT               -- the recommend answer the event reacts to
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, seq);
"""
#: Version 2 added ``event_type`` and ``request_id`` (see :func:`_migrate`) and the
#: side tables of :mod:`recommender.impressions` and :mod:`recommender.experiments`.
_SCHEMA_VERSION = 2
_ADDED_COLUMNS = (("event_type", "TEXT"), ("request_id", "TEXT"))


class FeedbackStore(EventStore):
    """The embedded backend: SQLite (WAL, ``synchronous=FULL``), safe across threads.

    One connection is shared by the threads of a process behind a lock; several
    processes (BentoML workers) may open the same file, SQLite serialises their
    writers (``BEGIN IMMEDIATE``, so ``seq`` order is commit order) and
    ``busy_timeout`` makes them wait rather than fail.

    Parameters
    ----------
    path : str or Path
        Database file; parent directories are created. ``":memory:"`` for tests.
    timeout : float
        Seconds to wait for another process's write lock.
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            self.path, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        conn = self._conn
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal" and self.path != ":memory:":
            log.warning("%s: journal_mode is %s, not WAL", self.path, mode)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            raise InputError(
                f"{self.path}: feedback schema version {version}; this recbento reads "
                f"up to {_SCHEMA_VERSION}",
                field="path",
                value=self.path,
            )
        conn.executescript(_SCHEMA)
        if version < _SCHEMA_VERSION:
            _migrate(conn)
        from recommender import experiments, impressions

        conn.executescript(impressions.SQLITE_SCHEMA + experiments.SQLITE_SCHEMA)
        conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        log.info("feedback store %s open: %d events", self.path, self.count())

    def close(self) -> None:
        """Checkpoint the WAL and close; further calls raise :class:`InputError`."""
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                finally:
                    self._conn.close()
                    self._conn = None

    def __repr__(self) -> str:
        return f"FeedbackStore({self.path!r})"

    def _insert(self, rows: list[tuple], seqs: list[int] | None = None) -> list[int]:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                if seqs is not None:  # AUTOINCREMENT numbers later events after them
                    rows = [(seq, *row) for seq, row in zip(seqs, rows, strict=True)]
                conn.executemany(
                    "INSERT INTO events ("
                    + ("seq, " if seqs is not None else "")
                    + "user_id, item_id, timestamp, rating, weight, event_type, request_id) "
                    + "VALUES (?, ?, ?, ?, ?, ?, ?"
                    + (", ?)" if seqs is not None else ")"),
                    rows,
                )
                # One writer holds the lock, so this transaction's seqs are consecutive.
                last = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0]
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return list(range(last - len(rows) + 1, last + 1))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise InputError(f"{self!r} is closed", field="path", value=self.path)
        return self._conn

    def _query(self, sql: str, args: list[Any]) -> list[tuple]:
        with self._lock:
            return self._connection().execute(sql, args).fetchall()

    def _write(self, sql: str, rows: list[tuple]) -> None:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(sql, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise


def _migrate(conn: sqlite3.Connection) -> None:
    """Add the columns of later schema versions to an older store, once.

    Runs under the write lock, so two workers opening an old file together do not
    both add a column.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        have = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
        for name, kind in _ADDED_COLUMNS:
            if name not in have:
                conn.execute(f"ALTER TABLE events ADD COLUMN {name} {kind}")
                log.info("feedback store: added column events.%s", name)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def is_database_url(target: str | Path) -> bool:
    """Whether ``target`` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(target, str) and target.lower().startswith(_URL_SCHEMES)


def open_store(target: str | Path, *, timeout: float | None = None) -> EventStore:
    """The feedback store at ``target``: a ``postgresql://`` URL or a SQLite file path.

    ``timeout`` (default ``$RECBENTO_FEEDBACK_TIMEOUT``, else 30 s) bounds the wait
    for another writer's lock, and for PostgreSQL also for a connection.

    Raises
    ------
    InputError
        ``target`` is a URL of another kind (``mysql://``, ``sqlite://``...).
    """
    if timeout is None:
        timeout = float(os.environ.get("RECBENTO_FEEDBACK_TIMEOUT", "30"))
    if is_database_url(target):
        from recommender.feedback_pg import PostgresFeedbackStore

        return PostgresFeedbackStore(str(target), timeout=timeout)
    if "://" in str(target):
        scheme = str(target).split("://", 1)[0]
        raise InputError(
            f"feedback store {scheme}://...: expected a postgresql:// URL or a SQLite "
            "file path (RECBENTO_FEEDBACK_DB)",
            field="RECBENTO_FEEDBACK_DB",
            value=f"{scheme}://",
        )
    return FeedbackStore(target, timeout=timeout)
