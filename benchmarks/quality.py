"""Quality benchmark: recbento against standard baselines, in one run, on one split.

Run ``python -m benchmarks.quality`` (the bundled MovieLens-small demo) or point it at
any dataset in recbento's input contract::

    python -m benchmarks.quality --items items.csv --interactions interactions.csv \
        [--users users.csv] [--out benchmarks/results]

Protocol: each user's last interaction is the test item, by timestamp, a user's equal
timestamps in an order drawn from ``--seed`` (:func:`recommender.eval.break_ties`: the
one order every system reads; ordering ties by ``item_id`` would tell a sequential model
which item is last); every system ranks all items with the user's training items excluded; HR@10,
NDCG@10, coverage@10. Cold start: a seeded 10% of items is removed from training
entirely and HR@10 is measured on the test cases whose target is one of them.

Every system is a *variant*: a function ``(Split) -> (topk, info)`` registered in
:data:`VARIANTS`. recbento's variants answer through the product's own request path: a
bundle is built from the training split (graph, groups, reranker, and the trained tower
where the variant has one), loaded with :func:`recommender.serving.load_model`, and
:func:`recommender.serving.recommend_batch` answers one request per test user, with the
knowledge graph and the reranker on or off per request. The tower is trained once per
split and shared by the variants that use it. Writes ``quality.md``, ``quality.json``
and ``quality.png`` to ``--out``."""

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

from benchmarks.quality_data import (
    LOGS,
    Split,
    dataset_tables,
    item_vectors,
    make_split,
    robustness_subsets,
)
from benchmarks.quality_report import markdown, plot
from benchmarks.quality_variants import VARIANTS, K, through_pipeline
from recommender.encoder import TextEncoder
from recommender.eval import (
    break_ties,
    cold_item_split,
    evaluate_rankings,
    hit_rate_at_k,
    leave_last_out,
)
from recommender.train import TrainConfig

__all__ = [
    "K",
    "RESULTS",
    "Split",
    "VARIANTS",
    "dataset_tables",
    "item_vectors",
    "make_split",
    "through_pipeline",
    "run",
    "main",
]

log = logging.getLogger("benchmarks.quality")

RESULTS = Path(__file__).resolve().parent / "results"


def run(
    items: pd.DataFrame,
    interactions: pd.DataFrame,
    *,
    vectors: np.ndarray,
    train_config: TrainConfig,
    cold_frac: float = 0.1,
    seed: int = 0,
    variants: list[str] | None = None,
    encoder: TextEncoder | None = None,
    log_copy: str = "as_is",
    reuse: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Evaluate every selected variant on the main split and on the cold-item split.

    ``encoder`` is the one that made ``vectors``; recbento's bundles record it (the
    default MiniLM when omitted). ``reuse`` maps variant names to their rows in an
    earlier report of the same split (see ``--reuse``); those are copied, not rerun.
    """
    reuse = reuse or {}
    names = [n for n in (variants or list(VARIANTS)) if n in VARIANTS and n not in reuse]
    interactions = LOGS[log_copy](break_ties(interactions, seed=seed), seed)
    interactions = break_ties(interactions, seed=seed)  # one order, shared by every system
    train, test = leave_last_out(interactions)
    main_split = make_split(items, train, test, vectors, train_config)
    if encoder is not None:
        main_split.cache["encoder"] = encoder
    subsets = robustness_subsets(main_split)
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        fn = VARIANTS[name]
        if fn is None:
            results[name] = {"available": False}
            continue
        t0 = time.perf_counter()
        topk, info = fn(main_split)
        metrics = evaluate_rankings(topk, main_split.target, n_items=main_split.n_items, k=K)
        results[name] = {**metrics, "seconds": time.perf_counter() - t0, "info": info}
        for sub, mask in subsets.items():
            if mask.any():
                m = evaluate_rankings(
                    topk[mask], main_split.target[mask], n_items=main_split.n_items, k=K
                )
                results[name][f"{sub}_ndcg@{K}"] = m[f"ndcg@{K}"]
                results[name][f"{sub}_hr@{K}"] = m[f"hr@{K}"]
        log.info("%-32s %s", name, {k: round(v, 4) for k, v in metrics.items()})
    cold = {"frac": cold_frac, "seed": seed}
    if cold_frac > 0:
        ctrain, ctest, cold_ids = cold_item_split(interactions, items, frac=cold_frac, seed=seed)
        csplit = make_split(items, ctrain, ctest, vectors, train_config)
        csplit.cache["encoder"] = main_split.cache.get("encoder")
        mask = csplit.cold_mask
        cold.update(n_cold_items=int(len(cold_ids)), n_cases=int(mask.sum()))
        for name in names:
            fn = VARIANTS[name]
            if fn is None:
                continue
            if getattr(fn, "id_only", False):
                results[name][f"cold_hr@{K}"], results[name]["cold_hits"] = 0.0, 0
                continue
            topk, _ = fn(csplit)
            hr = hit_rate_at_k(topk[mask], csplit.target[mask], K) if mask.any() else 0.0
            results[name][f"cold_hr@{K}"] = hr
            results[name]["cold_hits"] = int(round(hr * mask.sum()))
            log.info("%-32s cold HR@%d %.4f", name, K, hr)
    for name, row in reuse.items():
        results[name] = {**row, "info": {**(row.get("info") or {}), "reused": True}}
    results = {n: results[n] for n in [*VARIANTS, *results] if n in results}  # table order
    return {
        "protocol": (
            "leave-last-out (timestamp; a user's equal timestamps in a seeded shuffle); "
            "full ranking, seen excluded"
        ),
        "k": K,
        "n_users": int(len(main_split.target)),
        "n_items": int(main_split.n_items),
        "n_interactions": int(len(interactions)),
        "log": log_copy,
        "cold": cold,
        "subsets": {k: int(v.sum()) for k, v in subsets.items()},
        "results": results,
    }


def _reused_rows(
    path: Path, names: list[str], seed: int, cold_frac: float
) -> dict[str, dict[str, Any]]:
    """Rows of ``names`` from the report at ``path``, which must be of the same split."""
    if not names:
        return {}
    earlier = json.loads(path.read_text())
    if earlier["cold"].get("seed") != seed or earlier["cold"].get("frac") != cold_frac:
        raise SystemExit(f"--reuse: {path} was run with another seed or cold fraction")
    missing = [n for n in names if n not in earlier["results"]]
    if missing:
        raise SystemExit(f"--reuse: {missing} not in {path}")
    return {n: earlier["results"][n] for n in names}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point; see the module docstring."""
    from recommender.data import demo_dir

    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__)
    p.add_argument("--items", type=Path, default=None)
    p.add_argument("--interactions", type=Path, default=None)
    p.add_argument("--users", type=Path, default=None)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--encoder", default=None, help="encoder path/name (default MiniLM)")
    p.add_argument("--cold-frac", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", nargs="*", default=None, help="subset of variant names")
    p.add_argument("--train-config", default="{}", help="JSON overrides of TrainConfig")
    p.add_argument(
        "--log",
        choices=list(LOGS),
        default="as_is",
        help="robustness copies of the log: users cut to their latest rows, order shuffled",
    )
    p.add_argument(
        "--reuse",
        nargs="*",
        default=[],
        help="variants whose rows are copied from the earlier report in --out for the same "
        "log copy instead of rerun (systems this change cannot affect, on a busy machine)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(2)

    tables = dataset_tables(args.items, args.interactions, args.users)
    vecs = item_vectors(tables.items, args.encoder, args.out)
    encoder = TextEncoder.from_pretrained(args.encoder)
    cfg = TrainConfig.from_config({**TrainConfig().get_config(), **json.loads(args.train_config)})
    stem = "quality" if args.log == "as_is" else f"quality_{args.log}"
    reuse = _reused_rows(args.out / f"{stem}.json", args.reuse, args.seed, args.cold_frac)
    t0 = time.perf_counter()
    report = run(
        tables.items,
        tables.interactions,
        vectors=vecs,
        train_config=cfg,
        cold_frac=args.cold_frac,
        seed=args.seed,
        variants=args.variants,
        encoder=encoder,
        log_copy=args.log,
        reuse=reuse,
    )
    report["dataset"] = str(args.items or demo_dir() / "items.csv")
    report["train_config"] = cfg.get_config()
    report["seconds"] = time.perf_counter() - t0
    table = markdown(report)
    print(table)  # noqa: T201 - a benchmark script prints its table
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.md").write_text(table + "\n")
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=float))
    plot(report, args.out / f"{stem}.png")
    return report


if __name__ == "__main__":
    main()
