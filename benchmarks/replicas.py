"""Replicas soak: the soak mix against one replica, then two, sharing one PostgreSQL store.

Starts a private PostgreSQL server (``tests/pg.py``; or uses ``--pg-url``), replica A
(``bentoml serve`` on 127.0.0.1), drives the soak mix (recommend, feedback,
similar_items; :mod:`benchmarks.soak`) at it for ``--seconds``, then starts replica B on
the same store and drives both (each client connection keeps to one replica) for as
long again. Then probes cross-replica freshness (an event posted to A, at once a
request to B for that user, which must not be a cold start) and checks that every
acknowledged feedback event is in the database. Also times the store's own calls in
process, SQLite against PostgreSQL: ``last_seq`` (what every request's sync costs) and a
one-event ``append`` (one commit). Prints tables and writes
benchmarks/results/replicas.{md,json,png}.

    BENTOML_HOME=/tmp/bh RECBENTO_MODEL=recbento-demo nice -n 10 python -m benchmarks.replicas

Both replicas run on this one machine: on a host with few cores they compete for the
same CPUs, so the 1-vs-2 ratio there measures the shared store's overhead, not how
far replicas on separate nodes scale.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.server_process import (
    free_port,
    server_rss_mb,
    start_server,
    stop_server,
    trained_model,
)
from benchmarks.soak import _ids, _run, endpoint_rows

__all__ = ["main", "replicas"]

RESULTS = Path(__file__).resolve().parent / "results"


def _phase(out: dict[str, Any], n_replicas: int) -> dict[str, Any]:
    lat = np.concatenate([np.asarray(v) for v in out["latencies"].values()]) * 1000
    return {
        "replicas": n_replicas,
        "requests": int(len(lat)),
        "errors": int(sum(out["errors"].values())),
        "rps": round(len(lat) / out["wall_s"], 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "acked": out["acked"],
        "endpoints": endpoint_rows(out),
        "error_samples": out["error_samples"],
    }


def _probe(url_a: str, url_b: str, items: list[Any], n: int) -> dict[str, Any]:
    """Post one event for a new user to A, then ask B at once: B must know the user."""
    stale, acked, lat = 0, 0, []
    with httpx.Client(timeout=60) as client:
        for i in range(n):
            user = f"probe-{os.getpid()}-{i}"
            ev = {"user_id": user, "item_id": items[i % len(items)], "timestamp": int(time.time())}
            r = client.post(f"{url_a}/feedback", json={"events": [ev]})
            r.raise_for_status()
            acked += r.json()["stored"]
            t0 = time.perf_counter()
            r = client.post(f"{url_b}/recommend", json={"user_id": user, "k": 10})
            lat.append((time.perf_counter() - t0) * 1000)
            r.raise_for_status()
            stale += bool(r.json()["cold_start"])
    b_p50 = round(float(np.median(lat)), 1)
    return {"probes": n, "stale": stale, "acked": acked, "b_p50_ms": b_p50}


def _store_costs(pg_url: str, tmp: Path, reads: int = 2000, writes: int = 200) -> list[dict]:
    """Per-call latency of ``last_seq`` and a one-event ``append`` on each backend."""
    from recommender.feedback import open_store
    from tests.pg import with_schema

    rows = []
    for backend, target in (("sqlite", str(tmp / "costs.db")), ("postgresql", with_schema(pg_url))):
        with open_store(target) as store:
            times: dict[str, list[float]] = {"append": [], "last_seq": []}
            for i in range(writes):
                t0 = time.perf_counter()
                store.append([{"user_id": "cost", "item_id": i, "timestamp": i}])
                times["append"].append(time.perf_counter() - t0)
            for _ in range(reads):
                t0 = time.perf_counter()
                store.last_seq()
                times["last_seq"].append(time.perf_counter() - t0)
        for call, t in times.items():
            a = np.asarray(t) * 1000
            rows.append(
                {
                    "backend": backend,
                    "call": call,
                    "calls": len(a),
                    "p50_ms": round(float(np.percentile(a, 50)), 3),
                    "p99_ms": round(float(np.percentile(a, 99)), 3),
                }
            )
    return rows


def replicas(
    model: str,
    *,
    seconds: float = 60,
    concurrency: int = 16,
    workers: int = 1,
    pg_url: str | None = None,
    probes: int = 50,
) -> dict[str, Any]:
    """Run both phases and the probe; every server is stopped on the way out."""
    from recommender.feedback import open_store
    from tests.pg import postgres_server, with_schema

    users, items = _ids(model)
    load = os.getloadavg()[0]
    with ExitStack() as stack:
        base = pg_url or stack.enter_context(postgres_server())
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="recbento-costs-")))
        costs = _store_costs(base, tmp)
        db = with_schema(base)
        env = {"RECBENTO_FEEDBACK_DB": db, "RECBENTO_WORKERS": str(workers)}
        procs, urls = [], []

        def start() -> None:
            port = free_port()
            proc = start_server(model, port, env=env)
            stack.callback(stop_server, proc)
            procs.append(proc)
            urls.append(f"http://127.0.0.1:{port}")
            httpx.post(f"{urls[-1]}/recommend", json={"query": "warm up", "k": 1}, timeout=120)

        def rss() -> float:
            return sum(server_rss_mb(p) for p in procs)

        phases = []
        for n in (1, 2):
            while len(procs) < n:
                start()
            print(f"{n} replica(s): {seconds:.0f} s at concurrency {concurrency}", flush=True)
            out = asyncio.run(_run(urls, users, items, concurrency, seconds, 1_000_000, rss))
            phases.append(_phase(out, n))
        probe = _probe(urls[0], urls[1], items, probes)
        with open_store(db) as store:
            stored = store.count()
    acked = sum(p["acked"] for p in phases) + probe["acked"]
    return {
        "model": model,
        "seconds": seconds,
        "concurrency": concurrency,
        "workers_per_replica": workers,
        "cpu_count": os.cpu_count(),
        "load_average_at_start": round(load, 2),
        "store_costs": costs,
        "phases": phases,
        "probe": probe,
        "acked": acked,
        "stored": stored,
    }


def _md(out: dict[str, Any]) -> str:
    cols = ["replicas", "endpoint", "requests", "errors", "rps", "p50_ms", "p99_ms"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for ph in out["phases"]:
        for r in ph["endpoints"]:
            lines.append("| " + " | ".join(str(v) for v in [ph["replicas"], *r.values()]) + " |")
        lines.append(
            f"| {ph['replicas']} | **all** | {ph['requests']} | {ph['errors']} | {ph['rps']} "
            f"| {ph['p50_ms']} | {ph['p99_ms']} |"
        )
    lines += ["", "| backend | call | calls | p50_ms | p99_ms |", "|---|---|---|---|---|"]
    for r in out["store_costs"]:
        lines.append("| " + " | ".join(str(v) for v in r.values()) + " |")
    one, two = out["phases"]
    probe = out["probe"]
    lines += [
        "",
        f"model {out['model']}, {out['seconds']:.0f} s per phase at concurrency "
        f"{out['concurrency']}, {out['workers_per_replica']} API worker(s) per replica, "
        f"both replicas on one host with {out['cpu_count']} CPU cores (load average "
        f"{out['load_average_at_start']} at start, other work included); feedback store: "
        "PostgreSQL (private server on the same host); store calls timed in process",
        f"requests/s: one replica {one['rps']}, two replicas {two['rps']} "
        f"(x{two['rps'] / one['rps']:.2f})",
        f"errors: {one['errors'] + two['errors']}",
        f"cross-replica freshness: {probe['probes']} events posted to A, each followed at "
        f"once by a request to B: {probe['stale']} stale answers (B p50 {probe['b_p50_ms']} ms)",
        f"feedback events acknowledged {out['acked']}, in the database {out['stored']}: "
        f"{'OK' if out['acked'] == out['stored'] else 'MISMATCH'}",
    ]
    return "\n".join(lines)


def _plot(out: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases = out["phases"]
    labels = [f"{p['replicas']} replica{'s' * (p['replicas'] > 1)}" for p in phases]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    ax1.bar(labels, [p["rps"] for p in phases], color=["#4c72b0", "#55a868"])
    ax1.set_ylabel("requests/s (all endpoints)")
    x = np.arange(len(phases))
    ax2.bar(x - 0.2, [p["p50_ms"] for p in phases], 0.4, label="p50")
    ax2.bar(x + 0.2, [p["p99_ms"] for p in phases], 0.4, label="p99")
    ax2.set_xticks(x, labels)
    ax2.set_ylabel("latency (ms)")
    ax2.legend()
    fig.suptitle(
        f"{out['model']}: soak mix, concurrency {out['concurrency']}, shared PostgreSQL "
        f"store, one host ({out['cpu_count']} cores)",
        fontsize=9,
    )
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: run the replicas soak and write the results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.environ.get("RECBENTO_MODEL", "recbento-demo"))
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--workers", type=int, default=1, help="API workers per replica")
    ap.add_argument("--pg-url", help="an existing database (default: a private server)")
    ap.add_argument("--probes", type=int, default=50)
    args = ap.parse_args(argv)
    out = replicas(
        trained_model(args.model),
        seconds=args.seconds,
        concurrency=args.concurrency,
        workers=args.workers,
        pg_url=args.pg_url,
        probes=args.probes,
    )
    md = _md(out)
    print(md)
    RESULTS.mkdir(exist_ok=True)
    for name, text in (("replicas.md", md + "\n"), ("replicas.json", json.dumps(out, indent=2))):
        tmp = RESULTS / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(RESULTS / name)
    _plot(out, RESULTS / "replicas.png")
    bad = sum(p["errors"] for p in out["phases"]) or out["probe"]["stale"]
    if bad or out["acked"] != out["stored"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
