"""A trained model's serving defaults, chosen on its own validation cases.

How much the knowledge graph adds next to the trained tower (``kg_weight_trained``), and
how much the reranker's global ``hotness`` and ``freshness`` count, depend on the
catalogue: a log of sessions rewards what is hot now, a catalogue of back titles does not.
:func:`tune_serving` chooses them per dataset on the tower's validation cases (each
user's last training interaction, users with 3+ of them), never on anything held out
for testing:

1. the log without those interactions is built into a bundle (the item vectors are
   reused), served with the trained tower and the co-occurrence half fitted without
   them (:attr:`~recommender.train.SequenceRecommender.validation_cooc_`);
2. a seeded sample of validation users asks the product's request path
   (:func:`~recommender.serving.recommend_batch`, reranker on) for ``k`` items, once per
   grid point, and the held-out item's NDCG@k scores it;
3. one knob at a time (the graph, then hotness, then freshness), a value replaces the
   current one only when it scores strictly better.

:func:`apply_tuning` writes the choices into the bundle's ``config.json`` sections
(``serving.kg_weight_trained``, ``rerank.hotness``, ``rerank.freshness``), where they
are the deployment's defaults and every request may still override them as knobs, and
records what was tried under ``tuned``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recommender.eval import last_case_mask, ndcg_at_k
from recommender.schemas import Tables

if TYPE_CHECKING:
    from collections.abc import Iterator

    from recommender.bundle import Bundle
    from recommender.config import EncoderConfig
    from recommender.encoder import TextEncoder
    from recommender.train import SequenceRecommender

__all__ = ["TuneGrid", "validation_split", "tune_serving", "apply_tuning", "tune_and_apply"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuneGrid:
    """The values tried per knob, the number of validation users and the cut-off."""

    kg_weight_trained: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.5)
    hotness: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.5)
    freshness: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.5)
    max_users: int = 1000
    k: int = 10
    seed: int = 0


def validation_split(interactions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The log without each validation interaction, and those interactions.

    A validation interaction is a user's last one that counts as history (impressions
    and dislikes do not), by timestamp then ``item_id``, for users with at least 3: the
    case :meth:`~recommender.train.SequenceRecommender.fit` early-stops on.

    >>> df = pd.DataFrame({"user_id": [1, 1, 1, 2, 2], "item_id": [5, 6, 7, 5, 6],
    ...                    "timestamp": [1, 2, 3, 1, 2]})
    >>> rest, val = validation_split(df)
    >>> val[["user_id", "item_id"]].values.tolist(), len(rest)
    ([[1, 7]], 4)
    """
    from recommender.feedback_rows import weigh_events

    interactions = interactions.reset_index(drop=True)  # row labels name rows once
    history, _ = weigh_events(interactions)
    df = history.sort_values(["user_id", "timestamp", "item_id"], kind="stable")
    val = df[last_case_mask(df, min_train=2)]  # users with at least 3
    return interactions.drop(index=val.index), interactions.loc[val.index]


@contextmanager
def _validation_hybrid(tower: SequenceRecommender) -> Iterator[None]:
    """Score with the co-occurrence half that never saw the validation items."""
    held = getattr(tower, "validation_cooc_", None)
    if held is None:
        yield
        return
    kept = tower.cooc_
    tower.cooc_ = held
    try:
        yield
    finally:
        tower.cooc_ = kept


def tune_serving(
    tables: Tables,
    tower: SequenceRecommender,
    encoder: TextEncoder | EncoderConfig,
    item_vectors: np.ndarray,
    *,
    grid: TuneGrid | None = None,
    fit_groups: bool = False,
) -> dict[str, Any]:
    """Choose ``kg_weight_trained``, ``hotness`` and ``freshness`` on validation.

    ``fit_groups`` fits user groups for the validation bundle too: only needed when the
    reranker weighs group popularity (the slowest part of a build otherwise).

    Returns
    -------
    dict
        ``chosen`` (the three values), ``val_ndcg@k`` of the choice and of the
        untuned defaults (``baseline_val_ndcg@k``), ``grid`` (every value tried, with
        its NDCG), ``n_users`` and ``seconds``. Without validation cases the
        defaults are returned unchanged (``n_users`` 0).
    """
    from recommender.build import build_bundle
    from recommender.config import ServingConfig
    from recommender.rerank import RerankConfig
    from recommender.serving import Request, load_model, recommend_batch

    grid = grid or TuneGrid()
    t0 = time.perf_counter()
    defaults = {
        "kg_weight_trained": ServingConfig().kg_weight_trained,
        "hotness": RerankConfig().hotness,
        "freshness": RerankConfig().freshness,
    }
    rest, val = validation_split(tables.interactions)
    rng = np.random.default_rng(grid.seed)
    if len(val) > grid.max_users:
        val = val.iloc[np.sort(rng.choice(len(val), grid.max_users, replace=False))]
    out: dict[str, Any] = {"chosen": dict(defaults), "grid": {}, "n_users": int(len(val))}
    if not len(val):
        return out
    bundle = build_bundle(
        replace(tables, interactions=rest),
        encoder,
        item_vectors=item_vectors,
        progress=False,
        fit_groups=fit_groups,
    )
    bundle.components["tower"] = tower
    model = load_model(bundle)
    index = model.catalogue.index
    target = np.array([index[i] for i in val["item_id"].tolist()], dtype=np.int64)
    users = val["user_id"].tolist()

    def score(knobs: dict[str, float]) -> float:
        request_knobs = {
            "kg_weight": knobs["kg_weight_trained"],
            "hotness": knobs["hotness"],
            "freshness": knobs["freshness"],
        }
        top = np.full((len(users), grid.k), -1, dtype=np.int64)
        for start in range(0, len(users), 128):
            reqs = [
                Request(user_id=u, k=grid.k, rerank=True, knobs=request_knobs)
                for u in users[start : start + 128]
            ]
            for r, answer in enumerate(recommend_batch(model, reqs), start=start):
                rows = [index[i.item_id] for i in answer.items]
                top[r, : len(rows)] = rows
        return ndcg_at_k(top, target, grid.k)

    chosen = dict(defaults)
    with _validation_hybrid(tower):
        best = score(chosen)
        out[f"baseline_val_ndcg@{grid.k}"] = best
        for knob in ("kg_weight_trained", "hotness", "freshness"):
            for value in getattr(grid, knob):
                trial = {**chosen, knob: float(value)}
                ndcg = best if trial == chosen else score(trial)
                out["grid"][f"{knob}={value:g}"] = ndcg
                if ndcg > best:
                    best, chosen = ndcg, trial
    out.update(chosen=chosen, seconds=time.perf_counter() - t0)
    out[f"val_ndcg@{grid.k}"] = best
    log.info(
        "serving defaults chosen on %d validation users: %s (NDCG@%d %.4f, defaults %.4f; %.1fs)",
        len(users),
        chosen,
        grid.k,
        best,
        out[f"baseline_val_ndcg@{grid.k}"],
        out["seconds"],
    )
    return out


def apply_tuning(bundle: Bundle, tuned: dict[str, Any]) -> Bundle:
    """Write :func:`tune_serving`'s choices into ``bundle.config`` (in place) and return it."""
    chosen = tuned["chosen"]
    config = bundle.config
    config["serving"] = {
        **(config.get("serving") or {}),
        "kg_weight_trained": chosen["kg_weight_trained"],
    }
    config["rerank"] = {
        **(config.get("rerank") or {}),
        "hotness": chosen["hotness"],
        "freshness": chosen["freshness"],
    }
    config["tuned"] = tuned
    return bundle


def tune_and_apply(
    bundle: Bundle,
    encoder: TextEncoder | EncoderConfig,
    *,
    grid: TuneGrid | None = None,
) -> dict[str, Any]:
    """:func:`tune_serving` for ``bundle``'s trained tower, then :func:`apply_tuning`.

    The tower's validation-only co-occurrence half is released afterwards (it is as
    large as the served one and nothing else reads it).
    """
    tower = bundle.components["tower"]
    tables = Tables(bundle.items, bundle.interactions, bundle.users)
    from recommender.config import ModelConfig

    groups = ModelConfig.from_config(bundle.config).rerank.group_popularity > 0
    tuned = tune_serving(tables, tower, encoder, bundle.item_vectors, grid=grid, fit_groups=groups)
    apply_tuning(bundle, tuned)
    tower.validation_cooc_ = None
    return tuned
