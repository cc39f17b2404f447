"""Replay benchmark: an A/B experiment run on the demo log's future as live traffic.

The demo log (MovieLens small) is split by time: each user's newest 20 % of
interactions are their *future* (``--global-split``: one cut at the log's 80th
percentile timestamp instead), and a model is built on everything before. Two variants
of that model are put in an experiment through the service's own machinery
(:class:`~recommender.services.online.OnlineServing`: hash assignment, impression log,
feedback): ``no-graph`` (the control: knowledge-graph expansion off) and ``graph`` (the
default blend). For a few rounds each user asks for ``k`` items; the simulated user
clicks a shown item if and only if it is in their future, and the clicks go back as
typed feedback citing the answer's ``request_id`` (so they join the user's live history
before the next round).

Prints per-arm online metrics (CTR with its Wilson interval, hit rate, coverage,
novelty), the experiment's verdict (two-proportion z-test against the control), and
writes benchmarks/results/replay.{md,json,png}.

    nice -n 10 python -m benchmarks.replay --users 400 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from recommender.data import demo_dir, load_tables
from recommender.experiments import Arm, Experiment, start_experiment
from recommender.feedback import open_store
from recommender.online_metrics import experiment_results, plot_metrics
from recommender.refresh import attach_feedback, record_feedback
from recommender.schemas import Tables, validate_tables
from recommender.services.online import OnlineServing
from recommender.serving import LoadedModel, Request, load_model

__all__ = [
    "click_through",
    "demo_tables",
    "demo_vectors",
    "main",
    "pick_users",
    "replay",
    "split_by_time",
]

RESULTS = Path(__file__).resolve().parent / "results"
ARMS = {"no-graph": {"kg_weight": 0.0, "kg_weight_trained": 0.0}, "graph": {}}


def split_by_time(
    tables: Tables, quantile: float = 0.8, *, per_user: bool = True
) -> tuple[Tables, dict[Any, set], int]:
    """Interactions before the cut; each user's items after it; the newest past time.

    ``per_user``: each user's own timeline is cut at its ``quantile`` (every user has
    a past and a future); else one global cut at the log's ``quantile`` timestamp (on
    MovieLens small only a few dozen users have interactions on both sides).
    """
    inter = tables.interactions
    ts = inter["timestamp"]
    if per_user:
        cut_of = ts.groupby(inter["user_id"]).transform(lambda s: s.quantile(quantile))
        later = (ts > cut_of).to_numpy()
    else:
        later = (ts >= np.quantile(ts.to_numpy(), quantile)).to_numpy()
    past = inter[~later]
    future = inter[later].groupby("user_id")["item_id"].agg(set).to_dict()
    return validate_tables(tables.items, past, tables.users), future, int(past["timestamp"].max())


def demo_tables() -> Tables:
    """The bundled demo log (MovieLens small), validated."""
    d = demo_dir()
    return load_tables(d / "items.csv", d / "interactions.csv")


def demo_vectors(tables: Tables) -> tuple[np.ndarray, Any]:
    """The demo model's item vectors when it is in the model store, else encode now."""
    from recommender.encoder import TextEncoder

    encoder = TextEncoder.from_pretrained(None)
    try:
        from recommender.build import DEMO_MODEL
        from recommender.bundle import load_from_store

        bundle, _ = load_from_store(DEMO_MODEL)
        if bundle.items["item_id"].tolist() == tables.items["item_id"].tolist():
            return bundle.item_vectors, encoder
    except Exception:  # noqa: BLE001 - no demo model: encode below
        pass
    from recommender.data import item_texts

    return encoder.encode(item_texts(tables.items), progress=True), encoder


def pick_users(train: Tables, future: dict[Any, set], n: int, seed: int = 0) -> list[Any]:
    """``n`` users (seeded draw) who have both a past in ``train`` and a future."""
    known = set(train.interactions["user_id"].tolist())
    pool = sorted(u for u in future if u in known)
    rng = np.random.default_rng(seed)
    return rng.choice(pool, size=min(n, len(pool)), replace=False).tolist()


def click_through(
    online: OnlineServing,
    store: Any,
    now: list[float],
    users: list[Any],
    future: dict[Any, set],
    *,
    rounds: int,
    k: int,
    start: float,
) -> tuple[int, int]:
    """``rounds`` days of lists for ``users``; a shown item is clicked iff in their future.

    ``now`` is the clock ``online`` reads: round ``r`` runs on day ``r + 1`` after
    ``start``, one user every ten seconds. Clicks go back as typed feedback citing the
    answer's ``request_id``. Returns (requests, clicks).
    """
    n_requests = n_clicks = 0
    for r in range(rounds):
        for j, u in enumerate(tqdm(users, desc=f"round {r + 1}/{rounds}", leave=False)):
            now[0] = start + 86400 * (r + 1) + 10 * j
            out = online.recommend([Request(user_id=u, k=k)])[0]
            n_requests += 1
            clicks = [
                {
                    "user_id": u,
                    "item_id": i["item_id"],
                    "timestamp": int(now[0]) + 1 + n,
                    "type": "click",
                    "request_id": out["request_id"],
                }
                for n, i in enumerate(out["items"])
                if i["item_id"] in future[u]
            ]
            if clicks:
                record_feedback(online.route(u)[0], store, clicks)
                n_clicks += len(clicks)
    return n_requests, n_clicks


def replay(
    *,
    users: int = 400,
    rounds: int = 3,
    k: int = 10,
    quantile: float = 0.8,
    per_user: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Run the experiment; its per-arm table, verdict and timings."""
    from recommender.build import build_bundle

    t0 = time.perf_counter()
    tables = demo_tables()
    train, future, cut = split_by_time(tables, quantile, per_user=per_user)
    vectors, encoder = demo_vectors(tables)
    bundle = build_bundle(train, encoder, item_vectors=vectors, progress=False)
    models: dict[str, LoadedModel] = {}
    for name, overrides in ARMS.items():
        model = load_model(bundle, tag=f"replay:{name}")
        models[model.tag] = model.with_serving(**overrides) if overrides else model
    setup_s = time.perf_counter() - t0

    chosen = pick_users(train, future, users, seed)

    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "replay.db") as store:
        control = models["replay:no-graph"]
        attach_feedback(control, store)
        now = [float(cut)]  # simulated time: lists and clicks after the split
        online = OnlineServing(
            control, store, loader=models.__getitem__, experiment_ttl=3600, clock=lambda: now[0]
        )
        exp = start_experiment(
            store,
            Experiment(
                "replay",
                tuple(Arm(n, f"replay:{n}", 1 / len(ARMS)) for n in ARMS),
            ),
            at=cut,
        )
        t0 = time.perf_counter()
        n_requests, n_clicks = click_through(
            online, store, now, chosen, future, rounds=rounds, k=k, start=cut
        )
        replay_s = time.perf_counter() - t0
        online.close()
        table, verdict = experiment_results(store, exp, n_items=len(tables.items))
    return {
        "users": len(chosen),
        "rounds": rounds,
        "k": k,
        "split": "each user's last 20%" if per_user else "global",
        "cut": pd.Timestamp(cut, unit="s").strftime("%Y-%m-%d"),
        "train_interactions": len(train.interactions),
        "requests": n_requests,
        "clicks": n_clicks,
        "setup_s": round(setup_s, 1),
        "replay_s": round(replay_s, 1),
        "ms_per_request": round(1000 * replay_s / max(n_requests, 1), 1),
        "table": table,
        "verdict": verdict,
    }


def _markdown(out: dict[str, Any]) -> str:
    cols = [
        "arm",
        "impressions",
        "clicks",
        "ctr",
        "ctr_low",
        "ctr_high",
        "hit_rate",
        "coverage",
        "novelty",
        "ctr_lift",
        "p_value",
    ]
    t = out["table"][cols]
    lines = [
        "# Replay A/B benchmark",
        "",
        f"MovieLens small split by time ({out['split']}; newest past event "
        f"{out['cut']}): the model is built on {out['train_interactions']:,} earlier "
        f"interactions; {out['users']} "
        f"users x {out['rounds']} rounds of k={out['k']}, a shown item clicked iff it is "
        "in the user's future.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for row in t.itertuples(index=False):
        cells = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Verdict: {out['verdict']['message']}",
        "",
        f"{out['requests']} requests in {out['replay_s']} s ({out['ms_per_request']} ms each, "
        f"feedback and impression logging included); setup {out['setup_s']} s.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--users", type=int, default=400)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--global-split",
        action="store_true",
        help="one cut for the whole log instead of each user's own timeline",
    )
    args = p.parse_args()
    out = replay(
        users=args.users,
        rounds=args.rounds,
        k=args.k,
        seed=args.seed,
        per_user=not args.global_split,
    )
    md = _markdown(out)
    print(md)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "replay.md").write_text(md)
    data = {**out, "table": out["table"].to_dict(orient="records")}
    (RESULTS / "replay.json").write_text(json.dumps(data, indent=2, default=str))
    plot_metrics(out["table"], RESULTS / "replay.png", title="Replay A/B: online metrics per arm")
    print(f"wrote {RESULTS / 'replay.md'}, replay.json, replay.png")


if __name__ == "__main__":
    main()
