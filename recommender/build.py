"""The build path: validated tables -> encoded items -> user vectors -> one bundle.

Examples
--------
>>> tables = load_tables("items.csv", "interactions.csv")     # doctest: +SKIP
>>> bundle = build_bundle(tables, TextEncoder.from_pretrained())  # doctest: +SKIP
>>> save_to_store(bundle, "movies")                          # doctest: +SKIP
'movies:2w3x...'
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommender.bundle import Bundle, library_versions, save_to_store
from recommender.config import EncoderConfig, ModelConfig, ServingConfig
from recommender.data import attribute_columns, demo_dir, item_texts, load_tables
from recommender.encoder import TextEncoder
from recommender.encoder_store import save_encoder
from recommender.errors import InputError
from recommender.history import Histories, history_vectors
from recommender.ray_engine import ENGINES, import_ray
from recommender.schemas import ItemSchema, Tables, UserSchema

__all__ = [
    "BuildReport",
    "build_bundle",
    "build_and_save",
    "build_demo",
    "retrain",
    "training_summary",
    "train_tower",
    "tune_trained",
    "DEMO_MODEL",
]

log = logging.getLogger(__name__)

DEMO_MODEL = "recbento-demo"


@dataclass
class BuildReport:
    """What a build did, for the CLI's summary."""

    tag: str
    n_items: int
    n_users: int
    n_interactions: int
    seconds: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)


def training_summary(bundle: Bundle) -> dict[str, Any]:
    """What the build's tower training did (epochs, best epoch, what stopped it)."""
    tower = bundle.components.get("tower")
    summary = getattr(tower, "summary_", None) or {}
    if not summary:
        return {}
    return {
        "epochs": len(summary.get("epochs", [])),
        "best_epoch": summary.get("best_epoch"),
        "stopped_by": summary.get("stopped_by", "unknown"),
        "max_seconds": tower.config.max_seconds,
    }


def build_bundle(
    tables: Tables,
    encoder: TextEncoder | EncoderConfig,
    *,
    item_vectors: np.ndarray | None = None,
    serving: ServingConfig | None = None,
    progress: bool = True,
    timings: dict[str, float] | None = None,
    fit_groups: bool = True,
    n_groups: int | None = None,
    random_state: int = 0,
    build_graph: bool = True,
    graph: dict[str, Any] | None = None,
    train: bool = False,
    train_config: dict[str, Any] | None = None,
) -> Bundle:
    """Encode the catalogue and the users of ``tables`` into a :class:`Bundle`.

    ``item_vectors``, when given, are ``encoder``'s vectors of the items' texts computed
    earlier (the benchmarks reuse one encoding across splits); encoding is skipped, and
    the encoder's settings (an :class:`~recommender.config.EncoderConfig`) are enough.
    """
    timings = timings if timings is not None else {}
    serving = serving or ServingConfig()
    t0 = time.perf_counter()
    if item_vectors is None:
        texts = item_texts(tables.items)
        vectors = encoder.encode(texts, progress=progress, desc="encoding items")
    else:
        if len(item_vectors) != len(tables.items):
            raise ValueError(
                f"item_vectors has {len(item_vectors)} rows for {len(tables.items)} items"
            )
        vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
    timings["encode"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    index = {iid: i for i, iid in enumerate(tables.items[ItemSchema.item_id].tolist())}
    histories = Histories(tables.interactions, index)
    user_ids = histories.user_ids()
    user_vecs = user_vectors(vectors, histories, user_ids, serving)
    timings["users"] = time.perf_counter() - t0

    components: dict[str, Any] = {}
    graph_cfg: dict[str, Any] = {}
    if build_graph:
        from knowledge_graph import GraphConfig, KnowledgeGraph

        t0 = time.perf_counter()
        kg = KnowledgeGraph.build(tables.items, tables.users, GraphConfig.from_config(graph))
        components["graph"] = kg
        graph_cfg = kg.config.get_config()
        timings["graph"] = time.perf_counter() - t0
    if fit_groups and len(user_ids) >= 4:
        t0 = time.perf_counter()
        components["groups"] = fit_user_groups(
            tables, user_ids, user_vecs, histories, n_groups=n_groups, random_state=random_state
        )
        timings["groups"] = time.perf_counter() - t0

    if train:
        t0 = time.perf_counter()
        components["tower"] = train_tower(tables, vectors, config=train_config, progress=progress)
        timings["train"] = time.perf_counter() - t0

    config: dict[str, Any] = {
        "encoder": {
            "name": encoder.name,
            "path": None if encoder.name == "all-MiniLM-L6-v2" else encoder.name,
            "dim": int(vectors.shape[1]),
            "max_length": encoder.max_length,
        },
        "item_text_columns": attribute_columns(tables.items),
        "serving": serving.get_config(),
        "graph": graph_cfg,
        "versions": library_versions(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    bundle = Bundle(
        config=config,
        items=tables.items,
        item_vectors=vectors,
        interactions=tables.interactions,
        users=tables.users,
        user_ids=user_ids,
        user_vectors=user_vecs,
        components=components,
    )
    if train:
        t0 = time.perf_counter()
        tune_trained(bundle, encoder)
        timings["tune"] = time.perf_counter() - t0
    return bundle


def tune_trained(bundle: Bundle, encoder: TextEncoder | EncoderConfig) -> dict[str, Any]:
    """Choose the trained model's serving defaults on validation and write them into
    ``bundle.config`` (:mod:`recommender.tune_serving`)."""
    from recommender.tune_serving import tune_and_apply

    return tune_and_apply(bundle, encoder)


def user_vectors(
    item_vectors: np.ndarray, histories: Histories, user_ids: list[Any], serving: ServingConfig
) -> np.ndarray:
    """Stored user vectors, ``user_ids`` order, with the deployment's recency settings."""
    return history_vectors(
        item_vectors,
        [histories.get(u) for u in user_ids],
        half_life_days=serving.half_life_days,
        position_decay=serving.position_decay,
    )


def train_tower(
    tables: Tables,
    item_vectors: np.ndarray,
    *,
    config: dict[str, Any] | None = None,
    progress: bool = True,
    warm_start: Any = None,
) -> Any:
    """Train the sequential user tower (+ collaborative hybrid) on the interaction log.

    ``warm_start``, a fitted tower of the same shape, is where training starts from
    (``recbento refresh --retrain``).
    """
    from recommender.train import SequenceRecommender, TrainConfig, sequences_from_interactions

    _, sequences = sequences_from_interactions(
        tables.interactions, tables.items[ItemSchema.item_id].to_numpy()
    )
    model = SequenceRecommender(TrainConfig.from_config(config or {}))
    model.fit(sequences, item_vectors, progress=progress, warm_start=warm_start)
    log.info("trained the user tower: %s", getattr(model, "summary_", {}))
    return model


def user_item_matrix(histories: Histories, user_ids: list[Any], n_items: int) -> sp.csr_matrix:
    """Binary users x items matrix, rows in ``user_ids`` order."""
    rows, cols = [], []
    for r, u in enumerate(user_ids):
        items = np.unique(histories.get(u).items)
        rows.append(np.full(len(items), r))
        cols.append(items)
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    return sp.csr_matrix((np.ones(len(r)), (r, c)), shape=(len(user_ids), n_items))


def fit_user_groups(
    tables: Tables,
    user_ids: list[Any],
    user_vectors: np.ndarray,
    histories: Histories,
    *,
    n_groups: int | None = None,
    random_state: int = 0,
) -> Any:
    """Fit :class:`~recommender.groups.UserGroups`; ``portraits_`` describes each group."""
    from recommender.groups import UserGroups
    from recommender.item_signals import item_entity_matrix

    attrs = None
    if tables.users is not None and len(tables.users.columns) > 1:
        attrs = tables.users.set_index(UserSchema.user_id).reindex(user_ids).reset_index(drop=True)
    x = user_item_matrix(histories, user_ids, len(tables.items))
    ent, names = item_entity_matrix(tables.items)
    # taste profiles (entity lifts of each history) when the catalogue has entities
    counts = (x > 0).astype(np.float64) @ ent if ent.shape[1] else None
    groups = UserGroups(n_groups=n_groups, random_state=random_state).fit(
        user_vectors, attrs, user_items=x, entity_counts=counts
    )
    portraits = groups.portraits(
        x, ent, names, item_ids=tables.items[ItemSchema.item_id].tolist(), user_attributes=attrs
    )
    groups.portraits_ = portraits
    log.info("found %d user groups (silhouette %.3f)", groups.n_groups_, groups.silhouette_)
    return groups


def build_and_save(
    items: str | Path,
    interactions: str | Path,
    *,
    name: str,
    users: str | Path | None = None,
    encoder: str | None = None,
    progress: bool = True,
    train: bool = False,
    engine: str = "local",
    actors: int = 2,
    gpus_per_actor: float = 0.0,
) -> BuildReport:
    """Validate, encode and save; the store is untouched if any step fails.

    ``engine="ray"`` encodes the catalogue on Ray with ``actors`` encoder replicas
    (:func:`recommender.ray_engine.encode_items`); the rest of the build runs here.
    """
    if engine not in ENGINES:
        raise InputError(f"engine={engine!r}: expected one of {list(ENGINES)}", field="engine")
    if engine == "ray":
        import_ray()  # fail before validating and loading anything when the extra is missing
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    tables = load_tables(items, interactions, users)
    timings["validate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    enc = TextEncoder.from_pretrained(encoder)
    timings["load encoder"] = time.perf_counter() - t0
    vectors = None
    if engine == "ray":
        from recommender.ray_engine import encode_items

        t0 = time.perf_counter()
        vectors = encode_items(
            tables.items,
            encoder,
            actors=actors,
            gpus_per_actor=gpus_per_actor,
            batch_size=enc.batch_size,
            progress=progress,
        )
        ray_seconds = time.perf_counter() - t0
    bundle = build_bundle(
        tables, enc, item_vectors=vectors, progress=progress, timings=timings, train=train
    )
    if engine == "ray":
        timings["encode"] = ray_seconds  # build_bundle only copied the vectors
    t0 = time.perf_counter()
    bundle.config["encoder"]["model_tag"] = save_encoder(enc, name)
    tag = save_to_store(bundle, name)
    timings["save"] = time.perf_counter() - t0
    return BuildReport(
        tag=tag,
        n_items=len(tables.items),
        n_users=len(bundle.user_ids),
        n_interactions=len(tables.interactions),
        seconds=timings,
        training=training_summary(bundle),
    )


def retrain(model: str, *, name: str | None = None, progress: bool = True) -> BuildReport:
    """Train the user tower on a stored model and save the result as a new version."""
    from recommender.bundle import load_from_store

    timings: dict[str, float] = {}
    bundle, tag = load_from_store(model)
    tables = Tables(bundle.items, bundle.interactions, bundle.users)
    t0 = time.perf_counter()
    bundle.components["tower"] = train_tower(tables, bundle.item_vectors, progress=progress)
    timings["train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    # the items are encoded already: the validation bundle needs the encoder's settings only
    tune_trained(bundle, ModelConfig.from_config(bundle.config).encoder)
    timings["tune"] = time.perf_counter() - t0
    bundle.config["trained_from"] = tag
    t0 = time.perf_counter()
    new_tag = save_to_store(bundle, name or tag.split(":")[0])
    timings["save"] = time.perf_counter() - t0
    return BuildReport(
        new_tag,
        len(bundle.items),
        len(bundle.user_ids),
        len(bundle.interactions),
        timings,
        training_summary(bundle),
    )


def build_demo(name: str = DEMO_MODEL, *, progress: bool = True) -> BuildReport:
    """Build the bundled demo catalogue (MovieLens small) into model ``name``."""
    d = demo_dir()
    log.info("building the demo model %r from %s", name, d)
    return build_and_save(d / "items.csv", d / "interactions.csv", name=name, progress=progress)
