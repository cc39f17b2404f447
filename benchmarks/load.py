"""The serving benchmarks' load generator: closed-loop clients posting JSON over HTTP.

Each of ``concurrency`` clients sends its next request as soon as the last one is
answered, over connections that are kept alive. The generator runs on the same two
cores as the server it measures, so its own CPU per request matters: pick the client
with ``client`` (see :data:`CLIENTS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import numpy as np

__all__ = ["CLIENTS", "drive"]

#: The load generator's HTTP clients. aiohttp (the default) costs the two shared cores
#: about 0.25 ms of CPU per request; httpx about 1.3-1.9 ms, enough to be what limits a
#: fast server (the floor) and to hide how far recbento is from it.
CLIENTS = ("aiohttp", "httpx")


@contextlib.asynccontextmanager
async def _poster(client: str, concurrency: int) -> AsyncIterator[Any]:
    """``post(url, body) -> HTTP status`` over ``concurrency`` kept-alive connections;
    a failed request (refused, reset, timed out) is status 0."""
    if client == "httpx":
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=60, limits=limits) as hc:

            async def post_httpx(url: str, body: Any) -> int:
                try:
                    return (await hc.post(url, json=body)).status_code
                except httpx.HTTPError:
                    return 0

            yield post_httpx
        return
    if client != "aiohttp":
        raise ValueError(f"client={client!r}: expected one of {CLIENTS}")
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def post_aiohttp(url: str, body: Any) -> int:
            try:
                async with session.post(url, json=body) as r:
                    await r.read()
                    return r.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                return 0

        yield post_aiohttp


async def drive(
    url: str,
    body_fn: Any,
    concurrency: int,
    seconds: float,
    max_requests: int,
    client: str = "aiohttp",
) -> dict[str, Any]:
    """``concurrency`` clients each posting ``body_fn(client_no, request_no)`` to ``url``
    back to back, until ``seconds`` pass or ``max_requests`` are sent.

    Returns the request and error counts (an error: any answer but 200, or none),
    requests/s answered and the p50/p95/p99 latency of the answered ones in ms.
    """
    latencies: list[float] = []
    errors = 0
    sent = 0
    stop_at = time.perf_counter() + seconds
    async with _poster(client, concurrency) as post:

        async def worker(wid: int) -> None:
            nonlocal errors, sent
            n = 0
            while time.perf_counter() < stop_at and sent < max_requests:
                sent += 1
                t0 = time.perf_counter()
                ok = await post(url, body_fn(wid, n)) == 200
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
