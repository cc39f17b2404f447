"""Explanations: the strongest item -> entity -> item paths behind a recommendation.

A reason links a recommended item to one item of the user's history (or to the query)
through the entities they share. Its score is the TF-IDF cosine between the two items'
entity profiles (times the history item's weight): within a path the entities are
ordered by ``idf**2``, as in the expansion walk, so the rarest shared entity is named
first; across history items, the most similar one wins, however many entities it has.
Only items passed in ``history`` (or ``query_items``) are ever cited.

Examples
--------
>>> r = Reason(from_item=949, from_title="Heat (1995)",
...            via=[{"type": "genre", "value": "Crime"}, {"type": "tag", "value": "heist"}],
...            score=0.4, text="", source="history")
>>> sentence(r, quoted=("tag",))
"Because you liked Heat (1995), which shares the genre Crime and the tag 'heist'"
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from knowledge_graph.build import split_node

if TYPE_CHECKING:  # pragma: no cover
    from knowledge_graph.graph import KnowledgeGraph

__all__ = ["Reason", "explain", "explain_batch", "sentence"]

log = logging.getLogger(__name__)

Source = Literal["history", "query"]


@dataclass
class Reason:
    """One path from the user's history (or query) to a recommended item.

    Attributes
    ----------
    from_item : int, str or None
        ``item_id`` of the history (or query-named) item; ``None`` for query entities.
    from_title : str or None
        Its title.
    via : list of dict
        Shared entities, strongest first, each ``{"type": "genre", "value": "Crime"}``.
    score : float
        Strength of the path (TF-IDF cosine share times the history item's weight).
    text : str
        The sentence shown to a person.
    source : {"history", "query"}
        Where ``from_item`` / the entities came from.
    """

    from_item: Any
    from_title: str | None
    via: list[dict[str, str]]
    score: float
    text: str
    source: Source = "history"
    entities: list[str] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (the ``reasons`` entries of a response)."""
        return {
            "from_item": self.from_item,
            "from_title": self.from_title,
            "via": [dict(v) for v in self.via],
            "score": round(float(self.score), 6),
            "text": self.text,
            "source": self.source,
        }


def explain(
    kg: KnowledgeGraph,
    item_index: int,
    history_indices: Sequence[int] | np.ndarray,
    query_entities: Sequence[str] = (),
    max_reasons: int = 3,
    *,
    history_weights: np.ndarray | None = None,
    query_items: Sequence[int] = (),
    max_via: int = 3,
) -> list[Reason]:
    """Reasons for one recommended item; see :func:`explain_batch`."""
    return explain_batch(
        kg,
        [item_index],
        history_indices,
        query_entities,
        max_reasons,
        history_weights=history_weights,
        query_items=query_items,
        max_via=max_via,
    )[0]


def explain_batch(
    kg: KnowledgeGraph,
    item_indices: Sequence[int] | np.ndarray,
    history_indices: Sequence[int] | np.ndarray,
    query_entities: Sequence[str] = (),
    max_reasons: int = 3,
    *,
    history_weights: np.ndarray | None = None,
    query_items: Sequence[int] = (),
    max_via: int = 3,
) -> list[list[Reason]]:
    """Reasons for each of the final ``k`` items of a response.

    Parameters
    ----------
    kg : KnowledgeGraph
        The loaded graph (its row-normalised item x entity matrix is used).
    item_indices : array of int
        Recommended items (item indices).
    history_indices : array of int
        The user's history (item indices); the only items a history reason may cite.
    query_entities : sequence of str
        Entity nodes matched in the request's query (``"tag:pixar"``).
    max_reasons : int
        Most reasons per item: a query-entity reason first, then the strongest paths.
    history_weights : array, optional
        Per history item (e.g. recency); the strongest path of equal similarity goes
        to the more heavily weighted item. Default 1.
    query_items : array of int
        Items named in the query ("something like Heat"), cited as "you asked for".
    max_via : int
        Most shared entities named per reason.

    Returns
    -------
    list of list of Reason
        Aligned with ``item_indices``; an item sharing nothing gets ``[]``.
    """
    items = np.asarray(item_indices, dtype=np.int64)
    hist = np.asarray(history_indices, dtype=np.int64)
    w = np.ones(hist.size) if history_weights is None else np.asarray(history_weights, float)
    sources, weights, kinds = _sources(hist, w, np.asarray(query_items, dtype=np.int64))
    A = kg.A_norm
    out: list[list[Reason]] = [[] for _ in items]
    if items.size == 0:
        return out
    q_pos = [kg.entity_pos[e] for e in query_entities if e in kg.entity_pos]
    S = None
    if sources.size:
        S = (A[items] @ A[sources].T).toarray() * weights[None, :]
    for r, j in enumerate(items.tolist()):
        reasons = out[r]
        row = _row(A, j)
        if q_pos:
            shared = [p for p in q_pos if p in row]
            if shared:
                reasons.append(_query_reason(kg, shared, row))
        if S is None:
            continue
        s = S[r].copy()
        s[sources == j] = 0.0
        budget = max_reasons - len(reasons)
        if budget <= 0:
            continue
        # strongest first; ties go to the later (more recent) history entry
        order = np.lexsort((-np.arange(s.size), -s))
        for c in order[:budget]:
            if s[c] <= 0:
                break
            src = int(sources[c])
            via = _shared(row, _row(A, src), max_via)
            reasons.append(_path_reason(kg, src, via, float(s[c]), kinds[c]))
    return out


def _sources(
    hist: np.ndarray, w: np.ndarray, query_items: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[Source]]:
    """Unique cited items with their largest weight; query items after history ones."""
    best: dict[int, tuple[float, Source]] = {}
    for i, wi in zip(hist.tolist(), w.tolist(), strict=True):
        if i not in best or wi > best[i][0]:
            best[i] = (wi, "history")
    top = max((v[0] for v in best.values()), default=1.0)
    for i in query_items.tolist():
        if i not in best:
            best[i] = (top, "query")
    idx = np.fromiter(best, dtype=np.int64, count=len(best))
    wt = np.array([v[0] for v in best.values()], dtype=np.float64)
    kinds = [v[1] for v in best.values()]
    return idx, wt, kinds


def _row(A: Any, i: int) -> dict[int, float]:
    lo, hi = A.indptr[i], A.indptr[i + 1]
    return dict(zip(A.indices[lo:hi].tolist(), A.data[lo:hi].tolist(), strict=True))


def _shared(a: dict[int, float], b: dict[int, float], k: int) -> list[int]:
    common = a.keys() & b.keys()
    return sorted(common, key=lambda e: (-a[e] * b[e], e))[:k]


def _via(kg: KnowledgeGraph, positions: Sequence[int]) -> tuple[list[dict[str, str]], list[str]]:
    nodes = [kg.entity_nodes[p] for p in positions]
    via = []
    for n in nodes:
        kind, value = split_node(n)
        via.append({"type": kind, "value": kg.G.nodes[n].get("label", value)})
    return via, nodes


def _path_reason(
    kg: KnowledgeGraph, src: int, positions: list[int], score: float, kind: Source
) -> Reason:
    via, nodes = _via(kg, positions)
    r = Reason(
        from_item=kg.item_ids[src],
        from_title=kg.titles[src],
        via=via,
        score=score,
        text="",
        source=kind,
        entities=nodes,
    )
    r.text = sentence(r, quoted=kg.quoted_types)
    return r


def _query_reason(kg: KnowledgeGraph, positions: list[int], row: dict[int, float]) -> Reason:
    positions = sorted(positions, key=lambda p: (-row[p], p))
    via, nodes = _via(kg, positions)
    r = Reason(None, None, via, float(sum(row[p] for p in positions)), "", "query", nodes)
    r.text = sentence(r, quoted=kg.quoted_types)
    return r


def sentence(reason: Reason, quoted: Sequence[str] = ("tag",)) -> str:
    """The human sentence of a reason.

    >>> r = Reason(None, None, [{"type": "tag", "value": "pixar"}], 1.0, "", "query")
    >>> sentence(r)
    "Matches your search for the tag 'pixar'"
    """
    shares = _entity_phrase(reason.via, quoted)
    if reason.from_item is None:
        return f"Matches your search for {shares}"
    if reason.source == "query":
        return f"Because you asked for something like {reason.from_title}, which shares {shares}"
    return f"Because you liked {reason.from_title}, which shares {shares}"


def _entity_phrase(via: Sequence[dict[str, str]], quoted: Sequence[str]) -> str:
    groups: dict[str, list[str]] = {}
    for v in via:
        value = f"'{v['value']}'" if v["type"] in quoted else v["value"]
        groups.setdefault(v["type"], []).append(value)
    parts = [
        f"the {_plural(t) if len(vals) > 1 else t.replace('_', ' ')} {_join(vals)}"
        for t, vals in groups.items()
    ]
    return _join(parts)


def _plural(kind: str) -> str:
    kind = kind.replace("_", " ")
    if kind.endswith("s"):
        return kind
    if kind.endswith("y") and kind[-2:-1] not in "aeiou":
        return kind[:-1] + "ies"
    return kind + "s"


def _join(parts: Sequence[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]
