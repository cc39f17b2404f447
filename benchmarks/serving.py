"""Serving benchmark: a real `bentoml serve` on loopback, driven by concurrent clients.

    python -m benchmarks.serving [--model recbento-demo] [--seconds 10]

Prints Markdown tables and writes ``benchmarks/results/serving.{md,json,png}``:

1. the floor: a BentoML service that does no work (``benchmarks/floor_service.py``),
   answering ``recommend`` in recbento's JSON shape with the same worker count, driven
   in the same run; recbento's ``recommend`` rows are reported as ratios against it;
2. RPS and p50/p95/p99 latency of ``recommend`` (by user, with explanations, by
   free-text query) and ``encode`` at several concurrencies, with the error count;
3. adaptive batching as BentoML itself reports it: the ``encode`` batch-size histogram
   from ``/metrics`` after the free-text load;
4. free-text ``recommend`` and ``encode`` through the service against in-process
   encoding at its best batch size;
5. in-process ``recommend`` latency on synthetic catalogues of 10k, 100k and 1M items
   (exact search, and the approximate index where it is available);
6. the resident memory of the server's processes.

Every loop is bounded in requests and seconds, and traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.procs import free_port, serve, stop  # shared with the tests

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
QUERIES = [
    "something like Heat but funnier",
    "an animated film for the whole family",
    "dark science fiction with robots",
    "romantic comedy set in New York",
    "a slow, beautiful drama about grief",
    "classic western with a great score",
    "pixar",
    "war movie based on a true story",
]


def start_server(model: str, port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `bentoml serve` for ``model`` on 127.0.0.1:``port`` and wait until ready."""
    return serve(model, port, env=env, timeout=600)


def stop_server(proc: subprocess.Popen) -> None:
    """Stop the server and its workers by PID (they run in process groups of their own)."""
    stop(proc, timeout=30)


def server_rss_mb(proc: subprocess.Popen) -> float:
    """Resident memory of the server and all its children, in MiB."""
    import psutil

    p = psutil.Process(proc.pid)
    procs = [p, *p.children(recursive=True)]
    return sum(q.memory_info().rss for q in procs if q.is_running()) / 2**20


async def _drive(
    url: str, body_fn: Any, concurrency: int, seconds: float, max_requests: int
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    sent = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def worker(wid: int) -> None:
            nonlocal errors, sent
            n = 0
            while time.perf_counter() < stop_at and sent < max_requests:
                sent += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post(url, json=body_fn(wid, n))
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                dt = time.perf_counter() - t0
                if ok:
                    latencies.append(dt)
                else:
                    errors += 1
                n += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {
        "requests": len(latencies) + errors,
        "errors": errors,
        "rps": len(latencies) / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p95_ms": float(np.percentile(lat, 95)),
        "p99_ms": float(np.percentile(lat, 99)),
    }


#: Which endpoints run at which concurrencies (the targets: recommend at 8 against the
#: floor; free-text recommend at 32 against in-process encoding).
PLAN: dict[str, list[int]] = {
    "recommend": [1, 8, 32],
    "recommend+explain": [8],
    "recommend(query)": [8, 32],
    "encode": [8, 64],
}


def endpoints(n_users: int, texts_per_encode: int) -> dict[str, tuple[str, Any]]:
    """Route and body generator of each benchmarked endpoint."""
    rng = np.random.default_rng(0)
    users = rng.integers(1, n_users + 1, size=100_000).tolist()
    return {
        "recommend": (
            "/recommend",
            lambda w, n: {"user_id": users[(w * 997 + n) % len(users)], "k": 10},
        ),
        "recommend+explain": (
            "/recommend",
            lambda w, n: {"user_id": users[(w * 991 + n) % len(users)], "k": 10, "explain": True},
        ),
        "recommend(query)": (
            "/recommend",
            # a counter in the text, so no two requests share a query
            lambda w, n: {"query": f"{QUERIES[(w + n) % len(QUERIES)]} #{w}.{n}", "k": 10},
        ),
        "encode": (
            "/encode",
            lambda w, n: {
                "texts": [
                    f"{QUERIES[(w + n + j) % len(QUERIES)]} #{n}" for j in range(texts_per_encode)
                ]
            },
        ),
    }


def load_test(
    base: str,
    plan: dict[str, list[int]],
    seconds: float,
    n_users: int,
    texts_per_encode: int,
    *,
    system: str = "recbento",
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Drive each endpoint of ``plan`` at each concurrency; rows, and the encode batches.

    The batch histogram is read from the server's ``/metrics`` once the free-text
    requests are done (BentoML's ``adaptive_batch_size`` of the encoder service).
    """
    routes = endpoints(n_users, texts_per_encode)
    rows, batches = [], {}
    for name, concurrencies in plan.items():
        path, body = routes[name]
        asyncio.run(_drive(base + path, body, 2, 1.0, 20))  # warm-up, not counted
        for c in concurrencies:
            res = asyncio.run(_drive(base + path, body, c, seconds, 50_000))
            res.update({"system": system, "endpoint": name, "concurrency": c})
            if name == "encode":
                res["texts_per_s"] = res["rps"] * texts_per_encode
            rows.append(res)
            log.info(
                "%s %s c=%d: %.1f rps p99 %.1f ms, %d errors",
                system,
                name,
                c,
                res["rps"],
                res["p99_ms"],
                res["errors"],
            )
        if name == "recommend(query)":
            batches = encode_batches(base)
    return rows, batches


def encode_batches(base: str) -> dict[str, float]:
    """``le -> count`` of the encoder's adaptive batch sizes, from the server's /metrics."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("bentoml_service_adaptive_batch_size_bucket") and "encode" in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[le] = out.get(le, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


def floor_test(seconds: float, n_users: int, concurrencies: list[int]) -> list[dict[str, Any]]:
    """The same ``recommend`` load against a BentoML service that does no work."""
    port = free_port()
    proc = serve(None, port, target="benchmarks.floor_service:Floor", timeout=120)
    try:
        rows, _ = load_test(
            f"http://127.0.0.1:{port}",
            {"recommend": concurrencies},
            seconds,
            n_users,
            1,
            system="floor",
        )
    finally:
        stop_server(proc)
    return rows


def inprocess_encode_best(model_path: str | None, n_texts: int = 512) -> dict[str, float]:
    """In-process encoding throughput (texts/s) at several batch sizes."""
    import torch

    from recommender.encoder import TextEncoder

    torch.set_num_threads(os.cpu_count() or 1)
    enc = TextEncoder.from_pretrained(model_path)
    texts = [f"{QUERIES[i % len(QUERIES)]} #{i}" for i in range(n_texts)]
    enc.encode(texts[:32])
    out = {}
    for bs in (1, 8, 32, 64, 128):
        t0 = time.perf_counter()
        enc.encode(texts if bs > 1 else texts[:128], batch_size=bs)
        n = n_texts if bs > 1 else 128
        out[str(bs)] = n / (time.perf_counter() - t0)
    return out


def catalogue_scaling(sizes: list[int], dim: int = 384, n_queries: int = 200) -> list[dict]:
    """In-process recommend latency on synthetic catalogues, exact and approximate.

    Item vectors are embedding-like (:func:`benchmarks.index_scaling.low_rank_unit`);
    1,000 users with 50 random interactions each; requests by ``user_id``, k=10, with
    the default reranker. ``recall@10`` compares the approximate answers with the
    exact ones for the same users.
    """
    import pandas as pd

    from benchmarks.index_scaling import low_rank_unit
    from recommender.bundle import Bundle
    from recommender.serving import Request, load_model

    rows = []
    rng = np.random.default_rng(0)
    n_users = 1000
    for n in sizes:
        vecs = low_rank_unit(n, dim, rng)
        items = pd.DataFrame({"item_id": np.arange(n), "title": [f"item {i}" for i in range(n)]})
        inter = pd.DataFrame(
            {
                "user_id": np.repeat(np.arange(n_users), 50),
                "item_id": rng.integers(0, n, n_users * 50),
                "timestamp": np.tile(np.arange(50), n_users),
                "weight": 1.0,
            }
        )
        bundle = Bundle({"serving": {}}, items, vecs, inter)
        answers: dict[str, list[list]] = {}
        for kind in ("exact", "ann"):
            t0 = time.perf_counter()
            rec = load_model(bundle, index=kind)
            build_s = time.perf_counter() - t0
            rec.recommend(Request(user_id=0, k=10))
            lat, got = [], []
            for q in range(n_queries):
                t0 = time.perf_counter()
                out = rec.recommend(Request(user_id=int(q % n_users), k=10))
                lat.append((time.perf_counter() - t0) * 1000)
                got.append([i.item_id for i in out.items])
            answers[kind] = got
            row = {
                "items": n,
                "index": kind,
                "build_s": build_s,
                "p50_ms": float(np.percentile(lat, 50)),
                "p99_ms": float(np.percentile(lat, 99)),
            }
            if kind == "ann":
                row["recall@10"] = float(
                    np.mean(
                        [
                            len(set(a) & set(e)) / max(len(e), 1)
                            for a, e in zip(got, answers["exact"], strict=True)
                        ]
                    )
                )
            rows.append(row)
            log.info("catalogue %d (%s): %s", n, kind, row)
            del rec
        del vecs, bundle
    return rows


def _md(rows: list[dict], cols: list[str]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:,.1f}" if isinstance(v, float) else str(v)

    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def _plot(rows: list[dict], scaling: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for name in sorted({(r.get("system", "recbento"), r["endpoint"]) for r in rows}):
        rs = [r for r in rows if (r.get("system", "recbento"), r["endpoint"]) == name]
        label = " ".join(name)
        axes[0].plot([r["concurrency"] for r in rs], [r["p99_ms"] for r in rs], "o-", label=label)
        axes[1].plot([r["concurrency"] for r in rs], [r["rps"] for r in rs], "o-", label=label)
    axes[0].set(
        xscale="log", yscale="log", xlabel="concurrency", ylabel="p99 latency (ms)", title="latency"
    )
    axes[1].set(xscale="log", xlabel="concurrency", ylabel="requests/s", title="throughput")
    for kind in sorted({r["index"] for r in scaling}):
        rs = [r for r in scaling if r["index"] == kind]
        axes[2].plot([r["items"] for r in rs], [r["p99_ms"] for r in rs], "o-", label=kind)
    axes[2].set(
        xscale="log",
        yscale="log",
        xlabel="catalogue size (items)",
        ylabel="in-process recommend p99 (ms)",
        title="catalogue scaling",
    )
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="recbento-demo")
    ap.add_argument("--seconds", type=float, default=10.0, help="per endpoint and concurrency")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--texts-per-encode", type=int, default=8)
    ap.add_argument("--skip-scaling", action="store_true")
    ap.add_argument(
        "--scaling-from",
        type=Path,
        default=None,
        help="reuse the catalogue-scaling rows of an earlier serving.json (the 1M-item "
        "HNSW build alone takes about 9 minutes on two cores)",
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a log line per request costs CPU
    args.out.mkdir(parents=True, exist_ok=True)

    from recommender.bundle import load_from_store
    from recommender.service_core import ensure_model

    tag = ensure_model(args.model)
    bundle, _ = load_from_store(tag)
    n_users = (
        int(bundle.interactions["user_id"].max())
        if bundle.interactions["user_id"].dtype.kind in "iu"
        else 100
    )
    enc_cfg = bundle.config.get("encoder", {})
    del bundle

    floor = floor_test(args.seconds, n_users, PLAN["recommend"])
    port = free_port()
    proc = start_server(tag, port)
    try:
        rss_idle = server_rss_mb(proc)
        rows, batches = load_test(
            f"http://127.0.0.1:{port}", PLAN, args.seconds, n_users, args.texts_per_encode
        )
        rss_loaded = server_rss_mb(proc)
    finally:
        stop_server(proc)
    inproc = inprocess_encode_best(enc_cfg.get("path") or enc_cfg.get("name"))
    skip = args.skip_scaling or args.scaling_from is not None
    scaling = [] if skip else catalogue_scaling(args.sizes)

    if args.scaling_from is not None:
        scaling = json.loads(args.scaling_from.read_text())["catalogue_scaling"]
    report = {
        "model": tag,
        "seconds_per_cell": args.seconds,
        "floor": floor,
        "load": rows,
        "encode_batch_histogram": batches,
        "encode_inprocess_texts_per_s": inproc,
        "catalogue_scaling": scaling,
        "server_rss_mb": {"idle": rss_idle, "after_load": rss_loaded},
    }
    write_report(report, args.out)


def ratios(floor: list[dict], rows: list[dict]) -> list[dict[str, Any]]:
    """recbento's ``recommend`` against the floor at each concurrency both ran."""
    out = []
    for f in floor:
        r = next(
            (
                x
                for x in rows
                if x["endpoint"] == "recommend" and x["concurrency"] == f["concurrency"]
            ),
            None,
        )
        if r is None:
            continue
        out.append(
            {
                "concurrency": f["concurrency"],
                "floor_rps": f["rps"],
                "recbento_rps": r["rps"],
                "rps_ratio": r["rps"] / f["rps"],
                "floor_p99_ms": f["p99_ms"],
                "recbento_p99_ms": r["p99_ms"],
                "p99_ratio": r["p99_ms"] / f["p99_ms"],
            }
        )
    return out


def write_report(report: dict[str, Any], out: Path) -> None:
    """Print and write ``serving.{md,json,png}`` for one run's ``report``."""
    rows, scaling = report["load"], report["catalogue_scaling"]
    floor = report.get("floor", [])
    inproc = report["encode_inprocess_texts_per_s"]
    best_bs, best = max(inproc.items(), key=lambda kv: kv[1])
    svc_best = max(r.get("texts_per_s", 0) for r in rows)
    query = [r for r in rows if r["endpoint"] == "recommend(query)"]
    query_best = max((r["rps"] for r in query), default=0.0)
    rss = report["server_rss_mb"]
    report["ratios_vs_floor"] = ratios(floor, rows)
    report["encode_ratio_service_vs_inprocess"] = svc_best / best
    report["query_ratio_vs_inprocess_encode"] = query_best / best
    hist = report.get("encode_batch_histogram") or {}
    cols = ["system", "endpoint", "concurrency", "requests", "errors", "rps"]
    cols += ["p50_ms", "p95_ms", "p99_ms"]
    md = [
        f"## Serving benchmark ({report['model']}, {os.cpu_count()} CPU cores, "
        f"{report.get('seconds_per_cell', 10):.0f} s per cell)",
        "",
        _md(floor + rows, cols),
        "",
        "recbento `recommend` against the floor (a BentoML service that does no work, same "
        "workers, same run):",
        "",
        _md(
            report["ratios_vs_floor"],
            ["concurrency", "floor_rps", "recbento_rps", "rps_ratio"]
            + ["floor_p99_ms", "recbento_p99_ms", "p99_ratio"],
        ),
        "",
        f"free-text recommend: best {query_best:,.1f} requests/s = "
        f"{query_best / best:.2f} of in-process encoding at its best batch ({best:,.0f} "
        f"texts/s at batch {best_bs}); encode through the service: best {svc_best:,.0f} "
        f"texts/s, ratio {svc_best / best:.2f}",
        "",
        "encoder batch sizes after the free-text load (BentoML's adaptive_batch_size "
        "histogram, cumulative counts by upper bound): "
        + (", ".join(f"<={k}: {v:,.0f}" for k, v in hist.items()) or "(not read)"),
        "",
        "in-process encode (texts/s by batch size): "
        + ", ".join(f"{k}: {v:,.0f}" for k, v in inproc.items()),
        "",
        "in-process recommend on synthetic catalogues (embedding-like vectors, k=10, reranker on):",
        "",
        _md(scaling, ["items", "index", "build_s", "p50_ms", "p99_ms", "recall@10"])
        if scaling
        else "(not measured in this run)",
        "",
        f"server memory (all processes): {rss['idle']:,.0f} MiB idle, "
        f"{rss['after_load']:,.0f} MiB after the load test",
    ]
    text = "\n".join(md)
    print(text)  # noqa: T201 - a benchmark script prints its table
    out.mkdir(parents=True, exist_ok=True)
    (out / "serving.md").write_text(text + "\n")
    (out / "serving.json").write_text(json.dumps(report, indent=2))
    _plot(floor + rows, scaling, out / "serving.png")


if __name__ == "__main__":
    main()
