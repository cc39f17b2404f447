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
from recommender.serving import EncodeFn, LoadedModel, load_model

__all__ = [
    "ensure_model",
    "load",
    "model_name",
    "packed_model",
    "packed_models",
    "share_model_store",
    "stored_config",
]

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

    A Bento lays out ``bento.yaml`` beside ``src/``; BentoML imports a Bento's service
    from inside ``src/``, and this package sits there too unless it was installed from
    PyPI (a user's own Bento that depends on recbento).
    """
    tags = [t for t in packed_models(bento_root) if not _is_encoder_checkpoint(t)]
    if not tags:
        return None
    if len(tags) > 1:
        log.warning(
            "the Bento packs %d models; serving %s (or set RECBENTO_MODEL)", len(tags), tags[0]
        )
    return str(tags[0])


def packed_models(bento_root: Path | None = None) -> list[str]:
    """Every model tag the enclosing Bento lists (the bundle and its encoder), or ``[]``."""
    import yaml

    root = _bento_root(bento_root)
    if root is None:
        return []
    info = yaml.safe_load((root / "bento.yaml").read_text()) or {}
    listed = list(info.get("models") or [])
    for svc in info.get("services") or []:  # BentoML 1.4 lists models per service
        listed += svc.get("models") or []
    return list(dict.fromkeys(m["tag"] for m in listed if isinstance(m, dict) and "tag" in m))


def _bento_root(bento_root: Path | None = None) -> Path | None:
    roots = [bento_root] if bento_root else [Path.cwd().parent, Path(__file__).resolve().parents[2]]
    root = next((r for r in roots if (r / "bento.yaml").is_file()), None)
    return root if root is not None and (root / "src").is_dir() else None


def share_model_store() -> Path | None:
    """Switch to the shared model store when ``RECBENTO_MODEL_STORE`` is set (else None).

    Seeds it with the models the enclosing Bento packed, read from the Bento's own
    store (``models/`` in a container image) or else the current one. See
    :mod:`recommender.model_store`.
    """
    from recommender.model_store import shared_store_path, use_shared_store

    if shared_store_path() is None:
        return None
    from bentoml._internal.models.model import ModelStore

    root = _bento_root()
    own = root / "models" if root is not None else None
    source = ModelStore(own) if own is not None and own.is_dir() and any(own.iterdir()) else None
    return use_shared_store(packed_models(root) if root is not None else [], source=source)


def _is_encoder_checkpoint(tag: str) -> bool:
    """Whether ``tag`` is a model's encoder checkpoint (see :mod:`recommender.encoder_store`)."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(tag).info.labels.get("part") == "encoder"
    except (NotFound, ValueError):
        return tag.split(":")[0].endswith("-encoder")


def stored_config(name: str) -> dict | None:
    """``config.json`` of model ``name`` when it is in the store, else ``None`` (no build)."""
    import json

    try:
        tag = resolve_tag(name)
    except NotFoundError:
        return None
    import bentoml

    return json.loads(Path(bentoml.models.get(tag).path, "config.json").read_text())


def ensure_model(name: str | None = None) -> str:
    """Tag of ``name`` (latest version), building the demo model first if it is missing.

    Only the demo model is built on demand; any other missing name is an error.
    """
    from filelock import FileLock

    from recommender.build import DEMO_MODEL, build_demo

    name = name or model_name()
    try:
        return resolve_tag(name)
    except NotFoundError:
        if name.split(":")[0] != DEMO_MODEL:
            raise
    # one build per machine, whichever process (service, worker, CLI) gets here first
    lock = _store_dir() / f".{DEMO_MODEL}.build.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with _lock, FileLock(str(lock)):
        try:
            return resolve_tag(name)
        except NotFoundError:
            log.warning("model %r not found: building it from the bundled demo catalogue", name)
            return build_demo(name.split(":")[0]).tag


def _store_dir() -> Path:
    from bentoml._internal.configuration.containers import BentoMLContainer

    return Path(BentoMLContainer.bentoml_home.get())


def load(name: str | None = None, *, encode: EncodeFn | None = None) -> LoadedModel:
    """Load ``name`` (see :func:`ensure_model`) from the model store, ready to answer."""
    tag = ensure_model(name)
    bundle, tag = load_from_store(tag)
    return load_model(bundle, tag=tag, encode=encode)
