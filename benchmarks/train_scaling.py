"""How training time grows with the data: MovieLens-small replicated with new ids.

    python -m benchmarks.train_scaling [--replicas 1 2 5 10] [--epochs 2] [--out DIR]

Replica ``r`` holds ``r`` copies of the demo log, each copy with its own user ids and
its own item ids (an item's copies share its text vector), so users, items and
interactions all grow ``r`` times: a catalogue ten times larger at ``r = 10``. Each size
trains :class:`recommender.train.SequenceRecommender` with the default
:class:`~recommender.train.TrainConfig` for a fixed number of epochs (no early stop, no
time cap), so the seconds compare like with like. Prints a table (seconds per epoch,
validation, co-occurrence fit, total, and microseconds per interaction) and writes
``train_scaling.{md,json,png}``.
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

from benchmarks.quality import RESULTS, dataset_tables, item_vectors
from recommender.train import SequenceRecommender, TrainConfig, sequences_from_interactions

log = logging.getLogger("benchmarks.train_scaling")


def replicate(
    items: pd.DataFrame, interactions: pd.DataFrame, vectors: np.ndarray, r: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """``r`` copies of the log with fresh user and item ids: (item vectors, sequences)."""
    _, seqs = sequences_from_interactions(interactions, items["item_id"].to_numpy())
    n = len(items)
    all_seqs = [s + c * n for c in range(r) for s in seqs]
    return np.tile(vectors, (r, 1)), all_seqs


def measure(vectors: np.ndarray, seqs: list[np.ndarray], epochs: int) -> dict[str, Any]:
    """Train for ``epochs`` epochs with the default config; where the seconds went."""
    cfg = TrainConfig(max_epochs=epochs, patience=epochs + 1, max_seconds=float("inf"))
    t0 = time.perf_counter()
    model = SequenceRecommender(cfg).fit(seqs, vectors, progress=True)
    total = time.perf_counter() - t0
    s = model.summary_
    return {
        "n_items": int(len(vectors)),
        "n_users": len(seqs),
        "n_interactions": int(sum(len(x) for x in seqs)),
        "softmax": s["softmax"],
        "epoch_seconds": float(np.mean([e["seconds"] for e in s["epochs"]])),
        "cooc_seconds": s["hybrid"].get("seconds", 0.0),
        "seconds": total,
    }


def markdown(rows: list[dict[str, Any]], epochs: int) -> str:
    lines = [
        f"| replicas | items | users | interactions | softmax | s / epoch | co-occurrence s "
        f"| total s ({epochs} epochs) | us / interaction |",
        "| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['replicas']} | {r['n_items']:,} | {r['n_users']:,} | {r['n_interactions']:,} "
            f"| {r['softmax']} | {r['epoch_seconds']:.1f} | {r['cooc_seconds']:.1f} "
            f"| {r['seconds']:.1f} | {1e6 * r['seconds'] / r['n_interactions']:.0f} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.array([r["n_interactions"] for r in rows], dtype=float)
    y = np.array([r["seconds"] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.loglog(x, y, "o-", label="training (fixed epochs) + co-occurrence")
    ax.loglog(x, [r["epoch_seconds"] for r in rows], "s--", label="one epoch")
    ax.loglog(x, y[0] * x / x[0], ":", color="grey", label="linear in interactions")
    for r in rows:
        ax.annotate(f"{r['n_items']:,} items", (r["n_interactions"], r["seconds"]), fontsize=7)
    ax.set_xlabel("interactions")
    ax.set_ylabel("seconds")
    ax.set_title("training time, MovieLens-small replicated with new ids")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_scaling", description=__doc__)
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 5, 10])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(2)
    tables = dataset_tables(None, None)
    vecs = item_vectors(tables.items, None, args.out)
    rows = []
    for r in args.replicas:
        v, seqs = replicate(tables.items, tables.interactions, vecs, r)
        rows.append({"replicas": r, **measure(v, seqs, args.epochs)})
        log.info("%s", rows[-1])
    table = markdown(rows, args.epochs)
    print(table)  # noqa: T201 - a benchmark script prints its table
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "train_scaling.md").write_text(table + "\n")
    (args.out / "train_scaling.json").write_text(json.dumps(rows, indent=2))
    plot(rows, args.out / "train_scaling.png")
    return rows


if __name__ == "__main__":
    main()
