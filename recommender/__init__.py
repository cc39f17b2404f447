"""recbento: a recommender that plugs into BentoML.

The pieces a user composes, imported lazily (importing ``recommender`` does no work):

* services: :func:`make_services` -> ``(Encoder, Recommender)`` BentoML services for one
  model; :class:`ServiceSettings`;
* the request path: :func:`load` (a model from the store by name),
  :func:`load_model` (from a :class:`Bundle`), :class:`LoadedModel`, :class:`Request`,
  :class:`GroupRequest`, :func:`recommend_batch`, :func:`recommend_group`,
  :func:`similar_items`;
* the build path: :func:`build_and_save`, :func:`build_bundle`, :class:`Bundle`,
  :class:`TextEncoder`, :class:`ModelConfig`, :class:`ServingConfig`.

Examples
--------
>>> import recommender                                     # doctest: +SKIP
>>> model = recommender.load("recbento-demo")              # doctest: +SKIP
>>> model.recommend(user_id=1, k=3).items[0].title         # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "make_services": "recommender.services",
    "ServiceSettings": "recommender.services",
    "Handlers": "recommender.services",
    "load": "recommender.service_core",
    "ensure_model": "recommender.service_core",
    "LoadedModel": "recommender.serving",
    "load_model": "recommender.serving",
    "Request": "recommender.serving",
    "GroupRequest": "recommender.serving",
    "Recommendation": "recommender.serving",
    "recommend_batch": "recommender.serving",
    "recommend_group": "recommender.serving",
    "similar_items": "recommender.serving",
    "Bundle": "recommender.bundle",
    "build_bundle": "recommender.build",
    "build_and_save": "recommender.build",
    "TextEncoder": "recommender.encoder",
    "ModelConfig": "recommender.config",
    "ServingConfig": "recommender.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'recommender' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
