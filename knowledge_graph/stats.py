"""What is in a graph (``recbento kg stats``) and a picture of one node's neighbourhood.

Examples
--------
>>> import networkx as nx
>>> G = nx.Graph()
>>> G.add_node("item:1", kind="item"); G.add_node("item:2", kind="item")
>>> G.add_node("genre:Crime", kind="genre", support=2)
>>> G.add_edge("item:1", "genre:Crime"); G.add_edge("item:2", "genre:Crime")
>>> s = graph_stats(G)
>>> s["nodes_by_kind"], s["edges_by_type"]
({'item': 2, 'genre': 1}, {'item-genre': 2})
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from knowledge_graph.build import ITEM, USER
from recommender.errors import InputError, NotFoundError

__all__ = ["graph_stats", "stats_table", "ego_graph", "ego_layout", "plot_ego"]

log = logging.getLogger(__name__)

_COLORS = {ITEM: "#4C72B0", USER: "#DD8452"}
_PALETTE = ["#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974"]


def graph_stats(G: nx.Graph, *, top: int = 5) -> dict[str, Any]:
    """Nodes and edges by type, degree summaries and the most supported entities.

    Returns
    -------
    dict
        ``n_nodes``, ``n_edges``, ``nodes_by_kind``, ``edges_by_type`` (``"item-genre"``),
        ``degree`` (per node kind: min, median, mean, p90, p99, max, isolated),
        ``top_entities`` (per entity kind: the ``top`` labels by support), ``config``.
    """
    kinds = nx.get_node_attributes(G, "kind")
    nodes = Counter(kinds.values())
    edges: Counter[str] = Counter()
    for u, v in G.edges():
        a, b = sorted((kinds.get(u, "?"), kinds.get(v, "?")), key=_kind_order)
        edges[f"{a}-{b}"] += 1
    degree: dict[str, dict[str, float]] = {}
    by_kind: dict[str, list[int]] = {}
    for n, d in G.degree():
        by_kind.setdefault(kinds.get(n, "?"), []).append(d)
    for kind, ds in by_kind.items():
        a = np.asarray(ds, dtype=np.float64)
        degree[kind] = {
            "min": float(a.min()),
            "median": float(np.median(a)),
            "mean": round(float(a.mean()), 3),
            "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)),
            "max": float(a.max()),
            "isolated": int((a == 0).sum()),
        }
    top_entities: dict[str, list[tuple[str, int]]] = {}
    for n, d in G.nodes(data=True):
        if d.get("kind") in (ITEM, USER, None) or "support" not in d:
            continue
        top_entities.setdefault(d["kind"], []).append((str(d.get("label", n)), int(d["support"])))
    for kind, lst in top_entities.items():
        top_entities[kind] = sorted(lst, key=lambda t: (-t[1], t[0]))[:top]
    return {
        "n_nodes": G.number_of_nodes(),
        "n_edges": G.number_of_edges(),
        "nodes_by_kind": dict(sorted(nodes.items(), key=lambda t: _kind_order(t[0]))),
        "edges_by_type": dict(sorted(edges.items())),
        "degree": dict(sorted(degree.items(), key=lambda t: _kind_order(t[0]))),
        "top_entities": dict(sorted(top_entities.items())),
        "config": G.graph.get("config", {}),
    }


def stats_table(stats: dict[str, Any], title: str = "knowledge graph") -> Any:
    """A :class:`rich.table.Table` of :func:`graph_stats` (print it with a rich Console)."""
    from rich.table import Table

    t = Table(title=f"{title}: {stats['n_nodes']:,} nodes, {stats['n_edges']:,} edges")
    for col in ("kind", "nodes", "edges", "degree min/median/p90/max", "top by support"):
        t.add_column(col, justify="left" if col in ("kind", "top by support") else "right")
    edge_by_kind: Counter[str] = Counter()
    for typ, c in stats["edges_by_type"].items():
        a, _, b = typ.partition("-")
        edge_by_kind[b if a in (ITEM, USER) else a] += c
    for kind, count in stats["nodes_by_kind"].items():
        d = stats["degree"].get(kind, {})
        deg = f"{d.get('min', 0):g} / {d.get('median', 0):g} / {d.get('p90', 0):g} / " + (
            f"{d.get('max', 0):g}"
        )
        top = ", ".join(f"{lab} ({s})" for lab, s in stats["top_entities"].get(kind, []))
        edges = "" if kind in (ITEM, USER) else f"{edge_by_kind.get(kind, 0):,}"
        t.add_row(kind, f"{count:,}", edges, deg, top)
    return t


def ego_graph(
    G: nx.Graph,
    node: str,
    *,
    radius: int = 1,
    max_nodes: int = 60,
    history: Sequence[str] = (),
) -> nx.Graph:
    """The neighbourhood of ``node`` up to ``radius`` hops, pruned to ``max_nodes``.

    Each hop keeps the neighbours reached by the heaviest edges first, so a radius-2
    ego-graph of a film shows its rarest entities and the films sharing them rather
    than 4,000 dramas. For a user, pass the item nodes of their ``history``: the user
    is linked to them (``kind="liked"`` edges) and the walk starts there; the user
    node does not need to be in ``G``.
    """
    if node not in G and not history:
        raise NotFoundError(f"node={node!r} is not in the graph", field="node", value=node)
    if radius < 1:
        raise InputError(f"radius={radius!r}: expected >= 1", field="radius", value=radius)
    H = nx.Graph()
    H.add_node(node, **(dict(G.nodes[node]) if node in G else {"kind": USER, "label": node}))
    frontier = [node]
    for h in history:
        if h in G and H.number_of_nodes() < max_nodes:
            H.add_node(h, **G.nodes[h])
            H.add_edge(node, h, weight=1.0, kind="liked")
            frontier.append(h)
    for _ in range(radius):
        cand: dict[str, tuple[float, str]] = {}
        for u in frontier:
            if u not in G:
                continue
            for v, d in G[u].items():
                w = float(d.get("weight", 1.0))
                if v not in H and (v not in cand or w > cand[v][0]):
                    cand[v] = (w, u)
        room = max_nodes - H.number_of_nodes()
        chosen = sorted(cand.items(), key=lambda t: (-t[1][0], t[0]))[: max(room, 0)]
        for v, (_w, _u) in chosen:
            H.add_node(v, **G.nodes[v])
        for v, _ in chosen:
            for u in G[v]:
                if u in H:
                    H.add_edge(u, v, **G.edges[u, v])
        frontier = [v for v, _ in chosen]
        if not frontier:
            break
    return H


def ego_layout(H: nx.Graph) -> dict[str, np.ndarray]:
    """Node -> 2-D position for drawing an :func:`ego_graph` (the same picture every time)."""
    return nx.spring_layout(H, seed=0, weight=None, k=1.5 / max(np.sqrt(len(H)), 1))


def plot_ego(
    G: nx.Graph,
    node: str,
    path: str | Path,
    *,
    radius: int = 1,
    max_nodes: int = 60,
    history: Sequence[str] = (),
    title: str | None = None,
) -> Path:
    """Write a PNG of :func:`ego_graph` (matplotlib, Agg backend); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    H = ego_graph(G, node, radius=radius, max_nodes=max_nodes, history=history)
    kinds = sorted({d.get("kind", "?") for _, d in H.nodes(data=True)}, key=_kind_order)
    colors = dict(_COLORS)
    for i, k in enumerate(k for k in kinds if k not in colors):
        colors[k] = _PALETTE[i % len(_PALETTE)]
    pos = ego_layout(H)
    fig, ax = plt.subplots(figsize=(11, 8), dpi=110)
    widths = [0.5 + min(float(d.get("weight", 1.0)), 8.0) / 3 for *_, d in H.edges(data=True)]
    nx.draw_networkx_edges(H, pos, ax=ax, width=widths, alpha=0.35)
    for k in kinds:
        ns = [n for n, d in H.nodes(data=True) if d.get("kind", "?") == k]
        sizes = [900 if n == node else (260 if k in (ITEM, USER) else 420) for n in ns]
        nx.draw_networkx_nodes(
            H, pos, nodelist=ns, node_color=colors[k], node_size=sizes, ax=ax, label=k, alpha=0.9
        )
    labels = {n: _short(str(d.get("label", n))) for n, d in H.nodes(data=True)}
    nx.draw_networkx_labels(H, pos, labels=labels, font_size=7, ax=ax)
    ax.legend(scatterpoints=1, loc="upper left", fontsize=8, markerscale=0.5)
    ax.set_title(
        title
        or f"ego-graph of {G.nodes[node].get('label', node) if node in G else node}"
        f" (radius {radius}, {len(H)} nodes)"
    )
    ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    log.info("wrote ego-graph of %s (%d nodes) to %s", node, len(H), path)
    return path


def _kind_order(kind: str) -> tuple[int, str]:
    return (0 if kind == ITEM else 1 if kind == USER else 2, kind)


def _short(s: str, n: int = 28) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"
