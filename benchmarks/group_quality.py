"""Do the user groups say something? Distinctiveness and stability of the demo's groups.

    python -m benchmarks.group_quality [--seeds 0 1 2 3 4] [--out DIR]

For each way of grouping the demo's users (MovieLens-small), fitted once per seed with
:class:`recommender.groups.UserGroups`:

- **text vectors, silhouette**: the zero-shot user vectors (recency-weighted item text
  vectors, as the bundle stores them), k by silhouette -- what builds did before;
- **taste profiles**: entity log-lifts of each history (:mod:`recommender.group_taste`),
  k the most distinctive stable count -- what :func:`recommender.build.fit_user_groups`
  does now.

Reported: the number of groups per seed, the smallest and the median top entity lift of
the portraits (seed 0), and the adjusted Rand index between seed 0's labels and every
other seed's (the smallest). Goal: every portrait's top lift >= 1.5, ARI >= 0.8.
Writes ``group_quality.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import adjusted_rand_score

from benchmarks.quality import RESULTS, dataset_tables, item_vectors
from recommender.build import user_item_matrix, user_vectors
from recommender.group_taste import top_lifts
from recommender.groups import UserGroups
from recommender.history import Histories
from recommender.item_signals import item_entity_matrix

log = logging.getLogger("benchmarks.group_quality")


def evaluate(name: str, fits: list[UserGroups], counts: np.ndarray) -> dict[str, Any]:
    labels = [g.labels_ for g in fits]
    lifts = top_lifts(labels[0], counts, fits[0].n_groups_)
    return {
        "method": name,
        "n_groups": [int(g.n_groups_) for g in fits],
        "min_top_lift": float(lifts.min()),
        "median_top_lift": float(np.median(lifts)),
        "ari_min": float(min(adjusted_rand_score(labels[0], lab) for lab in labels[1:])),
        "sizes": sorted(np.bincount(labels[0]).tolist()),
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| method | groups per seed | min top lift | median top lift | ARI across seeds (min) "
        "| group sizes (seed 0) |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['n_groups']} | {r['min_top_lift']:.2f} "
            f"| {r['median_top_lift']:.2f} | {r['ari_min']:.3f} | {r['sizes']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    from recommender.config import ServingConfig

    p = argparse.ArgumentParser(prog="python -m benchmarks.group_quality", description=__doc__)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    tables = dataset_tables(None, None)
    vecs = item_vectors(tables.items, None, args.out)
    index = {iid: i for i, iid in enumerate(tables.items["item_id"].tolist())}
    hist = Histories(tables.interactions, index)
    users = hist.user_ids()
    uv = user_vectors(vecs, hist, users, ServingConfig())
    x = user_item_matrix(hist, users, len(tables.items))
    ent, _ = item_entity_matrix(tables.items)
    counts = np.asarray(((x > 0).astype(np.float64) @ ent).todense())
    rows = [
        evaluate(
            "text vectors, k by silhouette",
            [UserGroups(random_state=s).fit(uv) for s in args.seeds],
            counts,
        ),
        evaluate(
            "taste profiles, k most distinctive stable (default)",
            [UserGroups(random_state=s).fit(uv, entity_counts=counts) for s in args.seeds],
            counts,
        ),
    ]
    table = markdown(rows)
    print(table)  # noqa: T201 - a benchmark script prints its table
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "group_quality.md").write_text(table + "\n")
    (args.out / "group_quality.json").write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
