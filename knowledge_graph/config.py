"""How a catalogue becomes a knowledge graph: every knob of :func:`build_graph`.

The config is stored in the graph itself (``G.graph["config"]``), so a graph loaded
from a bundle explains itself with the same wording it was built with.

Examples
--------
>>> cfg = GraphConfig(min_support=3)
>>> GraphConfig.from_config(cfg.get_config()) == cfg
True
>>> GraphConfig.from_config({"min_support": 0})
Traceback (most recent call last):
...
recommender.errors.InputError: min_support=0: expected an integer >= 1
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from recommender.errors import InputError
from recommender.validate import from_mapping

__all__ = ["GraphConfig", "entity_type_name"]

log = logging.getLogger(__name__)

_NOT_PLURAL = ("ss", "us", "is", "series", "species", "news")


@dataclass(frozen=True)
class GraphConfig:
    """Knobs of the item / entity graph.

    Attributes
    ----------
    entity_columns : list of str or None
        Item columns whose values become entities; ``None`` auto-detects categorical
        and ``|``-multi-valued columns (see :func:`~knowledge_graph.build.detect_entity_columns`).
    user_entity_columns : list of str or None
        The same for the optional users table.
    entity_types : dict
        Column -> entity type name; columns not listed get their singular form
        (``genres`` -> ``genre``, ``categories`` -> ``category``).
    min_support : int
        Entities on fewer items than this are dropped (one item links nothing).
    max_entity_share : float
        Entities on more than this share of the items are dropped (they explain nothing).
    year_column : str or None
        Column holding a year; its values also give a ``decade:1990s`` entity.
    derive_decade : bool
        Add the decade entities derived from ``year_column``.
    idf : bool
        Edge weight ``log(1 + n_items / support)`` (common entities count less); else 1.
    column_weights : dict
        Multiplier of the edge weights of a column (``{"tags": 1.5}``).
    ignore_values : list of str
        Placeholder values that are not entities (compared case-insensitively).
    type_weights : dict
        Multiplier of the edge weights of an entity type (``{"decade": 0.5}``); applied
        on top of ``column_weights`` (a year column gives ``year`` and ``decade`` types).
    quoted_types : list of str
        Entity types quoted in explanation sentences (free-form tags read better quoted).
    auto_min_shared : float
        Auto-detection: a column qualifies when at least this share of its non-empty
        rows has a value shared with another row.
    auto_max_words : float
        Auto-detection: columns whose median value is longer than this many words are
        free text, not entities.
    """

    entity_columns: list[str] | None = None
    user_entity_columns: list[str] | None = None
    entity_types: dict[str, str] = field(default_factory=dict)
    min_support: int = 2
    max_entity_share: float = 0.5
    year_column: str | None = "year"
    derive_decade: bool = True
    idf: bool = True
    column_weights: dict[str, float] = field(default_factory=dict)
    type_weights: dict[str, float] = field(default_factory=dict)
    ignore_values: list[str] = field(
        default_factory=lambda: ["(no genres listed)", "unknown", "n/a", "none", "nan", "-"]
    )
    quoted_types: list[str] = field(default_factory=lambda: ["tag"])
    auto_min_shared: float = 0.2
    auto_max_words: float = 6.0

    def __post_init__(self) -> None:
        if not isinstance(self.min_support, int) or self.min_support < 1:
            raise InputError(
                f"min_support={self.min_support!r}: expected an integer >= 1",
                field="min_support",
                value=self.min_support,
            )
        if not 0.0 < float(self.max_entity_share) <= 1.0:
            raise InputError(
                f"max_entity_share={self.max_entity_share!r}: expected a share in (0, 1]",
                field="max_entity_share",
                value=self.max_entity_share,
            )
        for col, w in {**self.column_weights, **self.type_weights}.items():
            if not float(w) > 0:
                raise InputError(
                    f"column_weights[{col!r}]={w!r}: expected a weight > 0",
                    field="column_weights",
                    value=w,
                )

    def get_config(self) -> dict[str, Any]:
        """JSON-able dict; :meth:`from_config` rebuilds an equal config."""
        return asdict(self)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> GraphConfig:
        """Rebuild from :meth:`get_config`; unknown keys are an :class:`InputError`."""
        return from_mapping(cls, config, "graph")

    def type_of(self, column: str) -> str:
        """Entity type of a column (``genres`` -> ``genre`` unless overridden)."""
        return self.entity_types.get(column) or entity_type_name(column)


def entity_type_name(column: str) -> str:
    """Singular, lower-case entity type of a column name.

    Examples
    --------
    >>> [entity_type_name(c) for c in ["genres", "Tags", "categories", "director", "series"]]
    ['genre', 'tag', 'category', 'director', 'series']
    """
    name = column.strip().lower().replace(" ", "_")
    if name.endswith(_NOT_PLURAL) or len(name) <= 3:
        out = name
    elif name.endswith("ies"):
        out = name[:-3] + "y"
    elif name.endswith("s"):
        out = name[:-1]
    else:
        out = name
    if out in ("item", "user"):  # reserved for item and user nodes
        out = f"{out}_attr"
    return out
