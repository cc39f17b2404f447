"""Pick an index by catalogue size, and read one back from disk."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np

from recommender.errors import BundleError, InputError
from recommender.index.ann import ANNIndex
from recommender.index.base import (
    CONFIG_FILE,
    FAISS_FILE,
    VectorIndex,
    _check_vectors,
    fingerprint,
)
from recommender.index.exact import ExactIndex

log = logging.getLogger(__name__)

_KINDS: dict[str, type[VectorIndex]] = {"exact": ExactIndex, "ann": ANNIndex}


def make_index(
    vectors: np.ndarray,
    kind: Literal["auto", "exact", "ann"] = "auto",
    ann_threshold: int = 200_000,
    **params: Any,
) -> VectorIndex:
    """Build the index that suits the catalogue.

    Parameters
    ----------
    vectors : numpy.ndarray
        ``(n, d)`` float32 unit rows.
    kind : {"auto", "exact", "ann"}
        ``auto`` is exact below ``ann_threshold`` items and ANN from there on.
    ann_threshold : int
        Catalogue size from which ``auto`` builds an ANN index.
    **params
        Hyperparameters of the chosen class (ignored by ``auto`` when it picks exact).

    Examples
    --------
    >>> make_index(np.eye(4, dtype=np.float32)).kind
    'exact'
    """
    if kind == "auto":
        kind = "ann" if len(vectors) >= ann_threshold else "exact"
        if kind == "exact":
            params = {k: v for k, v in params.items() if k in ("score_budget_mb",)}
    if kind not in _KINDS:
        raise InputError(
            f"kind={kind!r}: expected one of ['auto', 'exact', 'ann']", field="kind", value=kind
        )
    log.info("building %s index over %d items", kind, len(vectors))
    return _KINDS[kind](**params).build(vectors)


def load_index(directory: str | Path, vectors: np.ndarray) -> VectorIndex:
    """Read an index written by ``save``, attached to the bundle's ``vectors``.

    A saved faiss file is used when it matches ``vectors`` (same shape and
    fingerprint); otherwise the index is rebuilt from ``vectors`` with the saved
    configuration, and a warning is logged.
    """
    directory = Path(directory)
    try:
        meta = json.loads((directory / CONFIG_FILE).read_text())
        cls = _KINDS[meta["kind"]]
    except (OSError, ValueError, KeyError) as exc:
        raise BundleError(f"{directory / CONFIG_FILE}: unreadable index config ({exc})") from exc
    index = cls.from_config(meta["config"])
    vectors = _check_vectors(vectors)
    matches = meta.get("fingerprint") == fingerprint(vectors)
    faiss_file = directory / FAISS_FILE
    if isinstance(index, ANNIndex) and faiss_file.exists() and matches:
        import faiss

        index.vectors_ = vectors
        index.index_ = faiss.read_index(str(faiss_file))
        if index.index_.ntotal != len(vectors) or index.index_.d != vectors.shape[1]:
            raise BundleError(
                f"{faiss_file}: holds {index.index_.ntotal} x {index.index_.d} vectors; "
                f"expected {vectors.shape[0]} x {vectors.shape[1]}"
            )
        return index
    if isinstance(index, ANNIndex):
        log.warning("%s: saved ANN index missing or stale; rebuilding", directory)
    return index.build(vectors)
