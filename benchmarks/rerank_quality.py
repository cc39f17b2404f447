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
import json
import logging
from pathlib import Path

import pandas as pd

from benchmarks.rerank_bench import Bench
from benchmarks.rerank_data import (
    N_CANDIDATES,
    candidates,
    item_vectors,
    recency_user_vectors,
)
from benchmarks.rerank_metrics import COLS, K, calibration_kl, evaluate, ild
from benchmarks.rerank_report import pareto_plot, print_table
from recommender.eval import leave_last_out
from recommender.groups import plot_groups, portraits_table
from recommender.rerank import RerankConfig

__all__ = [
    "COLS",
    "HEAVY",
    "K",
    "N_CANDIDATES",
    "OFF",
    "Bench",
    "calibration_kl",
    "candidates",
    "evaluate",
    "ild",
    "item_vectors",
    "main",
    "print_table",
    "recency_user_vectors",
    "tuning_grid",
]

log = logging.getLogger("benchmarks.rerank_quality")

DATA = Path("/work/shared/data/movielens-small")
RESULTS = Path(__file__).resolve().parent / "results"

#: Relevance only: no group/global popularity, no MMR, no calibration, no long-tail floor.
OFF = RerankConfig.relevance_only()
#: Diversity-heavy: strong MMR, stronger calibration and a 30% long-tail floor.
HEAVY = RerankConfig().replace(diversity=0.6, calibration=0.3, longtail_min_share=0.3)


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
    pareto_plot(rows, args.out / "rerank_pareto.png")
    log.info("wrote %s and %s", args.out / "rerank_quality.json", args.out / "rerank_pareto.png")
    return rows


if __name__ == "__main__":
    main()
