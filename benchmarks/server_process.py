"""A served BentoML process tree, as the benchmarks measure it: start, stop, CPU, memory.

``bentoml serve`` runs a parent and one process per worker (and per service). The
serving, soak and replica benchmarks start it through the tests' own helpers
(:mod:`tests.procs`) and read each process's CPU time and resident memory with psutil,
so a figure counts every process that answered.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

from tests.procs import free_port, serve, stop  # shared with the tests

log = logging.getLogger(__name__)

__all__ = [
    "busiest_share",
    "free_port",
    "server_cpu_s",
    "server_rss_mb",
    "start_floor",
    "start_server",
    "stop_server",
    "trained_model",
    "worker_cpu_s",
]


def trained_model(name: str) -> str:
    """Tag of the model a benchmark serves: ``name``'s latest version, trained.

    A server given the text-only demo model serves it at once and trains it in a
    background process (:func:`recommender.services.reload.start_demo_training`): a
    benchmark would measure that training sharing the cores, then a model swap. The demo
    model is therefore built and trained here, before any server starts. A name with a
    version (``recbento-demo:abc``) is served as it is, trained or not.
    """
    import bentoml

    from recommender.build import DEMO_MODEL, retrain
    from recommender.service_core import ensure_model

    tag = ensure_model(name)
    components = bentoml.models.get(tag).info.metadata.get("components") or []
    if name == DEMO_MODEL and "tower" not in components:
        log.info("training %s before serving it (a few minutes, once per model store)", tag)
        tag = str(retrain(tag).tag)
    return tag


def start_server(
    model: str, port: int, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """Start `bentoml serve` for ``model`` on 127.0.0.1:``port`` and wait until ready.

    The server never starts a background training (``RECBENTO_TRAIN_DEMO=0``): what is
    measured is serving alone. Benchmarks pass a :func:`trained_model`. ``cwd``: serve
    the recbento of another checkout (its packages first on the path) instead of this one.
    """
    env = {"RECBENTO_TRAIN_DEMO": "0", **(env or {})}
    if cwd is not None:
        env["PYTHONPATH"] = str(cwd)
    return serve(model, port, env=env, timeout=600, cwd=cwd)


def start_floor(port: int) -> subprocess.Popen:
    """Start the floor (``benchmarks/floor_service.py``) on 127.0.0.1:``port``."""
    return serve(None, port, target="benchmarks.floor_service:Floor", timeout=120)


def stop_server(proc: subprocess.Popen) -> None:
    """Stop the server and its workers by PID (they run in process groups of their own)."""
    stop(proc, timeout=30)


def _each_process(proc: subprocess.Popen, measure: Any) -> dict[int, float]:
    """``measure`` of the server and each of its children still running, by PID.

    A process whose ``measure`` is ``None`` is left out.
    """
    import psutil

    p = psutil.Process(proc.pid)
    out = {}
    for q in [p, *p.children(recursive=True)]:
        try:
            value = measure(q)
        except psutil.NoSuchProcess:
            continue
        if value is not None:
            out[q.pid] = value
    return out


def _cpu_s(q: Any) -> float:
    return sum(q.cpu_times()[:2])  # user + system


def server_cpu_s(proc: subprocess.Popen | None) -> float:
    """CPU seconds (user + system) the server and all its children have used so far."""
    if proc is None:
        return float("nan")
    return sum(_each_process(proc, _cpu_s).values())


def server_rss_mb(proc: subprocess.Popen) -> float:
    """Resident memory of the server and all its children, in MiB."""
    return sum(_each_process(proc, lambda q: q.memory_info().rss).values()) / 2**20


def worker_cpu_s(proc: subprocess.Popen | None) -> dict[int, float]:
    """CPU seconds so far of each worker answering the API (the encoder's left out)."""
    if proc is None:
        return {}

    def api_worker_cpu(q: Any) -> float | None:
        cmd = " ".join(q.cmdline())
        api = "_bentoml_impl.worker.service" in cmd and "-encoder" not in cmd
        return _cpu_s(q) if api else None

    return _each_process(proc, api_worker_cpu)


def busiest_share(before: dict[int, float], after: dict[int, float]) -> float:
    """The busiest API worker's share of all API workers' CPU between two readings.

    >>> busiest_share({1: 0.0, 2: 0.0}, {1: 3.0, 2: 1.0})
    0.75
    """
    used = [after[p] - before.get(p, 0.0) for p in after]
    return max(used) / sum(used) if used and sum(used) > 0 else float("nan")
