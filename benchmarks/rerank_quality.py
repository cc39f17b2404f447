"""Reranker quality: accuracy vs diversity, calibration, long tail and coverage.

Protocol: leave-last-out on MovieLens-small (``recommender.eval.leave_last_out``: each user's
last interaction by timestamp, ties by item_id, is the test item; the rest trains). The base
relevance is EASE (lambda 500, ``benchmarks.baselines.EASE``) on the binary training matrix;
each user's top-200 unseen items (full ranking over all items, items never seen in training
excluded) are the candidates. They are reranked by ``recommender.rerank.Reranker`` built from
the *training* interactions only, under several configurations, in one run.

Metrics at K=10:

* NDCG@10, HR@10 -- one held-out item per user;
* ILD -- intra-list diversity, ``1 - mean pairwise cosine`` of the MiniLM item vectors
  (title + genres + tags; the same vectors MMR uses); ``ILD-genre`` uses binary genre vectors;
* calibration KL -- Steck (RecSys 2018), ``KL(p_u || (1 - 0.01) q_list + 0.01 p_u)`` over
  genres, ``p_u`` from the user's training history (uniform weights);
* long-tail share -- share of recommended items outside the head that makes up 80% of
  training interactions;
* coverage@10 -- share of the catalogue recommended to at least one user.

User groups for the in-group popularity signal are found by ``UserGroups`` on the
recency-weighted mean of MiniLM item vectors of each user's training history (weight
``0.5 ** (steps_from_last / 20)``).

Run::

    nice -n 10 python -m benchmarks.rerank_quality

Prints a Markdown table; writes ``benchmarks/results/rerank_quality.json`` and
``benchmarks/results/rerank_pareto.png``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from tqdm.auto import tqdm

from benchmarks.baselines import EASE, interaction_matrix
from recommender.eval import (
    coverage_at_k,
    hit_positions,
    hit_rate_at_k,
    leave_last_out,
    ndcg_at_k,
)
from recommender.groups import UserGroups, plot_groups, portraits_table
from recommender.item_signals import (
    entity_distribution,
    item_entity_matrix,
    longtail_mask,
    user_entity_profile,
)
from recommender.rerank import RerankConfig, Reranker
from recommender.topk import top_k

log = logging.getLogger("benchmarks.rerank_quality")

DATA = Path("/work/shared/data/movielens-small")
RESULTS = Path(__file__).resolve().parent / "results"
K = 10
N_CANDIDATES = 200

#: Relevance only: no group/global popularity, no MMR, no calibration, no long-tail floor.
OFF = RerankConfig(
    group_popularity=0.0,
    hotness=0.0,
    freshness=0.0,
    diversity=0.0,
    calibration=0.0,
    longtail_min_share=0.0,
)
#: Diversity-heavy: strong MMR, stronger calibration and a 30% long-tail floor.
HEAVY = RerankConfig().replace(diversity=0.6, calibration=0.3, longtail_min_share=0.3)


def _item_texts(items: pd.DataFrame) -> list[str]:
    texts = []
    for title, genres, tags in zip(
        items["title"], items.get("genres", ""), items.get("tags", ""), strict=True
    ):
        parts = [str(title)]
        for v in (genres, tags):
            if isinstance(v, str) and v:
                parts.append(", ".join(v.split("|")))
        texts.append(". ".join(parts))
    return texts


def item_vectors(items: pd.DataFrame, cache: Path) -> np.ndarray:
    """MiniLM vectors of title + genres + tags, cached as safetensors keyed by a text hash."""
    from safetensors import safe_open
    from safetensors.numpy import save_file

    texts = _item_texts(items)
    sha = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    if cache.exists():
        with safe_open(str(cache), "np") as f:
            if (f.metadata() or {}).get("text_sha") == sha:
                return f.get_tensor("item_vectors")
    import torch

    from recommender.encoder import TextEncoder

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    vecs = TextEncoder.from_pretrained().encode(texts, batch_size=64)
    log.info("encoded %d items in %.1fs", len(texts), time.perf_counter() - t0)
    cache.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {"item_vectors": np.ascontiguousarray(vecs, dtype=np.float32)},
        str(cache),
        metadata={"text_sha": sha, "encoder": "all-MiniLM-L6-v2"},
    )
    return vecs


def recency_user_vectors(
    train: pd.DataFrame,
    user_index: pd.Index,
    item_index: pd.Index,
    vecs: np.ndarray,
    half_life: float = 20.0,
) -> np.ndarray:
    """Recency-weighted mean of item vectors over each user's training history."""
    u = user_index.get_indexer(train["user_id"])
    i = item_index.get_indexer(train["item_id"])
    steps_from_last = train.groupby("user_id").cumcount(ascending=False).to_numpy()
    w = np.exp2(-steps_from_last / half_life)
    m = sp.csr_matrix((w, (u, i)), shape=(len(user_index), len(item_index)))
    out = np.asarray(m @ vecs)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def candidates(
    X: sp.csr_matrix, n: int = N_CANDIDATES, batch: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """EASE top-``n`` unseen, trained items per user with their scores."""
    t0 = time.perf_counter()
    model = EASE(500.0).fit(X)
    log.info("EASE fitted in %.1fs", time.perf_counter() - t0)
    untrained = np.asarray(X.sum(axis=0)).ravel() == 0
    users = np.arange(X.shape[0])
    cand = np.empty((len(users), n), dtype=np.int64)
    rel = np.empty((len(users), n))
    for start in range(0, len(users), batch):
        rows = users[start : start + batch]
        s = model.score(rows).astype(np.float64)
        s[:, untrained] = -np.inf
        seen = X[rows]
        s[np.repeat(np.arange(len(rows)), np.diff(seen.indptr)), seen.indices] = -np.inf
        idx, _ = top_k(s, n)
        cand[rows] = idx
        rel[rows] = np.take_along_axis(s, np.maximum(idx, 0), axis=1)
    return cand, rel


def ild(topk: np.ndarray, vecs: np.ndarray) -> float:
    """Mean over users of ``1 - mean pairwise cosine`` within the list."""
    v = vecs[topk]  # (U, K, d)
    v = v / np.maximum(np.linalg.norm(v, axis=2, keepdims=True), 1e-12)
    sims = np.einsum("ukd,ujd->ukj", v, v)
    k = topk.shape[1]
    off = (sims.sum(axis=(1, 2)) - np.trace(sims, axis1=1, axis2=2)) / (k * (k - 1))
    return float(np.mean(1.0 - off))


def calibration_kl(
    topk: np.ndarray, dist: sp.csr_matrix, profiles: np.ndarray, alpha: float = 0.01
) -> float:
    """Mean Steck KL(p_u || q~_list) with uniform item weights."""
    kls = []
    for u in range(topk.shape[0]):
        p = profiles[u]
        q = np.asarray(dist[topk[u]].mean(axis=0)).ravel()
        q = (1 - alpha) * q + alpha * p
        m = p > 0
        kls.append(float((p[m] * np.log(p[m] / q[m])).sum()))
    return float(np.mean(kls))


def evaluate(topk, test_idx, *, vecs, genre_vecs, dist, profiles, tail, n_items) -> dict:
    return {
        "ndcg@10": ndcg_at_k(topk, test_idx, K),
        "hr@10": hit_rate_at_k(topk, test_idx, K),
        "ild": ild(topk, vecs),
        "ild_genre": ild(topk, genre_vecs),
        "calib_kl": calibration_kl(topk, dist, profiles),
        "longtail": float(tail[topk].mean()),
        "coverage@10": coverage_at_k(topk, n_items, K),
    }


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


COLS = ["ndcg@10", "hr@10", "ild", "ild_genre", "calib_kl", "longtail", "coverage@10"]


def print_table(rows: dict[str, dict]) -> None:
    print(
        "| config | " + " | ".join(COLS) + " | NDCG vs off [95% CI] | ILD vs off "
        "| cov. vs off | ms/user |"
    )
    print("|---|" + "---:|" * (len(COLS) + 4))
    for name, r in rows.items():
        lo, hi = r["ndcg_vs_off_ci95"]
        print(
            f"| {name} | "
            + " | ".join(f"{r[c]:.4f}" for c in COLS)
            + f" | {r['ndcg@10_vs_off']:+.1%} [{lo:+.0%}, {hi:+.0%}] | {r['ild_vs_off']:+.1%} "
            f"| {r['coverage@10_vs_off']:+.1%} | {r['ms_per_user']:.2f} |"
        )


def tuning_grid() -> dict[str, RerankConfig]:
    """Configurations tried on the validation split when tuning the defaults."""
    d0 = RerankConfig()
    grid = {"off": OFF}
    for d in (0.1, 0.2, 0.3, 0.4):
        for c in (0.0, 0.1, 0.2):
            for g in (0.0, 0.05):
                for lt in (0.0, 0.1):
                    grid[f"d={d} c={c} g={g} lt={lt}"] = d0.replace(
                        diversity=d, calibration=c, group_popularity=g, longtail_min_share=lt
                    )
    for h in (0.02, 0.05):
        grid[f"hotness={h}"] = d0.replace(hotness=h)
        grid[f"freshness={h}"] = d0.replace(freshness=h)
    return grid


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=Path, default=DATA / "items.csv")
    ap.add_argument("--interactions", type=Path, default=DATA / "interactions.csv")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--tune",
        action="store_true",
        help="grid on a validation split (each user's second-to-last item) instead",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    items = pd.read_csv(args.items)
    inter = pd.read_csv(args.interactions)
    train, test = leave_last_out(inter)
    vecs = item_vectors(items, args.out / "item_vectors_minilm.safetensors")
    if args.tune:
        train, test = leave_last_out(train)
        bench = Bench(items, train, test, vecs)
        rows = bench.table(tuning_grid())
        ok = {n: r for n, r in rows.items() if r["ndcg@10_vs_off"] >= -0.03 and n != "off"}
        print(f"\nTuning grid on the validation split ({len(bench.test_idx)} users)\n")
        print_table(dict(sorted(rows.items(), key=lambda kv: -kv[1]["ild"])))
        best = max(ok, key=lambda n: ok[n]["ild_vs_off"] + ok[n]["coverage@10_vs_off"])
        print(f"\nbest within 3% NDCG (max ILD gain + coverage gain): {best}")
        return rows

    bench = Bench(items, train, test, vecs)
    default = RerankConfig()
    configs = {"off": OFF, "default": default, "diversity-heavy": HEAVY}
    configs |= {
        f"diversity={d}": default.replace(diversity=d)
        for d in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)
    }
    configs |= {f"calibration={c}": default.replace(calibration=c) for c in (0.0, 0.3, 0.6)}
    configs |= {f"group_popularity={g}": default.replace(group_popularity=g) for g in (0.1, 0.3)}
    configs |= {
        f"longtail_min_share={s}": default.replace(longtail_min_share=s)
        for s in (0.0, 0.2, 0.3, 0.5)
    }
    configs |= {
        "hotness=0.05": default.replace(hotness=0.05),
        "freshness=0.05": default.replace(freshness=0.05),
    }
    rows = bench.table(configs)
    print(
        f"\nRerank quality, MovieLens-small leave-last-out, {len(bench.test_idx)} users, "
        f"EASE top-{N_CANDIDATES} candidates, K={K}, {bench.groups.n_groups_} user groups\n"
    )
    print_table(rows)
    lat = {n: bench.latency(c) for n, c in (("default", default), ("diversity-heavy", HEAVY))}
    print("\nSingle-request rerank latency, 200 candidates -> k=10 (1 process, CPU):")
    for n, v in lat.items():
        print(f"- {n}: p50 {v['p50_ms']:.2f} ms, p95 {v['p95_ms']:.2f} ms")

    args.out.mkdir(parents=True, exist_ok=True)
    portraits = bench.groups.portraits(
        bench.X, bench.ent, bench.ent_names, item_ids=items["title"].tolist()
    )
    print("\nUser groups (recency-weighted MiniLM user vectors, k by silhouette)\n")
    print(portraits_table(portraits))
    plot_groups(
        bench.uvecs,
        bench.groups.labels_,
        portraits,
        args.out / "groups_movielens.png",
        title="MovieLens-small",
    )
    meta = {
        "dataset": str(args.interactions.parent),
        "users": int(len(bench.test_idx)),
        "k": K,
        "candidates": N_CANDIDATES,
        "base": "EASE lambda 500",
        "n_groups": bench.groups.n_groups_,
        "silhouette": bench.groups.silhouette_,
        "user_vectors": "recency-weighted mean of MiniLM item vectors (half-life 20 items)",
        "ild": "1 - mean pairwise cosine of MiniLM item vectors (ild_genre: genre vectors)",
        "calib_kl": "Steck KL(p_u || q~), alpha 0.01, genres",
        "longtail": "items outside the head holding 80% of training interactions",
    }
    (args.out / "rerank_quality.json").write_text(
        json.dumps(
            {
                "meta": meta,
                "rows": rows,
                "latency": lat,
                "groups": [p.to_dict() for p in portraits],
            },
            indent=2,
        )
    )
    _pareto(rows, args.out / "rerank_pareto.png")
    log.info("wrote %s and %s", args.out / "rerank_quality.json", args.out / "rerank_pareto.png")
    return rows


def _pareto(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, metric, label in (
        (axes[0], "ild", "intra-list diversity (MiniLM)"),
        (axes[1], "coverage@10", "catalogue coverage@10"),
    ):
        div = sorted(
            (r for n, r in rows.items() if n.startswith("diversity=")),
            key=lambda r: r["config"]["diversity"],
        )
        ax.plot(
            [r[metric] for r in div],
            [r["ndcg@10"] for r in div],
            "o-",
            color="tab:blue",
            label="default, diversity swept",
        )
        for d, r in zip([r["config"]["diversity"] for r in div], div, strict=True):
            ax.annotate(
                f"{d:g}",
                (r[metric], r["ndcg@10"]),
                fontsize=7,
                textcoords="offset points",
                xytext=(3, 3),
            )
        others = {n: r for n, r in rows.items() if not n.startswith(("diversity=", "grid"))}
        for n, r in others.items():
            big = n in ("off", "default", "diversity-heavy")
            ax.scatter(
                r[metric], r["ndcg@10"], s=70 if big else 20, zorder=3, marker="*" if big else "x"
            )
            ax.annotate(
                n,
                (r[metric], r["ndcg@10"]),
                fontsize=8 if big else 6,
                textcoords="offset points",
                xytext=(4, -8),
            )
        ax.axhline(rows["off"]["ndcg@10"] * 0.97, color="grey", ls="--", lw=0.8, label="off - 3%")
        ax.set_xlabel(label)
        ax.set_ylabel("NDCG@10")
        ax.legend(fontsize=8)
    fig.suptitle("Reranker trade-off on MovieLens-small (leave-last-out, EASE candidates)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
