"""What the dashboard shows that no public API answers, as JSON-able dicts.

Every function reads the model the APIs serve (a :class:`~recommender.serving.LoadedModel`,
swapped in place when a newer version is loaded) and reuses the library's own stages:
the request path's history (:func:`~recommender.serving.stages.users.resolve_history`),
the knowledge graph's neighbourhood (:func:`knowledge_graph.stats.ego_graph`), the
experiments' results (:func:`recommender.online_metrics.experiment_results`).
Recommendations, similar items, group portraits and online metrics come from the public
APIs themselves; the page calls them.
"""

from __future__ import annotations

import logging
import math
import threading
import weakref
from typing import Any

import numpy as np

from recommender.errors import NotFoundError
from recommender.rerank_config import RERANK_KNOBS
from recommender.serving import LoadedModel, Request
from recommender.serving.catalogue import native

__all__ = [
    "experiments",
    "item_detail",
    "knobs",
    "overview",
    "titles",
    "user_detail",
    "user_map",
    "users",
]

log = logging.getLogger(__name__)

#: Users drawn on the groups map at most (a deterministic sample beyond).
MAP_MAX_USERS = 5000


def overview(model: LoadedModel, store: Any) -> dict[str, Any]:
    """Counts, version, components and the offline quality stored with the model."""
    groups = model.groups
    return {
        "model": model.tag,
        "built_at": model.bundle.config.get("built_at"),
        "trained_from": model.bundle.config.get("trained_from"),
        "encoder": model.config.encoder.name,
        "components": sorted(k for k, v in model.bundle.components.items() if v is not None),
        "n_items": model.n_items,
        "n_users": len(model.histories),
        "n_interactions": len(model.bundle.interactions),
        "n_feedback_events": store.count(),
        "n_live_users": len(model.live),
        "n_groups": None if groups is None else int(groups.n_groups_),
        "quality": offline_quality(model),
    }


def offline_quality(model: LoadedModel) -> dict[str, Any] | None:
    """The trained tower's validation per epoch, as saved with it (``None``: not trained)."""
    summary = getattr(model.tower, "summary_", None) if model.tower is not None else None
    if not summary:
        return None
    epochs = [{k: _num(v) for k, v in e.items()} for e in summary.get("epochs", [])]
    columns = list(dict.fromkeys(k for e in epochs for k in e))
    hybrid = summary.get("hybrid") or {}
    return {
        "columns": columns,
        "rows": epochs,
        "best_epoch": summary.get("best_epoch"),
        "stopped_by": summary.get("stopped_by"),
        "n_val_users": summary.get("n_val_users"),
        "hybrid": {k: _num(v) for k, v in hybrid.items() if k != "grid"},
    }


def users(model: LoadedModel, *, q: str | None, limit: int) -> dict[str, Any]:
    """Stored users whose id starts with ``q`` (all when empty), most active first."""
    ids = model.histories.user_ids()
    if q:
        ids = [u for u in ids if str(u).startswith(q)]
    ids.sort(key=lambda u: (-len(model.histories.get(u)), str(u)))
    return {
        "total": len(ids),
        "users": [{"user_id": u, "n_events": len(model.histories.get(u))} for u in ids[:limit]],
    }


def user_detail(model: LoadedModel, user_id: Any, *, limit: int) -> dict[str, Any]:
    """The history the request path reads for ``user_id`` (newest first) and their group."""
    from recommender.serving.stages.users import resolve_history

    key = model.catalogue.user_key(user_id)
    if key not in model.histories and key not in model.live:
        raise NotFoundError(
            f"user_id={user_id!r}: no such user in model {model.tag} (no stored history "
            "and no feedback)",
            field="user_id",
            value=user_id,
        )
    h = resolve_history(model, Request(user_id=key))
    ids, titles = model.catalogue.ids, model.catalogue.titles
    order = np.arange(len(h))[::-1][:limit]
    row = model.user_rows.get(key)
    stored_group = None
    if model.groups is not None and row is not None:
        stored_group = int(model.groups.labels_[row])
    return {
        "user_id": key,
        "n_events": len(h),
        "group": stored_group,
        "history": [
            {
                "item_id": ids[h.items[j]],
                "title": titles[h.items[j]],
                "timestamp": int(h.timestamps[j]),
                "weight": _num(h.weights[j]),
            }
            for j in order
        ],
    }


def item_detail(model: LoadedModel, item_id: Any, *, radius: int, max_nodes: int) -> dict[str, Any]:
    """An item's attributes, popularity, graph entities and drawn neighbourhood."""
    row = model.catalogue.row(item_id)
    record = model.bundle.items.iloc[row].to_dict()
    out: dict[str, Any] = {
        "item_id": model.catalogue.ids[row],
        "title": model.catalogue.titles[row],
        "attributes": {k: _jsonable(v) for k, v in record.items() if k not in ("item_id", "title")},
        "interactions": int(model.popularity[row]),
        "entities": [],
        "graph": None,
    }
    kg = model.graph
    if kg is not None:
        from knowledge_graph.build import item_node, split_node
        from knowledge_graph.stats import ego_graph, ego_layout

        out["entities"] = [
            dict(zip(("type", "value"), split_node(n), strict=True)) for n in kg.entities_of(row)
        ]
        node = item_node(model.catalogue.ids[row])
        H = ego_graph(kg.G, node, radius=radius, max_nodes=max_nodes)
        pos = ego_layout(H)
        out["graph"] = {
            "center": node,
            "nodes": [
                {
                    "id": n,
                    "label": str(d.get("label", n)),
                    "kind": d.get("kind", "?"),
                    "item_id": _jsonable(d.get("item_id")),
                    "x": round(float(pos[n][0]), 4),
                    "y": round(float(pos[n][1]), 4),
                }
                for n, d in H.nodes(data=True)
            ],
            "edges": [
                {"source": u, "target": v, "weight": _num(d.get("weight", 1.0))}
                for u, v, d in H.edges(data=True)
            ],
        }
    return out


def titles(model: LoadedModel, ids: list[str]) -> dict[str, Any]:
    """``{"titles": {id: title}}`` for catalogue ids (an unknown id is a 404 naming it)."""
    rows = model.catalogue.rows(ids, "ids")
    return {"titles": {i: model.catalogue.titles[r] for i, r in zip(ids, rows, strict=True)}}


def knobs(model: LoadedModel) -> dict[str, Any]:
    """Each per-request knob with the value the model uses when a request sets none."""
    from recommender.serving.stages.candidates import request_knobs

    k = request_knobs(model, Request(), trained=model.tower is not None)
    values: dict[str, float | None] = {
        "kg_weight": _num(k.kg_weight) if model.graph is not None else None
    }
    for name in RERANK_KNOBS:
        values[name] = None if k.rerank is None else _num(getattr(k.rerank, name))
    return {"rerank": k.rerank is not None, "graph": model.graph is not None, "defaults": values}


def experiments(store: Any, model: LoadedModel) -> dict[str, Any]:
    """Every experiment, newest first, with per-arm metrics, intervals and the verdict."""
    from recommender.experiments import list_experiments
    from recommender.online_metrics import experiment_results

    out = []
    for exp in reversed(list_experiments(store)):
        table, verdict = experiment_results(store, exp, n_items=model.n_items)
        rows = table.astype(object).where(table.notna(), None).to_dict(orient="records")
        out.append(
            {
                **exp.to_dict(),
                "metrics": [{k: _jsonable(v) for k, v in r.items()} for r in rows],
                "verdict": {k: _jsonable(v) for k, v in verdict.items()},
            }
        )
    return {"experiments": out}


#: The last map drawn and a weak reference to its model (one model serves at a time).
_map: tuple[weakref.ref[LoadedModel], dict[str, Any]] | None = None
_map_lock = threading.Lock()


def user_map(model: LoadedModel) -> dict[str, Any]:
    """Stored users projected on the two principal axes of their vectors, with their group.

    Computed once per loaded model: a newer version swapped in gets its own map.
    """
    global _map
    with _map_lock:
        if _map is None or _map[0]() is not model:
            _map = (weakref.ref(model), _user_map(model))
        return _map[1]


def _user_map(model: LoadedModel) -> dict[str, Any]:
    from sklearn.decomposition import PCA

    vectors = model.bundle.user_vectors
    ids = list(model.bundle.user_ids)
    if vectors is None or len(ids) < 3:
        raise NotFoundError(
            f"model={model.tag!r} stores no user vectors to draw (fewer than 3 users)",
            field="user_vectors",
        )
    rows = np.arange(len(ids))
    if len(rows) > MAP_MAX_USERS:
        rows = np.sort(np.random.default_rng(0).choice(len(ids), MAP_MAX_USERS, replace=False))
    pca = PCA(n_components=2, random_state=0)
    xy = pca.fit_transform(np.asarray(vectors, dtype=np.float32)[rows])
    labels = None if model.groups is None else model.groups.labels_
    log.info("user map of %s: %d users drawn", model.tag, len(rows))
    return {
        "model": model.tag,
        "n_users": len(ids),
        "explained_variance": [round(float(v), 4) for v in pca.explained_variance_ratio_],
        "points": [
            {
                "user_id": native(ids[r]),
                "x": round(float(x), 5),
                "y": round(float(y), 5),
                "group": None if labels is None else int(labels[r]),
            }
            for r, (x, y) in zip(rows, xy, strict=True)
        ],
    }


def _num(v: Any) -> Any:
    """A float rounded for display; NaN and infinities become ``None``."""
    if isinstance(v, (bool, np.bool_)) or v is None:
        return v if v is None else bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return round(float(v), 6) if math.isfinite(v) else None
    return v


def _jsonable(v: Any) -> Any:
    v = native(v)
    if isinstance(v, float):
        return _num(v)
    if v is None or isinstance(v, (str, int, bool)):
        return v
    try:
        if v != v:  # pandas NA / NaT
            return None
    except (TypeError, ValueError):
        pass
    return str(v)
