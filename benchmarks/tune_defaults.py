"""Tune the serving defaults (``kg_weight``, reranker on/off) on a validation split.

    python -m benchmarks.tune_defaults [--items I --interactions T] [--weights 0 0.1 ...]

The test item of :mod:`benchmarks.quality` (each user's last interaction) is held out
entirely; the validation target is each user's penultimate interaction, and the model
(zero-shot text, and the trained tower) is built from what came before it. Every
setting answers through the product's request path (:func:`recommender.serving.recommend_batch`).
Writes ``tune_defaults.{md,json}`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.quality import (
    RESULTS,
    K,
    dataset_tables,
    item_vectors,
    make_split,
    through_pipeline,
)
from recommender.eval import evaluate_rankings, leave_last_out
from recommender.train import TrainConfig

log = logging.getLogger("benchmarks.tune_defaults")


def sweep(split: Any, weights: list[float], trained: bool) -> list[dict[str, Any]]:
    """NDCG/HR/coverage for every (kg_weight, rerank) pair, one scorer."""
    rows = []
    for w in weights:
        for rerank in (False, True):
            t0 = time.perf_counter()
            topk, _ = through_pipeline(split, trained=trained, kg=w > 0, rerank=rerank, kg_weight=w)
            m = evaluate_rankings(topk, split.target, n_items=split.n_items, k=K)
            rows.append(
                {
                    "scorer": "trained" if trained else "zero-shot",
                    "kg_weight": w,
                    "rerank": rerank,
                    **{k: v for k, v in m.items() if k != "n"},
                    "seconds": time.perf_counter() - t0,
                }
            )
            log.info("%s", rows[-1])
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"| scorer | kg_weight | rerank | NDCG@{K} | HR@{K} | coverage@{K} |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['scorer']} | {r['kg_weight']:g} | {'on' if r['rerank'] else 'off'} | "
            f"{r[f'ndcg@{K}']:.4f} | {r[f'hr@{K}']:.4f} | {r[f'coverage@{K}']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    from recommender.encoder import TextEncoder

    p = argparse.ArgumentParser(prog="python -m benchmarks.tune_defaults", description=__doc__)
    p.add_argument("--items", type=Path, default=None)
    p.add_argument("--interactions", type=Path, default=None)
    p.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.1, 0.25, 0.5, 1.0])
    p.add_argument("--no-train", action="store_true", help="zero-shot scorer only")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(2)
    tables = dataset_tables(args.items, args.interactions)
    vecs = item_vectors(tables.items, None, args.out)
    train, _test = leave_last_out(tables.interactions)  # the test item is never seen here
    fit, val = leave_last_out(train)
    split = make_split(tables.items, fit, val, vecs, TrainConfig())
    split.cache["encoder"] = TextEncoder.from_pretrained(None)
    rows = sweep(split, args.weights, trained=False)
    if not args.no_train:
        rows += sweep(split, args.weights, trained=True)
    table = markdown(rows)
    print(table)  # noqa: T201 - a benchmark script prints its table
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tune_defaults.md").write_text(
        "Validation split: each user's penultimate interaction (the test item held out).\n\n"
        + table
        + "\n"
    )
    (args.out / "tune_defaults.json").write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
