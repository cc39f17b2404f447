"""`recbento batch --url` through BentoML's Python client against a real server."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from recommender.cli import app
from tests.procs import free_port, serve, stop
from tests.toy import INTERACTIONS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def server(toy_model):
    port = free_port()
    proc = serve(toy_model, port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.mark.integration
def test_batch_through_the_python_client_matches_in_process(tmp_path, server, toy_model):
    users = tmp_path / "users.csv"
    pd.DataFrame({"user_id": [10, 20, 30, 40, 999]}).to_csv(users, index=False)
    runner = CliRunner()
    remote, local = tmp_path / "remote.csv", tmp_path / "local.csv"
    res = runner.invoke(
        app,
        [
            "batch",
            "--input",
            str(users),
            "--output",
            str(remote),
            "--url",
            server,
            "-k",
            "3",
            "--batch-size",
            "2",
            "--concurrency",
            "2",
        ],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app,
        ["batch", "--input", str(users), "--output", str(local), "--model", toy_model, "-k", "3"],
    )
    assert res.exit_code == 0, res.output
    a, b = pd.read_csv(remote), pd.read_csv(local)
    pd.testing.assert_frame_equal(
        a[["user_id", "rank", "item_id"]], b[["user_id", "rank", "item_id"]]
    )
    seen = set(zip(INTERACTIONS.user_id, INTERACTIONS.item_id, strict=True))
    assert not any((u, i) in seen for u, i in zip(a.user_id, a.item_id, strict=True))


@pytest.mark.integration
def test_sync_http_client_example_from_the_readme(server):
    import bentoml

    with bentoml.SyncHTTPClient(server) as client:
        recs = client.recommend(user_id=10, k=2)
        assert len(recs["items"]) == 2
        many = client.recommend_batch(requests=[{"user_id": u, "k": 1} for u in (10, 20)])
        assert [len(r["items"]) for r in many] == [1, 1]
