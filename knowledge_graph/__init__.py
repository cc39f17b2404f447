"""Knowledge graph of a catalogue: build, expand candidates, explain, (de)serialise.

Items and their attribute values (``genre:Comedy``, ``tag:pixar``, ``decade:1990s``,
``director:Michael Mann``...) form an undirected weighted NetworkX graph. At request
time :class:`KnowledgeGraph` walks item -> entity -> item paths as two sparse mat-vec
products (candidate expansion) and names the strongest paths as reasons.

>>> from knowledge_graph import KnowledgeGraph, GraphConfig  # doctest: +SKIP
>>> kg = KnowledgeGraph.build(items)                          # doctest: +SKIP
>>> kg.save(bundle_dir); kg = KnowledgeGraph.load(bundle_dir) # doctest: +SKIP
"""

from __future__ import annotations

from knowledge_graph.build import (
    build_graph,
    detect_entity_columns,
    entity_node,
    item_node,
    split_node,
    user_node,
)
from knowledge_graph.config import GraphConfig
from knowledge_graph.expand import QueryMatch, WalkStart, blend
from knowledge_graph.explain import Reason, explain, explain_batch
from knowledge_graph.graph import GRAPH_FILE, KnowledgeGraph
from knowledge_graph.io import export_graphml, from_node_link, load_json, save_json, to_node_link
from knowledge_graph.stats import ego_graph, graph_stats, plot_ego, stats_table

__all__ = [
    "GRAPH_FILE",
    "GraphConfig",
    "KnowledgeGraph",
    "QueryMatch",
    "Reason",
    "WalkStart",
    "blend",
    "build_graph",
    "detect_entity_columns",
    "ego_graph",
    "entity_node",
    "explain",
    "explain_batch",
    "export_graphml",
    "from_node_link",
    "graph_stats",
    "item_node",
    "load_json",
    "plot_ego",
    "save_json",
    "split_node",
    "stats_table",
    "to_node_link",
    "user_node",
]
