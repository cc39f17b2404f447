"""Fitted user groups on disk: ``groups.json`` (config, scalars) + ``groups.safetensors``.

No pickle: the JSON holds the hyperparameters, the chosen number of groups, the
silhouette scores, the attribute vocabularies and, when given, the group portraits; the
safetensors file holds the centres, the labels and the in-group item popularity.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recommender.errors import BundleError
from recommender.group_portraits import GroupPortrait

if TYPE_CHECKING:
    from recommender.groups import UserGroups

__all__ = ["FORMAT_VERSION", "groups_meta", "load_groups", "save_groups"]

#: Version of ``groups.json``; :func:`load_groups` reads only this one.
FORMAT_VERSION = 1


def groups_meta(g: UserGroups) -> dict[str, Any]:
    """JSON-able config and scalar state of fitted groups (arrays go to safetensors)."""
    return {
        "format_version": FORMAT_VERSION,
        "config": g.get_config(),
        "n_groups_": int(g.n_groups_),
        "silhouette_": float(g.silhouette_),
        "silhouette_scores_": {str(k): v for k, v in g.silhouette_scores_.items()},
        "vector_dim_": int(g.vector_dim_),
        "attribute_categories_": g.attribute_categories_,
        "numeric_bins_": g.numeric_bins_,
    }


def save_groups(
    g: UserGroups, directory: str | Path, portraits: Sequence[GroupPortrait] | None = None
) -> None:
    """Write ``groups.json`` and ``groups.safetensors`` of fitted groups into ``directory``."""
    from safetensors.numpy import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    meta = g.to_dict()
    if portraits is not None:
        meta["portraits"] = [p.to_dict() for p in portraits]
    (d / "groups.json").write_text(json.dumps(meta, indent=2))
    arrays = {"centers_": g.centers_, "labels_": g.labels_}
    if g.group_popularity_ is not None:
        arrays["group_popularity_"] = g.group_popularity_.astype(np.float32)
    save_file(
        {k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(d / "groups.safetensors")
    )


def load_groups(cls: type[UserGroups], directory: str | Path) -> UserGroups:
    """Read what :func:`save_groups` wrote into a new ``cls`` instance."""
    from safetensors.numpy import load_file

    d = Path(directory)
    try:
        meta = json.loads((d / "groups.json").read_text())
        arrays = load_file(str(d / "groups.safetensors"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read user groups from {d}: {exc}") from exc
    if meta.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"groups.json format_version={meta.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    g = cls.from_config(meta["config"])
    g.n_groups_ = int(meta["n_groups_"])
    g.silhouette_ = float(meta["silhouette_"])
    g.silhouette_scores_ = {int(k): float(v) for k, v in meta["silhouette_scores_"].items()}
    g.vector_dim_ = int(meta["vector_dim_"])
    g.attribute_categories_ = {k: list(v) for k, v in meta["attribute_categories_"].items()}
    g.numeric_bins_ = {k: list(v) for k, v in meta["numeric_bins_"].items()}
    g.centers_ = arrays["centers_"].astype(np.float64)
    g.labels_ = arrays["labels_"].astype(np.int64)
    gp = arrays.get("group_popularity_")
    g.group_popularity_ = None if gp is None else gp.astype(np.float64)
    g.portraits_ = [GroupPortrait(**p) for p in meta.get("portraits", [])]
    return g
