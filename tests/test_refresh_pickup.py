"""A scheduled refresh reaches a served Bento with no restart and no lost event.

What the Kubernetes CronJob of ``deploy/kubernetes/components/refresh`` does, on real
processes: a built Bento is served (``bentoml serve`` of its tag, RECBENTO_MODEL unset,
as in the container) with a model store shared through ``RECBENTO_MODEL_STORE``;
feedback keeps coming while ``python -m recommender.cli refresh`` runs as a separate
process from the Bento's own source folder (the CronJob's command, no ``--model``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.procs import free_port, serve, stop

N_ITEMS = 8  # the toy catalogue


def _events(url: str, acked: list[tuple[int, int]], errors: list[str], done: threading.Event):
    """Post one event at a time for a new user each; record what was acknowledged."""
    with httpx.Client(timeout=30) as client:
        n = 0
        while not done.is_set():
            user, item = 1000 + n, n % N_ITEMS + 1
            event = {"user_id": user, "item_id": item, "timestamp": 10**9 + n}
            r = client.post(f"{url}/feedback", json={"events": [event]})
            if r.status_code == 200:
                acked.append((user, item))
            else:
                errors.append(f"{r.status_code} {r.text}")
            n += 1
            time.sleep(1.0)  # a steady trickle: every new user also joins the group fit


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_refresh_is_served_without_restart_and_loses_no_event(
    bento, toy_model, tmp_path, backend, request
):
    from recommender.bundle import Bundle
    from recommender.model_store import SharedModelStore

    db = str(tmp_path / "fb.db") if backend == "sqlite" else request.getfixturevalue("pg_url")
    shared = tmp_path / "models"
    env = {"RECBENTO_MODEL_STORE": str(shared), "RECBENTO_FEEDBACK_DB": db}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = serve(None, port, target=str(bento.tag), env={**env, "RECBENTO_RELOAD_SECONDS": "1"})
    acked: list[tuple[int, int]] = []
    errors: list[str] = []
    done = threading.Event()
    poster = threading.Thread(target=_events, args=(url, acked, errors, done))
    try:
        first = httpx.post(f"{url}/recommend", json={"user_id": 30, "k": 3}, timeout=30).json()
        assert first["model"] == toy_model  # the version the Bento packed...
        assert (shared / toy_model.replace(":", "/") / "model.yaml").is_file()  # ...copied in
        poster.start()
        _wait_for(lambda: len(acked) >= 6, 60, "6 acknowledged events")

        cronjob = {k: v for k, v in os.environ.items() if k != "RECBENTO_MODEL"}
        out = subprocess.run(
            [sys.executable, "-m", "recommender.cli", "refresh"],
            cwd=Path(bento.path) / "src",  # the Bento's code, as in the container
            env={**cronjob, **env},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        new = out.stdout.strip().splitlines()[-1]
        assert new.startswith(toy_model.split(":")[0] + ":") and new != toy_model

        def serving_new() -> bool:  # every worker: several answers in a row on the new one
            answers = [
                httpx.post(f"{url}/recommend", json={"user_id": 30, "k": 3}, timeout=30).json()
                for _ in range(6)
            ]
            return all(a["model"] == new for a in answers)

        _wait_for(serving_new, 60, f"the server to serve {new}")
        n_after_swap = len(acked)
        _wait_for(lambda: len(acked) >= n_after_swap + 4, 60, "events after the swap")
        done.set()
        poster.join()
        assert not errors, errors[:3]
        assert proc.poll() is None  # the same server process throughout: no restart

        bundle = Bundle.load(SharedModelStore(shared).get(new).path)
        folded = bundle.config["feedback_seq"]
        # the refresh ran while events came in: some were folded, later ones were not
        assert 0 < folded < len(acked)
        in_model = set(
            zip(bundle.interactions["user_id"], bundle.interactions["item_id"], strict=True)
        )
        assert set(acked[:folded]) <= in_model  # events are numbered in the order they came
        assert not set(acked[folded:]) & in_model
        answers = []
        for start in range(0, len(acked), 1000):  # each one counts: folded in, or replayed
            reqs = [{"user_id": u, "k": N_ITEMS} for u, _ in acked[start : start + 1000]]
            r = httpx.post(f"{url}/recommend_batch", json={"requests": reqs}, timeout=60)
            assert r.status_code == 200, r.text
            answers += r.json()
        for (user, item), body in zip(acked, answers, strict=True):
            assert body["model"] == new
            assert body["cold_start"] is False, (user, item)
            assert item not in [i["item_id"] for i in body["items"]], (user, item)
    finally:
        done.set()
        if poster.is_alive():
            poster.join()
        stop(proc)


@pytest.mark.integration
def test_the_cronjob_command_finds_python_and_the_bento_code_in_the_image(bento):
    """The CronJob overrides the image's entrypoint: its command must work without it."""
    import yaml

    cron = Path(__file__).resolve().parents[1] / "deploy/kubernetes/components/refresh/cronjob.yaml"
    pod = yaml.safe_load(cron.read_text())["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    dockerfile = (Path(bento.path) / "env" / "docker" / "Dockerfile").read_text()
    # `python` is the image's environment (what the entrypoint would have activated)...
    assert c["command"][0] == "python" and "ENV PATH=/app/.venv/bin:" in dockerfile
    # ...and the working directory is the Bento's code, with its manifest one level up
    bento_path = Path(c["workingDir"]).parent
    assert f"ARG BENTO_PATH={bento_path}" in dockerfile
    assert "COPY --chown=bentoml:bentoml . ./" in dockerfile  # the whole Bento, models/ too
    assert Path(c["workingDir"]).name == "src"
    assert (Path(bento.path) / "src" / "recommender" / "cli.py").is_file()
    assert (Path(bento.path) / "src" / "recommender" / "model_store.py").is_file()
    assert (Path(bento.path) / "bento.yaml").is_file()
