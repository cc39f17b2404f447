"""Pandera schemas for every table that enters recbento, and one ``validate_tables`` call.

Validation is lazy: every problem in every table is collected and reported together as
one table with the columns ``table, column, row, value, check``. ``row`` is the 0-based
data row (the CSV line number minus 2).

Examples
--------
>>> import pandas as pd
>>> items = pd.DataFrame({"item_id": [1, 2], "title": ["Heat (1995)", "Up (2009)"]})
>>> inter = pd.DataFrame({"user_id": [7], "item_id": [2], "timestamp": [964982703]})
>>> tables = validate_tables(items, inter)
>>> tables.interactions["weight"].tolist()
[1.0]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from recommender.errors import ValidationError

__all__ = [
    "ItemSchema",
    "InteractionSchema",
    "UserSchema",
    "Tables",
    "validate_tables",
    "validate_interactions",
    "normalize_ids",
    "RESERVED_ITEM_COLUMNS",
]

log = logging.getLogger(__name__)

FAILURE_COLUMNS = ["table", "column", "row", "value", "check"]


def _finite(s: pd.Series) -> pd.Series:
    values = pd.to_numeric(s, errors="coerce")
    return s.isna() | np.isfinite(values.astype("float64"))


def _is_number(s: pd.Series) -> pd.Series:
    return s.isna() | pd.to_numeric(s, errors="coerce").notna()


def _parses_as_time(s: pd.Series) -> pd.Series:
    return _to_unix_seconds(s).notna()


class ItemSchema(pa.DataFrameModel):
    """Items: one row per item; every column not named here is an attribute.

    Multi-valued attributes are ``|``-separated (``"Crime|Thriller"``).
    """

    item_id: Series[Any] = pa.Field(nullable=False, unique=True)
    title: Series[Any] = pa.Field(nullable=False)
    description: Series[Any] | None = pa.Field(nullable=True)

    @pa.check("title", name="non-empty title")
    def _title_non_empty(cls, s: pd.Series) -> pd.Series:  # noqa: N805
        return s.astype("string").str.strip().str.len().fillna(0) > 0

    class Config:
        strict = False
        coerce = False


class InteractionSchema(pa.DataFrameModel):
    """Interactions: who touched what, when; ``rating``/``weight`` are optional.

    ``timestamp`` is unix seconds or an ISO-8601 string. ``item_id`` must exist in the
    items table: that check is added per catalogue by :func:`validate_tables`.
    """

    user_id: Series[Any] = pa.Field(nullable=False)
    item_id: Series[Any] = pa.Field(nullable=False)
    timestamp: Series[Any] = pa.Field(nullable=False)
    rating: Series[Any] | None = pa.Field(nullable=True)
    weight: Series[Any] | None = pa.Field(nullable=True)

    @pa.check("timestamp", name="unix seconds or ISO-8601")
    def _timestamp_parses(cls, s: pd.Series) -> pd.Series:  # noqa: N805
        return _parses_as_time(s)

    @pa.check("rating", name="finite number")
    def _rating_finite(cls, s: pd.Series) -> pd.Series:  # noqa: N805
        return _is_number(s) & _finite(s)

    @pa.check("weight", name="finite number >= 0")
    def _weight_non_negative(cls, s: pd.Series) -> pd.Series:  # noqa: N805
        v = pd.to_numeric(s, errors="coerce")
        return s.isna() | (_finite(s) & (v >= 0))

    class Config:
        strict = False
        coerce = False


class UserSchema(pa.DataFrameModel):
    """Users (optional): ``user_id`` plus attribute columns."""

    user_id: Series[Any] = pa.Field(nullable=False, unique=True)

    class Config:
        strict = False
        coerce = False


#: Item columns that are not attributes.
RESERVED_ITEM_COLUMNS = (ItemSchema.item_id, ItemSchema.title, ItemSchema.description)


@dataclass
class Tables:
    """Validated, normalised tables ready for the build path."""

    items: pd.DataFrame
    interactions: pd.DataFrame
    users: pd.DataFrame | None = None


def normalize_ids(s: pd.Series) -> pd.Series:
    """int64 when every non-null value is an integer, else str; nulls stay null.

    >>> normalize_ids(pd.Series(["1", "2"])).tolist()
    [1, 2]
    >>> normalize_ids(pd.Series([1.0, "b"])).tolist()
    ['1', 'b']
    >>> normalize_ids(pd.Series([10**30])).tolist()   # beyond int64: kept as text
    ['1000000000000000000000000000000']
    """
    nonnull = s.dropna()
    as_num = pd.to_numeric(nonnull, errors="coerce")
    integral = as_num.notna().all() and (as_num == np.floor(as_num)).all()
    if len(nonnull) and integral and (as_num.abs() < 2**63).all():  # int64 holds them
        out = pd.to_numeric(s, errors="coerce").astype("Int64")
        return out.astype("int64") if not out.isna().any() else out
    text = s.map(_id_text, na_action="ignore")
    return text.astype(object)


def _id_text(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def _to_unix_seconds(s: pd.Series) -> pd.Series:
    """Parse unix seconds (numbers) or ISO-8601 strings; unparsable values become NA."""
    num = pd.to_numeric(s, errors="coerce")
    out = pd.Series(pd.NA, index=s.index, dtype="Float64")
    finite = num.notna() & np.isfinite(num.astype("float64"))
    out[finite] = num[finite].astype("float64")
    rest = s.notna() & ~finite & num.isna()
    if rest.any():
        parsed = pd.to_datetime(s[rest].astype(str), errors="coerce", utc=True, format="ISO8601")
        ok = parsed.notna()
        secs = (parsed[ok] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
        out[secs.index] = secs.astype("float64")
    return out


def _failures(err: pa.errors.SchemaErrors, table: str) -> pd.DataFrame:
    fc = err.failure_cases
    rows = pd.DataFrame(
        {
            "table": table,
            "column": fc["column"].astype(object).where(fc["column"].notna(), "<table>"),
            "row": fc["index"].astype(object).where(fc["index"].notna(), "-"),
            "value": fc["failure_case"].astype(object),
            "check": fc["check"].astype(str).replace(_CHECK_NAMES),
        }
    )
    return rows


_CHECK_NAMES = {
    "field_uniqueness": "unique",
    "not_nullable": "not null",
    "column_in_dataframe": "column is required",
}


def _missing_column_failures(df: pd.DataFrame, required: tuple[str, ...], table: str) -> list:
    return [
        {"table": table, "column": c, "row": "-", "value": None, "check": "column is required"}
        for c in required
        if c not in df.columns
    ]


def _run(schema: pa.DataFrameSchema, df: pd.DataFrame, table: str) -> pd.DataFrame | None:
    try:
        schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        return _failures(err, table)
    return None


def validate_tables(
    items: pd.DataFrame,
    interactions: pd.DataFrame,
    users: pd.DataFrame | None = None,
) -> Tables:
    """Validate and normalise items, interactions and (optionally) users together.

    Every problem in every table is collected first; if there is any, one
    :class:`~recommender.errors.ValidationError` is raised whose ``failures`` frame
    lists them all. On success ids are normalised (:func:`normalize_ids`),
    ``timestamp`` becomes int64 unix seconds and ``weight`` is filled (given weight,
    else rating, else 1.0).
    """
    items = items.copy()
    interactions = interactions.copy()
    problems: list[pd.DataFrame] = []
    missing = _missing_column_failures(items, (ItemSchema.item_id, ItemSchema.title), "items")
    missing += _missing_column_failures(
        interactions,
        (InteractionSchema.user_id, InteractionSchema.item_id, InteractionSchema.timestamp),
        "interactions",
    )
    if users is not None:
        users = users.copy()
        missing += _missing_column_failures(users, (UserSchema.user_id,), "users")
    if missing:
        raise _error(pd.DataFrame(missing, columns=FAILURE_COLUMNS))

    items[ItemSchema.item_id] = normalize_ids(items[ItemSchema.item_id])
    for df in (interactions, users):
        if df is not None:
            df[InteractionSchema.user_id] = normalize_ids(df[InteractionSchema.user_id])
    interactions[InteractionSchema.item_id] = normalize_ids(interactions[InteractionSchema.item_id])
    interactions[InteractionSchema.item_id] = _align_id_type(
        interactions[InteractionSchema.item_id], items[ItemSchema.item_id]
    )

    problems.append(_run(ItemSchema.to_schema(), items, "items"))
    known = set(items[ItemSchema.item_id].dropna().tolist())
    schema = InteractionSchema.to_schema()
    schema = schema.update_column(
        InteractionSchema.item_id,
        checks=[pa.Check(lambda s: s.isna() | s.isin(known), name="item_id exists in items")],
    )
    problems.append(_run(schema, interactions, "interactions"))
    if users is not None:
        problems.append(_run(UserSchema.to_schema(), users, "users"))
    found = [p for p in problems if p is not None and len(p)]
    if found:
        raise _error(pd.concat(found, ignore_index=True))

    return Tables(_normalize_items(items), _normalize_interactions(interactions), users)


def validate_interactions(interactions: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """Validate interactions alone against a known catalogue (used by feedback)."""
    empty_users = None
    return validate_tables(items, interactions, empty_users).interactions


def _align_id_type(ids: pd.Series, reference: pd.Series) -> pd.Series:
    """Make interaction ids comparable with catalogue ids (int catalogue, str log, ...)."""
    if reference.dtype == object and ids.dtype != object:
        return ids.map(lambda v: str(v), na_action="ignore").astype(object)
    return ids


def _error(failures: pd.DataFrame) -> ValidationError:
    failures = failures[FAILURE_COLUMNS].reset_index(drop=True)
    tables = ", ".join(sorted(failures["table"].unique()))
    return ValidationError(
        f"{len(failures)} problem(s) found in {tables}; nothing was written", failures=failures
    )


def _normalize_items(items: pd.DataFrame) -> pd.DataFrame:
    items = items.reset_index(drop=True)
    items[ItemSchema.title] = items[ItemSchema.title].astype(str).str.strip()
    if ItemSchema.description in items.columns:
        items[ItemSchema.description] = items[ItemSchema.description].fillna("").astype(str)
    for col in items.columns:
        if col not in RESERVED_ITEM_COLUMNS:
            items[col] = items[col].map(_attr_text, na_action="ignore").fillna("").astype(str)
    return items


def _attr_text(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _normalize_interactions(inter: pd.DataFrame) -> pd.DataFrame:
    inter = inter.reset_index(drop=True)
    inter[InteractionSchema.timestamp] = (
        _to_unix_seconds(inter[InteractionSchema.timestamp]).astype("float64").astype("int64")
    )
    if InteractionSchema.rating in inter.columns:
        inter[InteractionSchema.rating] = pd.to_numeric(inter[InteractionSchema.rating]).astype(
            "float64"
        )
    if InteractionSchema.weight in inter.columns:
        weight = pd.to_numeric(inter[InteractionSchema.weight]).astype("float64")
    elif InteractionSchema.rating in inter.columns:
        weight = inter[InteractionSchema.rating]
    else:
        weight = pd.Series(1.0, index=inter.index)
    inter[InteractionSchema.weight] = weight.fillna(1.0).astype("float64")
    return inter.sort_values(
        [InteractionSchema.user_id, InteractionSchema.timestamp, InteractionSchema.item_id],
        kind="stable",
    ).reset_index(drop=True)
