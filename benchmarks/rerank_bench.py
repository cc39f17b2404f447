"""One split of the reranker benchmark: candidates, user groups, reranker and metrics.

:class:`Bench` prepares everything once, then scores any number of
:class:`~recommender.rerank.RerankConfig` on it, with a paired bootstrap interval of
each one's NDCG change against relevance-only ranking.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from benchmarks.baselines import interaction_matrix
from benchmarks.rerank_data import candidates, recency_user_vectors
from benchmarks.rerank_metrics import K, evaluate
from recommender.eval import hit_positions
from recommender.groups import UserGroups
from recommender.item_signals import (
    entity_distribution,
    item_entity_matrix,
    longtail_mask,
    user_entity_profile,
)
from recommender.rerank import RerankConfig, Reranker

__all__ = ["Bench"]

log = logging.getLogger(__name__)


class Bench:
    """Everything one split needs: EASE candidates, groups, reranker, metric context."""

    def __init__(
        self, items: pd.DataFrame, train: pd.DataFrame, test: pd.DataFrame, vecs: np.ndarray
    ) -> None:
        item_index = pd.Index(items["item_id"])
        user_index = pd.Index(np.sort(train["user_id"].unique()))
        n_items = len(items)
        X = interaction_matrix(
            user_index.get_indexer(train["user_id"]),
            item_index.get_indexer(train["item_id"]),
            (len(user_index), n_items),
        )
        test = test[test["user_id"].isin(user_index)]
        test_rows = user_index.get_indexer(test["user_id"])
        self.test_idx = item_index.get_indexer(test["item_id"])
        cand, rel = candidates(X)
        self.cand, self.rel = cand[test_rows], rel[test_rows]

        t0 = time.perf_counter()
        uvecs = recency_user_vectors(train, user_index, item_index, vecs)
        self.groups = UserGroups(n_groups_range=(2, 10), random_state=0).fit(uvecs, user_items=X)
        log.info(
            "groups: %d (silhouette %.3f) in %.1fs",
            self.groups.n_groups_,
            self.groups.silhouette_,
            time.perf_counter() - t0,
        )
        self.rr = Reranker.from_tables(
            items, train, vecs, group_popularity=self.groups.group_popularity_
        )
        ent, names = item_entity_matrix(items)
        dist = entity_distribution(ent)
        hist_rows = X[test_rows]
        self.profiles = np.stack(
            [user_entity_profile(dist, hist_rows[r].indices) for r in range(len(test_rows))]
        )
        self.user_groups = self.groups.labels_[test_rows]
        self.uvecs, self.X, self.ent, self.ent_names = uvecs, X, ent, names
        tail = longtail_mask(self.rr.activity.popularity, 0.8)
        self.ctx = dict(
            vecs=vecs,
            genre_vecs=ent.toarray(),
            dist=dist,
            profiles=self.profiles,
            tail=tail,
            n_items=n_items,
        )

    def run(self, cfg: RerankConfig) -> dict:
        t = time.perf_counter()
        topk, _ = self.rr.rerank_batch(
            self.cand, self.rel, K, groups=self.user_groups, user_profiles=self.profiles, config=cfg
        )
        ms = (time.perf_counter() - t) * 1000 / len(self.cand)
        pos = hit_positions(topk, self.test_idx)
        gains = np.where(pos >= 0, 1.0 / np.log2(np.maximum(pos, 0) + 2.0), 0.0)
        return {
            **evaluate(topk, self.test_idx, **self.ctx),
            "ms_per_user": ms,
            "config": cfg.get_config(),
            "_gains": gains,
        }

    def latency(self, cfg: RerankConfig, n: int = 300) -> dict[str, float]:
        """Single-request ``rerank`` wall time (200 candidates -> k=10), in ms."""
        times = []
        for r in range(min(n, len(self.cand))):
            t = time.perf_counter()
            self.rr.rerank(
                self.cand[r],
                self.rel[r],
                K,
                group=int(self.user_groups[r]),
                user_profile=self.profiles[r],
                config=cfg,
            )
            times.append((time.perf_counter() - t) * 1000)
        return {
            "p50_ms": float(np.percentile(times, 50)),
            "p95_ms": float(np.percentile(times, 95)),
        }

    def table(self, configs: dict[str, RerankConfig]) -> dict[str, dict]:
        rows = {n: self.run(c) for n, c in tqdm(configs.items(), desc="configs")}
        base = rows["off"]
        rng = np.random.default_rng(0)
        boot = rng.integers(0, len(base["_gains"]), (2000, len(base["_gains"])))
        for r in rows.values():
            for m in ("ndcg@10", "ild", "coverage@10"):
                r[f"{m}_vs_off"] = r[m] / base[m] - 1.0
            # paired bootstrap over users: 95% interval of the relative NDCG change
            rel = r["_gains"][boot].mean(1) / np.maximum(base["_gains"][boot].mean(1), 1e-12)
            r["ndcg_vs_off_ci95"] = [
                float(np.percentile(rel, 2.5) - 1),
                float(np.percentile(rel, 97.5) - 1),
            ]
        for r in rows.values():
            del r["_gains"]
        return rows
