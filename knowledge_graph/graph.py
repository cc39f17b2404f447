"""``KnowledgeGraph``: the graph plus the sparse matrices the request path needs.

Build it once (``KnowledgeGraph.build(items)``), save it into a bundle folder as
``graph.json`` (node-link JSON), load it once at service start. Loading rebuilds the
item x entity matrix from the edges (~0.1 s on MovieLens-small), so nothing but JSON
is stored.

Examples
--------
>>> import pandas as pd
>>> items = pd.DataFrame({"item_id": [1, 2, 3, 4], "title": ["Heat", "Thief", "Up", "Cars"],
...                       "genres": ["Crime", "Crime", "Comedy", "Comedy"],
...                       "tags": ["heist", "heist", "pixar", "pixar"]})
>>> kg = KnowledgeGraph.build(items, config=GraphConfig(max_entity_share=1.0))
>>> idx, scores = kg.expand([0])
>>> idx.tolist()
[1]
>>> kg.explain(1, [0, 2])[0].text
"Because you liked Heat, which shares the genre Crime and the tag 'heist'"
>>> kg.match_query("funny pixar movies").entities
['tag:pixar']
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import networkx as nx
import numpy as np
import pandas as pd
import scipy.sparse as sp

from knowledge_graph.build import ITEM, USER, build_graph, item_node
from knowledge_graph.config import GraphConfig
from knowledge_graph.expand import (
    QueryIndex,
    QueryMatch,
    WalkStart,
    normalize_rows,
    personalized_pagerank,
    two_hop_many,
)
from knowledge_graph.explain import Reason, explain_batch
from knowledge_graph.io import load_json, save_json
from recommender.errors import BundleError, InputError

__all__ = ["KnowledgeGraph", "GRAPH_FILE"]

log = logging.getLogger(__name__)

#: File name of the graph inside a bundle folder.
GRAPH_FILE = "graph.json"

Method = Literal["two_hop", "cosine", "ppr"]


class KnowledgeGraph:
    """A built graph with its request-time indexes.

    Parameters
    ----------
    G : networkx.Graph
        As produced by :func:`~knowledge_graph.build.build_graph` (or loaded).

    Attributes
    ----------
    item_nodes, item_ids, titles : list
        By item index.
    entity_nodes : list of str
        Entities linked to at least one item, sorted; ``entity_pos`` maps back.
    A : scipy.sparse.csr_matrix
        ``(n_items, n_entities)`` edge weights (IDF x column weight).
    A_norm : scipy.sparse.csr_matrix
        ``A`` with unit-L2 rows (explanations, ``method="cosine"``).
    """

    def __init__(self, G: nx.Graph) -> None:
        t0 = time.perf_counter()
        self.G = G
        self.config = GraphConfig.from_config(G.graph.get("config", {}))
        self.quoted_types = tuple(self.config.quoted_types)
        items = sorted(
            ((d["index"], n, d) for n, d in G.nodes(data=True) if d.get("kind") == ITEM),
            key=lambda t: t[0],
        )
        if [t[0] for t in items] != list(range(len(items))):
            raise BundleError("graph: item node indices are not 0..n_items-1")
        self.item_nodes = [t[1] for t in items]
        self.item_ids = [t[2].get("item_id") for t in items]
        self.titles = [str(t[2].get("title", "")) for t in items]
        item_pos = {n: i for i, n in enumerate(self.item_nodes)}
        self.entity_nodes = sorted(
            n
            for n, d in G.nodes(data=True)
            if d.get("kind") not in (ITEM, USER) and any(m in item_pos for m in G[n])
        )
        self.entity_pos = {n: i for i, n in enumerate(self.entity_nodes)}
        rows, cols, vals = [], [], []
        for u, v, w in G.edges(data="weight", default=1.0):
            if u in item_pos and v in self.entity_pos:
                i, e = item_pos[u], self.entity_pos[v]
            elif v in item_pos and u in self.entity_pos:
                i, e = item_pos[v], self.entity_pos[u]
            else:
                continue
            rows.append(i)
            cols.append(e)
            vals.append(w)
        shape = (len(self.item_nodes), len(self.entity_nodes))
        self.A = sp.csr_matrix((vals, (rows, cols)), shape=shape, dtype=np.float64)
        self.A.sort_indices()
        self.A_norm = normalize_rows(self.A)
        self._ppr: tuple[sp.csr_matrix, sp.csr_matrix] | None = None
        labels = {n: str(G.nodes[n].get("label", n)) for n in self.entity_nodes}
        self._query = QueryIndex(labels, self.titles)
        log.info(
            "knowledge graph ready: %d items x %d entities, %d links in %.2fs",
            shape[0],
            shape[1],
            self.A.nnz,
            time.perf_counter() - t0,
        )

    # -- construction / persistence --------------------------------------------------------
    @classmethod
    def build(
        cls,
        items: pd.DataFrame,
        users: pd.DataFrame | None = None,
        config: GraphConfig | None = None,
        *,
        progress: bool | None = None,
    ) -> KnowledgeGraph:
        """Build from the items (and users) tables; see :func:`build_graph`."""
        return cls(build_graph(items, users, config, progress=progress))

    def save(self, path: str | Path) -> Path:
        """Write ``graph.json`` into the folder ``path`` (or to ``path`` if it ends in .json)."""
        target = _graph_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        save_json(self.G, target)
        return target

    @classmethod
    def load(cls, path: str | Path) -> KnowledgeGraph:
        """Read what :meth:`save` wrote (a bundle folder or the JSON file itself)."""
        return cls(load_json(_graph_path(path)))

    def check_items(self, item_ids: Sequence[Any]) -> None:
        """Raise :class:`BundleError` unless the graph's items are ``item_ids``, in order."""
        want = [item_node(v) for v in item_ids]
        if want != self.item_nodes:
            raise BundleError(
                f"graph has {self.n_items} items that do not match the {len(want)} items of "
                "the catalogue row by row; rebuild the graph with the bundle"
            )

    # -- properties -------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return len(self.item_nodes)

    @property
    def n_entities(self) -> int:
        return len(self.entity_nodes)

    def entities_of(self, item_index: int) -> list[str]:
        """Entity nodes linked to an item, by decreasing edge weight."""
        lo, hi = self.A.indptr[item_index], self.A.indptr[item_index + 1]
        order = np.argsort(-self.A.data[lo:hi], kind="stable")
        return [self.entity_nodes[self.A.indices[lo + o]] for o in order]

    def item_index(self, item_id: Any) -> int:
        """Row of an item id; :class:`~recommender.errors.NotFoundError` if unknown."""
        from recommender.errors import NotFoundError

        pos = getattr(self, "_item_pos", None)
        if pos is None:
            pos = self._item_pos = {n: i for i, n in enumerate(self.item_nodes)}
        node = item_node(item_id)
        if node not in pos:
            raise NotFoundError(
                f"item_id={item_id!r} is not in the knowledge graph",
                field="item_id",
                value=item_id,
            )
        return pos[node]

    # -- request path ------------------------------------------------------------------------
    def match_query(self, text: str) -> QueryMatch:
        """Entities and item titles named in a free-text query (see :class:`QueryIndex`)."""
        return self._query.match(text or "")

    def expand(
        self,
        seeds: Sequence[int] | np.ndarray = (),
        seed_weights: np.ndarray | None = None,
        *,
        query_entities: Sequence[str] = (),
        query_weight: float = 0.5,
        n: int | None = 200,
        exclude: np.ndarray | None = None,
        method: Method = "two_hop",
    ) -> tuple[np.ndarray, np.ndarray]:
        """KG candidates for a request: ``(item_indices, scores)``, best first.

        Parameters
        ----------
        seeds : array of int
            History item indices (and items named in the query).
        seed_weights : array, optional
            One per seed, e.g. :func:`recommender.history.recency_weights`.
        query_entities : sequence of str
            Entity nodes from :meth:`match_query`; unknown ones are ignored.
        query_weight : float
            Share of the query entities when there are seeds too, in [0, 1].
        n : int or None
            Most candidates returned.
        exclude : array of int, optional
            Items never returned (seeds are always excluded).
        method : {"two_hop", "cosine", "ppr"}
            ``two_hop`` (default): IDF-weighted co-occurrence over item -> entity -> item;
            ``cosine``: the same walk on unit-norm rows; ``ppr``: personalised
            PageRank. See :mod:`knowledge_graph.expand` and ``benchmarks/kg_quality.py``.
        """
        start = WalkStart(
            np.asarray(seeds, dtype=np.int64),
            seed_weights,
            self.entity_columns(query_entities),
            query_weight,
            exclude,
        )
        return self.expand_many([start], n=n, method=method)[0]

    def expand_many(
        self, starts: Sequence[WalkStart], *, n: int | None = 200, method: Method = "two_hop"
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`expand` for several requests: the two-hop walks read the graph's matrix
        once for them all (:func:`~knowledge_graph.expand.two_hop_many`), each with the
        result it has alone. Query entities are given as :meth:`entity_columns`."""
        for st in starts:
            if not 0.0 <= st.query_weight <= 1.0:
                raise InputError(
                    f"query_weight={st.query_weight!r}: expected a share in [0, 1]",
                    field="query_weight",
                    value=st.query_weight,
                )
        if method in ("two_hop", "cosine"):
            return two_hop_many(self.A if method == "two_hop" else self.A_norm, starts, n)
        if method == "ppr":
            P_ie, P_ei = self._transitions()
            return [
                personalized_pagerank(
                    P_ie,
                    P_ei,
                    st.seeds,
                    st.weights,
                    query_entities=st.query_entities,
                    query_weight=st.query_weight,
                    n=n,
                    exclude=st.exclude,
                )
                for st in starts
            ]
        raise InputError(
            f"method={method!r}: expected 'two_hop', 'cosine' or 'ppr'",
            field="method",
            value=method,
        )

    def entity_columns(self, entities: Sequence[str]) -> list[int]:
        """The columns of ``A`` of these entity nodes, in order; unknown ones are left out."""
        return [self.entity_pos[e] for e in entities if e in self.entity_pos]

    def explain(
        self,
        item_index: int,
        history: Sequence[int] | np.ndarray,
        query_entities: Sequence[str] = (),
        max_reasons: int = 3,
        **kwargs: Any,
    ) -> list[Reason]:
        """Reasons for one item; see :func:`~knowledge_graph.explain.explain_batch`."""
        return explain_batch(self, [item_index], history, query_entities, max_reasons, **kwargs)[0]

    def explain_batch(
        self,
        item_indices: Sequence[int] | np.ndarray,
        history: Sequence[int] | np.ndarray,
        query_entities: Sequence[str] = (),
        max_reasons: int = 3,
        **kwargs: Any,
    ) -> list[list[Reason]]:
        """Reasons for the final ``k`` items of a response."""
        return explain_batch(self, item_indices, history, query_entities, max_reasons, **kwargs)

    def _transitions(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        if self._ppr is None:
            self._ppr = (_row_stochastic(self.A), _row_stochastic(sp.csr_matrix(self.A.T)))
        return self._ppr


def _row_stochastic(M: sp.csr_matrix) -> sp.csr_matrix:
    sums = np.asarray(M.sum(axis=1)).ravel()
    inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.csr_matrix(sp.diags(inv) @ M)


def _graph_path(path: str | Path) -> Path:
    path = Path(path)
    return path if path.suffix.lower() == ".json" else path / GRAPH_FILE
