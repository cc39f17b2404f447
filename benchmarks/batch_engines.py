"""Batch engines benchmark: one synthetic user base scored three ways.

    python -m benchmarks.batch_engines [--users 20000] [--seed 0]

Builds (once; reused while it is in the model store) a model of the demo catalogue with
``--users`` synthetic users, each a random, popularity-weighted history of 5 to 60 demo
items, then recommends 10 items for every user with ``recbento batch``'s three paths:

* ``local``: in-process (:func:`recommender.batch.local_scorer`), one process;
* ``served``: a real ``bentoml serve`` on loopback through ``--url`` (BentoML's HTTP
  client, 4 concurrent calls), with 1 and 2 API workers (``RECBENTO_WORKERS``);
* ``ray``: ``--engine ray`` on a local Ray (``num_cpus`` = the machine's cores) with 1
  and 2 actors.

Every run is a full ``run_batch`` (read, score, write parts, join); its wall time
includes the engine's start (model load, Ray actors), which a second, small run of
``--small`` users measures, so that the table shows both end-to-end and marginal
users/s. Every engine's output is checked against the in-process output. Writes
``benchmarks/results/batch_engines.{md,json,png}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tests.procs import free_port, serve, stop  # shared with the tests

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def synthetic_model(n_users: int, seed: int = 0) -> str:
    """Tag of the demo catalogue with ``n_users`` synthetic users (built if missing)."""
    from recommender.build import DEMO_MODEL, build_bundle
    from recommender.bundle import load_from_store, resolve_tag, save_to_store
    from recommender.encoder import TextEncoder
    from recommender.errors import NotFoundError
    from recommender.schemas import validate_tables
    from recommender.service_core import ensure_model

    name = f"bench-batch-{n_users}-s{seed}"
    try:
        return resolve_tag(name)
    except NotFoundError:
        pass
    demo, _ = load_from_store(ensure_model(DEMO_MODEL))
    item_ids = demo.items["item_id"].to_numpy()
    counts = demo.interactions["item_id"].value_counts().reindex(item_ids, fill_value=0)
    p = (counts.to_numpy() + 1.0) / (counts.to_numpy() + 1.0).sum()
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 61, n_users)
    users = np.repeat(np.arange(1, n_users + 1), lengths)
    items = np.concatenate([rng.choice(item_ids, size=n, replace=False, p=p) for n in lengths])
    stamps = 1_500_000_000 + np.concatenate([np.sort(rng.integers(0, 10**7, n)) for n in lengths])
    interactions = pd.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "timestamp": stamps,
            "rating": rng.integers(1, 6, len(users)).astype(float),
        }
    )
    log.info("building %s: %d users, %d interactions", name, n_users, len(interactions))
    tables = validate_tables(demo.items, interactions)
    enc = demo.config["encoder"]
    encoder = TextEncoder.from_pretrained(enc.get("path") or enc.get("name"))
    bundle = build_bundle(tables, encoder, item_vectors=demo.item_vectors, progress=True)
    return save_to_store(bundle, name)


def _timed_batch(users: Path, out: Path, **kwargs: Any) -> float:
    from recommender.batch import run_batch

    t0 = time.perf_counter()
    run_batch(users, out, k=10, batch_size=64, progress=False, **kwargs)
    return time.perf_counter() - t0


def measure(
    label: str,
    workers: int,
    big: Path,
    small: Path,
    out_dir: Path,
    **kwargs: Any,
) -> dict[str, Any]:
    """One engine setting: a small run (start cost) and the full run."""
    n_big = len(pd.read_parquet(big))
    n_small = len(pd.read_parquet(small))
    load = os.getloadavg()[0]
    t_small = _timed_batch(small, out_dir / f"{label}-{workers}-small.parquet", **kwargs)
    t_big = _timed_batch(big, out_dir / f"{label}-{workers}.parquet", **kwargs)
    row = {
        "engine": label,
        "workers": workers,
        "users": n_big,
        "seconds": t_big,
        "users_per_s": n_big / t_big,
        "small_run_s": t_small,
        # the difference of two noisy timings: meaningless when start-up dominates both
        "marginal_users_per_s": (n_big - n_small) / (t_big - t_small)
        if t_big > t_small + 1.0
        else None,
        "load_avg_before": load,
    }
    log.info("%s", row)
    return row


def same_output(a: Path, b: Path) -> bool:
    """Whether two batch outputs hold the same rows (scores to 1e-6)."""
    x, y = pd.read_parquet(a), pd.read_parquet(b)
    try:
        pd.testing.assert_frame_equal(x, y, check_exact=False, rtol=1e-6, check_dtype=False)
    except AssertionError as exc:
        log.warning("outputs differ: %s vs %s: %s", a.name, b.name, exc)
        return False
    return True


def run(n_users: int, n_small: int, seed: int, workdir: Path) -> dict[str, Any]:
    import ray

    from recommender.bundle import load_from_store

    t0 = time.perf_counter()
    tag = synthetic_model(n_users, seed)
    build_s = time.perf_counter() - t0
    bundle, _ = load_from_store(tag)
    ids = pd.DataFrame({"user_id": bundle.user_ids})
    n_interactions = len(bundle.interactions)
    del bundle
    big, small = workdir / "users.parquet", workdir / "users-small.parquet"
    ids.to_parquet(big, index=False)
    ids.sample(n_small, random_state=seed).to_parquet(small, index=False)
    rows: list[dict[str, Any]] = []

    rows.append(measure("local", 1, big, small, workdir, model=tag))

    starts: dict[str, float] = {}
    for workers in (1, 2):
        port = free_port()
        t0 = time.perf_counter()
        proc = serve(tag, port, env={"RECBENTO_WORKERS": str(workers)}, timeout=600)
        starts[f"served, {workers} API workers"] = time.perf_counter() - t0
        try:
            url = f"http://127.0.0.1:{port}"
            rows.append(measure("served", workers, big, small, workdir, url=url, concurrency=4))
        finally:
            stop(proc, timeout=30)

    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    starts["ray.init (local)"] = time.perf_counter() - t0
    try:
        for actors in (1, 2):
            rows.append(
                measure("ray", actors, big, small, workdir, model=tag, engine="ray", actors=actors)
            )
    finally:
        ray.shutdown()

    reference = workdir / "local-1.parquet"
    for r in rows:
        r["same_output_as_local"] = same_output(
            reference, workdir / f"{r['engine']}-{r['workers']}.parquet"
        )
    by = {(r["engine"], r["workers"]): r for r in rows}
    for r in rows:
        one = by.get((r["engine"], 1))
        r["speedup_vs_1"] = r["users_per_s"] / one["users_per_s"] if one else None
    return {
        "model": tag,
        "users": n_users,
        "interactions": n_interactions,
        "small_run_users": n_small,
        "cpu_cores": os.cpu_count(),
        "model_build_s": build_s,
        "startup_s": starts,
        "rows": rows,
        "versions": _versions(),
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in ("ray", "bentoml", "torch", "pandas")}


def _md(rows: list[dict], cols: list[str]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) < 10 else f"{v:,.0f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def _plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    labels = [f"{r['engine']}\n{r['workers']} worker(s)" for r in rows]
    x = np.arange(len(rows))
    a.bar(x - 0.2, [r["users_per_s"] for r in rows], 0.4, label="end to end")
    a.bar(x + 0.2, [r["marginal_users_per_s"] or 0 for r in rows], 0.4, label="after start-up")
    a.set_xticks(x, labels, fontsize=8)
    a.set_ylabel("users / s")
    a.set_title(f"{report['users']:,} users, k=10, {report['cpu_cores']} CPU cores")
    a.legend(fontsize=8)
    for engine, marker in (("served", "o"), ("ray", "s")):
        pts = [r for r in rows if r["engine"] == engine]
        b.plot([r["workers"] for r in pts], [r["users_per_s"] for r in pts], marker=marker)
        b.annotate(engine, (pts[-1]["workers"], pts[-1]["users_per_s"]), fontsize=8)
    local = next(r for r in rows if r["engine"] == "local")
    b.axhline(local["users_per_s"], color="grey", ls="--", lw=1)
    b.annotate("local (1 process)", (1, local["users_per_s"]), fontsize=8, color="grey")
    b.set_ylim(bottom=0)
    b.set_xticks([1, 2])
    b.set_xlabel("API workers / Ray actors")
    b.set_ylabel("users / s (end to end)")
    b.set_title("scaling with workers")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: dict[str, Any], out: Path) -> None:
    """Print and write ``batch_engines.{md,json,png}``."""
    cols = ["engine", "workers", "users", "seconds", "users_per_s", "small_run_s"]
    cols += ["marginal_users_per_s", "speedup_vs_1", "same_output_as_local", "load_avg_before"]
    md = [
        f"## Batch engines ({report['model']}: {report['users']:,} synthetic users, "
        f"{report['interactions']:,} interactions, demo catalogue; k=10, batch 64; "
        f"{report['cpu_cores']} CPU cores shared with other work)",
        "",
        _md(report["rows"], cols),
        "",
        f"`small_run_s`: the same engine on {report['small_run_users']} users (start-up: "
        "model load, server or Ray actors); `marginal_users_per_s` = the extra users over "
        "the extra seconds of the full run.",
        "",
        "start-up outside the runs: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in report["startup_s"].items())
        + f"; building the model {report['model_build_s']:.0f} s (0 when reused).",
        "",
        "versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
    ]
    text = "\n".join(md)
    print(text)  # noqa: T201 - a benchmark script prints its table
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch_engines.md").write_text(text + "\n")
    (out / "batch_engines.json").write_text(json.dumps(report, indent=2))
    _plot(report, out / "batch_engines.png")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--small", type=int, default=500, help="users of the start-up run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="batch-engines-") as tmp:
        report = run(args.users, args.small, args.seed, Path(tmp))
    write_report(report, args.out)


if __name__ == "__main__":
    main()
