"""What the service and the CLI share: finding, building and loading the model.

Kept out of ``service.py`` so that it is testable without a server.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from recommender.bundle import load_from_store, resolve_tag
from recommender.errors import NotFoundError
from recommender.pipeline import EncodeFn, Recommender

__all__ = ["model_name", "packed_model", "ensure_model", "load_recommender"]

log = logging.getLogger(__name__)

_lock = threading.Lock()


def model_name() -> str:
    """The model a deployment serves.

    ``RECBENTO_MODEL`` when set; else, inside a built Bento, the exact model version the
    Bento packed (so a container serves what it was built with, whatever its
    environment); else the demo model.
    """
    from recommender.build import DEMO_MODEL

    return os.environ.get("RECBENTO_MODEL") or packed_model() or DEMO_MODEL


def packed_model(bento_root: Path | None = None) -> str | None:
    """``name:version`` of the model listed in the enclosing Bento's ``bento.yaml``, if any.

    A Bento lays out ``bento.yaml`` beside ``src/``, which holds this package.
    """
    import yaml

    root = bento_root or Path(__file__).resolve().parents[2]
    manifest = root / "bento.yaml"
    if not manifest.is_file():
        return None
    info = yaml.safe_load(manifest.read_text()) or {}
    listed = list(info.get("models") or [])
    for svc in info.get("services") or []:  # BentoML 1.4 lists models per service
        listed += svc.get("models") or []
    tags = list(dict.fromkeys(m["tag"] for m in listed if isinstance(m, dict) and "tag" in m))
    if not tags:
        return None
    if len(tags) > 1:
        log.warning(
            "the Bento packs %d models; serving %s (or set RECBENTO_MODEL)", len(tags), tags[0]
        )
    return str(tags[0])


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
