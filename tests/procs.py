"""Stop a `bentoml serve` started by a test, workers included.

BentoML's workers run in process groups of their own, so signalling the server's group
reaches the arbiter only: a SIGKILLed arbiter would leave its workers running (and
holding the port). These helpers signal every process of the tree by PID.
"""

from __future__ import annotations

import signal
import subprocess

import psutil


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
