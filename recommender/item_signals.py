"""Item-level signals the reranker and the group portraits read.

Everything here is computed once, from the normalised items and interactions tables, when a
bundle is built or loaded (about 0.1 s on MovieLens-small), and works on *item indices*: row
``i`` of every array is row ``i`` of the items table.

* :func:`item_entity_matrix` -- which entities (genres, tags, ...) each item carries.
* :func:`entity_distribution` -- the same, each row summing to one (Steck's ``p(g|i)``).
* :func:`user_entity_profile` -- a user's entity distribution from their history (``p(g|u)``).
* :func:`item_activity` -- interaction counts per item per time bucket, from which hotness
  (popularity with exponential time decay) is computed for any half-life at request time.
* :func:`item_age_days` -- item age, from a release-year column or the first interaction.
* :func:`head_share_before` / :func:`longtail_mask` -- the popularity head and long tail.

Examples
--------
>>> import pandas as pd
>>> items = pd.DataFrame({"item_id": [1, 2], "title": ["a", "b"],
...                       "genres": ["Comedy|Drama", "Drama"]})
>>> m, names = item_entity_matrix(items)
>>> names
['genres:Comedy', 'genres:Drama']
>>> m.toarray().tolist()
[[1.0, 1.0], [0.0, 1.0]]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recommender.errors import InputError
from recommender.jit import njit

__all__ = [
    "NON_ATTRIBUTE_COLUMNS",
    "ItemActivity",
    "entity_distribution",
    "head_share_before",
    "item_activity",
    "item_age_days",
    "item_entity_matrix",
    "longtail_mask",
    "user_entity_profile",
]

log = logging.getLogger(__name__)

#: Columns of the items table that are not attributes.
NON_ATTRIBUTE_COLUMNS = ("item_id", "title", "description")

_SECONDS_PER_DAY = 86_400.0


def item_entity_matrix(
    items: pd.DataFrame, columns: Sequence[str] | None = None, *, sep: str = "|"
) -> tuple[sp.csr_matrix, list[str]]:
    """Binary item x entity matrix from attribute columns.

    Parameters
    ----------
    items : pandas.DataFrame
        The normalised items table (row ``i`` is item index ``i``).
    columns : sequence of str, optional
        Attribute columns to read. Default: ``["genres"]`` when that column exists, else every
        attribute column (all but ``item_id``, ``title``, ``description``).
    sep : str
        Separator of multi-valued attributes (``"Adventure|Comedy"``).

    Returns
    -------
    matrix : scipy.sparse.csr_matrix, shape (n_items, n_entities), float64
        ``1.0`` where the item carries the entity.
    entity_names : list of str
        ``"column:value"``, sorted, one per matrix column.

    Raises
    ------
    InputError
        When a requested column is not in the table.
    """
    if columns is None:
        if "genres" in items.columns:
            columns = ["genres"]
        else:
            columns = [c for c in items.columns if c not in NON_ATTRIBUTE_COLUMNS]
    missing = [c for c in columns if c not in items.columns]
    if missing:
        raise InputError(
            f"entity columns {missing} are not in the items table; "
            f"expected some of {list(items.columns)}",
            field="columns",
            value=missing,
        )
    rows: list[np.ndarray] = []
    names: list[str] = []
    for col in columns:
        values = items[col]
        if pd.api.types.is_float_dtype(values):  # e.g. year read as float because of NaN
            values = values.map(_number_text)
        exploded = values.astype("string").fillna("").str.split(sep).explode().str.strip()
        exploded = exploded[exploded.fillna("") != ""]
        rows.append(pd.DataFrame({"row": exploded.index.to_numpy(), "name": col + ":" + exploded}))
    pairs = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame({"row": [], "name": []})
    # Positional rows: the items index may not be a RangeIndex.
    pos = pd.Index(items.index).get_indexer(pairs["row"])
    names = sorted(pairs["name"].astype(str).unique().tolist())
    col_idx = pd.Index(names).get_indexer(pairs["name"].astype(str))
    keep = pd.DataFrame({"r": pos, "c": col_idx}).drop_duplicates()
    matrix = sp.csr_matrix(
        (np.ones(len(keep)), (keep["r"].to_numpy(), keep["c"].to_numpy())),
        shape=(len(items), len(names)),
    )
    log.debug("item_entity_matrix: %d items x %d entities from %s", len(items), len(names), columns)
    return matrix, names


def _number_text(v: float) -> str:
    if pd.isna(v):
        return ""
    return str(int(v)) if float(v).is_integer() else str(v)


def entity_distribution(item_entities: sp.spmatrix | np.ndarray) -> sp.csr_matrix:
    """Row-normalise an item x entity matrix so each item's row sums to one.

    Items without any entity keep an all-zero row. This is ``p(g|i)`` in Steck (2018).
    """
    m = sp.csr_matrix(item_entities, dtype=np.float64)
    sums = np.asarray(m.sum(axis=1)).ravel()
    inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.csr_matrix(sp.diags(inv) @ m)


def user_entity_profile(
    item_dist: sp.spmatrix | np.ndarray,
    history_idx: Sequence[int] | np.ndarray,
    weights: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """A user's entity distribution ``p(g|u)``: the weighted mean of their items' ``p(g|i)``.

    Parameters
    ----------
    item_dist : sparse or ndarray, shape (n_items, n_entities)
        Output of :func:`entity_distribution`.
    history_idx : array of int
        Item indices the user interacted with (repeats allowed).
    weights : array of float, optional
        One weight per history entry (e.g. rating or recency); default 1.

    Returns
    -------
    numpy.ndarray, shape (n_entities,)
        Sums to one, or all zeros for an empty history.
    """
    idx = np.asarray(history_idx, dtype=np.int64)
    n_entities = item_dist.shape[1]
    if idx.size == 0:
        return np.zeros(n_entities)
    w = np.ones(idx.size) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != idx.shape:
        raise InputError(
            f"weights has shape {w.shape}, expected {idx.shape} (one per history item)",
            field="weights",
        )
    if idx.min() < 0 or idx.max() >= item_dist.shape[0]:
        raise InputError(
            f"history_idx: item index out of range [0, {item_dist.shape[0]})",
            field="history_idx",
        )
    if isinstance(item_dist, np.ndarray) and weights is None:
        prof = _sum_rows(np.ascontiguousarray(item_dist, dtype=np.float64), idx)
    else:
        # one weight per item, then one sparse product (row gathers cost more on every call)
        per_item = np.bincount(idx, weights=w, minlength=item_dist.shape[0])
        prof = np.asarray(per_item @ item_dist).ravel()
    total = prof.sum()
    return prof / total if total > 0 else prof


@njit()
def _sum_rows(dist: np.ndarray, idx: np.ndarray) -> np.ndarray:  # pragma: no cover - compiled
    """``dist[idx].sum(axis=0)``: the rows added in order, read in place (no gathered copy)."""
    out = np.zeros(dist.shape[1])
    for i in idx:
        for e in range(dist.shape[1]):
            out[e] += dist[i, e]
    return out


@dataclass(frozen=True)
class ItemActivity:
    """Interaction counts per item per time bucket, for hotness with any half-life.

    Attributes
    ----------
    counts : scipy.sparse.csr_matrix, shape (n_items, n_buckets)
        Summed interaction weights of item ``i`` in bucket ``b``.
    age_days : numpy.ndarray, shape (n_buckets,)
        Age of each bucket's midpoint, in days before ``now``.
    now : int
        Reference unix time (the latest interaction unless given), so results are deterministic.
    """

    counts: sp.csr_matrix
    age_days: np.ndarray
    now: int

    @property
    def popularity(self) -> np.ndarray:
        """Total interaction weight per item (no decay)."""
        return np.asarray(self.counts.sum(axis=1)).ravel()

    def hotness(self, half_life_days: float, rows: np.ndarray | None = None) -> np.ndarray:
        """Exponentially decayed popularity: ``sum_b counts[i, b] * 0.5 ** (age_b / half_life)``.

        ``rows`` restricts the computation to some items (the candidates of one request).
        """
        decay = np.exp2(-self.age_days / float(half_life_days))
        m = self.counts if rows is None else self.counts[rows]
        return np.asarray(m @ decay).ravel()


def item_activity(
    item_idx: np.ndarray,
    timestamps: np.ndarray,
    n_items: int,
    *,
    weights: np.ndarray | None = None,
    bucket_days: float = 7.0,
    now: int | None = None,
) -> ItemActivity:
    """Bucket interactions by time so hotness can be computed for any half-life.

    Parameters
    ----------
    item_idx, timestamps : arrays of int, shape (n_interactions,)
        Item index and unix time (seconds) of each interaction.
    n_items : int
        Number of items (rows of the result).
    weights : array of float, optional
        Weight of each interaction; default 1 (counts).
    bucket_days : float
        Bucket width; a week makes hotness exact to well under 1% for half-lives >= 30 days.
    now : int, optional
        Reference time; default the latest timestamp.
    """
    item_idx = np.asarray(item_idx, dtype=np.int64)
    ts = np.asarray(timestamps, dtype=np.int64)
    if item_idx.shape != ts.shape:
        raise InputError("item_idx and timestamps must have the same length", field="timestamps")
    if item_idx.size and (item_idx.min() < 0 or item_idx.max() >= n_items):
        raise InputError(
            f"item indices must be in [0, {n_items}); got {item_idx.min()}..{item_idx.max()}",
            field="item_idx",
        )
    w = np.ones(item_idx.size) if weights is None else np.asarray(weights, dtype=np.float64)
    now = int(ts.max()) if now is None and ts.size else int(now or 0)
    width = bucket_days * _SECONDS_PER_DAY
    bucket = np.maximum(0, np.floor((now - ts) / width)).astype(np.int64)
    n_buckets = int(bucket.max()) + 1 if bucket.size else 1
    counts = sp.csr_matrix((w, (item_idx, bucket)), shape=(n_items, n_buckets))
    counts.sum_duplicates()
    age = (np.arange(n_buckets) + 0.5) * bucket_days
    return ItemActivity(counts=counts, age_days=age, now=now)


def item_age_days(
    n_items: int,
    *,
    now: int,
    years: np.ndarray | None = None,
    item_idx: np.ndarray | None = None,
    timestamps: np.ndarray | None = None,
) -> np.ndarray:
    """Item age in days at ``now``: from a release year where known, else the first interaction.

    Parameters
    ----------
    n_items : int
    now : int
        Reference unix time (use :attr:`ItemActivity.now` for consistency).
    years : array of float, optional
        Release year per item (NaN when unknown); an item is taken to appear on 1 July.
    item_idx, timestamps : arrays, optional
        Interactions; the first one dates items with no year.

    Returns
    -------
    numpy.ndarray, shape (n_items,)
        Days, ``>= 0``; NaN when neither source knows the item.
    """
    age = np.full(n_items, np.nan)
    if item_idx is not None and timestamps is not None:
        first = np.full(n_items, np.iinfo(np.int64).max)
        np.minimum.at(first, np.asarray(item_idx, dtype=np.int64), np.asarray(timestamps))
        seen = first < np.iinfo(np.int64).max
        age[seen] = (now - first[seen]) / _SECONDS_PER_DAY
    if years is not None:
        y = np.asarray(years, dtype=np.float64)
        now_years = 1970.0 + now / (365.2425 * _SECONDS_PER_DAY)
        known = ~np.isnan(y)
        age[known] = (now_years - (y[known] + 0.5)) * 365.2425
    return np.clip(age, 0.0, None)


def head_share_before(popularity: np.ndarray) -> np.ndarray:
    """Share of all interactions held by items *more popular* than each item.

    An item is in the long tail for head share ``h`` when this value is ``>= h``: the head is
    the most popular items that together make up a share ``h`` of interactions. Ties are broken
    by item index so the split is deterministic.
    """
    pop = np.asarray(popularity, dtype=np.float64)
    total = pop.sum()
    order = np.lexsort((np.arange(pop.size), -pop))
    before = np.empty_like(pop)
    cum = np.cumsum(pop[order])
    before[order] = (cum - pop[order]) / total if total > 0 else 1.0
    return before


def longtail_mask(popularity: np.ndarray, head_share: float = 0.8) -> np.ndarray:
    """Boolean mask of long-tail items: those outside the head holding ``head_share``.

    Examples
    --------
    >>> longtail_mask(np.array([50, 30, 10, 5, 5]), head_share=0.8).tolist()
    [False, False, True, True, True]
    """
    return head_share_before(popularity) >= head_share
