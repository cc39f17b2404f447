"""(De)serialise the knowledge graph: node-link JSON for bundles, GraphML for export.

JSON only, never pickle: a bundle is shipped between machines and loading it must not
run code. Node keys are strings and attributes are JSON scalars, so a round-trip gives
back an equal graph (same nodes, edges, attributes and ``G.graph``).

Examples
--------
>>> import networkx as nx
>>> G = nx.Graph(config={"min_support": 2})
>>> G.add_edge("item:1", "genre:Crime", weight=1.5)
>>> H = from_node_link(to_node_link(G))
>>> dict(H.edges["item:1", "genre:Crime"]), H.graph
({'weight': 1.5}, {'config': {'min_support': 2}})
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import networkx as nx

from recommender.errors import BundleError

__all__ = [
    "FORMAT",
    "to_node_link",
    "from_node_link",
    "save_json",
    "load_json",
    "export_graphml",
]

log = logging.getLogger(__name__)

#: Written into every graph file; a reader refuses other formats.
FORMAT = "recbento-kg/1"


def to_node_link(G: nx.Graph) -> dict[str, Any]:
    """Node-link dict (``nodes``, ``edges``, ``graph``) with the recbento format tag."""
    data = nx.node_link_data(G, edges="edges")
    data["format"] = FORMAT
    return data


def from_node_link(data: dict[str, Any]) -> nx.Graph:
    """Inverse of :func:`to_node_link`; raises :class:`BundleError` on a foreign file."""
    fmt = data.get("format", FORMAT)
    if fmt != FORMAT:
        raise BundleError(f"graph format={fmt!r}: expected {FORMAT!r}; rebuild the model")
    data = {k: v for k, v in data.items() if k != "format"}
    edges = "edges" if "edges" in data else "links"
    return nx.node_link_graph(data, directed=False, multigraph=False, edges=edges)


def save_json(G: nx.Graph, path: str | Path) -> None:
    """Write ``G`` as compact node-link JSON to ``path``."""
    t0 = time.perf_counter()
    Path(path).write_text(json.dumps(to_node_link(G), separators=(",", ":"), ensure_ascii=False))
    log.info(
        "saved graph (%d nodes) to %s in %.2fs", G.number_of_nodes(), path, time.perf_counter() - t0
    )


def load_json(path: str | Path) -> nx.Graph:
    """Read a graph written by :func:`save_json`."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"graph file {str(path)!r} is missing")
    t0 = time.perf_counter()
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"graph file {str(path)!r} is not valid JSON ({exc})") from exc
    G = from_node_link(data)
    log.info(
        "loaded graph (%d nodes) from %s in %.2fs",
        G.number_of_nodes(),
        path,
        time.perf_counter() - t0,
    )
    return G


def export_graphml(G: nx.Graph, path: str | Path) -> None:
    """Write ``G`` as GraphML (Gephi, yEd, Cytoscape).

    GraphML holds scalars only: graph-level dicts and lists (the build config) are
    written as JSON strings, ``None`` attributes are left out, and an attribute whose
    type differs between nodes (``item_id`` int on some, str on others) is written as
    a string.
    """
    H = nx.Graph()
    H.graph.update({k: _scalar(v) for k, v in G.graph.items()})
    types: dict[str, set[type]] = {}
    for _, d in G.nodes(data=True):
        for k, v in d.items():
            types.setdefault(k, set()).add(type(v))
    mixed = {k for k, ts in types.items() if len(ts) > 1}
    H.add_nodes_from(
        (n, {k: (str(v) if k in mixed else _scalar(v)) for k, v in d.items() if v is not None})
        for n, d in G.nodes(data=True)
    )
    H.add_edges_from(G.edges(data=True))
    nx.write_graphml(H, str(path))
    log.info("exported GraphML to %s", path)


def _scalar(v: Any) -> Any:
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v)
    return v
