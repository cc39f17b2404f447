"""Knowledge-graph benchmark: does KG expansion help ranking, are explanations there, how fast.

Run ``nice -n 10 python -m benchmarks.kg_quality`` (the bundled MovieLens-small demo) or::

    python -m benchmarks.kg_quality --items items.csv --interactions interactions.csv

Protocol (as ``benchmarks/quality.py``): each user's last interaction (timestamp, ties
by ``item_id``) is the test item; the user's training items are excluded; every item is
ranked; HR@10 and NDCG@10. Systems, all in one run on one split:

* ``vector``: MiniLM item vectors (title + attributes), user vector = recency-weighted
  mean of the history vectors (half-life 30 days), cosine.
* ``vector + kg w``: ``cosine + w * kg / max(kg)`` with the two-hop KG scores of the
  recency-weighted history (:func:`knowledge_graph.blend`), for a few ``w``.
* the ``cosine`` and personalised-PageRank walks and ``kg only`` rankings, to justify
  the choice of walk.

Explanation coverage: share of the top-10 items with at least one reason, for users
with 5+ history items. Latency: expand (n=200) + explain (k=10) per request, p50/p99.
Writes ``kg_quality.json``, ``kg_quality.md`` and ``kg_quality.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from knowledge_graph import GraphConfig, KnowledgeGraph, blend, graph_stats
from recommender.eval import evaluate_rankings, leave_last_out, topk_from_scores
from recommender.history import History, history_vectors, recency_weights

__all__ = ["run", "main", "markdown"]

log = logging.getLogger("benchmarks.kg_quality")

RESULTS = Path(__file__).resolve().parent / "results"
K = 10
HALF_LIFE = 30.0
N_KG = 200


def _histories(train: pd.DataFrame, test: pd.DataFrame, items: pd.DataFrame) -> list[History]:
    index = pd.Series(np.arange(len(items)), index=pd.Index(items["item_id"]))
    train = train.assign(row=index[train["item_id"]].to_numpy())
    by_user = {
        u: History(g["row"].to_numpy(), g["timestamp"].to_numpy(), np.ones(len(g)))
        for u, g in train.groupby("user_id", sort=False)
    }
    return [by_user.get(u, History.empty()) for u in test["user_id"].tolist()]


def _kg_scores(
    kg: KnowledgeGraph, hists: list[History], method: str = "two_hop"
) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for h in hists:
        w = recency_weights(h, half_life_days=HALF_LIFE)
        out.append(kg.expand(h.items, w, n=N_KG, method=method))  # type: ignore[arg-type]
    return out


def _rank(scores: np.ndarray, hists: list[History]) -> np.ndarray:
    return topk_from_scores(scores, K, exclude=[np.unique(h.items) for h in hists])


def _blended(vec: np.ndarray, kgs: list[tuple[np.ndarray, np.ndarray]], w: float) -> np.ndarray:
    return np.stack([blend(vec[u], i, s, w) for u, (i, s) in enumerate(kgs)])


def _kg_only(n_items: int, kgs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    out = np.zeros((len(kgs), n_items))
    for u, (i, s) in enumerate(kgs):
        out[u, i] = s
    return out


def _coverage(
    kg: KnowledgeGraph, topk: np.ndarray, hists: list[History], min_hist: int = 5
) -> dict[str, float]:
    n_items = n_with = n_reasons = 0
    for u, h in enumerate(hists):
        if len(np.unique(h.items)) < min_hist:
            continue
        w = recency_weights(h, half_life_days=HALF_LIFE)
        reasons = kg.explain_batch(topk[u], h.items, history_weights=w)
        history = set(h.items.tolist())
        for rs in reasons:
            n_items += 1
            n_with += bool(rs)
            n_reasons += len(rs)
            assert all(kg.item_index(r.from_item) in history for r in rs)
    return {
        "coverage": n_with / max(n_items, 1),
        "mean_reasons": n_reasons / max(n_items, 1),
        "n_items": n_items,
    }


def _latency(
    kg: KnowledgeGraph, hists: list[History], topk: np.ndarray, cap: int | None
) -> dict[str, float]:
    exp_ms, expl_ms, tot_ms = [], [], []
    for u, h in enumerate(hists):
        h = h.last(cap) if cap else h
        t0 = time.perf_counter()
        w = recency_weights(h, half_life_days=HALF_LIFE)
        kg.expand(h.items, w, n=N_KG)
        t1 = time.perf_counter()
        kg.explain_batch(topk[u], h.items, history_weights=w)
        t2 = time.perf_counter()
        exp_ms.append(1e3 * (t1 - t0))
        expl_ms.append(1e3 * (t2 - t1))
        tot_ms.append(1e3 * (t2 - t0))
    q = lambda a, p: float(np.percentile(a, p))  # noqa: E731
    return {
        "history_cap": cap,
        "expand_p50_ms": q(exp_ms, 50),
        "expand_p99_ms": q(exp_ms, 99),
        "explain_p50_ms": q(expl_ms, 50),
        "explain_p99_ms": q(expl_ms, 99),
        "total_p50_ms": q(tot_ms, 50),
        "total_p99_ms": q(tot_ms, 99),
    }


def _networkx_ppr_ms(kg: KnowledgeGraph, hists: list[History], n: int = 5) -> float:
    """Per-request time of ``networkx.pagerank`` with a personalisation (the rejected way)."""
    import networkx as nx

    times = []
    for h in hists[:n]:
        pers = {kg.item_nodes[i]: 1.0 for i in np.unique(h.items)}
        t0 = time.perf_counter()
        nx.pagerank(kg.G, alpha=0.85, personalization=pers, weight="weight", tol=1e-6)
        times.append(1e3 * (time.perf_counter() - t0))
    return float(np.median(times))


def run(
    items: pd.DataFrame,
    interactions: pd.DataFrame,
    vectors: np.ndarray,
    *,
    weights: tuple[float, ...] = (0.1, 0.2, 0.4, 1.0),
    config: GraphConfig | None = None,
) -> dict[str, Any]:
    """Every system on one leave-last-out split; see the module docstring."""
    t0 = time.perf_counter()
    kg = KnowledgeGraph.build(items, config=config)
    build_s = time.perf_counter() - t0
    train, test = leave_last_out(interactions)
    test = test.sort_values("user_id").reset_index(drop=True)
    hists = _histories(train, test, items)
    index = pd.Series(np.arange(len(items)), index=pd.Index(items["item_id"]))
    target = index[test["item_id"]].to_numpy()
    vec = history_vectors(vectors, hists, half_life_days=HALF_LIFE) @ vectors.T
    walks: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    walk_s: dict[str, float] = {}
    for method in ("two_hop", "cosine", "ppr"):
        t1 = time.perf_counter()
        walks[method] = _kg_scores(kg, hists, method)
        walk_s[method] = time.perf_counter() - t1
    kgs = walks["two_hop"]
    systems: dict[str, dict[str, Any]] = {}
    topks: dict[str, np.ndarray] = {}

    def record(name: str, scores: np.ndarray, **info: Any) -> None:
        topks[name] = _rank(scores, hists)
        metrics = evaluate_rankings(topks[name], target, n_items=len(items), k=K)
        systems[name] = {**metrics, **info}
        log.info("%-24s %s", name, {k: round(v, 4) for k, v in metrics.items()})

    record("vector", vec, kg_weight=0.0)
    for w in weights:
        record(f"vector + kg {w:g}", _blended(vec, kgs, w), kg_weight=w)
    best_w = max(weights, key=lambda w: systems[f"vector + kg {w:g}"][f"ndcg@{K}"])
    for method in ("cosine", "ppr"):
        record(f"vector + kg-{method} {best_w:g}", _blended(vec, walks[method], best_w))
    for method, sc in walks.items():
        record(f"kg only ({method})", _kg_only(len(items), sc))
    coverage = {
        name: _coverage(kg, topks[name], hists) for name in ("vector", f"vector + kg {best_w:g}")
    }
    latency = [_latency(kg, hists, topks["vector"], cap) for cap in (None, 50)]
    tq = time.perf_counter()
    for _ in range(200):
        kg.match_query("something like Heat but funnier with pixar")
    match_ms = 1e3 * (time.perf_counter() - tq) / 200
    stats = graph_stats(kg.G)
    return {
        "dataset": {"n_items": len(items), "n_test_users": len(test)},
        "graph": {
            "nodes_by_kind": stats["nodes_by_kind"],
            "n_edges": stats["n_edges"],
            "build_s": build_s,
            "config": kg.config.get_config(),
        },
        "systems": systems,
        "best_weight": best_w,
        "coverage": coverage,
        "latency": latency,
        "query_match_ms": match_ms,
        "expand_all_users_s": walk_s,
        "networkx_pagerank_ms_per_request": _networkx_ppr_ms(kg, hists),
        "seconds": time.perf_counter() - t0,
        "_kg": kg,
    }


def markdown(report: dict[str, Any]) -> str:
    """The tables printed by :func:`main`."""
    lines = [f"| system | HR@{K} | NDCG@{K} | coverage@{K} |", "|---|---:|---:|---:|"]
    for name, m in report["systems"].items():
        lines.append(
            f"| {name} | {m[f'hr@{K}']:.4f} | {m[f'ndcg@{K}']:.4f} | {m[f'coverage@{K}']:.4f} |"
        )
    lines += ["", "| top-10 of | explanation coverage (5+ history) | reasons / item |"]
    lines.append("|---|---:|---:|")
    for name, c in report["coverage"].items():
        lines.append(f"| {name} | {100 * c['coverage']:.1f}% | {c['mean_reasons']:.2f} |")
    lines += ["", "| history | expand p50 / p99 ms | explain p50 / p99 ms | total p50 / p99 ms |"]
    lines.append("|---|---:|---:|---:|")
    for lat in report["latency"]:
        cap = "full" if lat["history_cap"] is None else f"last {lat['history_cap']}"
        lines.append(
            f"| {cap} | {lat['expand_p50_ms']:.2f} / {lat['expand_p99_ms']:.2f} | "
            f"{lat['explain_p50_ms']:.2f} / {lat['explain_p99_ms']:.2f} | "
            f"{lat['total_p50_ms']:.2f} / {lat['total_p99_ms']:.2f} |"
        )
    n = report["dataset"]["n_test_users"]
    lines += [
        "",
        f"Walk cost for {n} users: "
        + ", ".join(f"{m} {s:.2f}s" for m, s in report["expand_all_users_s"].items())
        + "; networkx.pagerank "
        f"{report['networkx_pagerank_ms_per_request']:.0f} ms per request. Query match "
        f"{report['query_match_ms']:.3f} ms. Graph built in {report['graph']['build_s']:.2f}s.",
    ]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """HR/NDCG against the KG weight, and the latency split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sys_ = report["systems"]
    ws = [0.0] + [m["kg_weight"] for n, m in sys_.items() if n.startswith("vector + kg ")]
    names = ["vector"] + [n for n in sys_ if n.startswith("vector + kg ")]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for metric in (f"hr@{K}", f"ndcg@{K}"):
        a.plot(ws, [sys_[n][metric] for n in names], "o-", label=metric)
    a.set_xlabel("KG weight w (score = cosine + w * kg / max kg)")
    a.set_title("MovieLens-small, leave-last-out, full ranking")
    a.legend()
    lat = report["latency"]
    labels = ["full" if x["history_cap"] is None else f"last {x['history_cap']}" for x in lat]
    x = np.arange(len(lat))
    for j, part in enumerate(("expand", "explain")):
        b.bar(x + 0.35 * j, [v[f"{part}_p50_ms"] for v in lat], 0.35, label=f"{part} p50")
        b.scatter(
            x + 0.35 * j,
            [v[f"{part}_p99_ms"] for v in lat],
            marker="_",
            s=300,
            color="k",
            label="p99" if j == 0 else None,
        )
    b.set_xticks(x + 0.175, labels)
    b.set_ylabel("ms per request")
    b.set_title("KG latency per request (k=10, n=200)")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; see the module docstring."""
    from benchmarks.quality import dataset_tables, item_vectors
    from recommender.data import demo_dir

    p = argparse.ArgumentParser(prog="python -m benchmarks.kg_quality", description=__doc__)
    p.add_argument("--items", type=Path, default=None)
    p.add_argument("--interactions", type=Path, default=None)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--encoder", default=None, help="encoder path/name (default MiniLM)")
    p.add_argument("--weights", type=float, nargs="*", default=[0.1, 0.2, 0.4, 1.0])
    p.add_argument("--graph-config", default="{}", help="JSON GraphConfig overrides")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(2)
    tables = dataset_tables(args.items, args.interactions)
    vecs = item_vectors(tables.items, args.encoder, args.out)  # cached as safetensors
    cfg = GraphConfig.from_config(json.loads(args.graph_config))
    report = run(tables.items, tables.interactions, vecs, weights=tuple(args.weights), config=cfg)
    kg = report.pop("_kg")
    report["dataset"]["items"] = str(args.items or demo_dir() / "items.csv")
    table = markdown(report)
    print(table)  # noqa: T201 - a benchmark script prints its table
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kg_quality.json").write_text(json.dumps(report, indent=2, default=str))
    (args.out / "kg_quality.md").write_text(table + "\n")
    plot(report, args.out / "kg_quality.png")
    try:
        from knowledge_graph import plot_ego

        plot_ego(
            kg.G,
            kg.item_nodes[kg.item_index(6)],
            args.out / "kg_ego_heat.png",
            radius=2,
            max_nodes=40,
        )
    except Exception as exc:  # noqa: BLE001 - the picture is a bonus
        log.warning("ego-graph picture skipped: %s", exc)
    return report


if __name__ == "__main__":
    main()
