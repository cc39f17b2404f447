"""The contract every vector index honours, and the checks they share."""

from __future__ import annotations

import hashlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from recommender.errors import InputError

log = logging.getLogger(__name__)

#: File names inside an index directory.
CONFIG_FILE = "index.json"
FAISS_FILE = "index.faiss"

_SCORE_BUDGET_BYTES = 256 * 2**20  # largest (queries x items) float32 block scored at once


class VectorIndex(ABC):
    """Contract shared by every index: ``build`` once, ``search`` many times.

    Subclasses store keyword hyperparameters in ``__init__``; ``build`` validates the
    vectors, learns ``vectors_`` (and any structure) and returns ``self``.
    """

    kind: ClassVar[str]

    vectors_: np.ndarray

    # ----------------------------------------------------------------- build
    @abstractmethod
    def build(self, vectors: np.ndarray) -> VectorIndex:
        """Index ``vectors``, an ``(n, d)`` float32 matrix of unit rows; return ``self``."""

    @property
    def n_items(self) -> int:
        """Number of indexed items."""
        self._check_built()
        return int(self.vectors_.shape[0])

    @property
    def dim(self) -> int:
        """Vector dimension."""
        self._check_built()
        return int(self.vectors_.shape[1])

    # ---------------------------------------------------------------- search
    def search(
        self,
        queries: np.ndarray,
        k: int,
        exclude: Sequence[np.ndarray] | None = None,
        allowed_mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items by inner product for each query.

        Parameters
        ----------
        queries : numpy.ndarray
            ``(b, d)`` query vectors (a single ``(d,)`` vector is read as ``b = 1``).
        k : int
            Results per query, at least 1.
        exclude : sequence of numpy.ndarray, optional
            ``exclude[i]`` holds item indices never returned for query ``i``.
        allowed_mask : numpy.ndarray of bool, optional
            ``(n,)`` mask shared by every query or ``(b, n)`` per query; ``False``
            items are never returned.

        Returns
        -------
        idx : numpy.ndarray
            ``(b, k)`` int64 item indices, best first, ``-1`` padding.
        scores : numpy.ndarray
            ``(b, k)`` float32 inner products, ``-inf`` padding.
        """
        self._check_built()
        q = self._check_queries(queries)
        k = _check_k(k)
        ex = _check_exclude(exclude, len(q), self.n_items)
        mask = _check_mask(allowed_mask, len(q), self.n_items)
        if len(q) == 0:
            return np.zeros((0, k), np.int64), np.zeros((0, k), np.float32)
        return self._search(q, k, ex, mask)

    @abstractmethod
    def _search(
        self, q: np.ndarray, k: int, exclude: list[np.ndarray], mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``search`` after validation: ``exclude`` has one int64 array per row."""

    # ---------------------------------------------------------------- config
    @abstractmethod
    def get_config(self) -> dict[str, Any]:
        """Hyperparameters as a JSON-able dict; ``from_config`` rebuilds the estimator."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> VectorIndex:
        """An unbuilt index with the hyperparameters of ``get_config``."""
        params = {key: val for key, val in config.items() if key != "kind"}
        return cls(**params)

    def save(self, directory: str | Path) -> Path:
        """Write ``index.json`` (config and a vector fingerprint) into ``directory``.

        The vectors themselves are not written: they live in the bundle's
        ``item_vectors.safetensors`` and are passed back to :func:`load_index`.
        """
        self._check_built()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "kind": self.kind,
            "config": self.get_config(),
            "n_items": self.n_items,
            "dim": self.dim,
            "fingerprint": fingerprint(self.vectors_),
        }
        (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=2))
        return directory

    # --------------------------------------------------------------- helpers
    def _check_built(self) -> None:
        if not hasattr(self, "vectors_"):
            raise InputError(f"{type(self).__name__} is not built; call build(vectors) first")

    def _check_queries(self, queries: np.ndarray) -> np.ndarray:
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise InputError(
                f"queries has shape {np.shape(queries)}; expected (b, {self.dim})",
                field="queries",
                value=str(np.shape(queries)),
            )
        if not np.isfinite(q).all():
            raise InputError("queries contain NaN or inf; expected finite values", field="queries")
        return np.ascontiguousarray(q)


# ---------------------------------------------------------------------- helpers
def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of ``truth`` (ignoring ``-1``) that ``found`` contains.

    >>> recall_at_k(np.array([[1, 2, 3]]), np.array([[3, 4, 1]]))
    0.6666666666666666
    """
    total = 0.0
    for f, t in zip(found, truth, strict=True):
        t = t[t >= 0]
        total += len(np.intersect1d(f[f >= 0], t)) / len(t) if len(t) else 1.0
    return total / max(len(truth), 1)


def fingerprint(vectors: np.ndarray) -> str:
    """Cheap identity of a vector matrix: its shape and a hash of up to 1024 rows."""
    n = len(vectors)
    rows = np.unique(np.linspace(0, max(n - 1, 0), num=min(n, 1024)).astype(np.int64))
    h = hashlib.sha256(f"{vectors.shape}".encode())
    h.update(np.ascontiguousarray(vectors[rows] if n else vectors).tobytes())
    return h.hexdigest()[:16]


def _eligible(n_eligible: int, exclude: np.ndarray, mask: np.ndarray | None) -> int:
    if not len(exclude):
        return n_eligible
    hit = int(mask[exclude].sum()) if mask is not None else len(exclude)
    return n_eligible - hit


def _check_vectors(vectors: np.ndarray) -> np.ndarray:
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0:
        raise InputError(
            f"vectors has shape {np.shape(vectors)}; expected a non-empty (n, d) matrix",
            field="vectors",
            value=str(np.shape(vectors)),
        )
    if not np.isfinite(v).all():
        raise InputError("vectors contain NaN or inf; expected finite values", field="vectors")
    return v


def _check_k(k: int) -> int:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise InputError(f"k={k!r}: expected an integer >= 1", field="k", value=k)
    return int(k)


def _check_exclude(exclude: Sequence[np.ndarray] | None, b: int, n: int) -> list[np.ndarray]:
    if exclude is None:
        return [np.zeros(0, np.int64)] * b
    if len(exclude) != b:
        raise InputError(
            f"exclude has {len(exclude)} rows; expected one per query ({b})",
            field="exclude",
            value=len(exclude),
        )
    out = []
    for i, ex in enumerate(exclude):
        ex = np.unique(np.asarray(ex, dtype=np.int64).ravel())
        if len(ex) and (ex[0] < 0 or ex[-1] >= n):
            raise InputError(
                f"exclude[{i}] holds item index {int(ex[0] if ex[0] < 0 else ex[-1])}; "
                f"expected 0..{n - 1}",
                field=f"exclude[{i}]",
            )
        out.append(ex)
    return out


def _check_mask(mask: np.ndarray | None, b: int, n: int) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype != bool or m.shape not in ((n,), (b, n)):
        raise InputError(
            f"allowed_mask has dtype {m.dtype} and shape {m.shape}; "
            f"expected bool of shape ({n},) or ({b}, {n})",
            field="allowed_mask",
        )
    return m
