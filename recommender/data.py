"""Reading tables (CSV or Parquet) and turning items into encoder text.

Examples
--------
>>> import pandas as pd
>>> items = pd.DataFrame({"item_id": [1], "title": ["Heat (1995)"],
...                       "genres": ["Action|Crime"], "year": ["1995"]})
>>> item_texts(items)
['Heat (1995). genres: Action, Crime. year: 1995.']
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from recommender.errors import InputError
from recommender.schemas import RESERVED_ITEM_COLUMNS, ItemSchema, Tables, validate_tables

__all__ = [
    "MULTI_SEP",
    "read_table",
    "load_tables",
    "attribute_columns",
    "split_multi",
    "item_texts",
    "demo_dir",
]

log = logging.getLogger(__name__)

MULTI_SEP = "|"
_READERS = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".pq": pd.read_parquet}


def demo_dir() -> Path:
    """Folder of the bundled demo catalogue (MovieLens small)."""
    here = Path(__file__).resolve().parent.parent / "data" / "demo"
    return here


def read_table(path: str | Path, *, name: str = "table") -> pd.DataFrame:
    """Read a CSV or Parquet file, picked by its suffix.

    Raises :class:`InputError` naming ``name`` and the path when the file is missing
    or its format is unknown.
    """
    path = Path(path)
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise InputError(
            f"{name}={str(path)!r}: unknown file type {path.suffix!r}; "
            f"expected one of {sorted(_READERS)}",
            field=name,
            value=str(path),
        )
    if not path.is_file():
        raise InputError(f"{name}={str(path)!r}: no such file", field=name, value=str(path))
    if reader is pd.read_csv:
        df = pd.read_csv(path, keep_default_na=True, na_values=[""])
    else:
        df = pd.read_parquet(path)
    log.info("read %s: %d rows from %s", name, len(df), path)
    return df


def load_tables(
    items: str | Path,
    interactions: str | Path,
    users: str | Path | None = None,
) -> Tables:
    """Read and validate the three input tables (see :func:`validate_tables`)."""
    return validate_tables(
        read_table(items, name="items"),
        read_table(interactions, name="interactions"),
        read_table(users, name="users") if users is not None else None,
    )


def attribute_columns(items: pd.DataFrame) -> list[str]:
    """Every item column that is not ``item_id``, ``title`` or ``description``."""
    return [c for c in items.columns if c not in RESERVED_ITEM_COLUMNS]


def split_multi(value: object) -> list[str]:
    """``"A|B| |C"`` -> ``["A", "B", "C"]``; empty and missing values give ``[]``."""
    if value is None or (isinstance(value, float) and value != value):
        return []
    return [p.strip() for p in str(value).split(MULTI_SEP) if p.strip()]


def item_texts(items: pd.DataFrame, columns: Iterable[str] | None = None) -> list[str]:
    """Encoder text per item: title, description, then ``attribute: values`` parts."""
    cols = list(columns) if columns is not None else attribute_columns(items)
    has_desc = ItemSchema.description in items.columns
    out: list[str] = []
    for rec in items.to_dict(orient="records"):
        parts = [str(rec[ItemSchema.title]).strip()]
        if has_desc and str(rec[ItemSchema.description] or "").strip():
            parts.append(str(rec[ItemSchema.description]).strip())
        for c in cols:
            values = split_multi(rec.get(c))
            if values:
                parts.append(f"{c}: {', '.join(values)}")
        out.append(". ".join(p.rstrip(".") for p in parts) + ".")
    return out
