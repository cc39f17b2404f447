"""The reranker's knobs: one frozen, validated set of weights per deployment or request.

:class:`RerankConfig` is what ``config.json`` stores under ``rerank``, what a request's
``knobs`` override, and what :class:`recommender.rerank.Reranker` reads; see that
module for what each weight does to the final list.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from recommender.errors import InputError
from recommender.validate import check_fields

__all__ = ["RERANK_KNOBS", "RerankConfig"]

# The range of each knob (recommender.validate.check_range; no ``high``: any finite number).
_RANGES: dict[str, dict[str, Any]] = {
    "relevance": {"low": 0},
    "group_popularity": {"low": 0},
    "hotness": {"low": 0},
    "hotness_half_life_days": {"low": 0, "low_open": True},
    "freshness": {"low": 0},
    "freshness_half_life_days": {"low": 0, "low_open": True},
    "diversity": {"low": 0, "high": 1},
    "calibration": {"low": 0},
    "calibration_alpha": {"low": 0, "high": 1, "low_open": True, "high_open": True},
    "longtail_min_share": {"low": 0, "high": 1},
    "longtail_head_share": {"low": 0, "high": 1, "low_open": True, "high_open": True},
}


@dataclass(frozen=True)
class RerankConfig:
    """Weights of the reranker; every field can be overridden per deployment and per request.

    Parameters
    ----------
    relevance : float, default 1.0
        Weight of the personal relevance from the scorer.
    group_popularity : float, default 0.0
        Weight of the item's popularity inside the user's group. 0 by default: with a strong
        personal scorer (EASE) it cost accuracy and coverage on MovieLens-small; it is meant
        for users with short histories, whose personal relevance is weak (try 0.1-0.3).
    hotness : float, default 0.0
        Weight of global popularity with time decay. A trained build chooses it on its
        own validation cases (``recommender.tune_serving``; on the demo it chose 0: the
        log ends in 2018 and most test interactions are years older) and records the
        choice in ``config.json``; raise it for live catalogues.
    hotness_half_life_days : float, default 30.0
        Half-life of an interaction's contribution to hotness.
    freshness : float, default 0.0
        Weight of item freshness; chosen on validation by a trained build like ``hotness``.
    freshness_half_life_days : float, default 365.0
        Age at which an item's freshness halves.
    diversity : float, default 0.3
        MMR trade-off in [0, 1]: 0 ranks by blended score alone, 1 only avoids similar items.
    calibration : float, default 0.1
        Weight of the KL divergence between the user's and the list's entity (genre)
        distributions. Needs a ``user_profile`` at request time; ignored without one.
    calibration_alpha : float, default 0.01
        Steck's smoothing of the list distribution toward the user's, in (0, 1).
    longtail_min_share : float, default 0.1
        Minimum share of the top-k that must be long-tail items (exposure fairness); with
        k=10 the default reserves one slot (the last, unless a tail item wins earlier).
    longtail_head_share : float, default 0.8
        The head is the most popular items that make up this share of all interactions;
        every other item is long tail.
    """

    relevance: float = 1.0
    group_popularity: float = 0.0
    hotness: float = 0.0
    hotness_half_life_days: float = 30.0
    freshness: float = 0.0
    freshness_half_life_days: float = 365.0
    diversity: float = 0.3
    calibration: float = 0.1
    calibration_alpha: float = 0.01
    longtail_min_share: float = 0.1
    longtail_head_share: float = 0.8

    def __post_init__(self) -> None:
        check_fields(self, _RANGES)

    @classmethod
    def relevance_only(cls) -> RerankConfig:
        """Rank by relevance alone: no popularity, freshness, MMR, calibration or tail floor."""
        return cls(
            group_popularity=0.0,
            hotness=0.0,
            freshness=0.0,
            diversity=0.0,
            calibration=0.0,
            longtail_min_share=0.0,
        )

    def get_config(self) -> dict[str, float]:
        """Every knob as a JSON-able dict; ``RerankConfig.from_config`` rebuilds it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> RerankConfig:
        """Build from a dict of knobs; missing knobs take their defaults.

        Raises
        ------
        InputError
            On an unknown knob (named, with the valid ones) or an out-of-range value.
        """
        return cls().replace(**dict(config or {}))

    def replace(self, **overrides: Any) -> RerankConfig:
        """A copy with some knobs changed (per-deployment or per-request overrides).

        ``None`` values are ignored, so optional HTTP fields can be passed straight through.
        """
        overrides = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(overrides) - set(RERANK_KNOBS))
        if unknown:
            raise InputError(
                f"unknown rerank knob(s) {unknown}; expected some of {list(RERANK_KNOBS)}",
                field=unknown[0],
                value=overrides[unknown[0]],
            )
        return dataclasses.replace(self, **overrides)


#: Names of every per-request knob, in declaration order.
RERANK_KNOBS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RerankConfig))
