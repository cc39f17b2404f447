"""The model bundle: one directory, readable without running code, in the BentoML store.

Layout (every file is JSON, Parquet or safetensors; nothing is pickled)::

    config.json                  every knob, encoder name, library versions, counts
    items.parquet                the validated catalogue (row i <-> vector i)
    item_vectors.safetensors     "vectors": (n_items, dim) float32, L2-normalised
    interactions.parquet         the validated interaction log (histories)
    users.parquet                optional users table
    user_vectors.safetensors     "vectors": (n_users, dim), rows follow users_index.parquet
    users_index.parquet          user_id per row of user_vectors
    graph.json ...               optional components (knowledge graph, groups, tower)

Saving goes through :func:`bentoml.models.create`, which writes into a temporary folder
and moves it into the store only when the ``with`` block ends without an error: a failed
build leaves the store as it was.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save_file

from recommender.errors import BundleError, NotFoundError

__all__ = [
    "FORMAT_VERSION",
    "Bundle",
    "Component",
    "register_component",
    "save_to_store",
    "load_from_store",
    "resolve_tag",
    "library_versions",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
LABEL = {"framework": "recbento"}


@dataclass(frozen=True)
class Component:
    """An optional part of a bundle: how to save it into, and load it from, a folder.

    ``marker`` is the file whose presence says the component was saved.
    """

    name: str
    marker: str
    save: Callable[[Any, Path], None]
    load: Callable[[Path], Any]


_COMPONENTS: dict[str, Component] = {}


def register_component(component: Component) -> None:
    """Make a component (knowledge graph, groups, user tower...) part of every bundle."""
    _COMPONENTS[component.name] = component


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a bundle, stored in its config."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("recbento", "bentoml", "torch", "transformers", "pandas", "networkx"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:  # pragma: no cover
            out[dist] = "not installed"
    return out


@dataclass
class Bundle:
    """Everything the request path needs, in memory.

    Attributes
    ----------
    config : dict
        JSON-able; ``config["encoder"]`` names the checkpoint, ``config["serving"]``
        holds request-time defaults.
    items, interactions, users : pandas.DataFrame
        Validated tables (see :mod:`recommender.schemas`).
    item_vectors : numpy.ndarray
        ``(n_items, dim)`` float32 unit vectors, row-aligned with ``items``.
    user_ids, user_vectors :
        Stored user vectors (history-based or learned), row-aligned.
    components : dict
        Optional parts by name (``"graph"``, ``"groups"``, ``"tower"``...).
    """

    config: dict[str, Any]
    items: pd.DataFrame
    item_vectors: np.ndarray
    interactions: pd.DataFrame
    users: pd.DataFrame | None = None
    user_ids: list[Any] = field(default_factory=list)
    user_vectors: np.ndarray | None = None
    components: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        """Write the bundle's files into ``path`` (an existing, empty folder)."""
        path = Path(path)
        config = dict(self.config)
        config["format_version"] = FORMAT_VERSION
        config["components"] = sorted(k for k, v in self.components.items() if v is not None)
        config.setdefault("versions", library_versions())
        (path / "config.json").write_text(json.dumps(config, indent=2, default=str))
        self.items.to_parquet(path / "items.parquet", index=False)
        save_file(
            {"vectors": np.ascontiguousarray(self.item_vectors, dtype=np.float32)},
            str(path / "item_vectors.safetensors"),
        )
        self.interactions.to_parquet(path / "interactions.parquet", index=False)
        if self.users is not None:
            self.users.to_parquet(path / "users.parquet", index=False)
        if self.user_vectors is not None:
            pd.DataFrame({"user_id": self.user_ids}).to_parquet(
                path / "users_index.parquet", index=False
            )
            save_file(
                {"vectors": np.ascontiguousarray(self.user_vectors, dtype=np.float32)},
                str(path / "user_vectors.safetensors"),
            )
        for name, obj in self.components.items():
            if obj is None:
                continue
            if name not in _COMPONENTS:
                _import_component_modules()
            if name not in _COMPONENTS:
                raise BundleError(f"component={name!r} has no registered saver")
            _COMPONENTS[name].save(obj, path)

    @classmethod
    def load(cls, path: str | Path) -> Bundle:
        """Read a bundle written by :meth:`save`."""
        path = Path(path)
        cfg_path = path / "config.json"
        if not cfg_path.is_file():
            raise BundleError(f"{path} is not a recbento bundle: config.json is missing")
        config = json.loads(cfg_path.read_text())
        version = config.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"format_version={version!r} in {path}; this recbento reads {FORMAT_VERSION}: "
                "rebuild the model with `recbento build`"
            )
        t0 = time.perf_counter()
        items = pd.read_parquet(path / "items.parquet")
        item_vectors = load_file(str(path / "item_vectors.safetensors"))["vectors"]
        interactions = pd.read_parquet(path / "interactions.parquet")
        users = (
            pd.read_parquet(path / "users.parquet") if (path / "users.parquet").is_file() else None
        )
        user_ids: list[Any] = []
        user_vectors = None
        if (path / "user_vectors.safetensors").is_file():
            user_ids = pd.read_parquet(path / "users_index.parquet")["user_id"].tolist()
            user_vectors = load_file(str(path / "user_vectors.safetensors"))["vectors"]
        components: dict[str, Any] = {}
        for name in config.get("components", []):
            comp = _COMPONENTS.get(name)
            if comp is None:
                _import_component_modules()
                comp = _COMPONENTS.get(name)
            if comp is None:
                raise BundleError(f"bundle {path} has component={name!r} that nothing can load")
            components[name] = comp.load(path)
        log.info("loaded bundle from %s in %.2fs", path, time.perf_counter() - t0)
        return cls(
            config, items, item_vectors, interactions, users, user_ids, user_vectors, components
        )


def _import_component_modules() -> None:
    """Import the modules that register optional components."""
    import importlib

    for module in ("recommender.components",):
        try:
            importlib.import_module(module)
        except ImportError:  # pragma: no cover - optional parts
            log.debug("could not import %s", module)


def save_to_store(bundle: Bundle, name: str, *, labels: dict[str, str] | None = None) -> str:
    """Save ``bundle`` as a new version of model ``name``; returns the tag string.

    The store is changed only if every file was written.
    """
    import bentoml

    meta = {
        "format_version": FORMAT_VERSION,
        "n_items": len(bundle.items),
        "n_users": int(bundle.interactions["user_id"].nunique()),
        "n_interactions": len(bundle.interactions),
        "encoder": bundle.config.get("encoder", {}).get("name", "?"),
        "components": sorted(k for k, v in bundle.components.items() if v is not None),
    }
    try:
        with bentoml.models.create(name, labels={**LABEL, **(labels or {})}, metadata=meta) as m:
            bundle.save(m.path)
    except ValueError as exc:
        raise BundleError(f"name={name!r}: not a valid model name ({exc})") from exc
    log.info("saved model %s", m.tag)
    return str(m.tag)


def resolve_tag(name_or_tag: str) -> str:
    """``name`` or ``name:version`` -> the full tag of a stored recbento model."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        model = bentoml.models.get(name_or_tag)
    except NotFound as exc:
        raise NotFoundError(
            f"model={name_or_tag!r} is not in the BentoML model store; build it with "
            "`recbento build --name NAME ...` (list models with `bentoml models list`)",
            field="model",
            value=name_or_tag,
        ) from exc
    except ValueError as exc:
        raise NotFoundError(
            f"model={name_or_tag!r} is not a valid model tag ({exc})",
            field="model",
            value=name_or_tag,
        ) from exc
    return str(model.tag)


def load_from_store(name_or_tag: str) -> tuple[Bundle, str]:
    """Load the latest (or the given) version of a model from the BentoML store."""
    import bentoml

    tag = resolve_tag(name_or_tag)
    model = bentoml.models.get(tag)
    return Bundle.load(model.path), tag
