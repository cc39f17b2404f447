"""The request path: user vector -> candidates -> scores -> rerank -> explain -> response.

:class:`Recommender` is built once from a :class:`~recommender.bundle.Bundle` and answers
requests in-process; the BentoML service and the CLI's ``batch`` both call it, so what is
tested here is what is served.

Examples
--------
>>> rec = Recommender(bundle)                              # doctest: +SKIP
>>> rec.recommend(user_id=1, k=3).items[0].title           # doctest: +SKIP
'Heat (1995)'
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from knowledge_graph.expand import blend, recency_weights
from recommender.bundle import Bundle
from recommender.data import attribute_columns, split_multi
from recommender.errors import InputError, NotFoundError
from recommender.history import Histories, History, history_vector, popularity
from recommender.index import VectorIndex, make_index
from recommender.item_signals import user_entity_profile
from recommender.rerank import RerankConfig, Reranker
from recommender.schemas import ItemSchema

__all__ = [
    "ServingConfig",
    "Request",
    "RecommendedItem",
    "Recommendation",
    "Recommender",
    "top_k",
]

log = logging.getLogger(__name__)

EncodeFn = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class ServingConfig:
    """Request-time defaults of a deployment; every field can be set per request.

    Attributes
    ----------
    k_max : int
        Largest ``k`` a request may ask for.
    history_max : int
        Longest ``history`` a request may send (items).
    query_max_chars : int
        Longest free-text ``query``.
    half_life_days : float
        Recency half-life when turning a history into a user vector.
    position_decay : float
        Per-step weight decay from the newest history item backwards (1 = off). 0.5 was
        best on a validation split of MovieLens-small (each user's penultimate item):
        NDCG@10 of text-only scoring 0.0203 there, against 0.0161 at 0.7 and 0.0105 at
        0.8; many ratings share a session's timestamp, so age alone cannot say what came
        last.
    query_weight : float
        Share of the query vector when a request has both a history and a query.
    n_candidates : int
        Candidates fetched before reranking and explanation.
    kg_weight : float
        How much knowledge-graph expansion counts next to text relevance
        (``relevance + kg_weight * spread * kg / max(kg)``, ``spread`` the head of the
        relevance row); 0 turns expansion off. A request may set it in ``knobs``.
    kg_weight_trained : float
        The same where a trained tower scores the request: the tower has learned what
        is consumed together, so the graph adds less. Both were tuned on a validation
        split of MovieLens-small (``benchmarks/tune_defaults.py``): text-only NDCG@10
        0.0203 / 0.0305 / 0.0325 at weight 0 / 0.5 / 1; trained (with the reranker)
        0.0784 / 0.0776 / 0.0658 at 0 / 0.1 / 0.5. 0.1 keeps the graph's reach to items
        the tower never saw at almost no cost.
    max_reasons : int
        Reasons per item when a request asks for explanations.
    index : {"auto", "exact", "ann"}
        Candidate search over text vectors: exact matrix products, or a faiss HNSW
        index (``auto``: from ``ann_threshold`` items on).
    ann_threshold : int
        Catalogue size from which ``index="auto"`` builds the approximate index.
    new_item_slots : int
        With a trained tower, how many of the last positions of a list go to the best
        items the tower never saw in training (scored from their text alone), when the
        list holds none on its own; their score is shown as the last regular item's.
        0 turns this off.
    """

    k_max: int = 100
    history_max: int = 500
    query_max_chars: int = 1000
    half_life_days: float = 30.0
    position_decay: float = 0.5
    query_weight: float = 0.6
    n_candidates: int = 200
    kg_weight: float = 0.5
    kg_weight_trained: float = 0.1
    max_reasons: int = 3
    index: str = "auto"
    ann_threshold: int = 200_000
    new_item_slots: int = 1

    def get_config(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> ServingConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (config or {}).items() if k in known})


@dataclass
class Request:
    """One recommendation request; exactly what the HTTP API accepts.

    ``user_id``, ``history`` and ``query`` may be combined; with none of them the
    answer is a cold start (popular items).
    """

    user_id: Any = None
    history: Sequence[Any] | None = None
    query: str | None = None
    k: int = 10
    exclude_seen: bool = True
    include: Mapping[str, Sequence[str]] | None = None
    exclude: Mapping[str, Sequence[str]] | None = None
    explain: bool = False
    rerank: bool = True
    knobs: Mapping[str, float] | None = None


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
    user_id: Any
    items: list[RecommendedItem]
    cold_start: bool
    group: int | None = None
    model: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "items": [i.to_dict() for i in self.items],
            "cold_start": self.cold_start,
            "group": self.group,
            "model": self.model,
        }


def top_k(
    scores: np.ndarray,
    k: int,
    *,
    exclude: Sequence[np.ndarray] | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` per row of a ``(b, n)`` score matrix.

    ``exclude[i]`` lists item indices never returned for row ``i``; ``allowed`` is a
    boolean mask over items (``(n,)`` or ``(b, n)``). Rows with fewer than ``k``
    eligible items are padded with index -1 and score ``-inf``.

    >>> idx, _ = top_k(np.array([[0.1, 0.9, 0.5]]), 2, exclude=[np.array([1])])
    >>> idx.tolist()
    [[2, 0]]
    """
    scores = np.array(scores, dtype=np.float32, copy=True, ndmin=2)
    b, n = scores.shape
    if allowed is not None:
        scores[~np.broadcast_to(allowed, scores.shape)] = -np.inf
    if exclude is not None:
        for i, ex in enumerate(exclude):
            if len(ex):
                scores[i, ex] = -np.inf
    k_eff = min(k, n)
    part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1)
    sc = np.take_along_axis(part_scores, order, axis=1)
    idx = np.where(np.isfinite(sc), idx, -1)
    if k_eff < k:
        idx = np.pad(idx, ((0, 0), (0, k - k_eff)), constant_values=-1)
        sc = np.pad(sc, ((0, 0), (0, k - k_eff)), constant_values=-np.inf)
    return idx.astype(np.int64), sc


class Recommender:
    """Answers requests from one bundle.

    Parameters
    ----------
    bundle : Bundle
        The loaded model.
    encode : callable, optional
        ``list[str] -> (n, dim) array`` for free-text queries. When omitted the
        bundle's encoder is loaded on first use.
    config : ServingConfig, optional
        Defaults; the bundle's ``config["serving"]`` is used when omitted.
    tag : str, optional
        Model tag reported in responses.
    """

    def __init__(
        self,
        bundle: Bundle,
        *,
        encode: EncodeFn | None = None,
        config: ServingConfig | None = None,
        tag: str | None = None,
        index: str | None = None,
    ) -> None:
        t0 = time.perf_counter()
        self.bundle = bundle
        self.tag = tag
        self.config = config or ServingConfig.from_config(bundle.config.get("serving"))
        if index is not None:
            self.config = replace(self.config, index=index)
        self._encode = encode
        items = bundle.items
        self.item_ids: list[Any] = [_native(v) for v in items[ItemSchema.item_id].tolist()]
        self.titles: list[str] = items[ItemSchema.title].astype(str).tolist()
        self.item_index: dict[Any, int] = {iid: i for i, iid in enumerate(self.item_ids)}
        self._int_ids = items[ItemSchema.item_id].dtype.kind in "iu"
        self.item_vectors = np.ascontiguousarray(bundle.item_vectors, dtype=np.float32)
        self.histories = Histories(bundle.interactions, self.item_index)
        self.popularity = popularity(bundle.interactions, self.item_index, len(self.item_ids))
        self._popular_order = np.argsort(-self.popularity, kind="stable")
        self._attributes = attribute_columns(items)
        self._value_masks: dict[tuple[str, str], np.ndarray] = {}
        self._attr_values = {c: items[c].astype(str).tolist() for c in self._attributes}
        self._user_id_kind = bundle.interactions["user_id"].dtype.kind
        self._user_row = {_native(u): i for i, u in enumerate(bundle.user_ids)}
        self._live: dict[Any, History] = {}
        self._live_lock = threading.Lock()
        #: Newest feedback-store event applied to the live histories (see refresh.py).
        self.feedback_seq = 0
        self.feedback_lock = threading.Lock()
        self.groups = bundle.components.get("groups")
        self.graph = bundle.components.get("graph")
        self.tower = bundle.components.get("tower")
        self._item_table = (
            None if self.tower is None else self.tower.item_embeddings(self.item_vectors)
        )
        self._new_items = (
            None if self.tower is None else np.asarray(self.tower.new_item_mask(self.n_items))
        )
        if self.graph is not None:
            self.graph.check_items(self.item_ids)
        self.reranker = self._build_reranker()
        self.index = self._build_index()
        log.info(
            "recommender ready: %d items, %d users in %.2fs",
            len(self.item_ids),
            len(self.histories),
            time.perf_counter() - t0,
        )

    def _build_index(self) -> VectorIndex | None:
        """An approximate index when the catalogue calls for one; ``None`` means exact."""
        kind = self.config.index
        if kind == "exact" or (kind == "auto" and self.n_items < self.config.ann_threshold):
            return None
        index = make_index(self.item_vectors, kind="ann")
        log.info("built an approximate index over %d items", self.n_items)
        return index

    def _build_reranker(self) -> Reranker | None:
        if self.bundle.config.get("rerank", {}).get("enabled", True) is False:
            return None
        gp = None if self.groups is None else self.groups.group_popularity_
        cfg = {k: v for k, v in self.bundle.config.get("rerank", {}).items() if k != "enabled"}
        return Reranker.from_tables(
            self.bundle.items,
            self.bundle.interactions,
            self.item_vectors,
            group_popularity=gp,
            config=RerankConfig.from_config(cfg),
        )

    # ----------------------------------------------------------------- ids
    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def item_row(self, item_id: Any, *, field_name: str = "item_id") -> int:
        """Row of ``item_id`` in the catalogue; accepts ``"1"`` for ``1`` and back."""
        row = self.item_index.get(item_id)
        if row is None:
            row = self.item_index.get(self._coerce_id(item_id, self._int_ids))
        if row is None:
            raise NotFoundError(
                f"{field_name}={item_id!r} is not in the catalogue",
                field=field_name,
                value=item_id,
            )
        return row

    def user_key(self, user_id: Any) -> Any:
        """Normalise a user id to the type used in the interaction log."""
        return self._coerce_id(user_id, self._user_id_kind in "iu")

    @staticmethod
    def _coerce_id(value: Any, want_int: bool) -> Any:
        if value is None:
            return None
        if want_int:
            if isinstance(value, bool):
                return value
            try:
                f = float(value)
            except (TypeError, ValueError):
                return str(value)
            return int(f) if math.isfinite(f) and f.is_integer() else value
        return str(value)

    # ----------------------------------------------------------- stage 1
    def encode(self, texts: list[str]) -> np.ndarray:
        """Encode free text with the bundle's encoder (loaded on first use)."""
        if self._encode is None:
            from recommender.encoder import TextEncoder

            enc_cfg = self.bundle.config.get("encoder", {})
            encoder = TextEncoder.from_pretrained(
                enc_cfg.get("path") or enc_cfg.get("name"),
                max_length=enc_cfg.get("max_length", 128),
            )
            self._encode = encoder.encode
        return self._encode(texts)

    def resolve_history(self, req: Request) -> tuple[History, bool]:
        """The history a request speaks for: stored, sent, or both; and if the user is known."""
        stored = History.empty()
        known = False
        if req.user_id is not None:
            key = self.user_key(req.user_id)
            known = key in self.histories or key in self._live
            stored = self.histories.get(key)
            live = self._live.get(key)
            if live is not None:
                stored = stored.extend(live)
        if req.history:
            rows = np.array(
                [self.item_row(i, field_name=f"history[{n}]") for n, i in enumerate(req.history)],
                dtype=np.int64,
            )
            base = int(stored.timestamps.max()) + 1 if len(stored) else 0
            sent = History(rows, base + np.arange(len(rows)), np.ones(len(rows)))
            stored = stored.extend(sent)
        return stored, known

    def add_events(self, events: Any) -> int:
        """Fold validated feedback events into users' histories at once.

        ``events`` is a DataFrame with ``user_id, item_id, timestamp`` and optionally
        ``weight`` (as returned by the feedback store). Unknown items raise
        :class:`NotFoundError` naming the row. Returns the number of events added.
        """
        if len(events) == 0:
            return 0
        rows = [
            self.item_row(i, field_name=f"events[{n}].item_id")
            for n, i in enumerate(events["item_id"].tolist())
        ]
        weights = (
            events["weight"].fillna(1.0).to_numpy(dtype=np.float64)
            if "weight" in events.columns
            else np.ones(len(rows))
        )
        ts = events["timestamp"].to_numpy(dtype=np.int64)
        users = [self.user_key(u) for u in events["user_id"].tolist()]
        with self._live_lock:
            for u in dict.fromkeys(users):
                sel = np.array([x == u for x in users])
                add = History(np.asarray(rows, np.int64)[sel], ts[sel], weights[sel])
                old = self._live.get(u)
                self._live[u] = add if old is None else old.extend(add)
        return len(rows)

    def user_vectors(
        self, reqs: Sequence[Request], *, query_vectors: dict[int, np.ndarray] | None = None
    ) -> tuple[np.ndarray, list[History], list[bool]]:
        """Stage 1 for a batch: one vector per request, its history, and cold-start flags.

        Queries of the whole batch are encoded in one call.
        """
        dim = self.item_vectors.shape[1]
        vecs = np.zeros((len(reqs), dim), dtype=np.float32)
        hists: list[History] = []
        for i, req in enumerate(reqs):
            h, _ = self.resolve_history(req)
            hists.append(h)
            vecs[i] = history_vector(
                self.item_vectors,
                h.last(self.config.history_max),
                half_life_days=self.config.half_life_days,
                position_decay=self.config.position_decay,
            )
        q_rows = [i for i, r in enumerate(reqs) if r.query and r.query.strip()]
        if q_rows:
            qv = self.encode([reqs[i].query.strip() for i in q_rows])
            if query_vectors is not None:
                query_vectors.update({i: qv[j] for j, i in enumerate(q_rows)})
            for j, i in enumerate(q_rows):
                if len(hists[i]):
                    w = self.config.query_weight
                    v = w * qv[j] + (1 - w) * vecs[i]
                    vecs[i] = v / max(np.linalg.norm(v), 1e-12)
                else:
                    vecs[i] = qv[j]
        queried = set(q_rows)
        cold = [len(h) == 0 and i not in queried for i, h in enumerate(hists)]
        return vecs, hists, cold

    # ----------------------------------------------------------- filters
    def allowed_mask(self, req: Request) -> np.ndarray | None:
        """Boolean mask of items passing the request's include / exclude filters."""
        if not req.include and not req.exclude:
            return None
        mask = np.ones(self.n_items, dtype=bool)
        for name, spec, keep in (("include", req.include, True), ("exclude", req.exclude, False)):
            for column, values in (spec or {}).items():
                if column not in self._attr_values:
                    raise InputError(
                        f"{name}.{column}: unknown attribute; expected one of {self._attributes}",
                        field=f"{name}.{column}",
                        value=column,
                    )
                any_match = np.zeros(self.n_items, dtype=bool)
                for value in values:
                    any_match |= self._value_mask(column, str(value))
                mask &= any_match if keep else ~any_match
        return mask

    def _value_mask(self, column: str, value: str) -> np.ndarray:
        key = (column, value.casefold())
        if key not in self._value_masks:
            values = self._attr_values[column]
            self._value_masks[key] = np.array(
                [key[1] in {p.casefold() for p in split_multi(v)} for v in values]
            )
        return self._value_masks[key]

    # ------------------------------------------------------------ public
    def validate(self, req: Request) -> None:
        """Range checks shared by every entry point; raise :class:`InputError`."""
        k = req.k
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= self.config.k_max:
            raise InputError(
                f"k={req.k!r}: expected an integer from 1 to {self.config.k_max}",
                field="k",
                value=req.k,
            )
        if req.history is not None and len(req.history) > self.config.history_max:
            raise InputError(
                f"history has {len(req.history)} items; at most {self.config.history_max} allowed",
                field="history",
                value=len(req.history),
            )
        if req.query is not None and len(req.query) > self.config.query_max_chars:
            raise InputError(
                f"query has {len(req.query)} characters; at most "
                f"{self.config.query_max_chars} allowed",
                field="query",
                value=len(req.query),
            )

    def recommend(self, req: Request | None = None, /, **kwargs: Any) -> Recommendation:
        """Recommend for one request (a :class:`Request` or its fields as keywords)."""
        req = req if req is not None else Request(**kwargs)
        return self.recommend_batch([req])[0]

    def recommend_batch(self, reqs: Sequence[Request]) -> list[Recommendation]:
        """Recommend for many requests; scoring is one matrix product for the batch."""
        for r in reqs:
            self.validate(r)
        queries: dict[int, np.ndarray] = {}
        vecs, hists, cold = self.user_vectors(reqs, query_vectors=queries)
        scores = self.relevance(vecs, hists, reqs, cold, queries)
        return [
            self._finish(req, scores[i], vecs[i], hists[i], cold[i]) for i, req in enumerate(reqs)
        ]

    def relevance(
        self,
        vecs: np.ndarray,
        hists: Sequence[History],
        reqs: Sequence[Request],
        cold: Sequence[bool],
        query_vectors: dict[int, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Stage 2: a ``(b, n_items)`` relevance matrix; one matrix product for the batch.

        Text relevance is the cosine of the user vector with every item. With a trained
        tower, users with a history are scored by the tower (and its collaborative
        hybrid); a query on top is blended in as standardised text relevance. Cold
        starts get normalised popularity.
        """
        rows = [i for i, h in enumerate(hists) if len(h) and not cold[i]]
        if self.index is None:
            # (n, d) @ (d, b) runs as a matrix-vector product for one request, about 3x
            # faster than (b, d) @ (d, n) on a transposed view
            scores = np.ascontiguousarray((self.item_vectors @ vecs.T).T)
        else:
            scores = self._approximate_rows(vecs, hists, reqs, cold)
        if self.tower is not None and rows:
            learned = self.tower.scores(
                [hists[i].last(self.config.history_max).items for i in rows],
                item_table=self._item_table,
            )
            for j, i in enumerate(rows):
                tower_row = _zscore(learned[j])
                if reqs[i].query and reqs[i].query.strip():
                    w = self.config.query_weight
                    q = (query_vectors or {}).get(i)
                    text = _zscore(self.item_vectors @ q) if q is not None else 0
                    tower_row = (1 - w) * tower_row + w * text
                scores[i] = tower_row
        for i, c in enumerate(cold):
            if c:
                scores[i] = self._popularity_scores()
        return scores

    def _approximate_rows(
        self,
        vecs: np.ndarray,
        hists: Sequence[History],
        reqs: Sequence[Request],
        cold: Sequence[bool],
    ) -> np.ndarray:
        """Relevance rows holding only the approximate index's candidates (others -inf)."""
        scores = np.full((len(reqs), self.n_items), -np.inf, dtype=np.float32)
        for i, req in enumerate(reqs):
            if cold[i]:
                continue
            exclude = np.unique(hists[i].items) if req.exclude_seen else np.zeros(0, np.int64)
            n = max(req.k, self.config.n_candidates)
            idx, sc = self.index.search(
                vecs[i], n, exclude=[exclude], allowed_mask=self.allowed_mask(req)
            )
            ok = idx[0] >= 0
            scores[i, idx[0][ok]] = sc[0][ok]
        return scores

    def _finish(
        self, req: Request, scores: np.ndarray, vec: np.ndarray, hist: History, cold: bool
    ) -> Recommendation:
        """Stages 3-5 for one request: candidates (vector + graph), rerank, explain."""
        knobs = dict(req.knobs or {})
        trained = self.tower is not None and len(hist) > 0 and not cold
        default_kg = self.config.kg_weight_trained if trained else self.config.kg_weight
        kg_weight = float(knobs.pop("kg_weight", default_kg))
        if not (math.isfinite(kg_weight) and kg_weight >= 0):
            raise InputError(
                f"knobs.kg_weight={kg_weight!r}: expected a number >= 0",
                field="knobs.kg_weight",
                value=kg_weight,
            )
        exclude = np.unique(hist.items) if req.exclude_seen else np.zeros(0, np.int64)
        mask = self.allowed_mask(req)
        group = None if cold else self.user_group(req, vec)
        use_rerank = req.rerank and self.reranker is not None
        n_cand = max(req.k, self.config.n_candidates) if use_rerank else req.k
        graph_ctx = self._graph_context(req, hist)
        if graph_ctx is not None and kg_weight > 0 and not cold:
            scores = self._expand(scores, graph_ctx, exclude, kg_weight, vec)
        idx, sc = top_k(scores, n_cand, exclude=[exclude], allowed=mask)
        keep = idx[0] >= 0
        idx, sc = idx[0][keep], sc[0][keep]
        if use_rerank and len(idx):
            cfg = self.reranker.config.replace(**knobs)
            profile = None
            if len(hist) and self.reranker.item_dist is not None:
                profile = user_entity_profile(self.reranker.item_dist, hist.items)
            idx, sc = self.reranker.rerank(
                idx, sc, req.k, group=group, user_profile=profile, config=cfg
            )
        elif knobs:
            raise InputError(
                f"knobs {sorted(knobs)} need the reranker, which is off for this request",
                field="knobs",
            )
        idx, sc = idx[: req.k], sc[: req.k]
        if trained:  # only the tower ranks items it knows above new ones
            idx, sc = self._reserve_new_items(idx, sc, scores, exclude, mask, req.k)
        reasons: list[list[dict[str, Any]]] = [[] for _ in idx]
        if req.explain and graph_ctx is not None and len(idx):
            found = self.graph.explain_batch(
                idx,
                graph_ctx.history,
                graph_ctx.query_entities,
                max_reasons=self.config.max_reasons,
                history_weights=graph_ctx.history_weights,
                query_items=graph_ctx.query_items,
            )
            reasons = [[r.to_dict() for r in rs] for rs in found]
        items = [
            RecommendedItem(self.item_ids[j], self.titles[j], float(s), r)
            for j, s, r in zip(idx, sc, reasons, strict=True)
        ]
        return Recommendation(req.user_id, items, cold, group, self.tag)

    def _reserve_new_items(
        self,
        idx: np.ndarray,
        sc: np.ndarray,
        scores: np.ndarray,
        exclude: np.ndarray,
        mask: np.ndarray | None,
        k: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Give the last ``new_item_slots`` positions to the best items new to the tower.

        A learned tower ranks items it saw in training above text-only ones, so a new
        item would otherwise never surface; one slot lets it earn interactions.
        """
        slots = min(self.config.new_item_slots, len(idx) - 1)
        new = self._new_items
        if slots <= 0 or len(idx) < k or new[idx].any():
            return idx, sc
        eligible = new.copy()
        if mask is not None:
            eligible &= mask
        eligible[exclude] = False
        cand = np.flatnonzero(eligible & np.isfinite(scores))
        if not len(cand):
            return idx, sc
        pick = cand[np.argsort(-scores[cand], kind="stable")[:slots]]
        keep = len(idx) - len(pick)
        floor = sc[keep - 1]
        return np.r_[idx[:keep], pick], np.r_[sc[:keep], np.full(len(pick), floor, sc.dtype)]

    def _graph_context(self, req: Request, hist: History) -> _GraphContext | None:
        if self.graph is None:
            return None
        match = self.graph.match_query(req.query) if req.query else None
        h = hist.last(self.config.history_max)
        return _GraphContext(
            history=h.items,
            history_weights=recency_weights(h.timestamps, self.config.half_life_days),
            query_entities=list(match.entities) if match else [],
            query_items=np.asarray(match.items if match else [], dtype=np.int64),
        )

    def _expand(
        self,
        scores: np.ndarray,
        ctx: _GraphContext,
        exclude: np.ndarray,
        weight: float,
        vec: np.ndarray,
    ) -> np.ndarray:
        """Blend knowledge-graph candidates into one request's relevance row."""
        w = ctx.history_weights
        seeds = np.r_[ctx.history, ctx.query_items].astype(np.int64)
        top = float(w.max()) if len(w) else 1.0
        weights = np.r_[w, np.full(len(ctx.query_items), top)]
        if not len(seeds) and not ctx.query_entities:
            return scores
        kg_idx, kg_sc = self.graph.expand(
            seeds,
            weights,
            query_entities=ctx.query_entities,
            query_weight=self.config.query_weight if len(ctx.history) else 1.0,
            n=self.config.n_candidates,
            exclude=exclude,
        )
        if self.index is not None and self.tower is None:
            # an approximate row only scored its own candidates: score the graph's too
            scores = scores.copy()
            missing = kg_idx[~np.isfinite(scores[kg_idx])]
            scores[missing] = self.item_vectors[missing] @ vec
        return blend(scores, kg_idx, kg_sc, weight * self._relevance_scale(scores))

    @staticmethod
    def _relevance_scale(scores: np.ndarray) -> float:
        """Spread of the relevance row's head, so ``kg_weight`` means the same for any scorer."""
        finite = scores[np.isfinite(scores)]
        if finite.size < 2:
            return 1.0
        hi = np.partition(finite, -min(100, finite.size))[-min(100, finite.size) :]
        spread = float(hi.max() - np.median(finite))
        return spread if spread > 0 else 1.0

    def user_group(self, req: Request, vec: np.ndarray) -> int | None:
        """The user's group: stored for known users, else the nearest group to ``vec``."""
        if self.groups is None:
            return None
        if req.user_id is not None and not req.history and not req.query:
            row = self._user_row.get(self.user_key(req.user_id))
            if row is not None and row < len(self.groups.labels_):
                return int(self.groups.labels_[row])
        if not np.any(vec):
            return None
        return int(self.groups.predict(vec[None, :].astype(np.float64))[0])

    def _popularity_scores(self) -> np.ndarray:
        pop = self.popularity
        return (pop / pop.max()).astype(np.float32) if pop.max() > 0 else pop.astype(np.float32)

    def similar_items(self, item_id: Any, k: int = 10) -> list[RecommendedItem]:
        """Items nearest to ``item_id`` by vector, the item itself excluded."""
        self.validate(Request(k=k))
        row = self.item_row(item_id)
        if self.index is not None:
            idx, sc = self.index.search(self.item_vectors[row], k, exclude=[np.array([row])])
        else:
            scores = self.item_vectors @ self.item_vectors[row]
            idx, sc = top_k(scores[None, :], k, exclude=[np.array([row])])
        return [
            RecommendedItem(self.item_ids[j], self.titles[j], float(s))
            for j, s in zip(idx[0], sc[0], strict=True)
            if j >= 0
        ]

    def with_config(self, **overrides: Any) -> Recommender:
        """A shallow copy with some serving defaults replaced (used by tests and CLI)."""
        clone = object.__new__(Recommender)
        clone.__dict__.update(self.__dict__)
        clone.config = replace(self.config, **overrides)
        return clone


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = float(x.std())
    return ((x - x.mean()) / sd).astype(np.float32) if sd > 0 else np.zeros_like(x, np.float32)


@dataclass(frozen=True)
class _GraphContext:
    """What the graph stages need from one request."""

    history: np.ndarray
    history_weights: np.ndarray
    query_entities: list[str]
    query_items: np.ndarray


def _native(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v
