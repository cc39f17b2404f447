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
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from benchmarks.baselines import BASELINES, interaction_matrix, score_topk
from benchmarks.seq_baselines import SEQ_BASELINES, fit_and_rank
from recommender.build import build_bundle
from recommender.encoder import TextEncoder
from recommender.eval import (
    break_ties,
    cold_item_split,
    evaluate_rankings,
    hit_rate_at_k,
    leave_last_out,
    shuffle_within_users,
)
from recommender.schemas import Tables
from recommender.serving import LoadedModel, Request, load_model, recommend_batch
from recommender.train import SequenceRecommender, TrainConfig, sequences_from_interactions

__all__ = [
    "Split",
    "VARIANTS",
    "make_split",
    "item_vectors",
    "through_pipeline",
    "run",
    "main",
]

log = logging.getLogger("benchmarks.quality")

RESULTS = Path(__file__).resolve().parent / "results"
K = 10


@dataclass
class Split:
    """One train/test split, in item-index space, shared by every variant.

    ``histories[j]`` is the chronological training history (item indices) of test user
    ``j``; ``X`` is the binary training matrix whose row ``rows[j]`` belongs to that user.
    """

    items: pd.DataFrame
    item_vectors: np.ndarray
    X: sp.csr_matrix
    rows: np.ndarray
    histories: list[np.ndarray]
    all_sequences: list[np.ndarray]
    target: np.ndarray
    train: pd.DataFrame | None = None
    user_ids: list[Any] = field(default_factory=list)
    cold_mask: np.ndarray | None = None
    train_config: TrainConfig = field(default_factory=TrainConfig)
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.items)


def make_split(
    items: pd.DataFrame,
    train: pd.DataFrame,
    test: pd.DataFrame,
    vectors: np.ndarray,
    train_config: TrainConfig,
) -> Split:
    """Index a train/test pair (``test`` may carry a boolean ``cold`` column)."""
    index = pd.Series(np.arange(len(items)), index=pd.Index(items["item_id"]))
    users = np.sort(pd.concat([train["user_id"], test["user_id"]]).unique())
    uindex = pd.Series(np.arange(len(users)), index=pd.Index(users))
    X = interaction_matrix(
        uindex[train["user_id"]].to_numpy(),
        index[train["item_id"]].to_numpy(),
        (len(users), len(items)),
    )
    seq_users, seqs = sequences_from_interactions(train, items["item_id"])
    by_user = dict(zip(seq_users.tolist(), seqs, strict=True))
    test = test.sort_values("user_id")
    histories = [by_user.get(u, np.empty(0, np.int64)) for u in test["user_id"].tolist()]
    return Split(
        items=items,
        item_vectors=vectors,
        X=X,
        rows=uindex[test["user_id"]].to_numpy(),
        histories=histories,
        all_sequences=seqs,
        target=index[test["item_id"]].to_numpy(),
        train=train,
        user_ids=test["user_id"].tolist(),
        cold_mask=test["cold"].to_numpy() if "cold" in test.columns else None,
        train_config=train_config,
    )


# -- data ---------------------------------------------------------------------------------
def dataset_tables(
    items: Path | None, interactions: Path | None, users: Path | None = None
) -> Tables:
    """The benchmark's tables, validated: the given files, else the bundled demo catalogue."""
    from recommender.data import demo_dir, load_tables

    demo = demo_dir()
    return load_tables(
        items or demo / "items.csv", interactions or demo / "interactions.csv", users
    )


# -- item vectors -------------------------------------------------------------------------
def item_vectors(items: pd.DataFrame, encoder: str | None, cache: Path) -> np.ndarray:
    """MiniLM (or ``encoder``) vectors of the item texts, cached by a hash of texts + name."""
    from safetensors.numpy import load_file, save_file

    from recommender.data import item_texts
    from recommender.encoder import DEFAULT_ENCODER, TextEncoder

    texts = item_texts(items)
    name = encoder or DEFAULT_ENCODER
    digest = hashlib.sha256(("\n".join(texts) + name).encode()).hexdigest()[:16]
    path = cache / f"item_vectors-{digest}.safetensors"
    if path.is_file():
        log.info("item vectors from cache %s", path.name)
        return load_file(str(path))["item_vectors"]
    enc = TextEncoder.from_pretrained(encoder)
    t0 = time.perf_counter()
    vecs = enc.encode(texts, progress=True, desc="encoding items")
    log.info("encoded %d items in %.1fs", len(texts), time.perf_counter() - t0)
    cache.mkdir(parents=True, exist_ok=True)
    save_file({"item_vectors": vecs}, str(path))
    return vecs


# -- variants -----------------------------------------------------------------------------
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


def _recommender(split: Split, *, trained: bool) -> LoadedModel:
    """The product's loaded model built from the training split (cached per split)."""
    key = f"recommender:{trained}"
    if key not in split.cache:
        if "bundle" not in split.cache:
            encoder = split.cache.get("encoder") or TextEncoder.from_pretrained(None)
            tables = Tables(split.items, split.train, None)
            split.cache["bundle"] = build_bundle(
                tables, encoder, item_vectors=split.item_vectors, progress=False
            )
        bundle = split.cache["bundle"]
        components = dict(bundle.components)
        if trained:
            components["tower"] = _tower(split)
        split.cache[key] = load_model(replace(bundle, components=components))
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


# -- the run ------------------------------------------------------------------------------
#: A test case is a "short user" or a "rare item" case at or below this many training rows.
FEW = 5


def robustness_subsets(split: Split) -> dict[str, np.ndarray]:
    """Test cases of users with at most :data:`FEW` training items, and of target items
    with at most :data:`FEW` training interactions."""
    counts = np.asarray(split.X.sum(axis=0)).ravel()
    return {
        "short_users": np.array([len(h) <= FEW for h in split.histories]),
        "rare_items": counts[split.target] <= FEW,
    }


def short_users(interactions: pd.DataFrame, *, frac: float = 0.3, seed: int = 0) -> pd.DataFrame:
    """The log with a seeded ``frac`` of users cut to their latest ``FEW + 1`` rows
    (``FEW`` to train on, one to test): users who have only just arrived."""
    users = np.sort(interactions["user_id"].unique())
    rng = np.random.default_rng(seed)
    cut = set(rng.choice(users, size=int(round(frac * len(users))), replace=False).tolist())
    df = interactions.sort_values(["user_id", "timestamp"], kind="stable")
    from_end = df.groupby("user_id").cumcount(ascending=False)
    keep = ~df["user_id"].isin(cut) | (from_end <= FEW)
    return df[keep].reset_index(drop=True)


#: Copies of the log the robustness runs use (``--log``); ``as_is`` is the benchmark.
LOGS: dict[str, Callable[..., pd.DataFrame]] = {
    "as_is": lambda df, seed: df,
    "short_users": lambda df, seed: short_users(df, seed=seed),
    "shuffled": lambda df, seed: shuffle_within_users(df, seed=seed),
}


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
) -> dict[str, Any]:
    """Evaluate every selected variant on the main split and on the cold-item split.

    ``encoder`` is the one that made ``vectors``; recbento's bundles record it (the
    default MiniLM when omitted).
    """
    names = [n for n in (variants or list(VARIANTS)) if n in VARIANTS]
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


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def markdown(report: dict[str, Any]) -> str:
    """The results as a Markdown table plus the verdict line."""
    k = report["k"]
    lines = [
        f"| model | HR@{k} | NDCG@{k} | coverage@{k} | cold-start HR@{k} | seconds |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in report["results"].items():
        if not r.get("available", True):
            lines.append(f"| {name} | not built yet | | | | |")
            continue
        lines.append(
            f"| {name} | {_fmt(r[f'hr@{k}'])} | {_fmt(r[f'ndcg@{k}'])} | "
            f"{_fmt(r[f'coverage@{k}'])} | {_fmt(r.get(f'cold_hr@{k}'))} | {r['seconds']:.0f} |"
        )
    res = report["results"]
    base = {n: res[n][f"ndcg@{k}"] for n in BASELINE_NAMES if n in res and f"ndcg@{k}" in res[n]}
    if base and DEFAULT_VARIANT in res and f"ndcg@{k}" in res[DEFAULT_VARIANT]:
        best = max(base, key=base.get)
        ours = res[DEFAULT_VARIANT][f"ndcg@{k}"]
        lines.append("")
        lines.append(
            f"{DEFAULT_VARIANT}: NDCG@{k} {ours:.4f} vs best baseline {best} "
            f"{base[best]:.4f} ({(ours / base[best] - 1) * 100:+.1f}%)."
        )
    sub = {name: n for name, n in report.get("subsets", {}).items() if n}
    if sub:
        heads = [f"{name.replace('_', ' ')} NDCG@{k} ({n} cases)" for name, n in sub.items()]
        lines += ["", "| model | " + " | ".join(heads) + " |", "| --- |" + " --- |" * len(sub)]
        for name, r in report["results"].items():
            if r.get("available", True):
                cells = [_fmt(r.get(f"{s}_ndcg@{k}")) for s in sub]
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
    c = report["cold"]
    if "n_cases" in c:
        lines.append(
            f"Cold start: {c['n_cold_items']} items ({c['frac']:.0%}, seed {c['seed']}) removed "
            f"from training; {c['n_cases']} test cases target one of them."
        )
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    """Bar chart of HR@k, NDCG@k and cold-start HR@k per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = report["k"]
    res = {n: r for n, r in report["results"].items() if r.get("available", True)}
    names = list(res)
    metrics = [f"hr@{k}", f"ndcg@{k}", f"cold_hr@{k}"]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(names)), 4.5))
    for j, m in enumerate(metrics):
        vals = [res[n].get(m) or 0.0 for n in names]
        ax.bar(x + (j - 1) * 0.27, vals, width=0.27, label=m.replace("_", "-start "))
    ax.set_xticks(x, names, fontsize=7, rotation=25, ha="right")
    ax.set_ylabel("score")
    ax.set_title(
        f"leave-last-out, {report['n_users']} users, {report['n_items']} items "
        f"(full ranking, seen excluded)"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(2)

    tables = dataset_tables(args.items, args.interactions, args.users)
    vecs = item_vectors(tables.items, args.encoder, args.out)
    encoder = TextEncoder.from_pretrained(args.encoder)
    cfg = TrainConfig.from_config({**TrainConfig().get_config(), **json.loads(args.train_config)})
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
    )
    report["dataset"] = str(args.items or demo_dir() / "items.csv")
    report["train_config"] = cfg.get_config()
    report["seconds"] = time.perf_counter() - t0
    table = markdown(report)
    print(table)  # noqa: T201 - a benchmark script prints its table
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "quality" if args.log == "as_is" else f"quality_{args.log}"
    (args.out / f"{stem}.md").write_text(table + "\n")
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2, default=float))
    plot(report, args.out / f"{stem}.png")
    return report


if __name__ == "__main__":
    main()
