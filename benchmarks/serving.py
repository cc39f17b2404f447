"""Serving benchmark: a real `bentoml serve` on loopback, driven by concurrent clients.

    python -m benchmarks.serving [--model recbento-demo] [--seconds 10] [--client aiohttp]

The load comes from closed-loop clients on the same machine (:mod:`benchmarks.load`):
aiohttp by default, which spends about 0.25 ms of the two cores per request; ``--client
httpx`` spends 1.3-1.9 ms, which is what limits the floor at concurrency 8 and narrows
every ratio against it.

Prints Markdown tables and writes ``benchmarks/results/serving.{md,json,png}``:

1. the floor: a BentoML service that does no work (``benchmarks/floor_service.py``),
   answering ``recommend`` in recbento's JSON shape with the same worker count, driven
   in the same run; recbento's ``recommend`` rows are reported as ratios against it;
2. RPS and p50/p95/p99 latency of ``recommend`` (by user, with explanations, by
   free-text query) and ``encode`` at several concurrencies, with the error count;
3. the encoder's batches from ``/metrics`` after the free-text load: BentoML's own
   ``adaptive_batch_size`` (calls merged into each batch) and recbento's
   ``recbento_encode_batch_texts`` (texts in each forward pass);
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
import tempfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.load import CLIENTS, drive
from benchmarks.server_process import (
    busiest_share,
    server_cpu_s,
    server_rss_mb,
    start_floor,
    start_server,
    stop_server,
    trained_model,
    worker_cpu_s,
)
from benchmarks.serving_inprocess import QUERIES, catalogue_scaling, inprocess_encode_best
from benchmarks.serving_report import write_report
from recommender.config import EncoderConfig
from recommender.services.settings import ServiceSettings
from tests.procs import free_port  # shared with the tests

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


#: Which endpoints run at which concurrencies (the targets: recommend at 8 against the
#: floor; free-text recommend at 32 against in-process encoding).
PLAN: dict[str, list[int]] = {
    "recommend": [1, 8, 32],
    "recommend+explain": [8],
    "recommend(query)": [8, 32],
    "encode": [8, 64],
}


def parse_plan(entries: list[str]) -> dict[str, list[int]]:
    """:data:`PLAN` with the concurrencies of the endpoints ``entries`` name replaced.

    >>> parse_plan(["recommend(query)=8,32,128"])["recommend(query)"]
    [8, 32, 128]
    >>> parse_plan(["encode="])["encode"]
    []
    """
    plan = {name: list(cs) for name, cs in PLAN.items()}
    for entry in entries:
        name, _, values = entry.partition("=")
        if name not in plan or not _:
            raise argparse.ArgumentTypeError(
                f"--plan {entry!r}: expected ENDPOINT=C1,C2,... with ENDPOINT one of {list(plan)}"
            )
        plan[name] = [int(v) for v in values.split(",") if v.strip()]
    return plan


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
    proc: subprocess.Popen | None = None,
    client: str = "aiohttp",
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Drive each endpoint of ``plan`` at each concurrency; rows, and the encode batches.

    The encoder's batch histograms are read from the server's ``/metrics`` once the
    free-text requests are done (:func:`encode_batches`).
    With the server's ``proc``, each row also has ``server_cpu_ms``: CPU time of all the
    server's processes per answered request, which the load generator and anything else
    on the machine do not inflate the way they do latency; and ``busiest_worker``: the
    busiest API worker's share of the API workers' CPU (0.5 with two workers evenly
    loaded, 1.0 when one worker did all the work). A ``recommend`` row of recbento also
    has ``requests_per_pass``: the requests its workers scored together, on average
    (``recbento_recommend_batch_requests`` on ``/metrics``, before and after the cell).
    """
    routes = endpoints(n_users, texts_per_encode)
    rows, batches = [], {}
    for name, concurrencies in plan.items():
        path, body = routes[name]
        asyncio.run(drive(base + path, body, 2, 1.0, 20, client))  # warm-up, not counted
        for c in concurrencies:
            cpu0, workers0 = server_cpu_s(proc), worker_cpu_s(proc)
            passes0 = scoring_passes(base) if system == "recbento" else None
            res = asyncio.run(drive(base + path, body, c, seconds, 50_000, client))
            answered = res["requests"] - res["errors"]
            res["server_cpu_ms"] = (server_cpu_s(proc) - cpu0) * 1000 / max(answered, 1)
            res["busiest_worker"] = busiest_share(workers0, worker_cpu_s(proc))
            if passes0 is not None and path == "/recommend":
                passes = scoring_passes(base)
                n = passes["count"] - passes0["count"]
                res["requests_per_pass"] = (passes["sum"] - passes0["sum"]) / n if n else None
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
    if any(name in plan for name in ("recommend(query)", "encode")):
        batches = encode_batches(base)
    return rows, batches


def encode_batches(base: str) -> dict[str, dict[str, float]]:
    """The encoders' batches so far, from the server's ``/metrics``.

    ``calls``: BentoML's ``adaptive_batch_size`` in the encoder service (calls merged
    into each batch); ``texts_worker`` and ``texts_service``: recbento's
    ``recbento_encode_batch_texts`` (texts in each forward pass) in the API workers
    (free-text queries encoded where they arrived) and in the encoder service (``/encode``
    calls, and free-text queries where the workers call it). Each maps ``le`` ->
    cumulative count, plus ``sum`` and ``count``.
    """
    text = httpx.get(f"{base}/metrics", timeout=30).text
    texts = "recbento_encode_batch_texts"
    return {
        "calls": _histogram(text, "bentoml_service_adaptive_batch_size", method_name="encode"),
        "texts_worker": _histogram(text, texts, service="recbento"),
        "texts_service": _histogram(text, texts, service="recbento-encoder"),
    }


def scoring_passes(base: str) -> dict[str, float]:
    """``recommend`` requests scored so far (``sum``) and the passes that scored them
    (``count``), over the API workers."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    h = _histogram(text, "recbento_recommend_batch_requests")
    return {"sum": h.get("sum", 0.0), "count": h.get("count", 0.0)}


def _histogram(text: str, metric: str, **labels: str) -> dict[str, float]:
    """Buckets (by ``le``), ``sum`` and ``count`` of one Prometheus histogram, added over
    the label sets that have ``labels`` (prometheus_client's parser reads the text)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != metric:
            continue
        for s in family.samples:
            if any(s.labels.get(k) != v for k, v in labels.items()):
                continue
            if s.name == f"{metric}_bucket":
                key = s.labels["le"]
            elif s.name in (f"{metric}_sum", f"{metric}_count"):
                key = s.name.rsplit("_", 1)[1]
            else:
                continue
            out[key] = out.get(key, 0.0) + s.value
    return out


def floor_test(
    seconds: float,
    n_users: int,
    concurrencies: list[int],
    client: str = "aiohttp",
    retries: int = 4,
) -> list[dict[str, Any]]:
    """The same ``recommend`` load against a BentoML service that does no work.

    Plain BentoML sometimes lands every connection of a cell on one worker, which
    then measures one core instead of the floor and flatters every ratio against it:
    such a cell (busiest worker above :data:`UNBALANCED`) is run again on a freshly
    started floor (a server that did it once tends to do it again), up to ``retries``
    times, and the row says how many runs it took (``floor_runs``).
    """
    port = free_port()
    proc = start_floor(port)
    rows = []
    try:
        for c in concurrencies:
            for run in range(1, retries + 2):
                if run > 1:
                    stop_server(proc)
                    port = free_port()
                    proc = start_floor(port)
                (row,), _ = load_test(
                    f"http://127.0.0.1:{port}",
                    {"recommend": [c]},
                    seconds,
                    n_users,
                    1,
                    system="floor",
                    proc=proc,
                    client=client,
                )
                row["floor_runs"] = run
                if c == 1 or not row.get("busiest_worker", 0.0) > UNBALANCED:
                    break
                log.info(
                    "floor at concurrency %d ran on one worker (%.2f): again",
                    c,
                    row["busiest_worker"],
                )
            rows.append(row)
    finally:
        stop_server(proc)
    return rows


#: A floor cell whose busiest API worker did more than this share of the work ran on one.
UNBALANCED = 0.75


def gpu_name() -> str | None:
    """The CUDA device the encoder service runs on, or ``None`` on a CPU-only machine."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="recbento-demo")
    ap.add_argument("--seconds", type=float, default=10.0, help="per endpoint and concurrency")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--texts-per-encode", type=int, default=8)
    ap.add_argument(
        "--client",
        choices=CLIENTS,
        default="aiohttp",
        help="the load generator's HTTP client (httpx: the heavier one earlier runs used)",
    )
    ap.add_argument(
        "--plan",
        nargs="+",
        default=[],
        metavar="ENDPOINT=C1,C2",
        help="concurrencies for an endpoint instead of the default plan's, e.g. "
        "'recommend(query)=8,32,128' (an empty list skips the endpoint)",
    )
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
    plan = parse_plan(args.plan)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a log line per request costs CPU
    args.out.mkdir(parents=True, exist_ok=True)

    from recommender.bundle import load_from_store

    tag = trained_model(args.model)
    bundle, _ = load_from_store(tag)
    n_users = (
        int(bundle.interactions["user_id"].max())
        if bundle.interactions["user_id"].dtype.kind in "iu"
        else 100
    )
    enc_cfg = bundle.config.get("encoder", {})
    del bundle

    floor = floor_test(args.seconds, n_users, plan["recommend"], args.client)
    port = free_port()
    # a fresh feedback store unless one is named: the impressions of earlier runs (a
    # million lists make a 1 GB SQLite file) slowed every answer's logging
    given_store = os.environ.get("RECBENTO_FEEDBACK_DB")
    with tempfile.TemporaryDirectory(prefix="recbento-serving-") as tmp:
        store = given_store or str(Path(tmp) / "feedback.db")
        proc = start_server(tag, port, env={"RECBENTO_FEEDBACK_DB": store})
        try:
            rss_idle = server_rss_mb(proc)
            rows, batches = load_test(
                f"http://127.0.0.1:{port}",
                plan,
                args.seconds,
                n_users,
                args.texts_per_encode,
                proc=proc,
                client=args.client,
            )
            rss_loaded = server_rss_mb(proc)
        finally:
            stop_server(proc)
    precision = ServiceSettings.from_env().encode_precision  # as the served encoders
    inproc, inproc_dtype = inprocess_encode_best(
        EncoderConfig.from_config(enc_cfg), precision=precision
    )
    skip = args.skip_scaling or args.scaling_from is not None
    scaling = [] if skip else catalogue_scaling(args.sizes)

    if args.scaling_from is not None:
        scaling = json.loads(args.scaling_from.read_text())["catalogue_scaling"]
    report = {
        "model": tag,
        "seconds_per_cell": args.seconds,
        "client": args.client,
        "feedback_store": "RECBENTO_FEEDBACK_DB" if given_store else "a fresh SQLite file",
        "gpu": gpu_name(),
        "floor": floor,
        "load": rows,
        "encode_batch_histogram": batches,
        "encode_inprocess_texts_per_s": inproc,
        "encode_precision": inproc_dtype,
        "catalogue_scaling": scaling,
        "server_rss_mb": {"idle": rss_idle, "after_load": rss_loaded},
    }
    write_report(report, args.out)


if __name__ == "__main__":
    main()
