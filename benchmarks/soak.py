"""Soak test: `bentoml serve` under a steady mix of recommend, feedback and similar_items.

Runs ``--seconds`` (default 120) at ``--concurrency`` (default 32) against a real server
on 127.0.0.1 with a fresh feedback store, then checks that every acknowledged feedback
event is in the store. Prints a table and writes benchmarks/results/soak.{md,json}.

    BENTOML_HOME=/tmp/bh RECBENTO_MODEL=recbento-demo nice -n 10 python -m benchmarks.soak
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
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

__all__ = ["endpoint_rows", "main", "soak"]

RESULTS = Path(__file__).resolve().parent / "results"
QUERIES = ["a funny animated film", "dark crime thriller", "space adventure", "romantic comedy"]


def _ids(model: str) -> tuple[list[Any], list[Any]]:
    from recommender.bundle import load_from_store

    bundle, _ = load_from_store(model)
    users = bundle.interactions["user_id"].drop_duplicates().tolist()
    return [int(u) if isinstance(u, np.integer) else u for u in users], [
        int(i) if isinstance(i, np.integer) else i for i in bundle.items["item_id"].tolist()
    ]


def _request(rng: random.Random, users: list[Any], items: list[Any]) -> tuple[str, dict]:
    r = rng.random()
    if r < 0.5:
        body: dict[str, Any] = {"user_id": rng.choice(users), "k": 10}
        if rng.random() < 0.1:
            body["query"] = rng.choice(QUERIES)
        return "recommend", body
    if r < 0.75:
        n = rng.randint(1, 3)
        user = rng.choice(users) if rng.random() < 0.8 else f"soak-{rng.randint(0, 999)}"
        events = [
            {"user_id": user, "item_id": rng.choice(items), "timestamp": int(time.time())}
            for _ in range(n)
        ]
        return "feedback", {"events": events}
    return "similar_items", {"item_id": rng.choice(items), "k": 10}


async def _run(
    urls: list[str],
    users: list[Any],
    items: list[Any],
    concurrency: int,
    seconds: float,
    max_requests: int,
    rss: Any,
) -> dict[str, Any]:
    lat: dict[str, list[float]] = {"recommend": [], "feedback": [], "similar_items": []}
    errors: dict[str, int] = dict.fromkeys(lat, 0)
    error_samples: list[str] = []
    acked = 0
    sent = 0
    rss_samples: list[tuple[float, float]] = []
    t_start = time.perf_counter()
    stop_at = t_start + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def worker(wid: int) -> None:
            nonlocal acked, sent
            rng = random.Random(wid)
            url = urls[wid % len(urls)]  # several replicas: each worker keeps to one
            while time.perf_counter() < stop_at and sent < max_requests:
                sent += 1
                name, body = _request(rng, users, items)
                t0 = time.perf_counter()
                try:
                    resp = await client.post(f"{url}/{name}", json=body)
                    ok = resp.status_code == 200
                    if ok and name == "feedback":
                        acked += resp.json()["stored"]
                    if not ok and len(error_samples) < 10:
                        error_samples.append(f"{name} {resp.status_code} {resp.text[:200]}")
                except httpx.HTTPError as exc:
                    ok = False
                    if len(error_samples) < 10:
                        error_samples.append(f"{name} {type(exc).__name__}")
                lat[name].append(time.perf_counter() - t0)
                errors[name] += not ok

        async def sampler() -> None:
            while time.perf_counter() < stop_at and sent < max_requests:
                rss_samples.append((time.perf_counter() - t_start, rss()))
                await asyncio.sleep(10)

        await asyncio.gather(sampler(), *(worker(w) for w in range(concurrency)))
    rss_samples.append((time.perf_counter() - t_start, rss()))
    return {
        "latencies": lat,
        "errors": errors,
        "error_samples": error_samples,
        "acked": acked,
        "rss": rss_samples,
        "wall_s": time.perf_counter() - t_start,
    }


def soak(
    model: str, *, seconds: float = 120, concurrency: int = 32, max_requests: int = 1_000_000
) -> dict[str, Any]:
    """Start a server, drive the mix, stop it, and check the feedback count."""
    from recommender.feedback import FeedbackStore

    users, items = _ids(model)
    db = Path(tempfile.mkdtemp(prefix="recbento-soak-")) / "feedback.db"
    port = free_port()
    proc = start_server(model, port, env={"RECBENTO_FEEDBACK_DB": str(db)})
    try:
        url = f"http://127.0.0.1:{port}"
        httpx.post(f"{url}/recommend", json={"query": "warm up", "k": 1}, timeout=120)
        rss = lambda: server_rss_mb(proc)  # noqa: E731
        out = asyncio.run(_run([url], users, items, concurrency, seconds, max_requests, rss))
    finally:
        stop_server(proc)
    with FeedbackStore(db) as store:
        out["stored"] = store.count()
    out["rows"] = endpoint_rows(out)
    out["rss_start_mb"] = round(out["rss"][0][1], 1)
    out["rss_end_mb"] = round(out["rss"][-1][1], 1)
    out["rss_max_mb"] = round(max(r for _, r in out["rss"]), 1)
    out.update(model=model, seconds=seconds, concurrency=concurrency)
    return out


def endpoint_rows(out: dict[str, Any]) -> list[dict[str, Any]]:
    """Requests, errors, requests/s, p50 and p99 (ms) per endpoint of a :func:`_run`."""
    rows = []
    for name, lat in out["latencies"].items():
        a = np.asarray(lat) * 1000
        rows.append(
            {
                "endpoint": name,
                "requests": len(a),
                "errors": out["errors"][name],
                "rps": round(len(a) / out["wall_s"], 1),
                "p50_ms": round(float(np.percentile(a, 50)), 1) if len(a) else None,
                "p99_ms": round(float(np.percentile(a, 99)), 1) if len(a) else None,
            }
        )
    return rows


def _md(out: dict[str, Any]) -> str:
    cols = ["endpoint", "requests", "errors", "rps", "p50_ms", "p99_ms"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in out["rows"]]
    total_err = sum(r["errors"] for r in out["rows"])
    lines += [
        "",
        f"model {out['model']}, {out['seconds']:.0f} s at concurrency {out['concurrency']}; "
        f"errors {total_err}",
        f"server RSS (all processes): start {out['rss_start_mb']} MiB, end {out['rss_end_mb']} "
        f"MiB, max {out['rss_max_mb']} MiB (growth {out['rss_end_mb'] - out['rss_start_mb']:+.1f})",
        f"feedback events acknowledged {out['acked']}, in the store after shutdown "
        f"{out['stored']}: {'OK' if out['acked'] == out['stored'] else 'MISMATCH'}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: run the soak and write the results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.environ.get("RECBENTO_MODEL", "recbento-demo"))
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-requests", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    out = soak(
        trained_model(args.model),
        seconds=args.seconds,
        concurrency=args.concurrency,
        max_requests=args.max_requests,
    )
    md = _md(out)
    print(md)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "soak.md").write_text(md + "\n")
    slim = {k: v for k, v in out.items() if k != "latencies"}
    (RESULTS / "soak.json").write_text(json.dumps(slim, indent=2, default=str))
    if sum(r["errors"] for r in out["rows"]) or out["acked"] != out["stored"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
