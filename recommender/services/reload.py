"""Serve a newer version of the model when one appears, with no restart.

A deployment that serves a model by name (``movies``, not ``movies:v3``) follows its
latest version: :class:`ModelWatcher` looks at the store every ``interval`` seconds and,
when a newer version is there (a ``recbento train`` or ``refresh`` finished), loads it
beside the one serving, replays the feedback it has not folded in, and swaps it in
with one reference assignment. Requests in flight finish on the version they started
on; no request fails during the switch. A pinned version (``name:version``, or the exact
version a Bento packed) is never replaced, unless the deployment shares a model store
with a scheduled refresh (``RECBENTO_MODEL_STORE``): then it follows the versions
derived from the pinned one (see :func:`recommender.model_store.newest_version`).

The demo model starts text-only, so a first ``bentoml serve`` answers at once;
:func:`start_demo_training` trains it in a background process, and the watcher swaps
the trained version in when it is saved.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from recommender.errors import RecbentoError
from recommender.model_store import follows_latest, newest_version, shared_store_path

if TYPE_CHECKING:
    from recommender.services.handlers import Handlers

__all__ = ["ModelWatcher", "follows_latest", "follows_new_versions", "start_demo_training"]

log = logging.getLogger(__name__)


def follows_new_versions(target: str) -> bool:
    """Whether a deployment serving ``target`` swaps in newer versions (see the module)."""
    return follows_latest(target) or shared_store_path() is not None


class ModelWatcher:
    """Swap newer versions of ``name`` into ``handlers`` (see the module docstring).

    Parameters
    ----------
    handlers : Handlers
        The worker's APIs; their ``model`` is replaced.
    name : str
        What the deployment serves: a model name, or with a shared model store also
        an exact version (whose derived versions are followed).
    interval : float
        Seconds between looks at the store; 0 turns the watcher off.
    """

    def __init__(self, handlers: Handlers, name: str, interval: float) -> None:
        self.handlers = handlers
        self.name = name
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ModelWatcher:
        """Look in a daemon thread, every ``interval`` seconds."""
        if self.interval > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="recbento-reload", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except RecbentoError as exc:  # a broken new version: keep serving the old one
                log.error("could not load the newer version of %s: %s", self.name, exc.message)
            except Exception:  # a shared volume's hiccup must not stop the watching for good
                log.exception("looking for a newer version of %s failed; trying again", self.name)

    def check(self) -> bool:
        """Swap in the latest version if it is newer than the one serving; whether it did."""
        from recommender.refresh import attach_feedback
        from recommender.service_core import load
        from recommender.services.handlers import freeze_heap

        latest = newest_version(self.name)
        current = self.handlers.model
        if latest == current.tag or not _newer(latest, current.tag):
            return False
        log.info("loading %s to replace %s", latest, current.tag)
        model = load(latest, encode=current.encode_fn)
        attach_feedback(model, self.handlers.store)  # unfolded events, and every dislike
        self.handlers.model = model  # one assignment: each request sees one version
        del current
        freeze_heap(refreeze=True)  # the old version's cycles go, the new one is frozen
        log.info("now serving %s", latest)
        return True


def _newer(candidate: str, current: str | None) -> bool:
    """Whether ``candidate`` was saved after ``current`` (store creation times).

    A ``current`` deleted from the store counts as older: deleting the served version
    (a bad refresh) rolls the server back to the newest one left.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    if current is None:
        return True
    try:
        served = bentoml.models.get(current).info.creation_time
    except NotFound:
        return True
    return bentoml.models.get(candidate).info.creation_time > served


def start_demo_training(tag: str) -> subprocess.Popen | None:
    """Train the demo model in a background process unless it is trained or training.

    ``recbento train`` saves the trained version under the same name; a watcher then
    swaps it in. ``RECBENTO_TRAIN_DEMO=0`` turns this off. The process writes its log to
    ``$BENTOML_HOME/recbento/logs/train-demo.log``.
    """
    import bentoml

    if os.environ.get("RECBENTO_TRAIN_DEMO", "1") == "0":
        return None
    components = bentoml.models.get(tag).info.metadata.get("components") or []
    if "tower" in components:
        return None
    home = Path(bentoml.models.get(tag).path).parents[2]
    logs = home / "recbento" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    lock = os.open(logs / "train-demo.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:  # one training per store: the child inherits the lock and holds it until it exits
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        log.info("the demo model is already being trained")
        return None
    script = (  # at a lower priority: requests go first on the same cores
        "import os, sys, bentoml\n"
        "os.nice(10)\n"
        "from recommender.build import retrain\n"
        "name = sys.argv[1].split(':')[0]\n"
        "if 'tower' not in (bentoml.models.get(name).info.metadata.get('components') or []):\n"
        "    print(retrain(name, progress=False).tag, flush=True)\n"
    )
    out = open(logs / "train-demo.log", "ab")  # noqa: SIM115 - handed to the child
    log.warning(
        "serving the text-only demo model now; training it in the background "
        "(log: %s); the trained version is served as soon as it is saved",
        logs / "train-demo.log",
    )
    try:
        return subprocess.Popen(
            [sys.executable, "-c", script, tag],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=(lock,),
            env={**os.environ, "RECBENTO_TRAIN_DEMO": "0"},
        )
    finally:
        os.close(lock)  # the child's copy keeps the lock
        out.close()
