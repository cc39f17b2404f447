"""Durable feedback store: interaction events acknowledged only once they are on disk.

Events (``user_id, item_id, timestamp`` and optional ``rating`` / ``weight``) are kept
in an embedded SQLite database in WAL mode with ``synchronous=FULL``: :meth:`append`
writes a whole request in one transaction and returns only after the commit has been
fsynced, so an event the service acknowledged survives ``kill -9`` of the server (and
a power cut). Every event gets a sequence number ``seq`` in commit order; a model
refresh records the last ``seq`` it folded in, and the service replays only the
events after it on top of the bundle's history.

Ids keep their type: they are stored JSON-encoded, so ``7`` comes back as the int
``7`` and ``"7"`` as the string ``"7"``.

Examples
--------
>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "feedback.db")
>>> with FeedbackStore(path) as store:
...     store.append([{"user_id": 7, "item_id": "m1", "timestamp": 100, "rating": 4.0}])
...     store.events_for_user(7)[["user_id", "item_id", "weight"]].values.tolist()
1
[[7, 'm1', 4.0]]
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recommender.errors import InputError

__all__ = ["EVENT_COLUMNS", "FeedbackStore", "fold_events", "to_history"]

log = logging.getLogger(__name__)

#: Columns of every frame the store returns.
EVENT_COLUMNS = ("user_id", "item_id", "timestamp", "rating", "weight")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT    NOT NULL,  -- JSON-encoded: 7 or "7"
    item_id     TEXT    NOT NULL,  -- JSON-encoded
    timestamp   INTEGER NOT NULL,  -- unix seconds, when the user acted
    rating      REAL,
    weight      REAL    NOT NULL,
    received_at REAL    NOT NULL DEFAULT ((julianday('now') - 2440587.5) * 86400.0)
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, seq);
"""
_SCHEMA_VERSION = 1
_SELECT = "SELECT seq, user_id, item_id, timestamp, rating, weight FROM events"


class FeedbackStore:
    """Append-only event log in SQLite (WAL, ``synchronous=FULL``), safe across threads.

    One connection is shared by the threads of a process behind a lock; several
    processes (BentoML workers) may open the same file, SQLite serialises their
    writers and ``busy_timeout`` makes them wait rather than fail.

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
        conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        log.info("feedback store %s open: %d events", self.path, self.count())

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
            optionally ``rating`` and ``weight``. ``weight`` defaults to ``rating``,
            else 1.0.
        items : pandas.DataFrame, optional
            The catalogue. When given, events are validated with the interaction
            schema (:func:`recommender.schemas.validate_interactions`, unknown items
            rejected, every problem reported at once) and ids are normalised to the
            catalogue's type; otherwise each event is checked here and ids are kept
            exactly as sent.
        user_key : callable, optional
            Maps each (validated) ``user_id`` to the type of the model's interaction
            log, e.g. :meth:`recommender.pipeline.Recommender.user_key`, so that
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
        the events (``Recommender.add_events``).
        """
        rows = self._rows(events, items, user_key)
        if not rows:
            return self._frame([])
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT INTO events (user_id, item_id, timestamp, rating, weight) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
                # One writer holds the lock, so this transaction's seqs are consecutive.
                last = conn.execute("SELECT MAX(seq) FROM events").fetchone()[0]
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        log.debug("stored %d feedback events", len(rows))
        first = last - len(rows) + 1
        return self._frame([(first + i, *row) for i, row in enumerate(rows)])

    # ------------------------------------------------------------------ read
    def events_for_user(self, user_id: Any, *, since: int | None = None) -> pd.DataFrame:
        """One user's events (``seq > since`` when given), oldest first.

        ``user_id`` must have the type it was stored with (``7`` and ``"7"`` differ).
        """
        sql = (
            "SELECT seq, user_id, item_id, timestamp, rating, weight FROM events WHERE user_id = ?"
        )
        args: list[Any] = [_encode_id(user_id, "user_id", 0)]
        if since is not None:
            sql += " AND seq > ?"
            args.append(int(since))
        return self._frame(self._query(sql + " ORDER BY timestamp, seq", args))

    def all_events(self, since: int | None = None, *, until: int | None = None) -> pd.DataFrame:
        """Every event with ``since < seq <= until`` (bounds optional), in commit order.

        ``since`` / ``until`` are sequence numbers: use :meth:`last_seq` to take a
        high-water mark before folding events into a model, and pass it as ``until``
        now and as ``since`` at the next refresh, so no event is folded twice or lost.
        """
        sql = f"{_SELECT} WHERE 1=1"
        args: list[Any] = []
        if since is not None:
            sql += " AND seq > ?"
            args.append(int(since))
        if until is not None:
            sql += " AND seq <= ?"
            args.append(int(until))
        return self._frame(self._query(sql + " ORDER BY seq", args))

    def count(self) -> int:
        """Number of stored events."""
        return int(self._query("SELECT COUNT(*) FROM events", [])[0][0])

    def last_seq(self) -> int:
        """Sequence number of the newest stored event (0 when empty)."""
        return int(self._query("SELECT COALESCE(MAX(seq), 0) FROM events", [])[0][0])

    # ------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Checkpoint the WAL and close; further calls raise :class:`InputError`."""
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                finally:
                    self._conn.close()
                    self._conn = None

    def __enter__(self) -> FeedbackStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeedbackStore({self.path!r})"

    # --------------------------------------------------------------- helpers
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise InputError(f"{self!r} is closed", field="path", value=self.path)
        return self._conn

    def _query(self, sql: str, args: list[Any]) -> list[tuple]:
        with self._lock:
            return self._connection().execute(sql, args).fetchall()

    @staticmethod
    def _frame(rows: list[tuple]) -> pd.DataFrame:
        df = pd.DataFrame(rows, columns=["seq", *EVENT_COLUMNS])
        for col in ("user_id", "item_id"):
            values = [json.loads(v) for v in df[col]]
            all_int = bool(values) and all(isinstance(v, int) for v in values)
            df[col] = pd.Series(values, dtype="int64" if all_int else object, index=df.index)
        df["timestamp"] = df["timestamp"].astype("int64")
        df["rating"] = df["rating"].astype("float64")
        df["weight"] = df["weight"].astype("float64")
        df["seq"] = df["seq"].astype("int64")
        out = df[list(EVENT_COLUMNS)]
        out.index = pd.Index(df["seq"].to_numpy(), name="seq")
        return out

    def _rows(
        self,
        events: pd.DataFrame | Sequence[Mapping[str, Any]],
        items: pd.DataFrame | None,
        user_key: Callable[[Any], Any] | None,
    ) -> list[tuple]:
        if isinstance(events, pd.DataFrame):
            df = events
        else:
            if isinstance(events, Mapping) or isinstance(events, str):
                raise InputError(
                    "events: expected a list of event objects or a DataFrame",
                    field="events",
                    value=type(events).__name__,
                )
            for n, ev in enumerate(events):
                if not isinstance(ev, Mapping):
                    raise InputError(
                        f"events[{n}]: expected an object with user_id, item_id, timestamp",
                        field=f"events[{n}]",
                        value=type(ev).__name__,
                    )
            df = pd.DataFrame(list(events))
        if len(df) == 0:
            return []
        if items is not None:
            from recommender.schemas import validate_interactions

            df = validate_interactions(df, items)
        records = df.to_dict(orient="records")
        if user_key is not None:
            for rec in records:
                if not _missing(rec.get("user_id")):
                    rec["user_id"] = user_key(rec["user_id"])
        return [_row(rec, n) for n, rec in enumerate(records)]


def fold_events(
    interactions: pd.DataFrame, store: FeedbackStore, since: int | None = None
) -> tuple[pd.DataFrame, int]:
    """The interaction log with the store's events after ``since`` appended (for refresh).

    Parameters
    ----------
    interactions : pandas.DataFrame
        The current model's normalised interactions.
    store : FeedbackStore
        The feedback store.
    since : int, optional
        The ``feedback_seq`` recorded by the previous refresh (None: every event).

    Returns
    -------
    interactions : pandas.DataFrame
        Old and new rows, sorted by user, time and item like a validated log.
    seq : int
        High-water mark to record in the new model (``config["feedback_seq"]``);
        events committed while folding are left for the next refresh.
    """
    until = store.last_seq()
    new = store.all_events(since=since, until=until).reset_index(drop=True)
    if "rating" not in interactions.columns and new["rating"].isna().all():
        new = new.drop(columns="rating")
    out = pd.concat([interactions, new], ignore_index=True)
    for col in ("user_id", "item_id"):
        kinds = {type(v) for v in out[col].map(_native)}
        if kinds == {int}:
            out[col] = out[col].astype("int64")
    out = out.sort_values(["user_id", "timestamp", "item_id"], kind="stable", key=_sort_key)
    log.info("folded %d feedback events (seq %s..%d)", len(new), since or 0, until)
    return out.reset_index(drop=True), until


def _native(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _sort_key(s: pd.Series) -> pd.Series:
    # Mixed int / str columns cannot be compared; order them by text then.
    return s.map(str) if s.dtype == object else s


def to_history(events: pd.DataFrame, item_index: Mapping[Any, int]) -> Any:
    """Events as a :class:`recommender.history.History` over catalogue rows.

    Items not in ``item_index`` (say, removed from the catalogue since) are skipped.
    """
    from recommender.history import History

    rows = events["item_id"].map(item_index)
    keep = rows.notna().to_numpy()
    order = np.argsort(events["timestamp"].to_numpy()[keep], kind="stable")
    return History(
        rows[keep].astype(np.int64).to_numpy()[order],
        events["timestamp"].to_numpy(dtype=np.int64)[keep][order],
        events["weight"].to_numpy(dtype=np.float64)[keep][order],
    )


# -------------------------------------------------------------------- row checks
def _row(rec: Mapping[str, Any], n: int) -> tuple:
    for col in ("user_id", "item_id", "timestamp"):
        if _missing(rec.get(col)):
            raise InputError(f"events[{n}].{col} is missing", field=f"events[{n}].{col}")
    rating = _number(rec.get("rating"), "rating", n)
    weight = _number(rec.get("weight"), "weight", n)
    if weight is not None and weight < 0:
        raise InputError(
            f"events[{n}].weight={weight!r}: expected a number >= 0",
            field=f"events[{n}].weight",
            value=weight,
        )
    if weight is None:
        weight = rating if rating is not None else 1.0
    return (
        _encode_id(rec["user_id"], "user_id", n),
        _encode_id(rec["item_id"], "item_id", n),
        _timestamp(rec["timestamp"], n),
        rating,
        float(weight),
    )


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT


def _encode_id(v: Any, field: str, n: int) -> str:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, (int, str)) or (isinstance(v, str) and not v):
        raise InputError(
            f"events[{n}].{field}={v!r}: expected an integer or a non-empty string",
            field=f"events[{n}].{field}",
            value=v,
        )
    return json.dumps(v)


def _number(v: Any, field: str, n: int) -> float | None:
    if _missing(v):
        return None
    try:
        if isinstance(v, bool):
            raise TypeError
        f = float(v)
    except (TypeError, ValueError):
        f = math.nan
    if not math.isfinite(f):
        raise InputError(
            f"events[{n}].{field}={v!r}: expected a finite number",
            field=f"events[{n}].{field}",
            value=v,
        )
    return f


def _timestamp(v: Any, n: int) -> int:
    if isinstance(v, pd.Timestamp):
        return int(v.timestamp())
    if isinstance(v, str):
        try:
            return int(float(v))
        except ValueError:
            pass
        try:
            ts = pd.Timestamp(v)
        except (ValueError, TypeError):
            ts = None
        if ts is not None and ts is not pd.NaT:
            if ts.tzinfo is None:
                ts = ts.tz_localize("UTC")
            return int(ts.timestamp())
    else:
        f = _number(v, "timestamp", n)
        if f is not None:
            return int(f)
    raise InputError(
        f"events[{n}].timestamp={v!r}: expected unix seconds or an ISO-8601 time",
        field=f"events[{n}].timestamp",
        value=v,
    )
