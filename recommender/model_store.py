"""A model store shared by the serving pods and a scheduled refresh (``RECBENTO_MODEL_STORE``).

A containerised Bento serves the model version it packed, from the image's read-only
store. For a scheduled ``recbento refresh`` to reach the pods, they and the refresh
job share one store on a volume: ``RECBENTO_MODEL_STORE=/var/lib/recbento/models``.
With it set, every recbento process (the API and encoder workers, the CLI):

* uses that directory as BentoML's model store, seeded on first start with the
  versions the Bento packed (the model and its encoder checkpoint);
* writes versions into it atomically: a version is built beside the store and renamed
  into place whole, so a reader on another pod (or a refresh killed half-way) never
  sees a partial one;
* serves, for a pinned version such as the one a Bento packs, the newest version
  *derived* from it (refreshes and retrains label a version with its parent and the
  first version of its line): a new image packing another version starts a new line
  instead of being shadowed by the refreshes of the old one, and pruning old versions
  never cuts a line.

Examples
--------
>>> use_shared_store(["movies:abc", "movies-encoder:def"])   # doctest: +SKIP
PosixPath('/var/lib/recbento/models')
>>> newest_version("movies:abc")                            # doctest: +SKIP
'movies:xyz'            # the latest refresh of movies:abc
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bentoml._internal.models.model import ModelStore
from bentoml._internal.tag import Tag

from recommender.errors import NotFoundError

__all__ = [
    "LINE_LABEL",
    "PARENT_LABEL",
    "SharedModelStore",
    "derived_labels",
    "follows_latest",
    "newest_version",
    "shared_store_path",
    "use_shared_store",
]

log = logging.getLogger(__name__)

ENV = "RECBENTO_MODEL_STORE"
#: Label of a version made from another one (refresh, retrain): the parent's tag.
PARENT_LABEL = "recbento.parent"
#: ...and the first version of its line (a version with no parent starts one).
LINE_LABEL = "recbento.line"


def shared_store_path() -> Path | None:
    """``$RECBENTO_MODEL_STORE`` as a path, or None when the deployment has no shared store."""
    raw = os.environ.get(ENV, "").strip()
    return Path(raw) if raw else None


def follows_latest(name: str) -> bool:
    """Whether ``name`` asks for the latest version (no version, or ``:latest``)."""
    return ":" not in name or name.endswith(":latest")


class SharedModelStore(ModelStore):
    """BentoML's model store, with versions moved into place whole.

    BentoML writes a new version straight into ``<store>/<name>/<version>``; here it is
    written to ``<store>.incoming/`` (same volume) and renamed, and the ``latest``
    pointer is replaced, never rewritten in place.
    """

    def __init__(self, base_path: str | os.PathLike[str]) -> None:
        super().__init__(base_path)
        self.incoming = Path(f"{self._path}.incoming")

    @contextmanager
    def register(self, tag: str | Tag) -> Iterator[str]:  # type: ignore[override]
        from bentoml.exceptions import BentoMLException

        tag = Tag.from_taglike(tag)
        final = self._path / tag.path()
        if final.exists():
            raise BentoMLException(f"Item '{tag}' already exists in the store {self._path}")
        self.incoming.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{tag.name}-{tag.version}-", dir=self.incoming))
        try:
            yield str(tmp)
            tmp.chmod(0o755)  # mkdtemp's 0700 would hide it from other users of the volume
            final.parent.mkdir(parents=True, exist_ok=True)
            os.rename(tmp, final)  # whole or not at all; fails if another writer won
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._point_latest(tag)

    def _point_latest(self, tag: Tag) -> None:
        latest = self._path / tag.latest_path()
        try:
            current = self.get(tag.name)
            if current.creation_time > self.get(tag).creation_time:
                return
        except Exception:  # noqa: BLE001 - no (readable) latest yet: point it here
            pass
        fd, tmp = tempfile.mkstemp(prefix=".latest-", dir=latest.parent)  # pods share pids
        with os.fdopen(fd, "w") as f:
            f.write(str(tag.version))
        os.chmod(tmp, 0o644)
        os.replace(tmp, latest)


def use_shared_store(seed: Iterable[str] = (), source: ModelStore | None = None) -> Path | None:
    """Make ``$RECBENTO_MODEL_STORE`` this process's model store; copy ``seed`` tags in.

    ``seed`` are exact tags found in ``source`` (default: the store in use until now,
    which is the Bento's own inside a served container); the ones the shared store
    lacks are copied in. Several pods starting at once may race: one copy wins, the
    others are dropped. Returns the store's path, or None when the variable is unset
    (nothing changes).
    """
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml.exceptions import BentoMLException, NotFound

    path = shared_store_path()
    if path is None:
        return None
    current = BentoMLContainer.model_store.get()
    if isinstance(current, SharedModelStore) and current._path == path:
        return path  # already switched (the service module is imported more than once)
    path.mkdir(parents=True, exist_ok=True)
    shared = SharedModelStore(path)
    for tag in seed:
        try:
            shared.get(tag)
            continue
        except NotFound:
            pass
        try:
            model = (source or current).get(tag)
        except NotFound:
            log.warning("%s is not in %s: not copied into the shared store", tag, current._path)
            continue
        try:
            model.save(shared)
            log.info("copied %s into the shared model store %s", tag, path)
        except (BentoMLException, OSError):
            shared.get(tag)  # another process copied it first; anything else re-raises
    BentoMLContainer.model_store.set(shared)
    return path


def derived_labels(parent: str) -> dict[str, str]:
    """Labels for a version made from ``parent`` (refresh, retrain): its lineage."""
    import bentoml

    return {PARENT_LABEL: parent, LINE_LABEL: _line(bentoml.models.get(parent))}


def _line(version: Any) -> str:
    """The first version of ``version``'s line (a bentoml Model): a label, or itself."""
    return version.info.labels.get(LINE_LABEL) or str(version.tag)


def newest_version(target: str) -> str:
    """The version a deployment serving ``target`` should serve now.

    A name (or ``name:latest``) is its latest version. An exact version is itself,
    unless a shared store is in use: then it is the newest version of its line saved
    since it (itself when there is none), so that a pod started from a Bento serves the
    refreshes of the version the Bento packed, and only those.
    """
    from recommender.bundle import resolve_tag

    tag = resolve_tag(target)
    if follows_latest(target) or shared_store_path() is None:
        return tag
    return _newest_descendant(tag)


def _newest_descendant(pinned: str) -> str:
    """Newest version (creation time) of ``pinned``'s line saved no earlier than it.

    A line is a first version and every version refreshed or retrained from it, or from
    one of those (:data:`LINE_LABEL`), so deleting an old version never cuts it.
    """
    versions = {str(v.tag): v for v in _versions(pinned.split(":")[0])}
    if pinned not in versions:
        raise NotFoundError(
            f"model={pinned!r} is not in the model store", field="model", value=pinned
        )
    line, since = _line(versions[pinned]), versions[pinned].info.creation_time
    same = [v for v in versions.values() if _line(v) == line and v.info.creation_time >= since]
    return str(max(same, key=lambda v: v.info.creation_time).tag)


def _versions(name: str) -> list:
    """Every readable version of ``name`` in the current store (unreadable ones skipped)."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    store = BentoMLContainer.model_store.get()
    folder = Path(store._path) / name
    out = []
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not entry.is_dir():
            continue
        try:
            out.append(store.get(f"{name}:{entry.name}"))
        except Exception as exc:  # noqa: BLE001 - a foreign or damaged folder: skip it
            log.debug("skipping %s: %s", entry, exc)
    return out
