"""The systems the quality benchmark compares, each a *variant* ``(Split) -> (topk, info)``.

Baselines rank from the split's training matrix or sequences; recbento's variants answer
through the product's own request path (:func:`through_pipeline`): a bundle built from
the training split, with the trained tower (its serving defaults chosen on validation,
as ``recbento build --train`` does) where the variant has one.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from benchmarks.baselines import BASELINES, score_topk
from benchmarks.quality_data import Split
from benchmarks.seq_baselines import SEQ_BASELINES, fit_and_rank
from recommender.build import build_bundle, tune_trained
from recommender.encoder import TextEncoder
from recommender.schemas import Tables
from recommender.serving import LoadedModel, Request, load_model, recommend_batch
from recommender.train import SequenceRecommender

__all__ = [
    "BASELINE_NAMES",
    "DEFAULT_VARIANT",
    "K",
    "VARIANTS",
    "Variant",
    "through_pipeline",
]

K = 10

Variant = Callable[[Split], tuple[np.ndarray, dict[str, Any]]]


def _baseline(name: str) -> Variant:
    def run_baseline(split: Split) -> tuple[np.ndarray, dict[str, Any]]:
        model = BASELINES[name]().fit(split.X)
        return score_topk(model, split.X, split.rows, K), {}

    return run_baseline


def _seq_baseline(name: str) -> Variant:
    def run_seq(split: Split) -> tuple[np.ndarray, dict[str, Any]]:
        return fit_and_rank(name, split.all_sequences, split.X, split.rows, split.histories, K)

    # an ID-only model cannot rank an item it never saw: cold-start HR is 0 by design
    run_seq.id_only = True  # type: ignore[attr-defined]
    return run_seq


def _tower(split: Split) -> SequenceRecommender:
    """The split's trained tower (trained on first use, then shared)."""
    if "tower" not in split.cache:
        t0 = time.perf_counter()
        model = SequenceRecommender(split.train_config).fit(split.all_sequences, split.item_vectors)
        split.cache["tower"] = model
        split.cache["train_seconds"] = time.perf_counter() - t0
    return split.cache["tower"]


def _encoder(split: Split) -> TextEncoder:
    """The split's encoder: the one the caller gave, else the default, loaded once."""
    if split.cache.get("encoder") is None:
        split.cache["encoder"] = TextEncoder.from_pretrained(None)
    return split.cache["encoder"]


def _recommender(split: Split, *, trained: bool) -> LoadedModel:
    """The product's loaded model built from the training split (cached per split)."""
    key = f"recommender:{trained}"
    if key not in split.cache:
        if "bundle" not in split.cache:
            tables = Tables(split.items, split.train, None)
            split.cache["bundle"] = build_bundle(
                tables, _encoder(split), item_vectors=split.item_vectors, progress=False
            )
        bundle = split.cache["bundle"]
        if trained:
            # as `recbento build --train` does: the tower, then its serving defaults
            # chosen on the training split's own validation cases
            bundle = replace(
                bundle,
                components={**bundle.components, "tower": _tower(split)},
                config=copy.deepcopy(bundle.config),
            )
            split.cache["tuned"] = tune_trained(bundle, _encoder(split))
        split.cache[key] = load_model(bundle)
    return split.cache[key]


def through_pipeline(
    split: Split,
    *,
    trained: bool,
    kg: bool,
    rerank: bool,
    kg_weight: float | None = None,
    batch: int = 128,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Top-K item rows for every test user, answered by the product's request path.

    ``kg=False`` sends ``kg_weight`` 0; with ``kg=True`` the deployment default is used
    unless ``kg_weight`` overrides it.
    """
    rec = _recommender(split, trained=trained)
    if not kg:
        kg_weight = 0.0
    knobs = None if kg_weight is None else {"kg_weight": float(kg_weight)}
    topk = np.full((len(split.user_ids), K), -1, dtype=np.int64)
    for start in range(0, len(split.user_ids), batch):
        reqs = [
            Request(user_id=u, k=K, rerank=rerank, knobs=knobs)
            for u in split.user_ids[start : start + batch]
        ]
        for r, answer in enumerate(recommend_batch(rec, reqs), start=start):
            rows = [rec.catalogue.index[i.item_id] for i in answer.items]
            topk[r, : len(rows)] = rows
    info: dict[str, Any] = {
        "kg_weight": (
            (rec.serving.kg_weight_trained if trained else rec.serving.kg_weight)
            if kg_weight is None
            else kg_weight
        ),
        "rerank": rerank,
    }
    if trained:
        info["train_seconds"] = split.cache.get("train_seconds")
        info["tower"] = dict(_tower(split).summary_)
        info["tuned"] = split.cache.get("tuned")
    return topk, info


def _pipeline_variant(*, trained: bool, kg: bool, rerank: bool) -> Variant:
    def run_variant(split: Split) -> tuple[np.ndarray, dict[str, Any]]:
        return through_pipeline(split, trained=trained, kg=kg, rerank=rerank)

    return run_variant


#: Table order. A variant that is not available yet maps to ``None`` and is listed as such.
VARIANTS: dict[str, Variant | None] = {
    **{name: _baseline(name) for name in BASELINES},
    **{name: _seq_baseline(name) for name in SEQ_BASELINES},
    "recbento zero-shot text": _pipeline_variant(trained=False, kg=False, rerank=False),
    "recbento zero-shot + KG + reranker": _pipeline_variant(trained=False, kg=True, rerank=True),
    "recbento trained": _pipeline_variant(trained=True, kg=False, rerank=False),
    "recbento trained + KG": _pipeline_variant(trained=True, kg=True, rerank=False),
    "recbento trained + KG + reranker (default)": _pipeline_variant(
        trained=True, kg=True, rerank=True
    ),
}
DEFAULT_VARIANT = "recbento trained + KG + reranker (default)"
BASELINE_NAMES = [*BASELINES, *SEQ_BASELINES]
