"""Optional bundle parts and how each is saved and loaded (never pickled).

Importing this module registers them with :mod:`recommender.bundle`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recommender.bundle import Component, register_component

__all__ = ["GRAPH", "GROUPS", "TOWER"]


def _save_groups(obj: Any, path: Path) -> None:
    obj.save(path, portraits=getattr(obj, "portraits_", None))


def _load_groups(path: Path) -> Any:
    from recommender.groups import UserGroups

    return UserGroups.load(path)


GROUPS = Component("groups", "groups.json", _save_groups, _load_groups)
register_component(GROUPS)


def _save_graph(obj: Any, path: Path) -> None:
    obj.save(path)


def _load_graph(path: Path) -> Any:
    from knowledge_graph import KnowledgeGraph

    return KnowledgeGraph.load(path)


GRAPH = Component("graph", "graph.json", _save_graph, _load_graph)
register_component(GRAPH)


def _save_tower(obj: Any, path: Path) -> None:
    obj.save(path)


def _load_tower(path: Path) -> Any:
    from recommender.train import SequenceRecommender

    return SequenceRecommender.load(path)


TOWER = Component("tower", "user_tower.safetensors", _save_tower, _load_tower)
register_component(TOWER)
