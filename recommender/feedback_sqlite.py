"""The embedded feedback store: SQLite in WAL mode with ``synchronous=FULL``.

The default backend (:func:`recommender.feedback.open_store` with a file path): every
worker of one machine shares the file. It keeps the :class:`~recommender.event_store.EventStore`
contract; older files are migrated to the current schema when opened.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from recommender.errors import InputError
from recommender.event_store import EventStore, insert_statements

__all__ = ["FeedbackStore"]

log = logging.getLogger(__name__)


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

    The threads of a process write through one connection behind a lock and read
    through another behind its own: a read (the request path's check for new events)
    never waits for a write to be synced to disk, which WAL lets readers skip. Several
    processes (BentoML workers) may open the same file, SQLite serialises their
    writers (``BEGIN IMMEDIATE``, so ``seq`` order is commit order) and
    ``busy_timeout`` makes them wait rather than fail. An in-memory store (``":memory:"``)
    has one connection for both.

    Parameters
    ----------
    path : str or Path
        Database file; parent directories are created. ``":memory:"`` for tests.
    timeout : float
        Seconds to wait for another process's write lock.
    """

    local = True  # reads never wait for a write (WAL), nor on a network

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
        self._read_lock, self._reader = self._lock, conn
        if self.path != ":memory:":
            self._read_lock = threading.Lock()
            self._reader = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self._reader.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        log.info("feedback store %s open: %d events", self.path, self.count())

    def close(self) -> None:
        """Checkpoint the WAL and close; further calls raise :class:`InputError`."""
        with self._lock, self._read_lock if self._read_lock is not self._lock else nullcontext():
            if self._conn is not None:
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                finally:
                    if self._reader is not self._conn:
                        self._reader.close()
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
                head = (
                    "INSERT INTO events ("
                    + ("seq, " if seqs is not None else "")
                    + "user_id, item_id, timestamp, rating, weight, event_type, request_id)"
                )
                for sql, args in insert_statements(head, rows, "?"):
                    conn.executemany(sql, args)
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
        with self._read_lock:
            self._connection()  # closed: a clear error
            return self._reader.execute(sql, args).fetchall()

    def _write_many(self, statements: list[tuple[str, list[tuple]]]) -> None:
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in statements:
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
