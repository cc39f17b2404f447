"""The feedback store in PostgreSQL, shared by several API replicas on several machines.

Selected by ``RECBENTO_FEEDBACK_DB=postgresql://user:password@host:5432/db`` (or
``postgres://``); the table ``feedback_events`` is created on first use in the schema
the connection's ``search_path`` names, so several models can share one database with
``?options=-csearch_path%3Dmovies`` (the schema must exist).

Guarantees, the same as the SQLite backend's (:class:`recommender.event_store.EventStore`):

* **acknowledged means committed**: :meth:`append` returns after ``COMMIT`` returned,
  in one transaction per request. The write transaction runs with
  ``synchronous_commit`` as the server has it; a warning is logged at open when the
  server would acknowledge commits it has not flushed (``fsync`` or
  ``synchronous_commit`` off).
* **seq order is commit order**, so a reader's high-water mark never skips an event.
  A PostgreSQL sequence alone does not give this: two transactions can take seq 5 and 6
  and commit 6 first; a replica that reads 6 and moves its mark past 5 would never see
  5. Writers are therefore serialised: each write transaction first takes a
  transaction-scoped advisory lock (``pg_advisory_xact_lock``, keyed on the table's OID)
  and only then draws its seqs. The lock is released after the commit is visible, so
  when the next writer draws a larger seq, every smaller one is already committed.
  Readers take no lock and never wait. The cost: one commit at a time, about one
  WAL flush per request, in the order of a thousand feedback requests/s on an SSD
  (each request carries up to ``RECBENTO_MAX_EVENTS`` events). An advisory lock rather
  than ``LOCK TABLE`` so that (anti-wraparound) autovacuum never blocks writers.
* **cheap per-request sync**: :meth:`last_seq` is ``MAX(seq)`` on the primary key, one
  index lookup; the events after a mark are one range scan of the same index.

Connections come from a :class:`psycopg_pool.ConnectionPool` per process (BentoML
workers are processes): at most ``RECBENTO_FEEDBACK_POOL_SIZE`` (4) connections, in
autocommit mode, so a read is one round trip. A read that meets a broken connection
(the server restarted) is retried once on a fresh one; a write is not retried (its
commit may or may not have happened: the client, not acknowledged, sends it again).

When the server is down, a write waits up to ``RECBENTO_FEEDBACK_TIMEOUT`` (30 s) for a
connection and then fails with :class:`~recommender.errors.StorageError` (HTTP 503); a
read waits at most 1 s, and the service then answers from what the replica already has
(:func:`recommender.refresh.sync_feedback`), so recommendations stay up, a little
stale, during an outage.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from typing import Any

from recommender.errors import InputError, StorageError
from recommender.event_store import EventStore

__all__ = ["PostgresFeedbackStore", "redact"]

log = logging.getLogger(__name__)

_TABLE = "feedback_events"
#: Version 2 added ``event_type`` and ``request_id`` (existing tables gain them at open)
#: and the side tables of :mod:`recommender.impressions` and :mod:`recommender.experiments`.
_SCHEMA_VERSION = 2
_SCHEMA = (
    f"""
    CREATE TABLE IF NOT EXISTS {_TABLE} (
        seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        user_id     TEXT             NOT NULL,  -- JSON-encoded: 7 or "7"
        item_id     TEXT             NOT NULL,  -- JSON-encoded
        timestamp   BIGINT           NOT NULL,  -- unix seconds, when the user acted
        rating      DOUBLE PRECISION,
        weight      DOUBLE PRECISION NOT NULL,
        received_at TIMESTAMPTZ      NOT NULL DEFAULT now()
    )""",
    f"CREATE INDEX IF NOT EXISTS {_TABLE}_by_user ON {_TABLE} (user_id, seq)",
    # schema 2: NULL event_type is a view (events stored before types)
    f"ALTER TABLE {_TABLE} ADD COLUMN IF NOT EXISTS event_type TEXT",
    f"ALTER TABLE {_TABLE} ADD COLUMN IF NOT EXISTS request_id TEXT",
)
#: Advisory-lock namespace ("recb"): high 32 bits of every lock key this module takes.
_LOCK_SPACE = 0x72656362 << 32
#: Taken while creating the schema, so replicas starting together do not race.
_SCHEMA_LOCK = _LOCK_SPACE
_INSERT = (
    f"INSERT INTO {_TABLE} (user_id, item_id, timestamp, rating, weight, event_type, request_id) "
    "SELECT u, i, t, r, w, y, q FROM unnest("
    "%s::text[], %s::text[], %s::bigint[], %s::double precision[], %s::double precision[], "
    "%s::text[], %s::text[]) WITH ORDINALITY AS e(u, i, t, r, w, y, q, n) ORDER BY n "
    "RETURNING seq"
)
_COPY = (
    f"INSERT INTO {_TABLE} "
    "(seq, user_id, item_id, timestamp, rating, weight, event_type, request_id) "
    "OVERRIDING SYSTEM VALUE SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], "
    "%s::bigint[], %s::double precision[], %s::double precision[], %s::text[], %s::text[])"
)
_RESYNC = (
    f"SELECT setval(pg_get_serial_sequence('{_TABLE}', 'seq'), (SELECT MAX(seq) FROM {_TABLE}))"
)


def redact(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


class PostgresFeedbackStore(EventStore):
    """Append-only event log in PostgreSQL, safe across threads, processes and machines.

    Parameters
    ----------
    url : str
        ``postgresql://`` or ``postgres://`` connection URL (libpq syntax).
    timeout : float
        Seconds to wait for a connection (also at open: an unreachable server raises
        :class:`~recommender.errors.StorageError` after it).
    pool_size : int, optional
        Most connections this process opens (default ``$RECBENTO_FEEDBACK_POOL_SIZE``,
        else 4). Requests beyond it wait for a free connection.
    """

    _param = "%s"
    _table = _TABLE

    def __init__(self, url: str, *, timeout: float = 30.0, pool_size: int | None = None) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool, PoolTimeout

        self.url = url
        self._timeout = timeout
        self._errors: tuple[type[BaseException], ...] = (psycopg.OperationalError, PoolTimeout)
        size = pool_size or int(os.environ.get("RECBENTO_FEEDBACK_POOL_SIZE", "4"))
        if size < 1:
            raise InputError(
                f"RECBENTO_FEEDBACK_POOL_SIZE={size}: expected at least 1 connection",
                field="RECBENTO_FEEDBACK_POOL_SIZE",
                value=size,
            )
        self._close_lock = threading.Lock()
        self._read_wait = min(timeout, 1.0)  # a request's sync must not hang on an outage
        self._pool: Any = ConnectionPool(
            url,
            min_size=1,
            max_size=size,
            timeout=timeout,
            kwargs={"autocommit": True, "connect_timeout": max(2, round(min(timeout, 10)))},
            name="recbento-feedback",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
            self._lock_key = self._create_schema()
        except self._errors as exc:
            self._pool.close()
            raise StorageError(
                f"feedback database {redact(url)} cannot be reached within {timeout:.0f} s: {exc}",
                field="RECBENTO_FEEDBACK_DB",
                value=redact(url),
            ) from exc
        except BaseException:
            self._pool.close()
            raise
        log.info("feedback store %s open: %d events", redact(url), self.count())

    def _create_schema(self) -> int:
        """Create the table (once, under a lock), check its version; the writers' lock key."""
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", [_SCHEMA_LOCK])
            from recommender import experiments, impressions

            side = (*impressions.POSTGRES_SCHEMA, *experiments.POSTGRES_SCHEMA)
            for statement in (*_SCHEMA, *side):
                conn.execute(statement)
            oid, comment = conn.execute(
                "SELECT c.oid, obj_description(c.oid, 'pg_class') FROM pg_class c "
                "WHERE c.oid = %s::regclass",
                [_TABLE],
            ).fetchone()
            found = re.search(r"schema (\d+)", comment or "")
            version = int(found.group(1)) if found else _SCHEMA_VERSION
            if version > _SCHEMA_VERSION:
                raise InputError(
                    f"{redact(self.url)}: feedback schema version {version}; this recbento "
                    f"reads up to {_SCHEMA_VERSION}",
                    field="RECBENTO_FEEDBACK_DB",
                    value=redact(self.url),
                )
            if not found or version < _SCHEMA_VERSION:
                conn.execute(
                    f"COMMENT ON TABLE {_TABLE} IS "
                    f"'recbento feedback events, schema {_SCHEMA_VERSION}'"
                )
            settings = dict(
                conn.execute(
                    "SELECT name, setting FROM pg_settings "
                    "WHERE name IN ('fsync', 'synchronous_commit')"
                ).fetchall()
            )
        if settings.get("fsync") == "off" or settings.get("synchronous_commit") == "off":
            log.warning(
                "%s: fsync=%s, synchronous_commit=%s: acknowledged feedback can be lost "
                "if the database server crashes",
                redact(self.url),
                settings.get("fsync"),
                settings.get("synchronous_commit"),
            )
        return _LOCK_SPACE | int(oid)

    # --------------------------------------------------------------- backend
    def _insert(self, rows: list[tuple], seqs: list[int] | None = None) -> list[int]:
        columns = [list(col) for col in zip(*rows, strict=True)]
        try:
            with self._connection(self._timeout) as conn, conn.transaction():
                # Serialise writers before drawing seqs: seq order == commit order.
                conn.execute("SELECT pg_advisory_xact_lock(%s)", [self._lock_key])
                if seqs is not None:  # a copy: keep the seqs, number later events after
                    conn.execute(_COPY, [seqs, *columns])
                    conn.execute(_RESYNC)
                    return list(seqs)
                seqs = [r[0] for r in conn.execute(_INSERT, columns).fetchall()]
        except self._errors as exc:
            raise self._unavailable(exc) from exc
        # Seqs are drawn in row order under the lock; sort in case RETURNING reorders.
        return sorted(seqs)

    def _query(self, sql: str, args: list[Any]) -> list[tuple]:
        for attempt in (1, 2):
            try:
                with self._connection(self._read_wait) as conn:
                    return conn.execute(sql, args).fetchall()
            except self._errors as exc:
                # The pool drops a broken connection when it comes back; one retry
                # gets a fresh one after a server restart.
                if attempt == 2:
                    raise self._unavailable(exc) from exc
                log.warning("feedback database read failed, retrying once: %s", exc)
        raise AssertionError("unreachable")  # pragma: no cover

    def _write_many(self, statements: list[tuple[str, list[tuple]]]) -> None:
        try:
            with self._connection(self._timeout) as conn, conn.transaction():
                cur = conn.cursor()
                for sql, rows in statements:
                    cur.executemany(sql, rows)
        except self._errors as exc:
            raise self._unavailable(exc) from exc

    def _connection(self, wait: float) -> Any:
        pool = self._pool
        if pool is None:
            raise InputError(f"{self!r} is closed", field="RECBENTO_FEEDBACK_DB", value=self)
        return pool.connection(timeout=wait)

    def _unavailable(self, exc: BaseException) -> StorageError:
        return StorageError(
            f"feedback database {redact(self.url)} is unavailable: {exc}",
            field="RECBENTO_FEEDBACK_DB",
            value=redact(self.url),
        )

    # ------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Close every pooled connection; further calls raise :class:`InputError`."""
        with self._close_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __repr__(self) -> str:
        return f"PostgresFeedbackStore({redact(self.url)!r})"
