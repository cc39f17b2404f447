"""Build the item / entity graph from the items table (and the users table if given).

Node keys are strings, so that the graph survives node-link JSON and GraphML unchanged:

* ``"item:<item_id>"``: ``kind="item"``, ``item_id`` (int or str, as in the table),
  ``index`` (row in the items table and in the item vectors), ``title``, ``label``;
* ``"user:<user_id>"``: ``kind="user"``, ``user_id``, ``label``;
* ``"<type>:<value>"`` (``"genre:Comedy"``, ``"tag:pixar"``, ``"decade:1990s"``):
  ``kind=<type>``, ``label=<value>``, ``support`` (number of items carrying it),
  ``idf``, ``column`` (the table column it came from).

The types ``item`` and ``user`` are reserved: a column called ``item`` becomes the type
``item_attr``. Item-entity edges carry ``weight = idf(entity) * column_weight`` with
``idf = log(1 + n_items / support)``: an entity on half the catalogue weighs ~1.1, one
on 3 items of 9,742 weighs ~8.

Examples
--------
>>> import pandas as pd
>>> items = pd.DataFrame({"item_id": [1, 2, 3], "title": ["A", "B", "C"],
...                       "genres": ["Crime|Drama", "Crime", "Comedy|Drama"]})
>>> G = build_graph(items, config=GraphConfig(max_entity_share=1.0))
>>> sorted(n for n, d in G.nodes(data=True) if d["kind"] != "item")
['genre:Crime', 'genre:Drama']
>>> G.nodes["item:1"]["index"], G.nodes["genre:Crime"]["support"]
(0, 2)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from knowledge_graph.config import GraphConfig
from recommender.errors import InputError

__all__ = [
    "ITEM",
    "USER",
    "build_graph",
    "detect_entity_columns",
    "item_node",
    "user_node",
    "entity_node",
    "split_node",
]

log = logging.getLogger(__name__)

ITEM, USER = "item", "user"
_SEP = "|"
_RESERVED = ("item_id", "user_id", "title", "description")
_PROGRESS_MIN_ROWS = 20_000


def item_node(item_id: object) -> str:
    """Node key of an item: ``item_node(1) == "item:1"``."""
    return f"{ITEM}:{_id_text(item_id)}"


def user_node(user_id: object) -> str:
    """Node key of a user: ``user_node("u7") == "user:u7"``."""
    return f"{USER}:{_id_text(user_id)}"


def entity_node(kind: str, value: str) -> str:
    """Node key of an entity: ``entity_node("genre", "Comedy") == "genre:Comedy"``."""
    return f"{kind}:{value}"


def split_node(node: str) -> tuple[str, str]:
    """``"tag:heist"`` -> ``("tag", "heist")`` (values may themselves contain ``:``)."""
    kind, _, value = node.partition(":")
    return kind, value


def detect_entity_columns(
    table: pd.DataFrame,
    *,
    exclude: Sequence[str] = _RESERVED,
    min_shared: float = 0.2,
    max_words: float = 6.0,
) -> list[str]:
    """Columns whose values are worth an entity node: categorical or ``|``-multi-valued.

    A column qualifies when (1) it is not an id, title or description, (2) it is not a
    continuous number (non-integer floats), (3) its values are short (median at most
    ``max_words`` words: free text is for the encoder, not the graph) and (4) at least
    ``min_shared`` of its non-empty rows carry a value some other row carries too
    (a unique-per-row column such as an SKU links nothing).

    Examples
    --------
    >>> df = pd.DataFrame({"item_id": [1, 2, 3, 4], "title": list("ABCD"),
    ...                    "genres": ["A|B", "B", "A", "C"], "sku": ["x1", "x2", "x3", "x4"],
    ...                    "price": [1.5, 2.25, 1.5, 9.99], "year": [1995, 1995, 2001, 2001]})
    >>> detect_entity_columns(df)
    ['genres', 'year']
    """
    out: list[str] = []
    for col in table.columns:
        if col in exclude:
            continue
        s = table[col]
        if pd.api.types.is_float_dtype(s) and not _integral(s.dropna()):
            continue
        strs = s.dropna().astype(str).str.strip()
        strs = strs[strs != ""]
        if strs.empty:
            continue
        tokens = _explode(strs)
        if tokens.empty:
            continue
        numeric = pd.to_numeric(tokens, errors="coerce")
        if numeric.notna().all() and not _integral(numeric):
            continue
        if float(tokens.str.split().str.len().median()) > max_words:
            continue
        counts = tokens.value_counts()
        shared = tokens.map(counts).ge(2)
        shared_rows = shared.groupby(level=0).any().mean()
        if shared_rows >= min_shared:
            out.append(col)
    log.debug("auto-detected entity columns %s", out)
    return out


def build_graph(
    items: pd.DataFrame,
    users: pd.DataFrame | None = None,
    config: GraphConfig | None = None,
    *,
    progress: bool | None = None,
) -> nx.Graph:
    """The item / entity (/ user) graph of a catalogue.

    Parameters
    ----------
    items : DataFrame
        Validated items (``item_id``, ``title``, attribute columns; ``|`` separates
        the values of a multi-valued attribute). Row ``i`` becomes the node with
        ``index=i``.
    users : DataFrame, optional
        ``user_id`` plus attribute columns; users link to their attribute entities.
    config : GraphConfig, optional
        Columns, thresholds and weights; stored as ``G.graph["config"]``.
    progress : bool, optional
        Show a progress bar (default: on for catalogues of 20,000 items or more).

    Returns
    -------
    networkx.Graph
        Undirected, weighted; see the module docstring for node keys and attributes.
    """
    cfg = config or GraphConfig()
    _check_table(items, "items", ("item_id", "title"))
    t0 = time.perf_counter()
    n = len(items)
    columns = _columns(items, cfg.entity_columns, cfg, "items", "entity_columns")
    show = progress if progress is not None else n >= _PROGRESS_MIN_ROWS
    G = nx.Graph(
        config=cfg.get_config(),
        entity_columns=columns,
        n_items=n,
        built_with=f"networkx {nx.__version__}",
    )
    ids = items["item_id"].tolist()
    keys = [item_node(v) for v in ids]
    titles = items["title"].astype(str).tolist()
    G.add_nodes_from(
        (k, {"kind": ITEM, "item_id": _native(v), "index": i, "title": t, "label": t})
        for i, (k, v, t) in enumerate(zip(keys, ids, titles, strict=True))
    )
    pairs = _entity_pairs(items, columns, cfg, show)
    _add_entities(G, pairs, keys, n, cfg, role=ITEM)
    if users is not None:
        _check_table(users, "users", ("user_id",))
        ucols = _columns(users, cfg.user_entity_columns, cfg, "users", "user_entity_columns")
        ukeys = [user_node(v) for v in users["user_id"].tolist()]
        G.add_nodes_from(
            (k, {"kind": USER, "user_id": _native(v), "label": str(v)})
            for k, v in zip(ukeys, users["user_id"].tolist(), strict=True)
        )
        G.graph["user_entity_columns"] = ucols
        _add_entities(G, _entity_pairs(users, ucols, cfg, show), ukeys, len(users), cfg, USER)
    log.info(
        "built knowledge graph: %d nodes, %d edges from %d items (%s) in %.2fs",
        G.number_of_nodes(),
        G.number_of_edges(),
        n,
        ", ".join(columns) or "no entity columns",
        time.perf_counter() - t0,
    )
    return G


# -- helpers ------------------------------------------------------------------------------
def _check_table(df: pd.DataFrame, name: str, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise InputError(
            f"{name}: missing column(s) {missing}; expected {list(required)} plus attributes",
            field=name,
            value=missing,
        )
    key = required[0]
    dup = df[key][df[key].duplicated()]
    if len(dup):
        raise InputError(
            f"{name}.{key}: duplicated value(s) {dup.head(5).tolist()}; expected unique ids",
            field=key,
            value=dup.iloc[0],
        )


def _columns(
    df: pd.DataFrame, given: list[str] | None, cfg: GraphConfig, table: str, field: str
) -> list[str]:
    if given is None:
        return detect_entity_columns(
            df, min_shared=cfg.auto_min_shared, max_words=cfg.auto_max_words
        )
    missing = [c for c in given if c not in df.columns]
    if missing:
        raise InputError(
            f"{field}={missing}: not column(s) of {table}; expected some of "
            f"{[c for c in df.columns if c not in _RESERVED]}",
            field=field,
            value=missing,
        )
    return list(given)


def _explode(strs: pd.Series) -> pd.Series:
    """Non-empty string cells -> one stripped token per row, index = source row label."""
    tokens = strs.str.split(_SEP, regex=False).explode().str.strip()
    return tokens[tokens.notna() & (tokens != "")]


def _integral(s: pd.Series) -> bool:
    v = s.to_numpy(dtype=np.float64, na_value=np.nan)
    v = v[~np.isnan(v)]
    return bool(np.all(v == np.round(v)))


def _entity_pairs(df: pd.DataFrame, columns: list[str], cfg: GraphConfig, show: bool):
    """DataFrame ``row, kind, value, column`` of (row, entity) incidences, deduplicated."""
    frames = []
    ignore = {v.lower() for v in cfg.ignore_values}
    for col in tqdm(columns, desc="graph entities", unit="column", disable=not show):
        s = df[col].reset_index(drop=True)
        if pd.api.types.is_float_dtype(s) and _integral(s.dropna()):
            s = s.astype("Int64")
        strs = s.dropna().astype(str).str.strip()
        tokens = _explode(strs[strs != ""])
        tokens = tokens[~tokens.str.lower().isin(ignore)]
        if tokens.empty:
            continue
        kind = cfg.type_of(col)
        rows = tokens.index.to_numpy()
        frames.append(pd.DataFrame({"row": rows, "kind": kind, "value": tokens.to_numpy()}))
        if col == cfg.year_column and cfg.derive_decade:
            years = pd.to_numeric(tokens, errors="coerce")
            ok = years.notna().to_numpy()
            decades = (years[ok] // 10 * 10).astype(int).astype(str) + "s"
            frames.append(
                pd.DataFrame({"row": rows[ok], "kind": "decade", "value": decades.to_numpy()})
            )
        for f in frames:
            if "column" not in f:
                f["column"] = col
    if not frames:
        return pd.DataFrame({"row": [], "kind": [], "value": [], "column": []})
    pairs = pd.concat(frames, ignore_index=True)
    return pairs.drop_duplicates(["row", "kind", "value"], ignore_index=True)


def _add_entities(
    G: nx.Graph, pairs: pd.DataFrame, keys: list[str], n: int, cfg: GraphConfig, role: str
) -> None:
    """Entity nodes above the support thresholds and their IDF-weighted edges."""
    if pairs.empty:
        return
    support = pairs.groupby(["kind", "value"], sort=True)["row"].size()
    max_support = cfg.max_entity_share * n
    keep = support[(support >= cfg.min_support) & (support <= max_support)]
    log.info(
        "%s entities: kept %d of %d (dropped %d below support %d, %d above %.0f%% share)",
        role,
        len(keep),
        len(support),
        int((support < cfg.min_support).sum()),
        cfg.min_support,
        int((support > max_support).sum()),
        100 * cfg.max_entity_share,
    )
    first_col = pairs.groupby(["kind", "value"], sort=False)["column"].first()
    prefix = "" if role == ITEM else "user_"
    for (kind, value), sup in keep.items():
        node = entity_node(kind, value)
        idf = math.log1p(n / sup) if cfg.idf else 1.0
        attrs: dict[str, Any] = {f"{prefix}support": int(sup), f"{prefix}idf": float(idf)}
        if node in G:
            G.nodes[node].update(attrs)
        else:
            G.add_node(node, kind=kind, label=value, column=first_col[(kind, value)], **attrs)
    kept = pairs.merge(keep.rename("support").reset_index(), on=["kind", "value"])
    if kept.empty:
        return
    idf = np.log1p(n / kept["support"].to_numpy()) if cfg.idf else np.ones(len(kept))
    col_w = kept["column"].map(lambda c: float(cfg.column_weights.get(c, 1.0))).to_numpy()
    type_w = kept["kind"].map(lambda k: float(cfg.type_weights.get(k, 1.0))).to_numpy()
    weight = idf * col_w * type_w
    ents = (kept["kind"] + ":" + kept["value"]).tolist()
    G.add_edges_from(
        (keys[r], e, {"weight": float(w)})
        for r, e, w in zip(kept["row"].tolist(), ents, weight.tolist(), strict=True)
    )


def _id_text(v: object) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v.item() if isinstance(v, np.generic) else v).strip()


def _native(v: object) -> object:
    return v.item() if isinstance(v, np.generic) else v
