"""The feedback-store contract every backend keeps: :class:`EventStore`.

* :meth:`~EventStore.append` writes a whole request in one transaction and returns only
  after the commit, so an event the service acknowledged survives ``kill -9`` of the
  server;
* every event gets a sequence number ``seq``, and ``seq`` order is commit order: once a
  reader has seen ``seq = s``, no event with a smaller ``seq`` can still appear. That
  makes ``seq`` a safe high-water mark: a model refresh records the last ``seq`` it
  folded in, and each server worker applies only the events after the last one it saw.

Validation, normalisation and the queries are written here once; a backend
(:mod:`recommender.feedback_sqlite`, :mod:`recommender.feedback_pg`) supplies storage.
:func:`recommender.feedback.open_store` picks the backend.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from recommender.errors import InputError
from recommender.feedback_rows import encode_id, event_rows, events_frame

__all__ = ["EventStore", "insert_statements", "range_clause"]

log = logging.getLogger(__name__)


class EventStore(ABC):
    """The feedback-store contract, shared by every backend.

    Subclasses provide storage (:meth:`_insert`, :meth:`_query`, :meth:`close`);
    validation, normalisation and the queries are written here once. SQL uses
    :attr:`_param` as its placeholder and :attr:`_table` as the events table.
    """

    _param = "?"
    _table = "events"
    #: Whether queries only read a file on this machine, never waiting on a network:
    #: then they are cheap and bounded enough to run on a service's event loop. A backend
    #: says so itself; one that does not is assumed to wait.
    local = False

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
        bounds, args = range_clause("seq", p, since)
        sql = f"{self._select()} WHERE user_id = {p}{bounds} ORDER BY timestamp, seq"
        return events_frame(self._query(sql, [encode_id(user_id, "user_id", 0), *args]))

    def all_events(self, since: int | None = None, *, until: int | None = None) -> pd.DataFrame:
        """Every event with ``since < seq <= until`` (bounds optional), in commit order.

        ``since`` / ``until`` are sequence numbers: use :meth:`last_seq` to take a
        high-water mark before folding events into a model, and pass it as ``until``
        now and as ``since`` at the next refresh, so no event is folded twice or lost.
        """
        bounds, args = range_clause("seq", self._param, since, until)
        return events_frame(self._query(f"{self._select()} WHERE 1=1{bounds} ORDER BY seq", args))

    def dislikes(self, *, until: int | None = None) -> pd.DataFrame:
        """Every ``dislike`` event (``seq <= until`` when given), in commit order.

        Dislikes outlive refreshes (a refreshed model's histories leave them out), so a
        server reads them all at start.
        """
        p = self._param
        bounds, args = range_clause("seq", p, high=until)
        sql = f"{self._select()} WHERE event_type = {p}{bounds} ORDER BY seq"
        return events_frame(self._query(sql, ["dislike", *args]))

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

    def _write(self, sql: str, rows: list[tuple]) -> None:
        """Run ``sql`` once per row in one committed transaction (side tables)."""
        self._write_many([(sql, rows)])

    @abstractmethod
    def _write_many(self, statements: list[tuple[str, list[tuple]]]) -> None:
        """Run each ``(sql, rows)`` once per row, all in one committed transaction."""

    def _select(self) -> str:
        return (
            "SELECT seq, user_id, item_id, timestamp, rating, weight, event_type, request_id "
            f"FROM {self._table}"
        )


def range_clause(
    column: str,
    param: str,
    low: Any = None,
    high: Any = None,
    *,
    low_op: str = ">",
    high_op: str = "<=",
    cast: Callable[[Any], Any] = int,
) -> tuple[str, list[Any]]:
    """SQL conditions ``" AND column > ? AND column <= ?"`` for the bounds given.

    Returns the conditions (empty without bounds) and their arguments, cast with
    ``cast``; ``param`` is the backend's placeholder.

    >>> range_clause("seq", "?", 5)
    (' AND seq > ?', [5])
    >>> range_clause("served_at", "%s", 1.5, 9, low_op=">=", high_op="<", cast=float)
    (' AND served_at >= %s AND served_at < %s', [1.5, 9.0])
    """
    sql, args = "", []
    for bound, op in ((low, low_op), (high, high_op)):
        if bound is not None:
            sql += f" AND {column} {op} {param}"
            args.append(cast(bound))
    return sql, args


#: SQLite's oldest limit on the parameters of one statement.
_MAX_PARAMS = 999


def insert_statements(
    head: str, rows: Sequence[tuple], param: str, tail: str = ""
) -> list[tuple[str, list[tuple]]]:
    """``(sql, args)`` pairs inserting ``rows`` many to a statement, each for ``executemany``.

    ``head`` is ``INSERT INTO table (columns)``, ``tail`` what follows the values (an
    ``ON CONFLICT`` clause). SQLite lets go of the GIL for every statement it runs, so
    beside a busy thread a statement per row made writes of a few hundred rows take
    seconds, with the store's lock held all that time; rows keep their order.

    >>> insert_statements("INSERT INTO t (a, b)", [(1, 2), (3, 4), (5, 6)], "?")
    [('INSERT INTO t (a, b) VALUES (?, ?), (?, ?), (?, ?)', [(1, 2, 3, 4, 5, 6)])]
    >>> many = insert_statements("INSERT INTO t (a)", [(0,)] * 2000, "?")
    >>> [(sql.count("(?)"), len(args)) for sql, args in many]  # 999 rows twice, then 2
    [(999, 2), (2, 1)]
    """
    if not rows:
        return []
    width = len(rows[0])
    per = max(1, _MAX_PARAMS // width)
    one = f"({', '.join([param] * width)})"

    def flat(chunk: Sequence[tuple]) -> tuple:
        return tuple(v for row in chunk for v in row)

    def sql(n: int) -> str:
        return f"{head} VALUES {', '.join([one] * n)}{tail}"

    whole = len(rows) - len(rows) % per
    out = [(sql(per), [flat(rows[i : i + per]) for i in range(0, whole, per)])] if whole else []
    if whole < len(rows):
        out.append((sql(len(rows) - whole), [flat(rows[whole:])]))
    return out
