"""The floor of the serving benchmark: a BentoML service that does no work.

It answers ``recommend`` with a fixed list in recbento's answer shape, with the same
worker count, so ``benchmarks.serving`` can report how far recbento is from what the
framework alone costs on this machine.

    bentoml serve benchmarks.floor_service:Floor --port 3001
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import bentoml
from bentoml.validators import ContentType

JSONObject = Annotated[dict[str, Any], ContentType("application/json")]

_ITEMS = [
    {"item_id": i, "title": f"Movie number {i} (1995)", "score": round(1 - i / 100, 6)}
    for i in range(1, 101)
]


@bentoml.service(name="floor", workers=int(os.environ.get("RECBENTO_WORKERS", "2")))
class Floor:
    """Same route, same JSON shape, no model."""

    @bentoml.api
    def recommend(self, user_id: int | str | None = None, k: int = 10) -> JSONObject:
        return {
            "user_id": user_id,
            "items": _ITEMS[:k],
            "cold_start": False,
            "group": 0,
            "model": "floor:0",
        }
