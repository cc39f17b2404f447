"""The keep-alive limit: which answers ask the client to reconnect."""

from __future__ import annotations

import asyncio

import pytest

from recommender.errors import InputError
from recommender.services import ServiceSettings
from recommender.services.keepalive import KeepAliveLimit


async def _ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x", b"1")]})
    await send({"type": "http.response.body", "body": b"{}"})


def _closing(app: KeepAliveLimit, peer: tuple | None, kind: str = "http") -> bool:
    """Whether the answer to one request from ``peer`` carries ``Connection: close``."""
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    asyncio.run(app({"type": kind, "client": peer}, None, send))
    headers = dict(sent[0]["headers"]) if sent else {}
    assert sent[-1]["type"] == "http.response.body"  # the body still goes out
    return headers.get(b"connection") == b"close"


def test_every_nth_answer_of_a_connection_closes_it():
    app = KeepAliveLimit(_ok, max_requests=3)
    a, b = ("10.0.0.1", 5000), ("10.0.0.1", 5001)
    got = [_closing(app, a) for _ in range(7)]
    assert got == [False, False, True, False, False, True, False]
    assert [_closing(app, b) for _ in range(3)] == [False, False, True]  # counted apart


def test_limit_off_and_unknown_peers_never_close():
    off = KeepAliveLimit(_ok, max_requests=0)
    assert not any(_closing(off, ("h", 1)) for _ in range(10))
    on = KeepAliveLimit(_ok, max_requests=1)
    assert not _closing(on, None)  # no client address (a unix socket): left alone
    assert _closing(on, ("h", 1))


def test_connections_that_never_reach_the_limit_are_forgotten():
    app = KeepAliveLimit(_ok, max_requests=2)
    for port in range(10_000):
        _closing(app, ("h", port))
    assert len(app._answered) <= 4096
    assert _closing(app, ("h", 9_999))  # the newest are still counted


def test_the_setting_comes_from_the_environment_and_bad_values_name_it(monkeypatch):
    assert ServiceSettings.from_env().keepalive_requests == 10
    monkeypatch.setenv("RECBENTO_KEEPALIVE_REQUESTS", "0")
    assert ServiceSettings.from_env().keepalive_requests == 0  # off
    for bad in ("-1", "ten", "2.5"):
        monkeypatch.setenv("RECBENTO_KEEPALIVE_REQUESTS", bad)
        with pytest.raises(InputError, match="RECBENTO_KEEPALIVE_REQUESTS"):
            ServiceSettings.from_env()
