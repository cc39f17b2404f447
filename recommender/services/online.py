"""Served lists on their way out: experiment arms, impression logging, request ids.

:class:`OnlineServing` sits between the handlers and the request path. Per request it

1. picks the model: the active experiment's arm for the user
   (:mod:`recommender.experiments`; the experiment is re-read from the feedback store
   every few seconds, each arm's model loaded on first use and fed the same feedback),
   else the deployment's model;
2. optionally leaves out what the user was shown in their last ``exclude_shown`` lists
   (one indexed query of the impression log);
3. answers through :func:`recommender.serving.recommend_batch`, gives the answer a
   ``request_id`` (128 random bits in hex) and queues its impression
   (:class:`recommender.impressions.ImpressionLog`: written off the request path).

Prometheus counters on the service's ``/metrics``: ``recbento_impressions_total`` (lists
served) and ``recbento_feedback_events_total`` (events by ``type``), both by experiment
``arm`` (``none`` outside experiments; an event counts for the arm its user is in).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from recommender.errors import StorageError
from recommender.experiments import Experiment, active_experiment
from recommender.impressions import Impression, ImpressionLog, shown_items
from recommender.online_metrics import compare_arms, online_metrics
from recommender.refresh import attach_feedback, sync_feedback
from recommender.services.metrics import counter
from recommender.serving import LoadedModel, Recommendation, Request, recommend_batch

__all__ = ["OnlineServing", "online_metrics_answer"]

log = logging.getLogger(__name__)


class OnlineServing:
    """Arms, impressions and request ids for one worker (see the module docstring).

    Parameters
    ----------
    model : LoadedModel or callable
        The deployment's model (also every arm whose version is the same), or a
        function returning the one serving now (a newer version may be swapped in).
    store : recommender.feedback.EventStore
        The feedback store: events, impressions and experiments.
    log_impressions : bool
        Whether served lists are logged.
    experiment_ttl : float
        Seconds an experiment read from the store is trusted before reading it again.
    loader : callable, optional
        ``tag -> LoadedModel`` for an arm's model (default: the model store, sharing
        ``model``'s encoder).
    clock : callable
        Unix seconds an impression is stamped with (a replay passes simulated time).
    """

    def __init__(
        self,
        model: LoadedModel | Callable[[], LoadedModel],
        store: Any,
        *,
        log_impressions: bool = True,
        experiment_ttl: float = 5.0,
        loader: Callable[[str], LoadedModel] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._current = model if callable(model) else (lambda: model)
        self.store = store
        self.impressions = ImpressionLog(store) if log_impressions else None
        self.experiment_ttl = experiment_ttl
        self._loader = loader or self._load
        self._clock = clock
        self._models: dict[str, LoadedModel] = {}
        self._load_lock = threading.Lock()
        self._experiment: Experiment | None = None
        self._read_at = -float("inf")
        self._served_counts: dict[str | None, Any] = {}  # arm -> its impressions counter

    @property
    def model(self) -> LoadedModel:
        """The deployment's model serving now."""
        return self._current()

    # ----------------------------------------------------------------- answers
    def recommend(
        self,
        reqs: Sequence[Request],
        exclude_shown: Sequence[int | None] | None = None,
        *,
        query_vectors: Sequence[np.ndarray | None] | None = None,
        log_impressions: bool = True,
    ) -> list[dict[str, Any]]:
        """Answer ``reqs`` (each on its arm's model); JSON-able dicts with ``request_id``.

        ``query_vectors`` are queries the deployment's encoder already encoded; an arm
        on another version encodes its own. ``log_impressions=False`` previews the lists
        (the dashboard): same arms, same request path, but no ``request_id``,
        impression or counter.
        """
        exclude_shown = exclude_shown or [None] * len(reqs)
        query_vectors = query_vectors or [None] * len(reqs)
        current = self.model
        routes = [self.route(r.user_id) for r in reqs]
        for req, n, (model, _) in zip(reqs, exclude_shown, routes, strict=True):
            if n:
                self.exclude_shown(model, req, n)
        answered: list[Recommendation | None] = [None] * len(reqs)
        for tag in dict.fromkeys(m.tag for m, _ in routes):
            idx = [i for i, (m, _) in enumerate(routes) if m.tag == tag]
            model = routes[idx[0]][0]
            sync_feedback(model, self.store)
            vectors = [query_vectors[i] if model is current else None for i in idx]
            recs = recommend_batch(model, [reqs[i] for i in idx], query_vectors=vectors)
            for i, rec in zip(idx, recs, strict=True):
                answered[i] = rec
        # logged only once every arm has answered: a batch that fails part-way is
        # answered again request by request, and must not have logged impressions
        out = []
        for rec, req, (model, arm) in zip(answered, reqs, routes, strict=True):
            if log_impressions:
                out.append(self.served(rec, req.user_id, model, arm))
            else:
                rec.arm = arm
                out.append(rec.to_dict())
        return out

    def served(
        self, rec: Recommendation, user_id: Any, model: LoadedModel, arm: str | None = None
    ) -> dict[str, Any]:
        """``rec`` as JSON with a fresh ``request_id``; its impression queued."""
        rec.request_id = _request_id()
        rec.arm = arm
        served = self._served_counts.get(arm)
        if served is None:  # the labelled child, looked up once per arm
            served = counter(
                "recbento_impressions", "Recommendation lists served, by experiment arm", ["arm"]
            ).labels(arm=arm or "none")
            self._served_counts[arm] = served
        served.inc()
        if self.impressions is not None:
            user = None if user_id is None else model.catalogue.user_key(user_id)
            self.impressions.put(
                Impression(
                    rec.request_id,
                    user,
                    self._clock(),
                    rec.model,
                    arm,
                    rec.group,
                    [(i.item_id, i.score) for i in rec.items],
                )
            )
        return rec.to_dict()

    def count_feedback(self, events: Sequence[dict[str, Any]]) -> None:
        """Count stored events by type and by the arm their user is in (Prometheus)."""
        stored = counter(
            "recbento_feedback_events",
            "Feedback events stored, by type and experiment arm",
            ["type", "arm"],
        )
        exp = self.experiment()
        for ev in events:
            arm = None
            if exp is not None:
                arm = exp.assign(self.model.catalogue.user_key(ev["user_id"])).name
            stored.labels(type=ev.get("type") or "view", arm=arm or "none").inc()

    # ------------------------------------------------------------------ arms
    def route(self, user_id: Any) -> tuple[LoadedModel, str | None]:
        """The model answering ``user_id`` and its experiment arm (None: no experiment)."""
        exp = self.experiment()
        if exp is None:
            return self.model, None
        key = None if user_id is None else self.model.catalogue.user_key(user_id)
        arm = exp.assign(key)
        return self.arm_model(arm.model), arm.name

    def experiment(self) -> Experiment | None:
        """The active experiment, read from the store at most every ``experiment_ttl`` s.

        When the store cannot be read the last one read stays in force.
        """
        now = time.monotonic()
        if now - self._read_at >= self.experiment_ttl:
            try:
                self._experiment = active_experiment(self.store)
            except StorageError as exc:
                log.warning("experiment not re-read, keeping the last one: %s", exc.message)
            self._read_at = now
        return self._experiment

    def arm_model(self, tag: str) -> LoadedModel:
        """The model of an arm, loaded (and fed the stored feedback) on first use.

        An arm naming the version the deployment serves shares its model.
        """
        current = self.model
        if tag == current.tag:
            return current
        model = self._models.get(tag)
        if model is not None:
            return model
        with self._load_lock:
            if tag not in self._models:
                loaded = self._loader(tag)
                if loaded.tag == current.tag:
                    return current
                known = self._models.get(loaded.tag or "")
                if known is None:  # a version not served yet: feed it the feedback
                    attach_feedback(loaded, self.store)
                    known = self._models[loaded.tag or ""] = loaded
                    log.info("experiment arm model %s loaded", loaded.tag)
                self._models[tag] = known
            return self._models[tag]

    def _load(self, tag: str) -> LoadedModel:
        from recommender.service_core import load

        return load(tag, encode=self.model.encode_fn)

    # ------------------------------------------------------------------ shown
    def exclude_shown(self, model: LoadedModel, req: Request, n: int) -> None:
        """Add the items of the user's last ``n`` lists to ``req.exclude_items``."""
        if req.user_id is None:
            return
        try:
            shown = shown_items(self.store, model.catalogue.user_key(req.user_id), last=n)
        except StorageError as exc:
            log.warning("exclude_shown ignored, impression log unavailable: %s", exc.message)
            return
        have = list(req.exclude_items or [])
        room = model.serving.history_max - len(have)
        extra = [i for i in shown if model.catalogue.has(i)][: max(room, 0)]
        req.exclude_items = [*have, *extra]

    def close(self) -> None:
        """Write the queued impressions (at shutdown)."""
        if self.impressions is not None:
            self.impressions.close()


_ids = random.Random()  # seeded from the OS per process: ids differ across workers


def _request_id() -> str:
    """A random 128-bit id as 32 hex digits, like a uuid4 without a system call each."""
    return f"{_ids.getrandbits(128):032x}"


def online_metrics_answer(store: Any, body: Any, *, n_items: int | None = None) -> dict[str, Any]:
    """The ``online_metrics`` API: ``{"rows": [...]}``, one per slice, JSON-safe.

    Sliced by ``arm`` alone, each row also carries the CTR test against the first arm
    (``ctr_lift``, ``z``, ``p_value``; see :func:`recommender.online_metrics.compare_arms`).
    """
    table = online_metrics(
        store,
        by=body.by,
        since=body.since,
        until=body.until,
        filters=body.filters(),
        n_items=n_items,
    )
    if list(body.by) == ["arm"]:
        table = compare_arms(table)
    rows = table.astype(object).where(table.notna(), None).to_dict(orient="records")
    return {"by": list(body.by), "rows": rows}
