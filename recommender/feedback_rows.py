"""Feedback events on their way into and out of a store, the same for every backend.

:func:`event_rows` validates a request's events and turns them into storage rows
``(user_id, item_id, timestamp, rating, weight, type, request_id)``;
:func:`events_frame` turns stored rows (with their ``seq``) back into the frame every
store returns; :func:`fold_events` and :func:`to_history` hand stored events to a
model, and :func:`weigh_events` turns typed events into history rows (each type's
weight applied; impressions and dislikes left out). Ids are stored JSON-encoded so
that they keep their type: ``7`` comes back as the int ``7`` and ``"7"`` as the
string ``"7"``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from recommender.errors import InputError

__all__ = [
    "EVENT_COLUMNS",
    "encode_id",
    "event_rows",
    "events_frame",
    "fold_events",
    "to_history",
    "weigh_events",
]

log = logging.getLogger(__name__)

#: Columns of every frame a feedback store returns (its index is the event's ``seq``).
EVENT_COLUMNS = ("user_id", "item_id", "timestamp", "rating", "weight", "type", "request_id")

#: Longest ``request_id`` an event may carry (a uuid4 hex is 32).
MAX_REQUEST_ID = 64


def event_rows(
    events: pd.DataFrame | Sequence[Mapping[str, Any]],
    items: pd.DataFrame | None = None,
    user_key: Callable[[Any], Any] | None = None,
) -> list[tuple]:
    """Validated storage rows for ``events``; raise on the first malformed one.

    See :meth:`recommender.feedback.EventStore.append` for ``items`` and ``user_key``.
    """
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


def events_frame(rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Stored rows ``(seq, user_id, item_id, timestamp, rating, weight, type, request_id)``.

    Columns :data:`EVENT_COLUMNS` with ids decoded to their original type (an all-int
    column becomes ``int64``), indexed by ``seq``.
    """
    df = pd.DataFrame(list(rows), columns=["seq", *EVENT_COLUMNS])
    for col in ("user_id", "item_id"):
        values = [json.loads(v) for v in df[col]]
        all_int = bool(values) and all(isinstance(v, int) for v in values)
        df[col] = pd.Series(values, dtype="int64" if all_int else object, index=df.index)
    df["timestamp"] = df["timestamp"].astype("int64")
    df["rating"] = df["rating"].astype("float64")
    df["weight"] = df["weight"].astype("float64")
    df["seq"] = df["seq"].astype("int64")
    for col in ("type", "request_id"):
        df[col] = df[col].astype(object).where(df[col].notna(), None)
    out = df[list(EVENT_COLUMNS)]
    out.index = pd.Index(df["seq"].to_numpy(), name="seq")
    return out


def fold_events(
    interactions: pd.DataFrame, store: Any, since: int | None = None, weights: Any = None
) -> tuple[pd.DataFrame, int]:
    """The interaction log with the store's events after ``since`` appended (for refresh).

    Parameters
    ----------
    interactions : pandas.DataFrame
        The current model's normalised interactions.
    store : recommender.feedback.EventStore
        The feedback store.
    since : int, optional
        The ``feedback_seq`` recorded by the previous refresh (None: every event).
    weights : recommender.config.EventWeights, optional
        The model's weights per event type (:func:`weigh_events`): impressions and
        dislikes are left out, other events weighted by their type.

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
    new, _ = weigh_events(new, weights)
    if "rating" not in interactions.columns and new["rating"].isna().all():
        new = new.drop(columns="rating")
    out = pd.concat([interactions, new], ignore_index=True)
    for col in ("user_id", "item_id"):
        kinds = {type(v) for v in out[col].map(_native)}
        if kinds == {int}:
            out[col] = out[col].astype("int64")
    out = out.sort_values(["user_id", "timestamp", "item_id"], kind="stable", key=_sort_key)
    log.info("folded %d feedback interactions (seq %s..%d)", len(new), since or 0, until)
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


def weigh_events(events: pd.DataFrame, weights: Any = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split typed events into history rows and dislikes.

    Parameters
    ----------
    events : pandas.DataFrame
        Events or an interaction log; a ``type`` column is optional (missing or empty
        means ``view``).
    weights : recommender.config.EventWeights, optional
        The model's weights per type (defaults when omitted).

    Returns
    -------
    history : pandas.DataFrame
        The rows that count as interactions, ``weight`` multiplied by their type's
        weight, without the ``type`` and ``request_id`` columns; impressions, dislikes
        and types weighted 0 are left out.
    dislikes : pandas.DataFrame
        The ``dislike`` rows, as given.
    """
    from recommender.config import EventWeights

    if "type" not in events.columns:
        return events, events.iloc[:0]
    weights = weights or EventWeights()
    types = events["type"].astype(object).where(events["type"].notna(), None)
    factor = types.map(weights.weight).to_numpy(dtype=np.float64)
    base = (
        events["weight"].fillna(1.0).to_numpy(dtype=np.float64)
        if "weight" in events.columns
        else np.ones(len(events))
    )
    keep = factor > 0
    history = events.drop(columns=[c for c in ("type", "request_id") if c in events.columns])
    history = history.assign(weight=base * factor)[keep]
    return history, events[(types == "dislike").to_numpy()]


# ------------------------------------------------------------------ row checks
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
        encode_id(rec["user_id"], "user_id", n),
        encode_id(rec["item_id"], "item_id", n),
        _timestamp(rec["timestamp"], n),
        rating,
        float(weight),
        _event_type(rec.get("type"), n),
        _request_id(rec.get("request_id"), n),
    )


def _event_type(v: Any, n: int) -> str | None:
    from recommender.config import EVENT_TYPES

    if _missing(v):
        return None
    if v not in EVENT_TYPES:
        raise InputError(
            f"events[{n}].type={v!r}: expected one of {list(EVENT_TYPES)}",
            field=f"events[{n}].type",
            value=v,
        )
    return str(v)


def _request_id(v: Any, n: int) -> str | None:
    if _missing(v):
        return None
    if not isinstance(v, str) or not 0 < len(v) <= MAX_REQUEST_ID:
        raise InputError(
            f"events[{n}].request_id={v!r}: expected the request_id of a recommend "
            f"answer (a string of 1 to {MAX_REQUEST_ID} characters)",
            field=f"events[{n}].request_id",
            value=v,
        )
    return v


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT


def encode_id(v: Any, field: str = "user_id", n: int = 0) -> str:
    """``v`` JSON-encoded for storage; an :class:`InputError` names ``events[n].field``."""
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


#: Unix seconds must fit a signed 64-bit column in every backend.
_TS_RANGE = (-(2**63), 2**63 - 1)


def _timestamp(v: Any, n: int) -> int:
    seconds: float | None = None
    if isinstance(v, pd.Timestamp):
        seconds = v.timestamp()
    elif isinstance(v, str):
        try:
            seconds = float(v)
        except ValueError:
            try:
                ts = pd.Timestamp(v)
            except (ValueError, TypeError):
                ts = None
            if ts is not None and ts is not pd.NaT:
                seconds = (ts if ts.tzinfo else ts.tz_localize("UTC")).timestamp()
    else:
        seconds = _number(v, "timestamp", n)
    if seconds is not None and math.isfinite(seconds):
        out = int(seconds)
        if _TS_RANGE[0] <= out <= _TS_RANGE[1]:
            return out
    raise InputError(
        f"events[{n}].timestamp={v!r}: expected unix seconds (a 64-bit integer) or an "
        "ISO-8601 time",
        field=f"events[{n}].timestamp",
        value=v,
    )
