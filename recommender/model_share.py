"""Getting one exact model version to workers that do not share the driver's model store.

The BentoML way: the driver exports the version to shared storage as a ``.bentomodel``
archive (``bentoml models export``), and every worker imports it into its own store
(``bentoml models import``) unless it is already there. A worker on the driver's
machine, or one whose ``BENTOML_HOME`` is a shared volume, finds the model as is and
needs no archive.

Examples
--------
>>> uri = publish_model("movies:2w3x", "/mnt/shared/models")      # doctest: +SKIP
'/mnt/shared/models/movies-2w3x.bentomodel'
>>> ensure_local_model("movies:2w3x", uri)  # on a worker          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

from recommender.errors import InputError, NotFoundError

__all__ = [
    "archive_uri",
    "ensure_local_model",
    "ensure_local_models",
    "in_local_store",
    "model_parts",
    "publish_model",
    "publish_models",
]

log = logging.getLogger(__name__)

_EXACT_TAG = re.compile(r"^[^:]+:[^:]+$")


def _check_exact(tag: str) -> tuple[str, str]:
    if not _EXACT_TAG.match(tag) or tag.endswith(":latest"):
        raise InputError(
            f"model={tag!r}: workers need an exact name:version tag (resolve 'latest' first)",
            field="model",
        )
    name, version = tag.split(":")
    return name, version


def archive_uri(tag: str, model_uri: str) -> str:
    """Where :func:`publish_model` puts ``tag`` under the folder or URL ``model_uri``."""
    name, version = _check_exact(tag)
    return f"{model_uri.rstrip('/')}/{name}-{version}.bentomodel"


def _is_url(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _local_path(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def publish_model(tag: str, model_uri: str) -> str:
    """Export ``tag`` from this machine's store to ``model_uri``; the archive's URI.

    ``model_uri`` is a folder or an fsspec URL prefix (``s3://bucket/models``: the
    matching fsspec package, e.g. ``s3fs``, must be installed). The archive is named by
    name and version, so one that already exists holds this exact version and is reused.
    A local archive is written under a temporary name and renamed when complete.
    """
    import bentoml

    target = archive_uri(tag, model_uri)
    if _is_url(target):
        import fsspec

        fs, path = fsspec.core.url_to_fs(target)
        if fs.exists(path):
            log.info("model %s is already exported to %s", tag, target)
            return target
        log.info("exporting model %s to %s", tag, target)
        bentoml.models.export_model(tag, target)
        return target
    final = _local_path(target)
    if final.is_file():
        log.info("model %s is already exported to %s", tag, final)
        return str(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    log.info("exporting model %s to %s", tag, final)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=final.parent) as tmp:
        written = bentoml.models.export_model(tag, str(Path(tmp) / final.name))
        os.replace(written, final)
    return str(final)


def in_local_store(tag: str) -> bool:
    """Whether this process's model store (``BENTOML_HOME``) holds ``tag``."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentoml.models.get(tag)
    except NotFound:
        return False
    return True


def ensure_local_model(tag: str, source: str | None) -> None:
    """Make ``tag`` present in this process's model store, importing ``source`` if needed.

    Workers on one machine may start together: a file lock lets one of them import while
    the others wait, so none loads a half-copied model.
    """
    import bentoml
    from filelock import FileLock

    name, version = _check_exact(tag)
    if in_local_store(tag):
        return
    if source is None:
        raise NotFoundError(
            f"model {tag!r} is not in this worker's model store "
            f"(BENTOML_HOME={os.environ.get('BENTOML_HOME', '~/bentoml')!r}); pass --model-uri "
            "with shared storage to export it there, or share BENTOML_HOME with the workers"
        )
    lock = Path(tempfile.gettempdir()) / f"recbento-import-{name}-{version}.lock"
    with FileLock(str(lock)):
        if in_local_store(tag):
            return
        log.info("importing model %s from %s", tag, source)
        model = bentoml.models.import_model(source)
    if str(model.tag) != tag:
        raise NotFoundError(f"model_uri archive {source!r} holds {model.tag}, expected {tag!r}")


def model_parts(tag: str) -> list[str]:
    """``tag`` and the stored models it references: its encoder checkpoint, if any."""
    import json

    import bentoml

    config = json.loads(Path(bentoml.models.get(tag).path, "config.json").read_text())
    encoder = (config.get("encoder") or {}).get("model_tag")
    return [tag] + ([encoder] if encoder else [])


def publish_models(tag: str, model_uri: str | None) -> dict[str, str | None]:
    """Every part of ``tag`` (see :func:`model_parts`) -> its archive (``None``: no uri)."""
    return {p: publish_model(p, model_uri) if model_uri else None for p in model_parts(tag)}


def ensure_local_models(sources: dict[str, str | None]) -> None:
    """:func:`ensure_local_model` for every part :func:`publish_models` returned."""
    for tag, source in sources.items():
        ensure_local_model(tag, source)
