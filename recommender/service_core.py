"""What the service and the CLI share: finding, building and loading the model.

Kept out of ``service.py`` so that it is testable without a server.
"""

from __future__ import annotations

import logging
import os
import threading

from recommender.bundle import load_from_store, resolve_tag
from recommender.errors import NotFoundError
from recommender.pipeline import EncodeFn, Recommender

__all__ = ["model_name", "ensure_model", "load_recommender"]

log = logging.getLogger(__name__)

_lock = threading.Lock()


def model_name() -> str:
    """The model a deployment serves: ``RECBENTO_MODEL``, default the demo model."""
    from recommender.build import DEMO_MODEL

    return os.environ.get("RECBENTO_MODEL", DEMO_MODEL)


def ensure_model(name: str | None = None) -> str:
    """Tag of ``name`` (latest version), building the demo model first if it is missing.

    Only the demo model is built on demand; any other missing name is an error.
    """
    from recommender.build import DEMO_MODEL, build_demo

    name = name or model_name()
    with _lock:
        try:
            return resolve_tag(name)
        except NotFoundError:
            if name.split(":")[0] != DEMO_MODEL:
                raise
            log.warning("model %r not found: building it from the bundled demo catalogue", name)
            return build_demo(name.split(":")[0]).tag


def load_recommender(name: str | None = None, *, encode: EncodeFn | None = None) -> Recommender:
    """Load ``name`` (see :func:`ensure_model`) into a ready :class:`Recommender`."""
    tag = ensure_model(name)
    bundle, tag = load_from_store(tag)
    return Recommender(bundle, encode=encode, tag=tag)
