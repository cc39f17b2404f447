"""Durable feedback store: interaction events acknowledged only once they are committed.

Events (``user_id, item_id, timestamp`` and optional ``rating``, ``weight``, ``type``
and ``request_id``) go to an append-only log. Every backend keeps one contract,
:class:`EventStore` (:mod:`recommender.event_store`): an acknowledged event is committed,
and its sequence number ``seq`` follows commit order, so ``seq`` is a safe high-water mark.

Two backends, picked by :func:`open_store` from one setting (``RECBENTO_FEEDBACK_DB``):

* a file path: :class:`FeedbackStore` (:mod:`recommender.feedback_sqlite`), embedded
  SQLite (WAL, ``synchronous=FULL``), the default. Every worker of one machine shares the file.
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
from pathlib import Path

from recommender.errors import InputError
from recommender.event_store import EventStore
from recommender.feedback_rows import EVENT_COLUMNS, fold_events, to_history
from recommender.feedback_sqlite import FeedbackStore

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
