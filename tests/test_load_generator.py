"""The serving benchmarks' load generator counts what a server really answered."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from benchmarks.load import CLIENTS, drive


async def _run(client: str) -> tuple[dict, list[dict]]:
    seen: list[dict] = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        # every third request fails, as an overloaded server's 503s would
        return web.json_response({"ok": True}, status=503 if body["n"] % 3 == 2 else 200)

    app = web.Application()
    app.router.add_post("/recommend", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # the port is ours before the server starts
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        res = await drive(
            f"http://127.0.0.1:{port}/recommend",
            lambda w, n: {"client": w, "n": n},
            concurrency=4,
            seconds=30,
            max_requests=60,
            client=client,
        )
    finally:
        await runner.cleanup()
    return res, seen


@pytest.mark.parametrize("client", CLIENTS)
def test_drive_counts_answers_and_errors(client: str) -> None:
    res, seen = asyncio.run(_run(client))
    assert res["requests"] == len(seen) == 60
    failed = sum(1 for b in seen if b["n"] % 3 == 2)
    assert res["errors"] == failed > 0
    assert {b["client"] for b in seen} == {0, 1, 2, 3}  # four clients, each its own counter
    assert res["rps"] > 0 and 0 < res["p50_ms"] <= res["p99_ms"]


def test_drive_counts_a_refused_connection_as_an_error() -> None:
    res = asyncio.run(
        drive("http://127.0.0.1:9/recommend", lambda w, n: {}, 2, seconds=5, max_requests=4)
    )
    assert res["requests"] == res["errors"] == 4 and res["rps"] == 0
