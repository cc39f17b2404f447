"""The catalogue as the request path sees it: ids <-> rows, titles, attribute filters.

Ids arrive from JSON as ``1`` or ``"1"``; both find the same item, and user ids are
normalised to the type of the interaction log's column.

Examples
--------
>>> import pandas as pd
>>> cat = Catalogue(pd.DataFrame({"item_id": [7, 9], "title": ["A", "B"],
...                               "genres": ["Comedy|Drama", "Horror"]}), user_ids_int=True)
>>> cat.row("9"), cat.user_key("42")
(1, 42)
>>> cat.allowed(include={"genres": ["comedy"]}).tolist()
[True, False]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from recommender.data import attribute_columns, split_multi
from recommender.errors import InputError, NotFoundError
from recommender.schemas import ItemSchema

__all__ = ["Catalogue", "coerce_id", "native"]


class Catalogue:
    """Item ids, titles and attribute values of a model, row-aligned with its vectors.

    Parameters
    ----------
    items : pandas.DataFrame
        The validated items table.
    user_ids_int : bool
        Whether the interaction log's user ids are integers.
    """

    def __init__(self, items: pd.DataFrame, *, user_ids_int: bool) -> None:
        self.ids: list[Any] = [native(v) for v in items[ItemSchema.item_id].tolist()]
        self.titles: list[str] = items[ItemSchema.title].astype(str).tolist()
        self.index: dict[Any, int] = {iid: i for i, iid in enumerate(self.ids)}
        self._int_ids = items[ItemSchema.item_id].dtype.kind in "iu"
        self._user_ids_int = user_ids_int
        self.attributes = attribute_columns(items)
        self._values = {c: items[c].astype(str).tolist() for c in self.attributes}
        self._masks: dict[tuple[str, str], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def row(self, item_id: Any, *, field: str = "item_id") -> int:
        """Row of ``item_id``; :class:`NotFoundError` naming ``field`` if unknown."""
        row = self.index.get(item_id)
        if row is None:
            row = self.index.get(coerce_id(item_id, self._int_ids))
        if row is None:
            raise NotFoundError(
                f"{field}={item_id!r} is not in the catalogue", field=field, value=item_id
            )
        return row

    def rows(self, item_ids: Sequence[Any] | None, field: str) -> np.ndarray:
        """Rows of many ids; the error names the first unknown one as ``field[n]``."""
        return np.array(
            [self.row(i, field=f"{field}[{n}]") for n, i in enumerate(item_ids or [])],
            dtype=np.int64,
        )

    def has(self, item_id: Any) -> bool:
        """Whether ``item_id`` (either spelling) is in the catalogue."""
        return item_id in self.index or coerce_id(item_id, self._int_ids) in self.index

    def user_key(self, user_id: Any) -> Any:
        """A user id in the type of the interaction log (``"1"`` -> ``1`` for int logs)."""
        return coerce_id(user_id, self._user_ids_int)

    def allowed(
        self,
        include: Mapping[str, Sequence[str]] | None = None,
        exclude: Mapping[str, Sequence[str]] | None = None,
    ) -> np.ndarray | None:
        """Items passing ``include`` / ``exclude`` attribute filters; ``None`` = all.

        An item passes ``include`` when, for every listed attribute, it has one of
        the values (case-insensitive, multi-valued attributes split on ``|``).
        """
        if not include and not exclude:
            return None
        mask = np.ones(len(self), dtype=bool)
        for name, spec, keep in (("include", include, True), ("exclude", exclude, False)):
            for column, values in (spec or {}).items():
                if column not in self._values:
                    raise InputError(
                        f"{name}.{column}: unknown attribute; expected one of {self.attributes}",
                        field=f"{name}.{column}",
                        value=column,
                    )
                hit = np.zeros(len(self), dtype=bool)
                for value in values:
                    hit |= self._value_mask(column, str(value))
                mask &= hit if keep else ~hit
        return mask

    def _value_mask(self, column: str, value: str) -> np.ndarray:
        key = (column, value.casefold())
        if key not in self._masks:
            self._masks[key] = np.array(
                [key[1] in {p.casefold() for p in split_multi(v)} for v in self._values[column]]
            )
        return self._masks[key]


def coerce_id(value: Any, want_int: bool) -> Any:
    """``"12"`` -> ``12`` when ids are integers, ``12`` -> ``"12"`` when they are strings.

    >>> coerce_id("12", True), coerce_id(12, False), coerce_id("x", True)
    (12, '12', 'x')
    """
    if value is None:
        return None
    if want_int:
        if isinstance(value, bool):
            return value
        try:
            f = float(value)
        except (TypeError, ValueError):
            return str(value)
        return int(f) if math.isfinite(f) and f.is_integer() else value
    return str(value)


def native(v: Any) -> Any:
    """A numpy scalar as the Python value JSON can carry."""
    return v.item() if isinstance(v, np.generic) else v
