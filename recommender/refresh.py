"""Fold the feedback store's events into a new model version (``recbento refresh``).

Item vectors, the graph and the trained tower are reused as they are (no re-encoding);
the interaction log gains the stored events, and what depends on it is recomputed:
users' history vectors and the user groups; with ``retrain=True`` the user tower too,
starting from the previous version's weights and settings. The new version records
``config["feedback_seq"]``, the last event folded in, so a server loading it replays
only the events that came after: a server that swaps it in loses no event.

Examples
--------
>>> report = refresh("movies")            # doctest: +SKIP
>>> report.tag, report.n_events           # doctest: +SKIP
('movies:abc...', 42)
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recommender.bundle import Bundle, load_from_store, save_to_store
from recommender.config import ModelConfig, ServingConfig
from recommender.errors import InputError, StorageError
from recommender.feedback import EventStore, fold_events, open_store
from recommender.feedback_rows import weigh_events
from recommender.history import Histories
from recommender.schemas import ItemSchema, Tables

__all__ = [
    "RefreshReport",
    "attach_feedback",
    "copy_feedback",
    "feedback_db_path",
    "open_feedback",
    "record_feedback",
    "refresh",
    "sync_feedback",
    "apply_events",
]

if TYPE_CHECKING:
    from recommender.serving import LoadedModel

log = logging.getLogger(__name__)


@dataclass
class RefreshReport:
    """What a refresh did, for the CLI's summary."""

    tag: str
    previous: str
    n_events: int
    n_skipped: int
    n_users: int
    n_interactions: int
    feedback_seq: int
    seconds: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)


def feedback_db_path(model: str) -> Path | str:
    """Where a model's feedback lives: ``$RECBENTO_FEEDBACK_DB``, else per model name.

    ``RECBENTO_FEEDBACK_DB`` is a SQLite file path or a ``postgresql://`` URL (returned
    as a string), shared by every model served with it. The default is
    ``$BENTOML_HOME/recbento/feedback/<name>.db`` (``~/bentoml`` when ``BENTOML_HOME``
    is unset); every version of a model shares its name's store.
    """
    env = os.environ.get("RECBENTO_FEEDBACK_DB")
    if env:
        return env if "://" in env else Path(env)  # a URL; open_store checks its scheme
    home = Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")
    return home / "recbento" / "feedback" / f"{model.split(':')[0]}.db"


def refresh(
    model: str | None = None,
    *,
    feedback_db: str | Path | None = None,
    name: str | None = None,
    retrain: bool = False,
    progress: bool = True,
) -> RefreshReport:
    """Save a new version of ``model`` with the stored feedback events folded in.

    Parameters
    ----------
    model : str, optional
        Model name or ``name:version`` in the BentoML store; default the version the
        deployment serves now (:func:`~recommender.service_core.model_name`, followed
        to its newest refresh when ``RECBENTO_MODEL_STORE`` is shared with the pods).
    feedback_db : str or Path, optional
        The feedback store, a SQLite path or a ``postgresql://`` URL; default
        :func:`feedback_db_path` of ``model``.
    name : str, optional
        Save under another name (default the model's own).
    retrain : bool
        Also train the user tower on the new log, warm-started from the previous
        version's tower with its settings (from scratch with the default settings when
        the previous version has none).
    progress : bool
        Show the training progress bar.

    Returns
    -------
    RefreshReport
        The new tag, events folded, events skipped (items no longer in the catalogue).
    """
    from recommender.model_store import derived_labels, newest_version
    from recommender.service_core import model_name

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    bundle, tag = load_from_store(model or newest_version(model_name()))
    timings["load"] = time.perf_counter() - t0
    target = feedback_db if feedback_db is not None else feedback_db_path(tag)
    since = bundle.config.get("feedback_seq")
    t0 = time.perf_counter()
    with open_store(target) as store:
        n_old = len(bundle.interactions)
        weights = ModelConfig.from_config(bundle.config).event_weights
        interactions, seq = fold_events(bundle.interactions, store, since=since, weights=weights)
    known = interactions["item_id"].isin(set(bundle.items[ItemSchema.item_id].tolist()))
    n_skipped = int((~known).sum())
    if n_skipped:
        log.warning("skipped %d feedback events for items no longer in the catalogue", n_skipped)
        interactions = interactions[known.to_numpy()].reset_index(drop=True)
    n_events = len(interactions) - n_old
    timings["fold"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    index = {iid: i for i, iid in enumerate(bundle.items[ItemSchema.item_id].tolist())}
    histories = Histories(interactions, index)
    user_ids = histories.user_ids()
    from recommender.build import fit_user_groups, training_summary, user_vectors

    serving = ServingConfig.from_config(bundle.config.get("serving"))
    user_vecs = user_vectors(bundle.item_vectors, histories, user_ids, serving)
    components = dict(bundle.components)
    tables = Tables(bundle.items, interactions, bundle.users)
    if "groups" in components and len(user_ids) >= 4:
        old = components["groups"]
        components["groups"] = fit_user_groups(
            tables,
            user_ids,
            user_vecs,
            histories,
            n_groups=getattr(old, "n_groups", None),
            random_state=getattr(old, "random_state", 0),
        )
    timings["users"] = time.perf_counter() - t0
    if retrain:
        t0 = time.perf_counter()
        components["tower"] = _retrain_tower(bundle, tables, progress=progress)
        timings["train"] = time.perf_counter() - t0

    config = dict(bundle.config)
    config["feedback_seq"] = int(seq)
    config["refreshed_from"] = tag
    config["refreshed_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    new = Bundle(
        config=config,
        items=bundle.items,
        item_vectors=bundle.item_vectors,
        interactions=interactions,
        users=bundle.users,
        user_ids=user_ids,
        user_vectors=user_vecs,
        components=components,
    )
    t0 = time.perf_counter()
    new_tag = save_to_store(new, name or tag.split(":")[0], labels=derived_labels(tag))
    timings["save"] = time.perf_counter() - t0
    log.info("refreshed %s -> %s with %d events", tag, new_tag, n_events)
    return RefreshReport(
        tag=new_tag,
        previous=tag,
        n_events=n_events,
        n_skipped=n_skipped,
        n_users=len(user_ids),
        n_interactions=len(interactions),
        feedback_seq=int(seq),
        seconds=timings,
        training=training_summary(new) if retrain else {},
    )


def _retrain_tower(bundle: Bundle, tables: Tables, *, progress: bool) -> Any:
    """The user tower trained on ``tables``, from the previous tower when there is one."""
    from recommender.build import train_tower

    previous = bundle.components.get("tower")
    if previous is None:
        log.info("the previous version has no user tower: training one from scratch")
    return train_tower(
        tables,
        bundle.item_vectors,
        config=None if previous is None else previous.get_config(),
        progress=progress,
        warm_start=previous,
    )


def open_feedback(model: LoadedModel, path: str | Path | None = None) -> EventStore:
    """Open the model's feedback store and replay its events into ``model.live``.

    ``path`` is a SQLite file or a ``postgresql://`` URL (default
    :func:`feedback_db_path`).

    Only events after the bundle's ``feedback_seq`` (those not folded in by a refresh)
    are replayed, so a restarted server reflects every acknowledged event. Dislikes are
    all replayed (a refresh leaves them out of the histories). Events for items no
    longer in the catalogue are skipped and logged.
    """
    store = open_store(path if path is not None else feedback_db_path(model.tag or "model"))
    try:
        n = attach_feedback(model, store)
    except BaseException:
        store.close()
        raise
    log.info("feedback %r: replayed %d events", store, n)
    return store


def attach_feedback(model: LoadedModel, store: EventStore) -> int:
    """Replay into ``model.live`` what ``store`` holds beyond the model (see :func:`open_feedback`).

    For a second model served from an open store (an experiment's arm). Returns the
    number of events replayed.
    """
    model.live.seq = model.config.feedback_seq
    _check_not_behind(store, model.live.seq)
    folded = store.dislikes(until=model.live.seq)
    apply_events(model, folded[folded["item_id"].map(model.catalogue.has).to_numpy(bool)])
    return sync_feedback(model, store, strict=True)


def _check_not_behind(store: EventStore, folded: int) -> None:
    """Refuse a store older than the model: its next events would be taken as folded in."""
    last = store.last_seq()
    if last < folded:
        raise InputError(
            f"feedback store {store!r} ends at seq {last}, but the model already folded in "
            f"events up to seq {folded}: it was refreshed from another store, and new "
            "events here would be ignored. Serve it with that store, or copy that store "
            "here first: recbento copy-feedback --source OLD --target NEW",
            field="RECBENTO_FEEDBACK_DB",
            value=repr(store),
        )


def copy_feedback(source: str | Path, target: str | Path) -> int:
    """Copy every event of one feedback store into another, empty one (seqs kept).

    The way to move from SQLite to PostgreSQL (or between databases): models refreshed
    from ``source`` keep working with ``target``. Returns the number of events copied.
    """
    with open_store(source) as src, open_store(target) as dst:
        return dst.copy_from(src)


def sync_feedback(model: LoadedModel, store: EventStore, *, strict: bool = False) -> int:
    """Apply to ``model.live`` every stored event it has not applied yet; return how many.

    Each server worker (and each replica, with a PostgreSQL store) holds its own
    model, and all of them share one store: calling this before answering makes an
    event acknowledged by any of them count in every one's next answer. It costs one
    indexed query when nothing is new. ``seq`` order is commit order in every store,
    so ``model.live.seq`` is a safe high-water mark.

    When the store cannot be reached (a PostgreSQL outage) the answer goes out with
    what ``model`` already has, a warning is logged (at most every 10 s), and the events
    are applied at the first call that reaches the store again; ``strict=True`` (at
    startup) raises :class:`~recommender.errors.StorageError` instead.
    """
    try:
        if store.last_seq() <= model.live.seq:  # the common case: one MAX on the key
            return 0
        with model.live.sync_lock:
            return _apply_new_events(model, store)
    except StorageError as exc:
        if strict:
            raise
        _warn_stale(exc)
        return 0


def _apply_new_events(model: LoadedModel, store: EventStore) -> int:
    events = store.all_events(since=model.live.seq)
    if not len(events):
        return 0
    known = events["item_id"].map(model.catalogue.has).to_numpy(dtype=bool)
    if not known.all():
        log.warning(
            "skipped %d feedback events for items no longer in the catalogue: %s",
            int((~known).sum()),
            events.loc[~known, "item_id"].head(10).tolist(),
        )
    apply_events(model, events[known])
    model.live.seq = int(events.index.max())  # the index is the commit seq
    return int(known.sum())


_stale_warned = [0.0]  # monotonic time of the last "answering without sync" warning


def _warn_stale(exc: StorageError) -> None:
    now = time.monotonic()
    if now - _stale_warned[0] >= 10:
        _stale_warned[0] = now
        log.warning("answering without the newest feedback: %s", exc.message)


def apply_events(model: LoadedModel, events: pd.DataFrame) -> int:
    """Fold validated events (``user_id, item_id, timestamp[, weight, type]``) into ``model``.

    Interactions join the users' live histories weighted by their type
    (``model.config.event_weights``); dislikes go to the users' disliked items;
    impressions are left out. Unknown items raise
    :class:`~recommender.errors.NotFoundError` naming the row.
    """
    if len(events) == 0:
        return 0
    events, dislikes = weigh_events(events, model.config.event_weights)
    cat = model.catalogue
    if len(dislikes):
        model.live.dislike(
            [cat.user_key(u) for u in dislikes["user_id"].tolist()],
            np.array([cat.row(i, field="item_id") for i in dislikes["item_id"]], dtype=np.int64),
        )
    if len(events) == 0:
        return len(dislikes)
    rows = np.array(
        [cat.row(i, field=f"events[{n}].item_id") for n, i in enumerate(events["item_id"])],
        dtype=np.int64,
    )
    weights = (
        events["weight"].fillna(1.0).to_numpy(dtype=np.float64)
        if "weight" in events.columns
        else np.ones(len(rows))
    )
    users = [cat.user_key(u) for u in events["user_id"].tolist()]
    n = model.live.add(users, rows, events["timestamp"].to_numpy(dtype=np.int64), weights)
    return n + len(dislikes)


def record_feedback(
    model: LoadedModel,
    store: EventStore,
    events: Sequence[dict[str, Any]],
    *,
    max_events: int = 1000,
) -> dict[str, int]:
    """Validate, store durably (committed before returning), then apply to ``model``.

    Every bad event is reported at once (:class:`~recommender.errors.ValidationError`
    with a ``failures`` table); nothing is stored unless all are valid.

    Returns
    -------
    dict
        ``{"stored": events stored by this call, "total": events in the store}``
        (``total`` is None when the store could not be reached after the commit).

    Raises
    ------
    StorageError
        The store cannot be reached (HTTP 503): nothing was acknowledged; send again
        (the store may hold the events already when the failure cut off a commit).
    """
    if not 1 <= len(events) <= max_events:
        raise InputError(
            f"events has {len(events)} entries; expected 1 to {max_events} (RECBENTO_MAX_EVENTS)",
            field="events",
            value=len(events),
        )
    stored = store.append_events(
        list(events), items=model.bundle.items, user_key=model.catalogue.user_key
    )
    # Committed: from here on the call must succeed, or a client retry stores twice.
    sync_feedback(model, store)  # this call's events, and any another worker stored before
    try:
        total: int | None = store.count()
    except StorageError as exc:
        log.warning("feedback stored, but the store's total is unknown: %s", exc.message)
        total = None
    return {"stored": len(stored), "total": total}
