"""Start and stop `bentoml serve` for tests and benchmarks, workers included.

BentoML's workers run in process groups of their own, so signalling the server's group
reaches the arbiter only: a SIGKILLed arbiter would leave its workers running (and
holding the port). These helpers signal every process of the tree by PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(
    model: str | None,
    port: int,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    target: str = "service:Recommender",
    cwd: Path | None = None,
) -> subprocess.Popen:
    """`bentoml serve target` of ``model`` on 127.0.0.1:``port``, once ``/readyz`` is 200.

    ``target`` is the service in this checkout (or in the checkout ``cwd``), or a built
    Bento's tag. ``model`` None leaves ``RECBENTO_MODEL`` unset, as a deployment of a
    Bento does.

    The server's output goes to a temporary file (a pipe would fill up and block a busy
    server) and is raised with the error if it exits early.
    """
    log = tempfile.TemporaryFile()
    full_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True"}
    if model is None:
        full_env.pop("RECBENTO_MODEL", None)
    else:
        full_env["RECBENTO_MODEL"] = model
    full_env.update(env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "bentoml", "serve", target]
        + ["--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd or ROOT,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError("bentoml serve exited:\n" + log.read().decode(errors="replace"))
        time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"bentoml serve was not ready within {timeout:.0f} s")


def tree(proc: subprocess.Popen) -> list[psutil.Process]:
    """The server process and all its descendants, parent first."""
    try:
        root = psutil.Process(proc.pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def kill_hard(proc: subprocess.Popen) -> None:
    """SIGKILL the whole tree at once: a crash, no shutdown hooks anywhere."""
    procs = tree(proc)
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=20)
    proc.wait(timeout=20)


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM the server (it stops its workers); SIGKILL whatever is left after ``timeout``."""
    procs = tree(proc)
    try:
        procs[0].send_signal(signal.SIGTERM)
    except (IndexError, psutil.NoSuchProcess):
        pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # pragma: no cover - killed above
        proc.kill()
