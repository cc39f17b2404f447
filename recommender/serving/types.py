"""What flows along the request path: requests in, stage outputs, answers out.

Each stage of :mod:`recommender.serving.path` takes and returns these plain objects
(ids and numpy arrays), so a stage can be called, tested and timed alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recommender.history import History
from recommender.serving.knobs import Knobs

__all__ = [
    "Candidates",
    "GroupRequest",
    "Ranked",
    "Recommendation",
    "RecommendedItem",
    "Request",
    "UserState",
]


@dataclass
class Request:
    """One recommendation request; exactly what the HTTP API accepts.

    ``user_id``, ``history`` and ``query`` may be combined; with none of them the
    answer is a cold start (popular items). ``exclude_items`` are item ids never
    returned, on top of the user's seen items when ``exclude_seen``.
    """

    user_id: Any = None
    history: Sequence[Any] | None = None
    query: str | None = None
    k: int = 10
    exclude_seen: bool = True
    exclude_items: Sequence[Any] | None = None
    include: Mapping[str, Sequence[str]] | None = None
    exclude: Mapping[str, Sequence[str]] | None = None
    explain: bool = False
    rerank: bool = True
    knobs: Mapping[str, float] | None = None


@dataclass
class GroupRequest:
    """One list for several known users together (a household, a team).

    ``strategy`` combines the members' relevance (see
    :func:`recommender.group_recs.aggregate_group_scores`); every other field means
    what it means in :class:`Request`, applied to the members together.
    """

    user_ids: Sequence[Any]
    k: int = 10
    strategy: str = "average"
    exclude_items: Sequence[Any] | None = None
    include: Mapping[str, Sequence[str]] | None = None
    exclude: Mapping[str, Sequence[str]] | None = None
    explain: bool = False
    rerank: bool = True
    knobs: Mapping[str, float] | None = None

    def as_request(self) -> Request:
        """The fields the shared stages read, as a single request (seen items excluded)."""
        return Request(
            k=self.k,
            exclude_items=self.exclude_items,
            include=self.include,
            exclude=self.exclude,
            explain=self.explain,
            rerank=self.rerank,
            knobs=self.knobs,
        )


@dataclass
class UserState:
    """Stage 1's output for one request: who is asking.

    Attributes
    ----------
    history : History
        Stored log + live feedback + the request's ``history``, oldest first, cut to
        the model's ``history_max`` newest items.
    weights : ndarray
        Recency weight of each history item (the user vector and the graph seeds
        share them).
    vector : ndarray
        Unit user vector (history and query blended); zeros for a cold start.
    query_vector : ndarray or None
        The encoded query, when the request has one.
    cold : bool
        No history and no query: popularity answers.
    seen : ndarray
        Item indices never returned (seen, when ``exclude_seen``, disliked, and
        ``exclude_items``).
    disliked : ndarray
        Item indices the user disliked: their close neighbours are lowered.
    allowed : ndarray or None
        Items passing the request's attribute filters (``None``: every item).
    query_entities, query_items :
        Graph entities and items the query names (seeds of the graph stages).
    group : int or None
        The user group (stored for known users, else the nearest to ``vector``).
    members : list
        The user ids a household state stands for (empty for one user).
    cold_members : list
        Members with no history.
    """

    history: History
    weights: np.ndarray
    vector: np.ndarray
    query_vector: np.ndarray | None
    cold: bool
    seen: np.ndarray
    disliked: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    allowed: np.ndarray | None = None
    query_entities: list[str] = field(default_factory=list)
    query_items: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    group: int | None = None
    members: list[Any] = field(default_factory=list)
    cold_members: list[Any] = field(default_factory=list)


@dataclass
class Candidates:
    """Stage 3's output for one request: the pool the reranker picks from.

    ``relevance`` is the full row before the graph blend, that later stages read for
    items outside the pool (the new-item slot); ``knobs`` what the request runs with;
    ``trained`` whether the trained tower scored it.
    """

    idx: np.ndarray
    scores: np.ndarray
    relevance: np.ndarray
    knobs: Knobs
    trained: bool


@dataclass
class Ranked:
    """Stage 4's output for one request: the final ``k`` item indices and scores."""

    idx: np.ndarray
    scores: np.ndarray


@dataclass
class RecommendedItem:
    item_id: Any
    title: str
    score: float
    reasons: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = {"item_id": self.item_id, "title": self.title, "score": round(self.score, 6)}
        if self.reasons:
            d["reasons"] = self.reasons
        return d


@dataclass
class Recommendation:
    """The answer to a :class:`Request` or a :class:`GroupRequest`.

    ``request_id`` and ``arm`` are set by the service (the pure path leaves them None):
    the id a client sends back with feedback on this list, and the experiment arm that
    answered.
    """

    user_id: Any
    items: list[RecommendedItem]
    cold_start: bool
    group: int | None = None
    model: str | None = None
    user_ids: list[Any] | None = None
    strategy: str | None = None
    cold_members: list[Any] | None = None
    request_id: str | None = None
    arm: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "user_id": self.user_id,
            "items": [i.to_dict() for i in self.items],
            "cold_start": self.cold_start,
            "group": self.group,
            "model": self.model,
        }
        if self.request_id is not None:  # set by the service: feedback cites it
            out["request_id"] = self.request_id
        if self.arm is not None:
            out["arm"] = self.arm
        if self.user_ids is not None:  # a household answer
            del out["user_id"]
            out["user_ids"] = self.user_ids
            out["strategy"] = self.strategy
            out["cold_start"] = self.cold_members or []
        return out
