"""A model loaded for serving: the bundle's parts, typed, plus what requests need at hand.

:func:`load_model` builds it once (at service start, or in a batch job); the stages of
:mod:`recommender.serving.path` read it and never change it, except the live feedback
histories, which the feedback side owns.

Examples
--------
>>> model = load_model(bundle)                               # doctest: +SKIP
>>> model.recommend(user_id=1, k=3).items[0].title           # doctest: +SKIP
'Heat (1995)'
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from recommender.bundle import Bundle
from recommender.config import EncoderConfig, ModelConfig, ServingConfig
from recommender.errors import InputError
from recommender.history import Histories, popularity
from recommender.index import VectorIndex, make_index
from recommender.rerank import Reranker
from recommender.serving.catalogue import Catalogue, native
from recommender.serving.live import LiveHistories
from recommender.serving.types import GroupRequest, Recommendation, RecommendedItem, Request

if TYPE_CHECKING:
    from knowledge_graph import KnowledgeGraph
    from recommender.groups import UserGroups
    from recommender.tower_runtime import TowerRuntime
    from recommender.train import SequenceRecommender

__all__ = ["EncodeFn", "LoadedModel", "load_encoder", "load_model"]

log = logging.getLogger(__name__)

#: Where a trained tower on the CPU runs (``RECBENTO_TOWER_RUNTIME``).
RUNTIMES = ("onnx", "torch")

#: ``list[str] -> (n, dim)`` unit vectors: in-process, or the encoder service.
EncodeFn = Callable[[list[str]], np.ndarray]


@dataclass
class LoadedModel:
    """Everything the request path reads, built once by :func:`load_model`.

    Attributes
    ----------
    tag : str or None
        ``name:version`` in the model store, reported in answers.
    config : ModelConfig
        The bundle's ``config.json``, typed.
    serving : ServingConfig
        Request-time defaults (``config.serving`` unless overridden at load).
    bundle : Bundle
        The tables and components as loaded.
    catalogue : Catalogue
        Item ids, titles and attribute filters, row-aligned with ``item_vectors``.
    item_vectors : ndarray
        ``(n_items, dim)`` unit text vectors.
    histories : Histories
        Stored histories from the interaction log.
    popularity : ndarray
        Interactions per item (cold starts, the household fallback).
    live : LiveHistories
        Feedback applied since the bundle was built.
    graph, tower, groups : optional components
        Knowledge graph, trained user tower, user groups.
    reranker : Reranker or None
        ``None`` when the model turns reranking off.
    index : VectorIndex or None
        Approximate index for large catalogues; ``None`` means exact scoring.
    item_table : ndarray or None
        The tower's item embeddings (computed once).
    new_items : ndarray or None
        Items the tower never saw in training (the new-item slot).
    user_rows : dict
        Stored user id -> row of the groups' labels.
    encode_fn : callable or None
        Query encoder; the bundle's checkpoint is loaded on first use when ``None``.
    tower_runtime : TowerRuntime or None
        The tower's forward pass on ONNX Runtime (a tower on the CPU, unless
        ``RECBENTO_TOWER_RUNTIME=torch``); ``None``: PyTorch runs it.
    """

    tag: str | None
    config: ModelConfig
    serving: ServingConfig
    bundle: Bundle
    catalogue: Catalogue
    item_vectors: np.ndarray
    histories: Histories
    popularity: np.ndarray
    live: LiveHistories
    graph: KnowledgeGraph | None
    tower: SequenceRecommender | None
    groups: UserGroups | None
    reranker: Reranker | None
    index: VectorIndex | None
    item_table: np.ndarray | None
    new_items: np.ndarray | None
    user_rows: dict[Any, int]
    encode_fn: EncodeFn | None = None
    tower_runtime: TowerRuntime | None = None

    @property
    def n_items(self) -> int:
        return len(self.catalogue)

    @functools.cached_property
    def new_rows(self) -> np.ndarray:
        """The indices of ``new_items``, ascending (none without a tower)."""
        return np.zeros(0, np.int64) if self.new_items is None else np.flatnonzero(self.new_items)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Encode free text (the bundle's encoder is loaded here on first use)."""
        if self.encode_fn is None:
            self.encode_fn = load_encoder(self.config.encoder).encode
        return np.asarray(self.encode_fn(texts), dtype=np.float32)

    def with_serving(self, **overrides: Any) -> LoadedModel:
        """The same model with some request-time defaults replaced (shares live state)."""
        return dataclasses.replace(self, serving=self.serving.replace(**overrides))

    # Convenience for library users: each runs the one request path.
    def recommend(self, req: Request | None = None, /, **fields: Any) -> Recommendation:
        """Recommend for one :class:`Request` (or its fields as keywords)."""
        from recommender.serving.path import recommend_batch

        return recommend_batch(self, [req if req is not None else Request(**fields)])[0]

    def recommend_batch(self, reqs: Sequence[Request]) -> list[Recommendation]:
        """Recommend for many requests; scored with one matrix product."""
        from recommender.serving.path import recommend_batch

        return recommend_batch(self, reqs)

    def recommend_group(self, req: GroupRequest | None = None, /, **fields: Any) -> Recommendation:
        """One list for several users together (a :class:`GroupRequest` or its fields)."""
        from recommender.serving.path import recommend_group

        return recommend_group(self, req if req is not None else GroupRequest(**fields))

    def similar_items(self, item_id: Any, k: int = 10) -> list[RecommendedItem]:
        """Items nearest to ``item_id`` by text vector, the item itself excluded."""
        from recommender.serving.path import similar_items

        return similar_items(self, item_id, k)


def load_model(
    bundle: Bundle,
    *,
    tag: str | None = None,
    encode: EncodeFn | None = None,
    serving: ServingConfig | None = None,
    index: str | None = None,
    tower_runtime: str | None = None,
) -> LoadedModel:
    """Build a :class:`LoadedModel` from a bundle (once per process).

    ``serving`` replaces the bundle's request-time defaults; ``index`` (``"exact"``,
    ``"ann"``, ``"auto"``) overrides only the candidate search. ``tower_runtime``:
    ``"onnx"`` (ONNX Runtime runs a trained tower that is on the CPU) or ``"torch"``;
    default ``RECBENTO_TOWER_RUNTIME``, else ``"onnx"``.
    """
    t0 = time.perf_counter()
    config = ModelConfig.from_config(bundle.config)
    serving = serving or config.serving
    if index is not None:
        serving = serving.replace(index=index)
    items, interactions = bundle.items, bundle.interactions
    catalogue = Catalogue(items, user_ids_int=interactions["user_id"].dtype.kind in "iu")
    vectors = np.ascontiguousarray(bundle.item_vectors, dtype=np.float32)
    graph = bundle.components.get("graph")
    if graph is not None:
        graph.check_items(catalogue.ids)
    groups = bundle.components.get("groups")
    tower = bundle.components.get("tower")
    ann = _index(vectors, serving)
    model = LoadedModel(
        tag=tag,
        config=config,
        serving=serving,
        bundle=bundle,
        catalogue=catalogue,
        item_vectors=vectors,
        histories=Histories(interactions, catalogue.index),
        popularity=popularity(interactions, catalogue.index, len(catalogue)),
        live=LiveHistories(config.feedback_seq),
        graph=graph,
        tower=tower,
        groups=groups,
        reranker=_reranker(bundle, config, vectors, groups),
        index=ann,
        item_table=None if tower is None else tower.item_embeddings(vectors),
        new_items=None if tower is None else np.asarray(tower.new_item_mask(len(catalogue))),
        user_rows={native(u): i for i, u in enumerate(bundle.user_ids)},
        encode_fn=encode,
        tower_runtime=_tower_runtime(tower, tower_runtime),
    )
    log.info(
        "model %s ready: %d items, %d users in %.2fs",
        tag or "(unsaved)",
        model.n_items,
        len(model.histories),
        time.perf_counter() - t0,
    )
    return model


def load_encoder(
    config: EncoderConfig, *, precision: str = "default", path: str | None = None
) -> Any:
    """The model's text encoder, from its saved checkpoint or the packaged default.

    ``precision``: see :class:`~recommender.encoder.TextEncoder` (the services pass
    ``RECBENTO_ENCODE_PRECISION``). ``path``: where the checkpoint ``config.model_tag``
    names already is (the encoder service passes its ``BentoModel``'s), instead of
    looking it up in the model store.
    """
    from recommender.encoder import TextEncoder

    source = config.model_tag and (path or _stored_encoder_path(config.model_tag))
    return TextEncoder.from_pretrained(
        source or config.path or config.name, max_length=config.max_length, precision=precision
    )


def _stored_encoder_path(tag: str) -> str:
    import bentoml

    return bentoml.models.get(tag).path


def _reranker(
    bundle: Bundle, config: ModelConfig, vectors: np.ndarray, groups: Any
) -> Reranker | None:
    if not config.rerank_enabled:
        return None
    return Reranker.from_tables(
        bundle.items,
        bundle.interactions,
        vectors,
        group_popularity=None if groups is None else groups.group_popularity_,
        config=config.rerank,
    )


def _index(vectors: np.ndarray, serving: ServingConfig) -> VectorIndex | None:
    """An approximate index when the catalogue calls for one; ``None`` means exact."""
    n = len(vectors)
    if serving.index == "exact" or (serving.index == "auto" and n < serving.ann_threshold):
        return None
    log.info("building an approximate index over %d items", n)
    return make_index(vectors, kind="ann")


def _tower_runtime(tower: SequenceRecommender | None, choice: str | None) -> TowerRuntime | None:
    """The tower's forward pass on ONNX Runtime, where it applies (see :func:`load_model`)."""
    choice = (choice or os.environ.get("RECBENTO_TOWER_RUNTIME") or "onnx").strip().lower()
    if choice not in RUNTIMES:
        raise InputError(
            f"RECBENTO_TOWER_RUNTIME={choice!r}: expected one of {list(RUNTIMES)}",
            field="RECBENTO_TOWER_RUNTIME",
            value=choice,
        )
    if tower is None or choice == "torch":
        return None
    net = tower.net_
    if next(net.parameters()).device.type != "cpu":  # a GPU runs PyTorch
        return None
    from recommender.tower_runtime import TowerRuntime  # onnxruntime only where it runs

    return TowerRuntime(net)
